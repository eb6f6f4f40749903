"""Targets that are functions rather than objects.

* cs231n pairs: ``f_forward(x, *w, param) -> (out, cache)`` and
  ``f_backward(dout, cache) -> (dx, *dw)``, passed as a 2-tuple;
* loss functions: ``f(x, y) -> (loss, dx)`` (or ``(loss, (dx, dw))``);
* a plain scalar function with its gradient function: ``(f, grad_f)`` where
  ``grad_f(*inputs)`` returns the gradient of each leading input.

Returning fewer gradients than there are inputs marks the trailing inputs as not
differentiated (labels, hyper-parameters); the check reports that it did so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gradverify.adapters.base import (
    Adapter,
    Gradients,
    call_target,
    gradient_values,
    pass_cotangent,
)
from gradverify.errors import TargetContractError


def _function_name(function: Any) -> str:
    return getattr(function, "__name__", type(function).__name__)


def _is_pair(target: Any) -> bool:
    return isinstance(target, tuple) and len(target) == 2 and all(callable(f) for f in target)


class FunctionPairAdapter(Adapter):
    """cs231n style: ``(f_forward, f_backward)`` with a cache between them."""

    kind = "function_pair"
    looks_for = "a tuple (f_forward, f_backward): f_forward(*inputs) -> (out, cache)"

    def __init__(self, target: Any, kwargs: Mapping[str, Any]) -> None:
        super().__init__(target, kwargs)
        self._forward, self._backward = target

    @classmethod
    def accepts(cls, target: Any, args: Sequence[Any]) -> bool:
        return _is_pair(target) and not _returns_scalar(target[0], args)

    @property
    def name(self) -> str:
        return _function_name(self._forward)

    @property
    def label(self) -> str:
        return _function_name(self._backward)

    def _forward_with_cache(self, args: Sequence[Any]) -> tuple[Any, Any]:
        self.forward_calls += 1
        returned = call_target(self.name, self._forward, *args, **self.kwargs)
        if not (isinstance(returned, tuple) and len(returned) == 2):
            raise TargetContractError(
                f"{self.name} returned {type(returned).__name__}, expected (out, cache); "
                f"for a function without a cache pass (f, grad_f) instead."
            )
        return returned

    def forward(self, args: Sequence[Any]) -> Any:
        return self._forward_with_cache(args)[0]

    def backward(self, args: Sequence[Any], cotangent: Any) -> Gradients:
        _, cache = self._forward_with_cache(args)
        self.backward_calls += 1
        douts, modified = pass_cotangent(cotangent)
        returned = call_target(self.label, self._backward, *douts, cache)
        return Gradients(gradient_values(returned, self.label), {}, modified())


class LossFunctionAdapter(Adapter):
    """A function returning its value and its gradient together: ``f(x, y) -> (loss, dx)``."""

    kind = "loss_function"
    looks_for = "a function f(*inputs) -> (loss, gradients), e.g. softmax_loss(x, y)"
    takes_cotangent = False

    @classmethod
    def accepts(cls, target: Any, args: Sequence[Any]) -> bool:
        return callable(target) and not isinstance(target, type) and not hasattr(target, "forward")

    @property
    def name(self) -> str:
        return _function_name(self.target)

    @property
    def label(self) -> str:
        return self.name

    def _call(self, args: Sequence[Any]) -> tuple[Any, Any]:
        self.forward_calls += 1
        returned = call_target(self.name, self.target, *args, **self.kwargs)
        if not (isinstance(returned, tuple) and len(returned) == 2):
            raise TargetContractError(
                f"{self.name} returned {type(returned).__name__}, expected (loss, gradient); "
                f"for a function without its gradient pass (f, grad_f) instead."
            )
        return returned

    def forward(self, args: Sequence[Any]) -> Any:
        return self._call(args)[0]

    def backward(self, args: Sequence[Any], cotangent: Any) -> Gradients:
        self.backward_calls += 1
        return Gradients(gradient_values(self._call(args)[1], self.name), {})


class GradientPairAdapter(Adapter):
    """A scalar function and its gradient function: ``(f, grad_f)``."""

    kind = "gradient_pair"
    looks_for = "a tuple (f, grad_f): f(*inputs) -> scalar, grad_f(*inputs) -> gradient(s)"
    takes_cotangent = False

    def __init__(self, target: Any, kwargs: Mapping[str, Any]) -> None:
        super().__init__(target, kwargs)
        self._function, self._gradient = target

    @classmethod
    def accepts(cls, target: Any, args: Sequence[Any]) -> bool:
        return _is_pair(target) and _returns_scalar(target[0], args)

    @property
    def name(self) -> str:
        return _function_name(self._function)

    @property
    def label(self) -> str:
        return _function_name(self._gradient)

    def forward(self, args: Sequence[Any]) -> Any:
        self.forward_calls += 1
        return call_target(self.name, self._function, *args, **self.kwargs)

    def backward(self, args: Sequence[Any], cotangent: Any) -> Gradients:
        self.backward_calls += 1
        returned = call_target(self.label, self._gradient, *args, **self.kwargs)
        return Gradients(gradient_values(returned, self.label), {})


def _returns_scalar(function: Any, args: Sequence[Any]) -> bool:
    """Tell ``(f, grad_f)`` from ``(f_forward, f_backward)``: the former returns a scalar.

    Calling is the only reliable way (both are plain callables); detection runs
    on copies so that nothing the call does reaches the caller's arrays.
    """
    copies = [a.copy() if hasattr(a, "copy") and not isinstance(a, dict) else a for a in args]
    returned = call_target(_function_name(function), function, *copies)
    return not isinstance(returned, tuple) and getattr(returned, "ndim", 0) == 0
