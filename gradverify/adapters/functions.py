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
    private_copy,
)
from gradverify.adapters.conventions import (
    BACKWARD_ARGUMENTS,
    NO_CONVENTIONS,
    Conventions,
    ReturnLayout,
    not_found,
)
from gradverify.errors import InvalidArgument, TargetContractError


def _function_name(function: Any) -> str:
    return getattr(function, "__name__", type(function).__name__)


def is_pair(target: Any) -> bool:
    return isinstance(target, tuple) and len(target) == 2 and all(callable(f) for f in target)


def _input_layout(conventions: Conventions, label: str) -> ReturnLayout:
    """A function's declared return layout, which can name only forward's inputs."""
    layout = ReturnLayout(conventions.returns, conventions.inputs, holds_weights=False)
    for name in layout.weight_names:
        raise InvalidArgument(
            not_found(
                "`returns`",
                name,
                conventions.inputs,
                f"A function holds no weights: name what {label} returns by forward's inputs.",
            )
        )
    return layout


class FunctionPairAdapter(Adapter):
    """cs231n style: ``(f_forward, f_backward)`` with a cache between them.

    ``backward_args`` declares another call: ``fc_backward(dout, W, x)`` takes
    forward's inputs by name (then forward returns its output alone unless ``cache``
    is among them), and ``returns`` the order of what it returns.
    """

    kind = "function_pair"
    looks_for = "a tuple (f_forward, f_backward): f_forward(*inputs) -> (out, cache)"
    understands = frozenset({"returns", "backward_args"})

    def __init__(
        self, target: Any, kwargs: Mapping[str, Any], conventions: Conventions = NO_CONVENTIONS
    ) -> None:
        super().__init__(target, kwargs, conventions)
        self._forward, self._backward = target
        self._layout = _input_layout(conventions, self.label)
        self._arguments = conventions.backward_args or ("dout", "cache")
        known = [*BACKWARD_ARGUMENTS, *conventions.inputs]
        for name in self._arguments:
            if name not in known:
                raise InvalidArgument(
                    not_found(
                        "`backward_args`",
                        name,
                        known,
                        f"List what {self.label} takes, in order: 'dout', 'cache' (forward's "
                        f"second result), 'out' (its output) or forward's inputs by name.",
                    )
                )
        self._cached = "cache" in self._arguments

    @classmethod
    def accepts(cls, target: Any, args: Sequence[Any]) -> bool:
        return is_pair(target) and not _returns_scalar(target[0], args)

    @property
    def name(self) -> str:
        return _function_name(self._forward)

    @property
    def label(self) -> str:
        return _function_name(self._backward)

    def _forward_with_cache(self, args: Sequence[Any]) -> tuple[Any, Any]:
        self.forward_calls += 1
        returned = call_target(self.name, self._forward, *args, **self.kwargs)
        if not self._cached:
            return returned, None
        if not (isinstance(returned, tuple) and len(returned) == 2):
            raise TargetContractError(
                f"{self.name} returned {type(returned).__name__}, expected (out, cache); "
                f"for a function without a cache pass (f, grad_f) instead."
            )
        return returned

    def forward(self, args: Sequence[Any]) -> Any:
        return self._forward_with_cache(args)[0]

    def backward(self, args: Sequence[Any], cotangent: Any) -> Gradients:
        out, cache = self._forward_with_cache(args)
        self.backward_calls += 1
        douts, modified = pass_cotangent(cotangent)
        given = {"cache": cache, "out": out, **dict(zip(self.conventions.inputs, args))}
        passed: list[Any] = []
        for name in self._arguments:
            passed += douts if name == "dout" else [private_copy(given[name])]
        returned = call_target(self.label, self._backward, *passed)
        inputs, _ = self._layout.split(returned, self.label)
        return Gradients(gradient_values(inputs, self.label), {}, modified())


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
    understands = frozenset({"returns"})

    def __init__(
        self, target: Any, kwargs: Mapping[str, Any], conventions: Conventions = NO_CONVENTIONS
    ) -> None:
        super().__init__(target, kwargs, conventions)
        self._function, self._gradient = target
        self._layout = _input_layout(conventions, self.label)

    @classmethod
    def accepts(cls, target: Any, args: Sequence[Any]) -> bool:
        return is_pair(target) and _returns_scalar(target[0], args)

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
        inputs, _ = self._layout.split(returned, self.label)
        return Gradients(gradient_values(inputs, self.label), {})


def _returns_scalar(function: Any, args: Sequence[Any]) -> bool:
    """Tell ``(f, grad_f)`` from ``(f_forward, f_backward)``: the former returns a scalar.

    Calling is the only reliable way (both are plain callables); detection runs
    on copies so that nothing the call does reaches the caller's arrays.
    """
    copies = [a.copy() if hasattr(a, "copy") and not isinstance(a, dict) else a for a in args]
    returned = call_target(_function_name(function), function, *copies)
    return not isinstance(returned, tuple) and getattr(returned, "ndim", 0) == 0
