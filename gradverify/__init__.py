"""gradverify: verify hand-written backpropagation against finite differences.

>>> import gradverify
>>> sorted(gradverify.__all__)[:3]
['AdapterNotFound', 'CheckConfig', 'CheckResult']
"""

from gradverify.checks import assert_gradients, check
from gradverify.config import CheckConfig
from gradverify.errors import (
    AdapterNotFound,
    GradientMismatch,
    GradverifyError,
    InvalidArgument,
    TargetContractError,
)
from gradverify.results import CheckResult, ElementRow, Status, TensorResult

__all__ = [
    "AdapterNotFound",
    "CheckConfig",
    "CheckResult",
    "ElementRow",
    "GradientMismatch",
    "GradverifyError",
    "InvalidArgument",
    "Status",
    "TargetContractError",
    "TensorResult",
    "assert_gradients",
    "check",
    "fuzz",
]


def __getattr__(name: str) -> object:
    """`fuzz` imports hypothesis, which only fuzzing needs: load it on first use."""
    if name == "fuzz":
        from gradverify.fuzzing import fuzz

        return fuzz
    raise AttributeError(f"module 'gradverify' has no attribute {name!r}")


__version__ = "0.1.0"
