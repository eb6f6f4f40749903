"""An adapter around another one that protects each call into the target.

Two protections, switched on by `checks` only when a target needs them so that
the hot loop of a well-behaved target pays nothing:

* ``before_call``: run before every forward and backward, e.g. to reset the
  random generators a Dropout layer draws its mask from (`randomness`);
* ``copy_inputs``: hand the target fresh copies of its inputs on every call,
  for a forward that writes into its inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gradverify.adapters.base import Adapter, Gradients, ParamDeclaration, ParamSlot, private_copy
from gradverify.objects import Holding


class Guarded(Adapter):
    """Delegates everything to ``inner``; see the module docstring for what it adds."""

    kind = "guarded"
    looks_for = "(never detected: wraps another adapter)"

    def __init__(
        self,
        inner: Adapter,
        *,
        before_call: Callable[[], None] | None = None,
        copy_inputs: bool = False,
    ) -> None:
        super().__init__(inner.target, inner.kwargs, inner.conventions)
        self.inner = inner
        self.accumulates = inner.accumulates
        self.before_call = before_call
        self.copy_inputs = copy_inputs
        self.differentiates_inputs = inner.differentiates_inputs  # the inner one's traits
        self.takes_cotangent = inner.takes_cotangent

    @classmethod
    def accepts(cls, target: Any, args: Sequence[Any]) -> bool:
        return False

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def label(self) -> str:
        return self.inner.label

    def _prepare(self, args: Sequence[Any]) -> Sequence[Any]:
        if self.before_call is not None:
            self.before_call()
        return [private_copy(a) for a in args] if self.copy_inputs else args

    def forward(self, args: Sequence[Any]) -> Any:
        return self.inner.forward(self._prepare(args))

    def backward(self, args: Sequence[Any], cotangent: Any) -> Gradients:
        return self.inner.backward(self._prepare(args), cotangent)

    def backward_again(self, cotangent: Any) -> Gradients | None:
        return self.inner.backward_again(cotangent)

    def parameters(self, declared: ParamDeclaration) -> list[ParamSlot]:
        return self.inner.parameters(declared)

    def input_grad_names(self, names: Sequence[str]) -> list[str]:
        return self.inner.input_grad_names(names)

    def held_arrays(self) -> list[Holding]:
        return self.inner.held_arrays()

    def declaration_hint(self, uncovered: str, declared: Mapping[str, str]) -> str:
        return self.inner.declaration_hint(uncovered, declared)
