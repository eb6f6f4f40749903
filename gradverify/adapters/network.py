"""Networks in the textbook's style: a ``params`` dict, ``loss(x, t)`` and ``gradient(x, t)``.

The network's layers must hold the very arrays of ``params`` (not copies): the
numeric gradient perturbs ``params[key]`` in place and only sees a change of the
loss if the layers read that array.  When they do not, the numeric gradient is
exactly zero and the report says why (see `hints`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from gradverify.adapters.base import (
    Adapter,
    Gradients,
    ParamDeclaration,
    ParamSlot,
    call_target,
    private_copy,
    writable,
)
from gradverify.errors import InvalidArgument, TargetContractError


class NetworkAdapter(Adapter):
    """A network: ``params`` dict, ``loss(*inputs)`` and ``gradient(*inputs)`` -> dict."""

    kind = "network"
    looks_for = "a network with a params dict, loss(x, t) and gradient(x, t) returning a dict"
    differentiates_inputs = False
    takes_cotangent = False
    holds_state = True

    def __init__(self, target: Any, kwargs: Mapping[str, Any]) -> None:
        super().__init__(target, kwargs)
        self._loss_stage = f"{self.name}.loss"  # built once: loss is the hot path
        self._gradient_kwargs = _accepted(target.gradient, self.kwargs)

    @classmethod
    def accepts(cls, target: Any, args: Sequence[Any]) -> bool:
        return (
            isinstance(getattr(target, "params", None), dict)
            and callable(getattr(target, "loss", None))
            and callable(getattr(target, "gradient", None))
        )

    @property
    def label(self) -> str:
        return f"{self.name}.gradient"

    def forward(self, args: Sequence[Any]) -> Any:
        self.forward_calls += 1
        return call_target(self._loss_stage, self.target.loss, *args, **self.kwargs)

    def backward(self, args: Sequence[Any], cotangent: Any) -> Gradients:
        # gradient() runs its own forward; a separate forward here would double the cost.
        self.forward_calls += 1
        self.backward_calls += 1
        returned = call_target(
            f"{self.name}.gradient", self.target.gradient, *args, **self._gradient_kwargs
        )
        if not isinstance(returned, dict):
            raise TargetContractError(
                f"{self.label} returned {type(returned).__name__}, expected a dict of "
                f"gradients keyed like params (e.g. {{'W1': dW1, ...}})."
            )
        grads = {f"params[{k!r}]": private_copy(v) for k, v in returned.items()}
        return Gradients((), grads)

    def parameters(self, declared: ParamDeclaration) -> list[ParamSlot]:
        params = self.target.params
        keys = list(declared) if declared is not None else list(params)
        slots = []
        for key in keys:
            value = params.get(key)
            if not self.weight_test(value):
                raise InvalidArgument(
                    f"`params` names {key!r}, but {self.name}.params[{key!r}] is "
                    f"{type(value).__name__}, not a float ndarray; name keys of the params dict."
                )
            slot = ParamSlot(f"params[{key!r}]", f"gradient()[{key!r}]", value, lambda: None)
            slots.append(writable(self.target, slot))
        return slots

    def declaration_hint(self, uncovered: str, declared: Mapping[str, str]) -> str:
        return (
            f"make {uncovered} an entry of {self.name}.params (the layers must read that very "
            f"array) and return its gradient from gradient() under the same key"
        )


def _accepted(function: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords `function` takes: ``loss(x, t, train_flg=True)`` gets the switch, while
    the textbook's ``gradient(x, t)`` sets it itself and would reject it."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return dict(kwargs)
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return dict(kwargs)
    names = {p.name for p in parameters}
    return {k: v for k, v in kwargs.items() if k in names}
