"""gradverify: verify hand-written backpropagation against finite differences.

Every public name is imported on first use (PEP 562): the pytest plugin imports this
package in every pytest session, used or not, and must not pay for numpy and the
checker there.

>>> import gradverify
>>> sorted(gradverify.__all__)[:3]
['AdapterNotFound', 'CheckConfig', 'CheckResult']
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and editors see; at run time, `__getattr__` below
    from gradverify.checks import assert_gradients as assert_gradients
    from gradverify.checks import check as check
    from gradverify.config import CheckConfig as CheckConfig
    from gradverify.errors import AdapterNotFound as AdapterNotFound
    from gradverify.errors import GradientMismatch as GradientMismatch
    from gradverify.errors import GradverifyError as GradverifyError
    from gradverify.errors import InvalidArgument as InvalidArgument
    from gradverify.errors import TargetContractError as TargetContractError
    from gradverify.fuzzing import fuzz as fuzz
    from gradverify.results import CheckResult as CheckResult
    from gradverify.results import ElementRow as ElementRow
    from gradverify.results import Status as Status
    from gradverify.results import TensorResult as TensorResult

#: Where each public name lives.
_HOMES = {
    "assert_gradients": "gradverify.checks",
    "check": "gradverify.checks",
    "CheckConfig": "gradverify.config",
    "AdapterNotFound": "gradverify.errors",
    "GradientMismatch": "gradverify.errors",
    "GradverifyError": "gradverify.errors",
    "InvalidArgument": "gradverify.errors",
    "TargetContractError": "gradverify.errors",
    "fuzz": "gradverify.fuzzing",  # imports hypothesis, which only fuzzing needs
    "CheckResult": "gradverify.results",
    "ElementRow": "gradverify.results",
    "Status": "gradverify.results",
    "TensorResult": "gradverify.results",
}

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
    """Import a public name from its module on first use, and keep it."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'gradverify' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__version__ = "0.1.0"
