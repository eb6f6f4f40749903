"""Finite differences: steps, the central-difference loop, error estimates, kinks.

Pure functions over numbers and arrays; they never see a layer.  The only side
effect is the one the method needs: an element of the array being differentiated
is perturbed in place and put back, bit for bit, in a ``finally``.

The loss being differentiated is always the scalar ``L = sum(dout * f(x))`` for a
seeded random cotangent ``dout`` (``dout = 1`` for a scalar output), so the
numeric gradient of ``L`` is exactly what a correct ``backward(dout)`` returns.

References
----------
.. [1] Nocedal & Wright, *Numerical Optimization*, 2nd ed., sec. 8.1: central
   differences with ``h ~ eps**(1/3)`` balance truncation O(h**2) against
   rounding O(eps/h).
.. [2] scipy.optimize._numdiff: dividing by the step actually realized,
   ``(x + h) - (x - h)``, rather than the nominal ``2h``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gradverify.errors import interrupted

FloatArray = NDArray[np.floating[Any]]

#: Rounding of the forward pass is modelled as ``NOISE_FACTOR * eps * S`` in the
#: loss, where ``S = sum |dout * f(x)|`` is the size of the terms summed into it.
#: 16 covers the error growth of short float computations (a few roundings per
#: output, each up to eps/2, in either evaluation of the difference).
NOISE_FACTOR = 16.0

#: Halvings of the step in `reestimate`: steps h, h/2, ..., h/16.
LADDER_LEVELS = 5

#: A kink: the one-sided slopes differ by the same amount (within this fraction)
#: at every step of the ladder...
KINK_CONSTANCY = 0.25
#: ...and by more than this fraction of the larger slope (a negligible jump is no kink).
KINK_SIGNIFICANCE = 1e-3


#: Elements per pass over an array as large as a tensor (fast mode's measurements, the
#: contracts' comparisons): the temporaries stay this small, 64 KB of float64 each, which
#: the allocator reuses instead of mapping fresh pages every time.
CHUNK = 1 << 13

#: Up to this many elements `inner` uses ``@``: OpenBLAS runs a dot of up to 10,000
#: elements on one thread, so a chunk's dot is one.
SHORT_DOT = CHUNK


def inner(first: NDArray[Any], second: NDArray[Any]) -> float:
    """``sum(first * second)`` in float64, without BLAS's threads.

    numpy's dot and vdot go to a multithreaded BLAS whose thread start-up, on a
    busy 2-core machine, was measured at 8 ms for a 39,200-element dot (14 us on
    one thread); the checks run this on every loss evaluation.  A short float64 dot
    (a small layer's output) is one BLAS call on one thread, a third of einsum's cost.
    """
    a, b = first.reshape(-1), second.reshape(-1)
    if a.size <= SHORT_DOT and a.dtype == b.dtype == np.float64:
        return float(a @ b)
    return float(np.einsum("i,i->", a, b, dtype=np.float64))


def median(values: NDArray[Any] | Sequence[float]) -> float:
    """`np.median`'s value (NaN for none, or if any is NaN), at a third to a tenth of its
    cost on the few values of a report's figures (it runs for every gradient of every check)."""
    ordered = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    middle = ordered.size // 2
    if not ordered.size or np.isnan(ordered[-1]):  # a NaN sorts last
        return math.nan
    if ordered.size % 2:
        return float(ordered[middle])
    return float(np.mean(ordered[middle - 1 : middle + 1]))


def real_array(value: Any, *, copy: bool = True) -> NDArray[np.float64] | None:
    """`value` as a float64 array if it holds real numbers (not complex, objects or text);
    without `copy`, a float64 array is itself (for a caller that only reads it)."""
    array = real_values(value)
    return None if array is None else array.astype(np.float64, copy=copy)


def real_values(value: Any) -> NDArray[Any] | None:
    """`value` as an array in its own dtype if it holds real numbers, without a copy."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):  # ragged nesting
        return None
    return array if array.dtype.kind in "biuf" else None


def precision_dtype(dtypes: Sequence[np.dtype]) -> np.dtype:
    """The least precise floating dtype in `dtypes` (float64 if none): what the check can trust.

    A float64 input fed to a forward that returns float32 is only as precise as
    float32, so steps and tolerances follow the output as well as the input.
    """
    floats = [np.dtype(d) for d in dtypes if np.issubdtype(np.dtype(d), np.floating)]
    if not floats:
        return np.dtype(np.float64)
    return max(floats, key=lambda d: float(np.finfo(d).eps))


def step_sizes(values: FloatArray, eps: float) -> NDArray[np.float64]:
    """Nominal central-difference step per element: ``eps**(1/3) * max(1, |x|)`` [1]_."""
    return eps ** (1.0 / 3.0) * np.maximum(1.0, np.abs(values.astype(np.float64)))


def rounding_noise(steps: NDArray[np.float64], noise_unit: float) -> NDArray[np.float64]:
    """Estimated rounding error of each central difference taken with `steps`.

    ``noise_unit`` is the rounding of one loss difference, ``NOISE_FACTOR * eps * S``
    with ``S`` the size of the terms that change (`local_magnitude`); it is divided
    by the width ``2h``, twice over for the two evaluations.
    """
    return noise_unit / steps


#: Elements probed by `local_magnitude` (first, middle, last).
MAGNITUDE_PROBES = 3


def local_magnitude(
    array: FloatArray, steps: NDArray[np.float64], changed: Callable[[], float], full: float
) -> float:
    """The size ``S`` of the loss terms that moving one element of `array` changes.

    Probes a few elements (moved by their step, then restored) and takes the
    largest; falls back to `full`, the whole loss, when no output moved at all.
    """
    container, keys = element_access(array)
    if not array.size:
        return full
    flat_steps = steps.reshape(-1)
    probes = sorted({0, array.size // 2, array.size - 1})[:MAGNITUDE_PROBES]
    largest = 0.0
    for position in probes:
        key = keys[position]
        original = container[key]
        try:
            container[key] = original + flat_steps[position]
            largest = max(largest, changed())
        finally:
            container[key] = original
    return largest if largest > 0 else full


def element_access(array: FloatArray) -> tuple[Any, Sequence[Any]]:
    """A container and keys such that ``container[key]`` reads and writes one element in place.

    A contiguous array is walked through a flat view (fast); any other layout
    (a transposed or strided view held by the target) through its multi-indices,
    so the perturbation always lands in the target's own memory.
    """
    if array.flags.c_contiguous:
        return array.reshape(-1), range(array.size)
    return array, list(np.ndindex(array.shape))


#: ``batch(positions, values)``: the loss with element ``positions[k]`` of the array set
#: to ``values[k]`` (the others as they are), for every ``k``, in order.
BatchLoss = Callable[[NDArray[np.intp], FloatArray], Sequence[float]]


def central_differences(
    array: FloatArray,
    steps: NDArray[np.float64],
    loss: Callable[[], float],
    batch: BatchLoss | None = None,
) -> NDArray[np.float64]:
    """Numeric gradient of ``loss()`` with respect to every element of `array`.

    Each element is moved to ``x + h`` and ``x - h`` in place, ``loss`` is called
    with it there, and the element is restored bit for bit before the next one,
    also when ``loss`` raises or the user interrupts.  The difference is divided
    by the realized step ``(x + h) - (x - h)`` in float64 [2]_.  With `batch`, the
    same evaluations, in the same order, are asked for many at a time (a target in
    another process answers a message per batch, not per evaluation); the result
    is the same to the bit for float16, float32 and float64 arrays (a longdouble
    one is stepped in float64 there).

    Examples
    --------
    >>> x = np.array([1.0, 2.0, 3.0])
    >>> g = central_differences(x, step_sizes(x, 2.0**-52), lambda: float(np.sum(x**2)))
    >>> np.allclose(g, 2 * x), x.tolist()
    (True, [1.0, 2.0, 3.0])
    """
    if batch is not None:
        return _batched_differences(array, steps, batch)
    return differences_at(array, steps, loss, range(array.size)).reshape(array.shape)


def differences_at(
    array: FloatArray, steps: NDArray[np.float64], loss: Callable[[], float], positions: range
) -> NDArray[np.float64]:
    """The central differences of `central_differences` at the flat `positions` only, in
    order (a worker's share, see `gradverify.workers`).  On Ctrl-C the values done so far
    go up with the `CheckInterrupted`, for the partial report."""
    container, keys = element_access(array)
    numeric = np.empty(len(positions), dtype=np.float64)
    flat_steps = steps.reshape(-1)
    done = 0
    try:
        for done, position in enumerate(positions):
            key = keys[position]
            original = container[key]
            step = flat_steps[position]
            try:
                container[key] = original + step
                upper = float(container[key])
                loss_upper = loss()
                container[key] = original - step
                lower = float(container[key])
                loss_lower = loss()
            finally:
                container[key] = original
            numeric[done] = (loss_upper - loss_lower) / (upper - lower)
    except KeyboardInterrupt as stop:  # keep the elements done, for the partial report
        stopped = interrupted(stop)
        stopped.numeric = numeric[:done].copy()
        raise stopped from None
    return numeric


def _batched_differences(
    array: FloatArray, steps: NDArray[np.float64], batch: BatchLoss
) -> NDArray[np.float64]:
    """`central_differences` through `batch`: x + h, then x - h, for each element in turn."""
    values = array.reshape(-1).astype(np.float64)  # C order, as element_access walks it
    flat_steps = steps.reshape(-1)
    upper = (values + flat_steps).astype(array.dtype).astype(np.float64)  # as stored
    lower = (values - flat_steps).astype(array.dtype).astype(np.float64)
    positions = np.repeat(np.arange(array.size), 2)
    settings = np.empty(2 * array.size, dtype=np.float64)
    settings[0::2], settings[1::2] = upper, lower
    losses = np.asarray(batch(positions, settings), dtype=np.float64)
    return ((losses[0::2] - losses[1::2]) / (upper - lower)).reshape(array.shape)


@dataclass(frozen=True)
class Reestimate:
    """A careful second estimate of one element of the gradient.

    ``numeric`` is the best estimate over a ladder of steps and ``error`` its
    estimated error (truncation, from the spread of successive estimates, plus
    rounding).  ``left`` and ``right`` are the one-sided slopes at the smallest
    step; ``kink`` says they disagree by more than curvature or noise explain.
    """

    numeric: float
    error: float
    left: float
    right: float
    kink: bool
    finite: bool


def _slopes_on_ladder(
    loss_at: Callable[[float], tuple[float, float]], x0: float, h0: float
) -> tuple[float, list[tuple[float, float, float, float]]]:
    """Loss at the centre, and (h, loss+, loss-, realized widths) down a halving ladder."""
    center, _ = loss_at(x0)
    ladder = []
    for level in range(LADDER_LEVELS):
        step = h0 / 2.0**level
        loss_up, up = loss_at(x0 + step)
        loss_down, down = loss_at(x0 - step)
        ladder.append((loss_up, loss_down, up - x0, x0 - down))
    return center, ladder


def _measured_noise(
    center: float, ladder: list[tuple[float, float, float, float]], widths: list[float]
) -> float:
    """The noise of the loss itself, read off the ladder's second differences.

    ``L(x+h) - 2 L(x) + L(x-h)`` is ``h**2 f''`` for a smooth loss; scaled from the
    widest step, what is left at the narrower ones is noise; the largest residual is
    taken whole (it holds up to four evaluations' noise: erring high is the safe side).
    A forward with hidden low precision or randomness shows here even when the
    rounding model of ``noise_unit`` cannot know about it.
    """
    second = [up - 2.0 * center + down for up, down, _, _ in ladder]
    residuals = [
        abs(second[k] - second[0] * (widths[k] / widths[0]) ** 2) for k in range(1, len(ladder))
    ]
    return max(residuals, default=0.0)


def reestimate(
    loss_at: Callable[[float], tuple[float, float]], x0: float, h0: float, noise_unit: float
) -> Reestimate:
    """Re-estimate one derivative with steps ``h0, h0/2, ..., h0/16`` and judge kinks.

    ``loss_at(v)`` sets the element to ``v`` and returns ``(loss, realized v)``;
    the caller restores the element afterwards.  ``noise_unit`` is the rounding
    error of the loss itself (``NOISE_FACTOR * eps * S``).

    Central estimates ``D_k`` and their Richardson extrapolations
    ``R_k = D_k + (D_k - D_{k-1}) / 3`` are candidates; each is paired with an
    error estimate (the larger distance to its two predecessors, plus the rounding
    of the loss over ``h``) and the candidate with the smallest error wins.
    Where the one-sided slopes differ by the same jump at every step (a jump does
    not shrink with h, curvature does, rounding noise grows), the element sits at
    a kink: the derivative does not exist there.
    """
    center, ladder = _slopes_on_ladder(loss_at, x0, h0)
    values = [center] + [v for rung in ladder for v in rung[:2]]
    if not all(math.isfinite(v) for v in values):
        return Reestimate(math.nan, math.inf, math.nan, math.nan, False, False)
    if any(w_up <= 0 or w_down <= 0 for _, _, w_up, w_down in ladder):
        return Reestimate(math.nan, math.inf, math.nan, math.nan, False, False)
    central = [(up - down) / (w_up + w_down) for up, down, w_up, w_down in ladder]
    widths = [(w_up + w_down) / 2.0 for _, _, w_up, w_down in ladder]
    loss_noise = max(noise_unit, _measured_noise(center, ladder, widths))
    extrapolated = [math.nan] + [
        central[k] + (central[k] - central[k - 1]) / 3.0 for k in range(1, LADDER_LEVELS)
    ]
    candidates: list[tuple[float, float]] = []
    for k in range(2, LADDER_LEVELS):
        # An estimate is trusted as far as it agrees with BOTH its predecessors: one
        # lucky agreement between two noisy rungs must not pass for convergence.
        rounding = loss_noise / widths[k]
        spread = max(abs(central[k] - central[k - 1]), abs(central[k - 1] - central[k - 2]))
        candidates.append((spread + rounding, central[k]))
        if k >= 3:
            spread = max(
                abs(extrapolated[k] - extrapolated[k - 1]),
                abs(extrapolated[k - 1] - extrapolated[k - 2]),
            )
            candidates.append((spread + rounding, extrapolated[k]))
    error, numeric = min(candidates)
    slopes = [((center - down) / w_down, (up - center) / w_up) for up, down, w_up, w_down in ladder]
    gaps = [right - left for left, right in slopes]
    left, right = slopes[-1]
    # A jump in slope is the same at every step; curvature shrinks with h, noise grows.
    jump = gaps[0]
    kink = abs(jump) > KINK_SIGNIFICANCE * max(abs(left), abs(right)) and all(
        abs(gap - jump) <= KINK_CONSTANCY * abs(jump) for gap in gaps
    )
    return Reestimate(numeric, error, left, right, kink, True)
