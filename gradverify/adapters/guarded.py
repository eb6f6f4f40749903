"""An adapter around another one that protects each call into the target.

Two protections, switched on by `checks` only when a target needs them so that
the hot loop of a well-behaved target pays nothing:

* ``before_call``: run before every forward and backward, e.g. to reset the
  random generators a Dropout layer draws its mask from (`randomness`);
* ``copy_inputs``: hand the target fresh copies of its inputs on every call,
  for a forward that writes into its inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gradverify.adapters.base import Adapter, Gradients, Wrapper, private_copy


class Guarded(Wrapper):
    """Delegates everything to ``inner``; see the module docstring for what it adds."""

    def __init__(
        self,
        inner: Adapter,
        *,
        before_call: Callable[[], None] | None = None,
        copy_inputs: bool = False,
    ) -> None:
        super().__init__(inner)
        self.before_call = before_call
        self.copy_inputs = copy_inputs

    def _prepare(self, args: Sequence[Any]) -> Sequence[Any]:
        if self.before_call is not None:
            self.before_call()
        return [private_copy(a) for a in args] if self.copy_inputs else args

    def forward(self, args: Sequence[Any]) -> Any:
        return self.inner.forward(self._prepare(args))

    def backward(self, args: Sequence[Any], cotangent: Any) -> Gradients:
        return self.inner.backward(self._prepare(args), cotangent)
