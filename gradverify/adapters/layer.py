"""Layer objects: ``forward(*inputs, **kwargs)`` and ``backward(dout)``.

The textbook's style (``MulLayer``, ``Affine``, ``SoftmaxWithLoss``) and its
second volume's (``params``/``grads`` lists written in place) are both layers;
they differ only in where the parameter gradients are found after backward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradverify.adapters.base import (
    Adapter,
    Gradients,
    ParamDeclaration,
    ParamSlot,
    call_target,
    copy_gradient,
    is_float_array,
    pass_cotangent,
)
from gradverify.errors import InvalidArgument


class LayerAdapter(Adapter):
    """An object with ``forward`` and ``backward`` methods (any number of inputs)."""

    kind = "layer"
    looks_for = "an object with forward(*inputs) and backward(dout) methods (a layer)"

    def __init__(self, target: Any, kwargs: Mapping[str, Any]) -> None:
        super().__init__(target, kwargs)
        # Which object each attribute held before any call: parameters are the
        # arrays that stay the same object across forward calls; caches do not.
        self._initial_ids = {k: id(v) for k, v in vars(target).items()} if _has_vars(target) else {}
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
        returned = call_target(f"{self.name}.backward", self.target.backward, *douts)
        if returned is None:
            inputs: tuple[Any, ...] = ()
        elif isinstance(returned, (tuple, list)):
            inputs = tuple(copy_gradient(g) for g in returned)
        else:
            inputs = (copy_gradient(returned),)
        params = {slot.name: copy_gradient(slot.read_gradient()) for slot in self._slots}
        return Gradients(inputs, params, modified(), returned is None)

    def parameters(self, declared: ParamDeclaration) -> list[ParamSlot]:
        if declared is not None:
            self._slots = self._declared(declared)
        else:
            self._slots = self._discovered()
        return self._slots

    def _declared(self, declared: ParamDeclaration) -> list[ParamSlot]:
        pairs = (
            list(declared.items())
            if isinstance(declared, Mapping)
            else [(name, f"d{name}") for name in declared or ()]
        )
        slots = []
        for name, grad_name in pairs:
            value = getattr(self.target, name, None)
            if not isinstance(value, np.ndarray) or not is_float_array(value):
                raise InvalidArgument(
                    f"`params` names {name!r}, but {self.name}.{name} is "
                    f"{type(value).__name__}, not a float ndarray; name the attributes "
                    f"that hold the weights, e.g. params=['W', 'b']."
                )
            slots.append(ParamSlot(name, grad_name, value, self._attribute_reader(grad_name)))
        return slots

    def _discovered(self) -> list[ParamSlot]:
        target = self.target
        params, grads = getattr(target, "params", None), getattr(target, "grads", None)
        if isinstance(params, dict) and isinstance(grads, dict):
            return [
                ParamSlot(f"params[{k!r}]", f"grads[{k!r}]", v, _key_reader(grads, k))
                for k, v in params.items()
                if is_float_array(v)
            ]
        if isinstance(params, list) and isinstance(grads, list) and len(params) == len(grads):
            return [
                ParamSlot(f"params[{i}]", f"grads[{i}]", v, _position_reader(grads, i))
                for i, v in enumerate(params)
                if is_float_array(v)
            ]
        if not _has_vars(target):
            return []
        current = vars(target)
        return [
            ParamSlot(name, f"d{name}", value, self._attribute_reader(f"d{name}"))
            for name, value in current.items()
            if is_float_array(value)
            and self._initial_ids.get(name) == id(value)
            and f"d{name}" in current
        ]

    def _attribute_reader(self, attribute: str) -> Any:
        return lambda: getattr(self.target, attribute, None)


def _key_reader(grads: dict[Any, Any], key: Any) -> Any:
    return lambda: grads.get(key)


def _position_reader(grads: list[Any], position: int) -> Any:
    return lambda: grads[position] if position < len(grads) else None


def _has_vars(target: Any) -> bool:
    return hasattr(target, "__dict__")
