"""Layer objects: ``forward(*inputs, **kwargs)`` and ``backward(dout)``.

The textbook's style (``MulLayer``, ``Affine``, ``SoftmaxWithLoss``) and its
second volume's (``params``/``grads`` lists written in place) are both layers;
they differ only in where the parameter gradients are found after backward.

Weights are found wherever the layer holds them: instance attributes, slots,
properties, nested objects (``self.fc.W`` with ``self.fc.dW``), and a
``params``/``grads`` pair.  Gradient containers are re-read after every backward,
since a backward may rebind them (``self.grads = [dW, db]``).
"""

from __future__ import annotations

import ast
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gradverify.adapters.base import (
    Adapter,
    Gradients,
    ParamDeclaration,
    ParamSlot,
    call_target,
    gradient_values,
    pass_cotangent,
    private_copy,
    writable,
)
from gradverify.adapters.conventions import NO_CONVENTIONS, Conventions, ReturnLayout, not_found
from gradverify.adapters.optimizers import swap_in
from gradverify.errors import InvalidArgument, TargetContractError
from gradverify.objects import attributes, gradient_path, holdings, lookup, valid_path


class LayerAdapter(Adapter):
    """An object with ``forward`` and ``backward`` methods (any number of inputs).

    Declared conventions (`conventions`) rename the methods, lay out backward's
    return, capture gradients from an optimizer, or flush before every forward.
    Declared optimizers are replaced by recorders when the adapter is made: the
    caller's snapshot, taken before (as `check` takes it), puts them back.
    """

    kind = "layer"
    looks_for = "an object with forward(*inputs) and backward(dout) methods (a layer)"
    holds_state = True
    understands = frozenset({"methods", "returns", "optimizer", "flush"})

    def __init__(
        self, target: Any, kwargs: Mapping[str, Any], conventions: Conventions = NO_CONVENTIONS
    ) -> None:
        self._forward_method = _method(target, conventions, "forward")
        self._backward_method = _method(target, conventions, "backward")
        self._flush = _method(target, conventions, "flush") if conventions.flush else None
        self._recorders = [swap_in(target, path) for path in conventions.optimizer]
        super().__init__(target, kwargs, conventions)
        self.accumulates = self._flush is not None
        self._slots: list[ParamSlot] = []
        self._layout = ReturnLayout(conventions.returns, conventions.inputs)
        self._returned: dict[Any, Any] = {}  # the weights' gradients backward returned last
        # built once: forward is the hot path
        self._forward_stage = f"{self.name}.{conventions.method('forward')}"
        self._flush_stage = f"{self.name}.{conventions.flush}"

    @classmethod
    def accepts(cls, target: Any, args: Sequence[Any]) -> bool:
        return callable(getattr(target, "forward", None)) and callable(
            getattr(target, "backward", None)
        )

    @property
    def label(self) -> str:
        return f"{self.name}.{self.conventions.method('backward')}"

    def forward(self, args: Sequence[Any]) -> Any:
        self.forward_calls += 1
        if self._flush is not None:
            call_target(self._flush_stage, self._flush)
        return call_target(self._forward_stage, self._forward_method, *args, **self.kwargs)

    def backward(self, args: Sequence[Any], cotangent: Any) -> Gradients:
        self.forward(args)
        return self._backward_only(cotangent)

    def backward_again(self, cotangent: Any) -> Gradients:
        """Backward alone, on whatever the last forward cached."""
        return self._backward_only(cotangent)

    def _backward_only(self, cotangent: Any) -> Gradients:
        self.backward_calls += 1
        douts, modified = pass_cotangent(cotangent)
        returned = call_target(self.label, self._backward_method, *douts)
        given, self._returned = self._layout.split(returned, self.label)
        inputs = gradient_values(given, self.label)
        params = {slot.name: private_copy(slot.read_gradient()) for slot in self._slots}
        return Gradients(inputs, params, modified(), returned is None)

    def parameters(self, declared: ParamDeclaration) -> list[ParamSlot]:
        """Weights whose gradients backward returns or hands to an optimizer, then the
        declared or discovered ones (each weight once, the first way found)."""
        claimed: set[int] = set()
        found = self._returned_slots(declared, claimed) + self._recorded_slots(claimed)
        held = self._declared(declared, claimed) if declared is not None else self._discovered()
        found += [slot for slot in held if id(slot.array) not in claimed]
        self._slots = [writable(self.target, slot) for slot in found]
        return self._slots

    def _returned_slots(self, declared: ParamDeclaration, claimed: set[int]) -> list[ParamSlot]:
        """The weights whose gradients backward returns, by declared name, by a dict's key,
        or by position in a list (matched by the declared ``params`` order, or by shape)."""
        if not self._returned:
            return []
        weights = self._weights()
        slots = []
        for key in self._returned:
            if isinstance(key, int):
                path = _by_position(self.label, key, self._returned, declared, weights)
            else:
                path = _by_name(self.label, key, weights, self._layout.declared is not None)
            value = weights.get(path)
            if value is None:
                raise InvalidArgument(
                    f"`params` names {path!r}, but {self.name}.{path} is not a float array."
                )
            if id(value) in claimed:
                raise TargetContractError(
                    f"{self.label} returned two gradients for {path}; say which is which "
                    f"with returns=('x', ['W', 'b'])."
                )
            claimed.add(id(value))
            reader = functools.partial(self._returned_gradient, key)
            slots.append(ParamSlot(path, _gradient_name(path), value, reader))
        return slots

    def _returned_gradient(self, key: Any) -> Any:
        """The gradient under `key` in what the latest backward returned."""
        return self._returned.get(key)

    def _weights(self) -> dict[str, Any]:
        """The float arrays held at the same place since before the check (not per-call
        caches such as ``self.x``), by their first path: what a returned gradient can be for."""
        found: dict[int, Any] = {}
        for holding in self.held_arrays():
            if self.weight_test(holding.value):
                found.setdefault(id(holding.value), holding)
        return {h.path: h.value for h in found.values()}

    def _recorded_slots(self, claimed: set[int]) -> list[ParamSlot]:
        """The weights whose gradients backward handed to a declared optimizer."""
        slots = []
        for recorder in self._recorders:
            if recorder.calls == 0:
                raise TargetContractError(
                    f"optimizer={recorder.path!r} is declared, but {self.label} never called "
                    f"{recorder.path}.{recorder.method}(); name the optimizer backward uses, "
                    f"or leave optimizer= out."
                )
            held: dict[int, Any] = {}
            for holding in holdings(self.target):  # lazily made weights too; first path each
                if self.weight_test(holding.value):
                    held.setdefault(id(holding.value), holding)
            for holding in held.values():
                path, value = holding.path, holding.value
                if recorder.recorded(value) and id(value) not in claimed:
                    claimed.add(id(value))
                    reader = functools.partial(recorder.gradient, value)
                    grad_name = f"{_gradient_name(path)} via {recorder.path}"
                    slots.append(ParamSlot(path, grad_name, value, reader))
        return slots

    def _declared(self, declared: ParamDeclaration, claimed: set[int]) -> list[ParamSlot]:
        """The declared weights, but those whose gradients backward returns (`claimed`)."""
        if isinstance(declared, Mapping):
            pairs = [(str(k), str(v)) for k, v in declared.items()]
        elif isinstance(declared, (list, tuple)) and all(isinstance(n, str) for n in declared):
            pairs = [(name, gradient_path(name)) for name in declared]
        else:
            raise InvalidArgument(
                f"`params` must be a list of attribute names or a mapping name -> gradient "
                f"attribute, got params={declared!r}; pass e.g. params=['W', 'b'] or "
                f"params={{'W': 'grad_W'}}."
            )
        slots = []
        for name, grad_name in pairs:
            value = lookup(self.target, name) if valid_path(name) else None
            if id(value) in claimed:
                continue
            if grad_name.startswith("<"):
                raise InvalidArgument(
                    f"`params` names the item {name!r}, whose gradient has no textbook name; "
                    f"say where backward puts it, e.g. params={{{name!r}: "
                    f"{name.replace('params', 'grads', 1)!r}}}."
                )
            if not self.weight_test(value):
                raise InvalidArgument(
                    f"`params` names {name!r}, but {self.name}.{name} is "
                    f"{_described(value)}, not a float ndarray; name the attributes "
                    f"that hold the weights, e.g. params=['W', 'b']."
                )
            slots.append(ParamSlot(name, grad_name, value, self._reader(grad_name)))
        return slots

    def _discovered(self) -> list[ParamSlot]:
        """A ``params``/``grads`` pair, then every stable float array with a ``d<name>``
        sibling, at any depth; each array once."""
        slots = _params_and_grads(self.target, self.weight_test)
        claimed = {id(slot.array) for slot in slots}
        for holding in self.held_arrays():
            value = holding.value
            gradient = f"d{holding.key}"
            if (
                holding.kind == "attr"
                and self.weight_test(value)
                and id(value) not in claimed
                and gradient in attributes(holding.parent)
            ):
                claimed.add(id(value))
                grad_path = gradient_path(holding.path)
                slots.append(ParamSlot(holding.path, grad_path, value, self._reader(grad_path)))
        return slots + _properties(self.target, claimed, self._reader, self.weight_test)

    def _reader(self, path: str) -> Callable[[], Any]:
        return lambda: lookup(self.target, path)


#: Containers of weights and of their gradients, side by side: the second volume's
#: ``params``/``grads``, numpy-ml's ``parameters``/``gradients``.
_CONTAINER_PAIRS = (("params", "grads"), ("parameters", "gradients"))


def _params_and_grads(target: Any, is_weight: Callable[[Any], bool]) -> list[ParamSlot]:
    """Two dicts with the same keys, or two equal lists, of weights and their gradients."""
    for weights, gradients in _CONTAINER_PAIRS:
        params, grads = _read(target, weights), _read(target, gradients)
        if isinstance(params, dict) and isinstance(grads, dict):
            keys: list[Any] = list(params)
        elif isinstance(params, list) and isinstance(grads, list) and len(params) == len(grads):
            keys = list(range(len(params)))
        else:
            continue
        return [
            ParamSlot(
                f"{weights}[{key!r}]",
                f"{gradients}[{key!r}]",
                params[key],
                _item_reader(target, gradients, key),
            )
            for key in keys
            if is_weight(params[key])
        ]
    return []


def _method(target: Any, conventions: Conventions, role: str) -> Callable[..., Any]:
    """The bound method playing `role` (declared under another name, or the usual one)."""
    name = conventions.flush if role == "flush" else conventions.method(role)
    found = _read(target, name or "")
    if callable(found):
        return found
    if role == "flush":
        what = "`flush`"
    elif role in conventions.methods:
        what = f"`methods[{role!r}]`"
    else:
        what = f"the method {role} (methods= does not rename it)"
    methods = [
        n for n in dir(type(target)) if not n.startswith("_") and callable(getattr(type(target), n))
    ]
    raise InvalidArgument(
        not_found(
            what,
            str(name),
            methods,
            f"Name the method of {type(target).__name__} that plays {role}.",
            found,
        )
    )


def _gradient_name(path: str) -> str:
    """How a gradient with no place of its own is named in reports: ``dW``, ``dfc.W``."""
    return f"d{path}"


def _by_name(label: str, key: str, weights: Mapping[str, Any], declared: bool) -> str:
    """The weight a returned gradient is named for: by its path (``W``, ``params['W']``),
    by the last part of its path (``W`` for ``params['W']`` or ``fc.W``), or by a
    gradient's name for either (``dW``, ``d_W``, ``grad_W``)."""
    for prefix in ("", "grad_", "d_", "d"):
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :]
        if name in weights:
            return name
        ends = [path for path in weights if _last_part(path) == name]
        if len(ends) == 1:
            return ends[0]
        if len(ends) > 1:
            raise TargetContractError(
                f"{label} returned a gradient under {key!r}, and {' and '.join(ends)} are all "
                f"named {name!r}; declare returns=... with their paths."
            )
    fix = (
        "Name each gradient by forward's input (x, or dx) or by the weight (W, or dW; a path "
        "such as params['W'] for an item)."
    )
    if declared:
        raise InvalidArgument(not_found("`returns`", key, list(weights), fix))
    raise TargetContractError(
        not_found(f"{label} returned a gradient under a key", key, list(weights), fix)
    )


def _last_part(path: str) -> str:
    """``W`` for ``fc.W`` and for ``params['W']``; ``0`` for ``params[0]``."""
    if path.endswith("]"):
        return str(ast.literal_eval(path[path.rindex("[") + 1 : -1]))
    return path.rpartition(".")[2]


def _by_position(
    label: str,
    position: int,
    returned: Mapping[Any, Any],
    declared: ParamDeclaration,
    weights: Mapping[str, Any],
) -> str:
    """The weight the `position`-th gradient of a returned list belongs to: by the order of
    a declared ``params`` list, else the one weight of its shape held since before the
    check (never a guess between two: a correct layer would fail on a wrong one)."""
    listed = [k for k in returned if isinstance(k, int)]
    if isinstance(declared, (list, tuple)) and len(declared) == len(listed):
        return str(declared[position])
    shape = np.shape(returned[position])
    same = [path for path, array in weights.items() if array.shape == shape]
    twins = [k for k in listed if np.shape(returned[k]) == shape]
    if len(same) == 1 and len(twins) == 1:
        return same[0]
    if not same:
        why = f"no weight it holds has the shape {shape}"
    elif len(same) > 1:
        why = f"{' and '.join(same)} all have the shape {shape}"
    else:
        why = f"{len(twins)} of them have the shape {shape} of {same[0]}"
    shapes = ", ".join(str(np.shape(returned[k])) for k in listed)
    raise TargetContractError(
        f"{label} returned its weights' gradients as a list ({shapes}); gradverify matches "
        f"each to the weight of its shape, and {why}. Say which is which: params=[...] in "
        f"the list's order, or returns=('x', ['W', 'b'])."
    )


def _properties(
    target: Any,
    claimed: set[int],
    reader: Callable[[str], Callable[[], Any]],
    is_weight: Callable[[Any], bool],
) -> list[ParamSlot]:
    """Float arrays behind properties of the target's class with a ``d<name>`` gradient."""
    slots = []
    cls: Any = type(target)
    for name in _property_names(cls):
        value = _read(target, name)
        gradient = _read(target, f"d{name}")
        if is_weight(value) and id(value) not in claimed and gradient is not None:
            claimed.add(id(value))
            slots.append(ParamSlot(name, f"d{name}", value, reader(f"d{name}")))
    return slots


@functools.lru_cache(maxsize=1024)  # every check asks (`inspect.getmembers` walks the class)
def _property_names(cls: Any) -> tuple[str, ...]:
    return tuple(name for name, _ in inspect.getmembers(cls, lambda m: isinstance(m, property)))


def _read(target: Any, name: str) -> Any:
    """An attribute, or None if reading it raises (a property that fails is skipped)."""
    try:
        return getattr(target, name, None)
    except Exception:
        return None


def _item_reader(target: Any, container: str, key: Any) -> Callable[[], Any]:
    """Read ``target.<container>[key]`` afresh on every call: backward may rebind the container."""

    def read() -> Any:
        items = _read(target, container)
        try:
            return items[key] if items is not None else None
        except (KeyError, IndexError, TypeError):
            return None

    return read


def _described(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype}"
    return type(value).__name__
