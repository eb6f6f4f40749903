"""Check options as one frozen value, validated once, and the per-dtype defaults.

Every option a check takes lives in `CheckConfig`; the public functions build one
from their keyword arguments and nothing downstream re-validates.  Argument errors
follow one formula: the argument, the value given, what was expected, the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradverify.errors import InvalidArgument

#: Default (rtol, atol) by the precision the forward computes in; every tolerance
#: is widened further by the rounding-noise estimate of each element (see
#: `numerics.rounding_noise`), so these are not tuned per layer.
#:
#: float64 uses rtol=1e-3, not the 1e-8 its finite differences could resolve:
#: correct textbook layers carry deliberate approximations (SoftmaxWithLoss
#: computes log(y + 1e-7), so its backward is off by a relative 1e-7 / y[label]:
#: 1e-4 at y = 1e-3, which random logits give about once in a thousand draws),
#: while the bugs students make are 1e-2 and larger; bench/detection.py measures
#: both sides.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-3, 1e-8),
    "float32": (1e-3, 1e-5),
    "float16": (1e-2, 1e-3),
}


MODES = ("auto", "full", "fast")

#: Seconds a full check may take in mode "auto": long enough that any layer with a
#: forward under 0.1 ms gets every element of 25,000 checked (a textbook network
#: with 40,000 weights takes 4-5 s here), short enough for a test suite.
DEFAULT_BUDGET = 5.0


def default_tolerances(dtype: np.dtype) -> tuple[float, float]:
    """The (rtol, atol) pair for the precision `dtype`; longdouble counts as float64."""
    if dtype.itemsize >= 8:
        return DEFAULT_TOLERANCES["float64"]
    return DEFAULT_TOLERANCES.get(dtype.name, DEFAULT_TOLERANCES["float16"])


def _check_nonnegative_finite(name: str, value: float | None, example: str = "1e-5") -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        requirement = f"`{name}` must be a non-negative float"
        raise InvalidArgument(
            f"{requirement}, got {name}={value!r} ({type(value).__name__}); pass e.g. "
            f"{name}={example}.",
            requirement=requirement,
        )
    if not (math.isfinite(value) and value >= 0):
        requirement = f"`{name}` must be a non-negative finite float"
        raise InvalidArgument(
            f"{requirement}, got {name}={value!r}; pass e.g. {name}={example}, or leave it out "
            f"for the default.",
            requirement=requirement,
        )


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        requirement = f"`{name}` must be an integer >= {minimum}"
        raise InvalidArgument(f"{requirement}, got {name}={value!r}.", requirement=requirement)


@dataclass(frozen=True)
class CheckConfig:
    """Options of one check.

    Parameters
    ----------
    seed : int
        Seeds every random draw of the check (the cotangent ``dout``); the same
        seed gives the same verdict and the same report.
    rtol, atol : float or None
        Tolerance rule ``|analytic - numeric| <= atol + rtol*|numeric| + noise``,
        where ``noise`` is the estimated rounding error of the numeric value.
        ``None`` takes the default of the precision the forward computes in.
    max_reestimate : int
        How many suspicious elements per tensor are re-estimated with a ladder of
        smaller steps before a failure is confirmed (the worst ones first).
    max_rows : int
        How many element rows a report shows per tensor.
    mode : {"auto", "full", "fast"}
        ``full`` differentiates every element (2 forward calls each); ``fast``
        compares projections per tensor (2 calls each) and, when one disagrees,
        finds the wrong elements by group testing; ``auto`` checks every element
        of the tensors, smallest first, while their summed full checks fit in
        ``budget`` (estimated from the measured time of one forward call), and
        the rest by projections.
    directions : int
        Whole-tensor projections per tensor in fast mode (the first along the
        gradient's signs, the others random); fast mode adds one per axis.
    budget : float
        Seconds the full checks may take together before ``auto`` checks the
        largest tensors by projections instead (what is left pays for projections).
    workers : int
        Processes that share the elements of a full check (forked copies of this one,
        see `gradverify.workers`); the numbers are those of one process, to the bit.
    """

    seed: int = 0
    rtol: float | None = None
    atol: float | None = None
    max_reestimate: int = 20
    max_rows: int = 10
    mode: str = "auto"
    directions: int = 2
    budget: float = DEFAULT_BUDGET
    workers: int = 1

    def __post_init__(self) -> None:
        if (
            isinstance(self.seed, bool)
            or not isinstance(self.seed, (int, np.integer))
            or not (0 <= self.seed < 2**63)
        ):
            requirement = "`seed` must be a non-negative integer"
            raise InvalidArgument(
                f"{requirement}, got seed={self.seed!r}; pass e.g. seed=0.", requirement=requirement
            )
        _check_nonnegative_finite("rtol", self.rtol)
        _check_nonnegative_finite("atol", self.atol)
        _check_count("max_reestimate", self.max_reestimate, 1)
        _check_count("max_rows", self.max_rows, 1)
        _check_count("directions", self.directions, 1)
        _check_count("workers", self.workers, 1)
        _check_nonnegative_finite("budget", self.budget, "5.0")
        if self.mode not in MODES:
            requirement = f"`mode` must be one of {', '.join(MODES)}"
            raise InvalidArgument(
                f"{requirement}, got mode={self.mode!r}; 'auto' checks small tensors element by "
                f"element and large ones by projection.",
                requirement=requirement,
            )

    def check_options(self) -> dict[str, Any]:
        """The options as `gradverify.check` takes them (all but the report's ``max_rows``)."""
        return {
            "seed": self.seed,
            "rtol": self.rtol,
            "atol": self.atol,
            "max_reestimate": self.max_reestimate,
            "mode": self.mode,
            "directions": self.directions,
            "budget": self.budget,
            "workers": self.workers,
        }

    def tolerances(self, dtype: np.dtype) -> tuple[float, float]:
        """The (rtol, atol) in force for a forward computing in `dtype`."""
        rtol, atol = default_tolerances(dtype)
        return (
            rtol if self.rtol is None else float(self.rtol),
            atol if self.atol is None else float(self.atol),
        )
