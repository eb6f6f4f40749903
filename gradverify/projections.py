"""Projections of one gradient: the directions fast mode measures along, and a measurement.

A direction is a sign per element; the groups inside which its signs follow the
gradient's (a slice along an axis, or the whole tensor) decide how far errors
that each stay inside their own tolerance can add up along it (`Measurement.bound`),
and the projection itself is judged as a derivative along the direction
(`Measurement.screen`).  `by_projections` decides what to measure and what it means.

Fast mode is for tensors too large to check element by element, which may be most of
the machine's memory, so nothing here is a float64 array as large as the tensor: signs
are ``int8``, the elements a direction moves are a run of positions in an order computed
on demand (flat, or slice by slice along an axis), and a measurement passes over the
tensor in chunks of `CHUNK` elements.  One copy of the tensor (`Workspace.original`)
restores it bit for bit after every measurement.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradverify import numerics
from gradverify.numerics import CHUNK
from gradverify.tensors import Floats, Settings

#: Standard deviations of the random-walk bound on a projection (Hoeffding:
#: probability ``2 * exp(-Z**2 / 2)``, 3e-8, that within-tolerance errors exceed it).
Z = 6.0

#: A run of positions ``[start, stop)`` in a direction's order.
Run = tuple[int, int]


class Along(enum.Enum):
    """What a direction's signs follow."""

    GRADIENT_SIGNS = "the gradient's signs"  # a scale error adds up over every element
    RANDOM_SIGNS = "random signs"  # an error in one or a few scattered elements
    AXIS = "axis"  # the gradient's signs in each slice along an axis, a random sign per slice


@dataclass(frozen=True)
class Order:
    """The positions of a tensor's elements: flat (C) order, or, along an axis, slice by
    slice (each slice's elements in flat order), so that a run of positions is a block of
    neighbouring slices and bisection halves are neighbour runs."""

    shape: tuple[int, ...]
    axis: int | None = None

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def _axis(self) -> tuple[int, int, int]:
        """The axis's length, its stride in elements, and the elements of one slice."""
        assert self.axis is not None
        length = self.shape[self.axis]
        return length, math.prod(self.shape[self.axis + 1 :]), math.prod(self.shape) // length

    def flat(self, start: int, stop: int) -> slice | np.ndarray:
        """The flat indices at positions ``start .. stop - 1``."""
        if self.axis is None:
            return slice(start, stop)
        length, stride, per_slice = self._axis
        slices, within = np.divmod(np.arange(start, stop), per_slice)
        outer, inner = np.divmod(within, stride)
        return outer * (length * stride) + slices * stride + inner

    def positions(self, flat: np.ndarray) -> np.ndarray:
        """The positions of flat indices (the inverse of `flat`)."""
        if self.axis is None:
            return flat
        length, stride, per_slice = self._axis
        outer, rest = np.divmod(flat, length * stride)
        slices, inner = np.divmod(rest, stride)
        return slices * per_slice + outer * stride + inner

    def chunk(self) -> int:
        """Elements per pass over the whole tensor: whole blocks of every slice where they
        fit in `CHUNK`, so that `slice_sums` can sum by reshaping."""
        if self.axis is None:
            return CHUNK
        length, stride, _ = self._axis
        for unit in (length * stride, stride):  # every slice's block, or rows of one slice
            if unit <= CHUNK:
                return CHUNK // unit * unit
        return CHUNK  # rows longer than a chunk: summed by index

    def slice_sums(self, flat: slice | np.ndarray, values: Floats) -> np.ndarray:
        """The sums of `values` (at flat indices `flat`) by slice along the axis."""
        length, stride, _ = self._axis
        if isinstance(flat, slice):
            start, stop = flat.start, flat.stop
            if start % (length * stride) == 0 and (stop - start) % (length * stride) == 0:
                return values.reshape(-1, length, stride).sum(axis=(0, 2))
            if start % stride == 0 and (stop - start) % stride == 0:  # rows of one slice each
                rows = np.arange(start // stride, stop // stride) % length
                return np.bincount(rows, values.reshape(-1, stride).sum(axis=1), length)
            flat = np.arange(start, stop)
        return np.bincount(flat // stride % length, values, length)


@dataclass(frozen=True)
class Direction:
    """One projection: a sign per element, and the run of positions it moves."""

    along: Along
    signs: np.ndarray  # flat int8, +1 or -1
    order: Order
    run: Run  # a block of slices, or all

    @property
    def axis(self) -> int | None:
        """For `Along.AXIS`: the axis whose slices keep coherent signs."""
        return self.order.axis


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
    they are measured; only the gradient's signs outlive their directions.
    """
    size = analytic.size
    flat = Order(shape)
    gradient_signs = _gradient_signs(analytic, rng)
    yield Direction(Along.GRADIENT_SIGNS, gradient_signs, flat, (0, size))
    for _ in range(count - 1):
        yield Direction(Along.RANDOM_SIGNS, _random_signs(rng, size), flat, (0, size))
    if len(shape) < 2 or size == 0:
        return
    for axis, length in enumerate(shape):
        if length < 2:
            continue
        per_slice = _random_signs(rng, length)
        per_slice[-1] = per_slice[0]  # a border error (both ends) must not cancel itself
        along = [1] * len(shape)
        along[axis] = length
        signs = (gradient_signs.reshape(shape) * per_slice.reshape(along)).reshape(-1)
        by_slice = Order(shape, axis)
        per_block = size // length
        for block in np.array_split(np.arange(length), min(blocks, length)):
            run = (int(block[0]) * per_block, (int(block[-1]) + 1) * per_block)
            yield Direction(Along.AXIS, signs, by_slice, run)


def _gradient_signs(analytic: Floats, rng: np.random.Generator) -> np.ndarray:
    """The gradient's sign per element, and a random one where it is 0 (or NaN).

    ``int8`` arithmetic on two comparisons, in place: a quarter of the time of two masked
    writes, and no more memory (the random bits are drawn whatever the gradient, so that
    the directions after it are the same).
    """
    drawn = _random_bits(rng, analytic.size)
    signs = np.greater(analytic, 0).view(np.int8)
    signs -= np.less(analytic, 0).view(np.int8)
    zero = signs == 0
    if zero.any():
        signs[zero] = _signs(drawn, analytic.size)[zero]
    return signs


def _random_signs(rng: np.random.Generator, size: int) -> np.ndarray:
    """+1 or -1 per element, from one random bit each (a tenth of the time of drawing
    integers, and a byte an element)."""
    return _signs(_random_bits(rng, size), size)


def _random_bits(rng: np.random.Generator, size: int) -> np.ndarray:
    return np.frombuffer(rng.bytes((size + 7) // 8), dtype=np.uint8)


def _signs(bits: np.ndarray, size: int) -> np.ndarray:
    signs = np.unpackbits(bits, count=size).view(np.int8)
    signs *= 2
    signs -= 1
    return signs


@dataclass(frozen=True)
class Measurement:
    """A projection restricted to some members, per unit of step length."""

    difference: float  # analytic minus numeric
    derivative: float  # numeric
    screen: float  # nominating tolerance (see the module docstring)
    bound: float  # what within-tolerance element errors can add up to
    noise: float  # rounding of the loss evaluations behind it
    #: For an axis: each slice's ``sum |g_i| * width_i`` (what a slice scaled by 1 + e
    #: adds, divided by e), for what the projection can see.
    slice_mass: Floats | None = None


class Workspace:
    """One tensor's array, written in place, and a copy that restores it bit for bit."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.original = np.array(array, copy=True).reshape(-1)
        # a contiguous array is written through a flat view; any other layout (a
        # transposed view held by the target) through multi-indices, in its own memory
        self._flat = array.reshape(-1) if array.flags.c_contiguous else None
        #: every |x| <= 1: each element's step is the same (`scale` is 1)
        self.within_one = all(self._chunked(lambda part: bool(np.all(np.abs(part) <= 1))))

    def write(self, where: slice | np.ndarray, values: np.ndarray) -> None:
        if self._flat is not None:
            self._flat[where] = values
            return
        if isinstance(where, slice):
            where = np.arange(where.start, where.stop)
        self.array[np.unravel_index(where, self.array.shape)] = values

    def restore(self) -> None:
        np.copyto(self.array, self.original.reshape(self.array.shape))

    def scale(self, where: slice | np.ndarray) -> Floats:
        """``max(1, |x|)`` of the original elements: steps follow each element's magnitude."""
        return self._scale_of(self.original[where])

    @staticmethod
    def _scale_of(values: np.ndarray) -> Floats:
        return np.maximum(1.0, np.abs(values.astype(np.float64)))  # float64: float16 overflows

    def mean_scale(self) -> float:
        if self.within_one:
            return 1.0
        total = sum(self._chunked(lambda part: float(np.sum(self._scale_of(part)))))
        return total / max(self.original.size, 1)

    def _chunked(self, summary: Callable[[np.ndarray], Any]) -> list[Any]:
        original = self.original
        return [summary(original[i : i + CHUNK]) for i in range(0, original.size, CHUNK)]


@dataclass
class Probe:
    """Measures the disagreement of one tensor's gradient along one direction, on runs of
    its positions, leaving out the elements already judged (`excluded`, flat indices).

    Measurements are normalised by the step length, so that the disagreement of
    a group is the sum of its members' ``2 * sign_i * scale_i * (g_i - true_i)``
    whatever the step: that additivity is what lets bisection subtract.
    """

    workspace: Workspace
    analytic: np.ndarray  # flat, in the gradient's own dtype
    direction: Direction
    settings: Settings
    loss: Callable[[], float]
    step: float
    excluded: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.intp))

    def __post_init__(self) -> None:
        self._excluded_at = np.sort(self.direction.order.positions(self.excluded))

    def count(self, run: Run) -> int:
        """The members of a run: its positions less the excluded ones."""
        start, stop = run
        if not self.excluded.size:
            return stop - start
        inside = np.searchsorted(self._excluded_at, [start, stop])
        return stop - start - int(inside[1] - inside[0])

    def halves(self, run: Run) -> tuple[Run, Run]:
        """The run split after ``ceil(members / 2)`` of its members."""
        start, stop = run
        wanted = (self.count(run) + 1) // 2
        middle = start + wanted
        while (have := self.count((start, middle))) < wanted:
            middle += wanted - have
        return (start, middle), (middle, stop)

    def only(self, run: Run) -> int:
        """The flat index of a run's one member."""
        where = self.direction.order.flat(*run)
        flat = np.arange(where.start, where.stop) if isinstance(where, slice) else where
        return int(flat[~np.isin(flat, self.excluded)][0])

    def length(self, run: Run) -> float:
        """Per-element step: the direction has the Euclidean length of one element's step,
        so a projection perturbs the output no more than one element does (nor crosses
        more kinks)."""
        return self.step / math.sqrt(max(self.count(run), 1))

    def measure(self, run: Run) -> Measurement:
        """``L(x + o) - L(x - o)`` along the direction's members in `run`, compared with
        ``sum(g * widths)``, the widths ``(x + o) - (x - o)`` read back in the array's own
        dtype (exactly what a correct gradient predicts)."""
        length = self.length(run)
        tally = _Tally(self)
        try:
            for where in self._pieces(run):
                self.workspace.write(where, self._moved(where, self._offsets(where, length)))
            upper = self.loss()
            for where in self._pieces(run):
                offsets = self._offsets(where, length)
                up = self._moved(where, offsets)
                down = self._moved(where, np.negative(offsets, out=offsets))
                self.workspace.write(where, down)
                widths = up.astype(np.float64, copy=False)  # `up` itself when float64
                widths -= down
                widths /= length
                tally.add(where, widths, predict=True)
            lower = self.loss()
        finally:
            self.workspace.restore()
        numeric = (upper - lower) / length
        noise = 2.0 * self.settings.noise_unit / length
        return tally.judged(tally.predicted - numeric, numeric, noise)

    def rest(self, whole: Measurement, part: Measurement, run: Run) -> Measurement:
        """The measurement of a group minus its ``part``, by subtraction (no forward call)."""
        tally = _Tally(self)
        for where in self._pieces(run):
            tally.add(where, 2.0 * self.workspace.scale(where), predict=False)  # nominal widths
        return tally.judged(
            whole.difference - part.difference,
            whole.derivative - part.derivative,
            whole.noise + part.noise,
        )

    def _pieces(self, run: Run) -> Iterator[slice | np.ndarray]:
        """The flat indices of the run's members, a chunk at a time (a whole tensor in flat
        order, whatever its direction's order: the sums do not depend on it)."""
        start, stop = run
        order = self.direction.order
        if run == (0, order.size) and not self.excluded.size:
            chunk = order.chunk()
            for first in range(0, stop, chunk):
                yield slice(first, min(first + chunk, stop))
            return
        for first in range(start, stop, CHUNK):
            where = order.flat(first, min(first + CHUNK, stop))
            if self.excluded.size:
                if isinstance(where, slice):
                    where = np.arange(where.start, where.stop)
                where = where[~np.isin(where, self.excluded)]
            yield where

    def _offsets(self, where: slice | np.ndarray, length: float) -> Floats:
        """``sign * max(1, |x|) * length`` for the members at `where`."""
        signs = self.direction.signs[where]
        if self.workspace.within_one:  # the common case of weights: no scale to compute
            return signs * length
        offsets = self.workspace.scale(where)
        offsets *= length
        offsets *= signs
        return offsets

    def _moved(self, where: slice | np.ndarray, offsets: Floats) -> np.ndarray:
        """The members at ``x + offsets``, in the array's dtype."""
        original = self.workspace.original[where]
        return (original + offsets).astype(original.dtype, copy=False)


class _Tally:
    """Sums over a measurement's members, chunk by chunk, of what judging it takes."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.predicted = 0.0  # sum(g * widths)
        self.squares = 0.0  # sum(widths**2), for atol's random walk
        self.total = 0.0  # sum(t_i * |widths|): every element's tolerance in full
        self.grouped = 0.0  # the same, summed in full inside a group, squared across groups
        order = probe.direction.order
        self.slices = None if order.axis is None else np.zeros(order.shape[order.axis])
        self.slice_mass = None if self.slices is None else np.zeros_like(self.slices)

    def add(self, where: slice | np.ndarray, widths: Floats, *, predict: bool) -> None:
        settings = self.probe.settings
        gradient = self.probe.analytic[where].astype(np.float64, copy=False)
        if predict:
            self.predicted += numerics.inner(gradient, widths)
        np.abs(widths, out=widths)
        self.squares += numerics.inner(widths, widths)
        magnitude = np.abs(gradient)
        tolerance = magnitude * settings.rtol  # widths * (atol + rtol * |g|)
        tolerance += settings.atol
        tolerance *= widths
        self.total += float(np.sum(tolerance))
        along = self.probe.direction.along
        if along is Along.RANDOM_SIGNS:  # every element its own group
            self.grouped += numerics.inner(tolerance, tolerance)
        elif self.slices is not None and self.slice_mass is not None:
            order = self.probe.direction.order
            self.slices += order.slice_sums(where, tolerance)
            magnitude *= widths
            self.slice_mass += order.slice_sums(where, magnitude)

    def judged(self, difference: float, derivative: float, noise: float) -> Measurement:
        settings = self.probe.settings
        if self.probe.direction.along is Along.GRADIENT_SIGNS:  # one group
            grouped = self.total
        elif self.slices is not None:
            grouped = math.sqrt(numerics.inner(self.slices, self.slices))
        else:
            grouped = math.sqrt(self.grouped)
        # atol stands for the noise of elements that are sums of cancelling terms: it
        # has no sign of its own, so it spreads as a random walk whatever the direction
        spread = settings.atol * math.sqrt(self.squares)
        # in full inside a coherent group, as a random walk across groups; never beyond the sum
        bound = min(self.total, Z * grouped)
        screen = settings.rtol * abs(derivative) + spread + noise
        return Measurement(difference, derivative, screen, bound + noise, noise, self.slice_mass)
