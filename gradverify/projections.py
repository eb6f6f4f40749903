"""Projections of one gradient: the directions fast mode measures along, and a measurement.

A direction is a sign per element; the groups inside which its signs follow the
gradient's (a slice along an axis, or the whole tensor) decide how far errors
that each stay inside their own tolerance can add up along it (`Measurement.bound`),
and the projection itself is judged as a derivative along the direction
(`Measurement.screen`).  `by_projections` decides what to measure and what it means.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from gradverify import numerics
from gradverify.tensors import Floats, Settings, TensorToCheck

#: Standard deviations of the random-walk bound on a projection (Hoeffding:
#: probability ``2 * exp(-Z**2 / 2)``, 3e-8, that within-tolerance errors exceed it).
Z = 6.0


class Along(enum.Enum):
    """What a direction's signs follow."""

    GRADIENT_SIGNS = "the gradient's signs"  # a scale error adds up over every element
    RANDOM_SIGNS = "random signs"  # an error in one or a few scattered elements
    AXIS = "axis"  # the gradient's signs in each slice along an axis, a random sign per slice


@dataclass(frozen=True)
class Direction:
    """One projection: a sign per element, and the groups whose signs are coherent."""

    along: Along
    signs: Floats  # flat, +1 or -1
    groups: np.ndarray  # flat group index per element; errors add up in full inside one
    members: np.ndarray  # the flat indices it moves (a block of slices, or all)
    axis: int | None = None  # for `Along.AXIS`: the axis whose slices keep coherent signs


def directions(
    analytic: Floats,
    shape: tuple[int, ...],
    count: int,
    rng: np.random.Generator,
    blocks: int = 1,
) -> Iterator[Direction]:
    """The gradient's signs, ``count - 1`` random ones, then, for a 2-D+ tensor, each axis
    split into up to `blocks` blocks of slices, one projection per block.

    More blocks see a smaller error in one slice (the other slices of its block add
    up as a random walk beside it) for two forward calls each.  Made one at a time, as
    they are measured: each is as large as the tensor, and only the gradient's signs
    outlive their directions.  The random draws are those of making them all at once.
    """
    size = analytic.size
    random = _random_signs(rng, size)
    gradient_signs = np.where(analytic != 0, np.sign(analytic), random)
    del random
    yield Direction(
        Along.GRADIENT_SIGNS, gradient_signs, np.zeros(size, dtype=np.intp), np.arange(size)
    )
    for _ in range(count - 1):
        everyone = np.arange(size)
        yield Direction(Along.RANDOM_SIGNS, _random_signs(rng, size), everyone, everyone)
    if len(shape) < 2 or size == 0:
        return
    for axis, length in enumerate(shape):
        if length < 2:
            continue
        per_slice = _random_signs(rng, length)
        per_slice[-1] = per_slice[0]  # a border error (both ends) must not cancel itself
        slices = np.arange(size) // math.prod(shape[axis + 1 :]) % length  # C order
        signs = gradient_signs * per_slice[slices]
        order = np.argsort(slices, kind="stable")  # by slice: bisection halves are neighbour runs
        bounds = np.searchsorted(slices[order], np.arange(length + 1))  # where each slice starts
        for block in np.array_split(np.arange(length), min(blocks, length)):
            members = order[bounds[block[0]] : bounds[block[-1] + 1]]
            yield Direction(Along.AXIS, signs, slices, members, axis)


def _random_signs(rng: np.random.Generator, size: int) -> Floats:
    return (2 * rng.integers(0, 2, size=size) - 1).astype(np.float64)


@dataclass(frozen=True)
class Measurement:
    """A projection restricted to some members, per unit of step length."""

    difference: float  # analytic minus numeric
    derivative: float  # numeric
    screen: float  # nominating tolerance (see the module docstring)
    bound: float  # what within-tolerance element errors can add up to
    noise: float  # rounding of the loss evaluations behind it


@dataclass
class Probe:
    """Measures the disagreement of one tensor's gradient along one masked direction.

    Measurements are normalised by the step length, so that the disagreement of
    a group is the sum of its members' ``2 * sign_i * scale_i * (g_i - true_i)``
    whatever the step: that additivity is what lets bisection subtract.
    """

    tensor: TensorToCheck
    analytic: Floats  # flat
    direction: Direction
    scale: Floats  # max(1, |x|) per element: steps follow each element's magnitude
    settings: Settings
    loss: Callable[[], float]
    step: float

    def length(self, members: np.ndarray) -> float:
        """Per-element step: the direction has the Euclidean length of one element's step,
        so a projection perturbs the output no more than one element does (nor crosses
        more kinks)."""
        return self.step / math.sqrt(max(members.size, 1))

    def measure(self, members: np.ndarray) -> Measurement:
        # Arrays as large as the tensor are made in place and dropped as soon as they are
        # used (the same arithmetic, in the same order): a tensor may be most of memory.
        length = self.length(members)
        signs = self.direction.signs
        whole = members.size == signs.size  # no masking needed
        if whole:
            offsets = signs * self.scale
            offsets *= length
        else:
            offsets = np.zeros(signs.size)
            offsets[members] = signs[members] * self.scale[members] * length
        numeric, widths = numerics.directional_difference(
            self.tensor.array, offsets.reshape(self.tensor.array.shape), self.loss
        )
        del offsets
        flat_widths = widths.reshape(-1)
        predicted = numerics.inner(self.analytic, flat_widths) / length
        flat_widths = np.abs(flat_widths if whole else flat_widths[members])
        del widths
        flat_widths /= length
        noise = 2.0 * self.settings.noise_unit / length
        return self._judged(
            members, predicted - numeric / length, numeric / length, flat_widths, noise
        )

    def rest(self, whole: Measurement, part: Measurement, rest: np.ndarray) -> Measurement:
        """The measurement of a group minus its ``part``, by subtraction (no forward call)."""
        widths = 2.0 * self.scale[rest]  # nominal: the realized ones were not read for the rest
        noise = whole.noise + part.noise
        return self._judged(
            rest,
            whole.difference - part.difference,
            whole.derivative - part.derivative,
            widths,
            noise,
        )

    def _judged(
        self,
        members: np.ndarray,
        difference: float,
        derivative: float,
        widths: Floats,
        noise: float,
    ) -> Measurement:
        atol, rtol = self.settings.atol, self.settings.rtol
        whole = members.size == self.analytic.size
        groups = self.direction.groups if whole else self.direction.groups[members]
        # atol stands for the noise of elements that are sums of cancelling terms: it
        # has no sign of its own, so it spreads as a random walk whatever the direction
        spread = atol * math.sqrt(numerics.inner(widths, widths))
        per_element = np.abs(self.analytic if whole else self.analytic[members])
        per_element *= rtol  # widths * (atol + rtol * |g|), made in place
        per_element += atol
        per_element *= widths
        # in full inside a coherent group, as a random walk across groups; never beyond the sum
        bound = min(float(np.sum(per_element)), Z * _grouped_norm(per_element, groups))
        screen = rtol * abs(derivative) + spread + noise
        return Measurement(difference, derivative, screen, bound + noise, noise)


def _grouped_norm(values: Floats, groups: np.ndarray) -> float:
    """``sqrt(sum over groups of (sum of values in the group)**2)``; groups are small
    non-negative integers (slice numbers, element numbers, or all 0)."""
    if values.size == 0:
        return 0.0
    sums = np.bincount(groups, weights=values)
    return math.sqrt(numerics.inner(sums, sums))
