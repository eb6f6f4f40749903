"""One exception hierarchy for everything gradverify raises.

Each class also subclasses the builtin a caller would naturally catch, so that
``except ValueError`` still works for a bad argument and pytest shows a
``GradientMismatch`` as a plain test failure rather than an error.
"""

from __future__ import annotations

from typing import Any


class GradverifyError(Exception):
    """Base class of every exception gradverify raises on purpose."""


class InvalidArgument(GradverifyError, ValueError):
    """The caller passed something gradverify cannot use.

    The message names the argument, the value given, what was expected and the fix.
    ``requirement`` is what was expected alone (```budget` must be a non-negative
    float``), for a caller that names the value and where it came from itself.
    """

    def __init__(self, message: str, *, requirement: str = "") -> None:
        super().__init__(message)
        self.requirement = requirement


class TargetNotFound(InvalidArgument):
    """The target named cannot be loaded: no such shipped case, a module that does not
    import (missing, or its own code raised), or no such object in it."""


class AdapterNotFound(InvalidArgument):
    """No adapter recognises the target; the message lists what each adapter looks for."""


class TargetContractError(GradverifyError, TypeError):
    """The target broke the forward/backward contract (wrong return type, missing method)."""


class GradientMismatch(GradverifyError, AssertionError):
    """Raised by `assert_gradients` when a check does not pass; carries the result."""

    def __init__(self, message: str, result: object) -> None:
        super().__init__(message)
        self.result = result


class CheckInterrupted(KeyboardInterrupt):
    """Ctrl-C during a check.  The target is restored, as after any check, and what
    was found before is kept: `result` is the check so far (INCONCLUSIVE: the gradients
    finished, and the elements estimated of the one in progress), for a caller that
    catches ``KeyboardInterrupt`` to show it.  Filled in as it passes up the check:
    `numeric` holds the numeric values estimated of the tensor in progress, `tensors`
    the results of the gradients finished."""

    def __init__(self) -> None:
        super().__init__("interrupted")
        self.numeric: Any = None
        self.tensors: list[Any] = []
        self.result: Any = None


def interrupted(stop: KeyboardInterrupt) -> CheckInterrupted:
    """`stop` as a `CheckInterrupted`, to carry what the check found so far."""
    return stop if isinstance(stop, CheckInterrupted) else CheckInterrupted()
