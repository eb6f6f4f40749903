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
    is_float_array,
    pass_cotangent,
    private_copy,
    writable,
)
from gradverify.errors import InvalidArgument
from gradverify.objects import attributes, gradient_path, lookup, valid_path


class LayerAdapter(Adapter):
    """An object with ``forward`` and ``backward`` methods (any number of inputs)."""

    kind = "layer"
    looks_for = "an object with forward(*inputs) and backward(dout) methods (a layer)"
    holds_state = True

    def __init__(self, target: Any, kwargs: Mapping[str, Any]) -> None:
        super().__init__(target, kwargs)
        self._slots: list[ParamSlot] = []
        self._forward_stage = f"{self.name}.forward"  # built once: forward is the hot path

    @classmethod
    def accepts(cls, target: Any, args: Sequence[Any]) -> bool:
        return callable(getattr(target, "forward", None)) and callable(
            getattr(target, "backward", None)
        )

    @property
    def label(self) -> str:
        return f"{self.name}.backward"

    def forward(self, args: Sequence[Any]) -> Any:
        self.forward_calls += 1
        return call_target(self._forward_stage, self.target.forward, *args, **self.kwargs)

    def backward(self, args: Sequence[Any], cotangent: Any) -> Gradients:
        self.forward(args)
        return self._backward_only(cotangent)

    def backward_again(self, cotangent: Any) -> Gradients:
        """Backward alone, on whatever the last forward cached."""
        return self._backward_only(cotangent)

    def _backward_only(self, cotangent: Any) -> Gradients:
        self.backward_calls += 1
        douts, modified = pass_cotangent(cotangent)
        returned = call_target(self.label, self.target.backward, *douts)
        inputs = gradient_values(returned, self.label)
        params = {slot.name: private_copy(slot.read_gradient()) for slot in self._slots}
        return Gradients(inputs, params, modified(), returned is None)

    def parameters(self, declared: ParamDeclaration) -> list[ParamSlot]:
        found = self._declared(declared) if declared is not None else self._discovered()
        self._slots = [writable(self.target, slot) for slot in found]
        return self._slots

    def _declared(self, declared: ParamDeclaration) -> list[ParamSlot]:
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
            if grad_name.startswith("<"):
                raise InvalidArgument(
                    f"`params` names the item {name!r}, whose gradient has no textbook name; "
                    f"say where backward puts it, e.g. params={{{name!r}: "
                    f"{name.replace('params', 'grads', 1)!r}}}."
                )
            value = lookup(self.target, name) if valid_path(name) else None
            if not (isinstance(value, np.ndarray) and is_float_array(value)):
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
        slots = _params_and_grads(self.target)
        claimed = {id(slot.array) for slot in slots}
        for holding in self.held_arrays():
            value = holding.value
            gradient = f"d{holding.key}"
            if (
                holding.kind == "attr"
                and is_float_array(value)
                and id(value) not in claimed
                and gradient in attributes(holding.parent)
            ):
                claimed.add(id(value))
                grad_path = gradient_path(holding.path)
                slots.append(ParamSlot(holding.path, grad_path, value, self._reader(grad_path)))
        return slots + _properties(self.target, claimed, self._reader)

    def _reader(self, path: str) -> Callable[[], Any]:
        return lambda: lookup(self.target, path)


def _params_and_grads(target: Any) -> list[ParamSlot]:
    """The second volume's style: ``params`` and ``grads``, two dicts or two equal lists."""
    params, grads = _read(target, "params"), _read(target, "grads")
    if isinstance(params, dict) and isinstance(grads, dict):
        keys: list[Any] = list(params)
    elif isinstance(params, list) and isinstance(grads, list) and len(params) == len(grads):
        keys = list(range(len(params)))
    else:
        return []
    return [
        ParamSlot(
            f"params[{key!r}]", f"grads[{key!r}]", params[key], _item_reader(target, "grads", key)
        )
        for key in keys
        if is_float_array(params[key])
    ]


def _properties(
    target: Any, claimed: set[int], reader: Callable[[str], Callable[[], Any]]
) -> list[ParamSlot]:
    """Float arrays behind properties of the target's class with a ``d<name>`` gradient."""
    slots = []
    for name, _ in inspect.getmembers(type(target), lambda m: isinstance(m, property)):
        value = _read(target, name)
        gradient = _read(target, f"d{name}")
        if is_float_array(value) and id(value) not in claimed and gradient is not None:
            claimed.add(id(value))
            slots.append(ParamSlot(name, f"d{name}", value, reader(f"d{name}")))
    return slots


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
