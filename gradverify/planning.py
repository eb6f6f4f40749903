"""Which tensors get every element checked, and which are checked by projections.

A full check costs two forward calls per element; its time is known before it
starts from the measured time of one call (the fastest of the first few calls a
check makes anyway).  In mode ``auto`` the tensors get full checks smallest
first (so that as many tensors as possible are checked in full) while their
summed cost fits in the time budget; only what does not fit is checked by
projections, whose blind spots each report states.  An empty tensor is always
"checked in full": it costs nothing and has no element to project.  Pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gradverify.config import CheckConfig

#: Forward calls a full check spends per tensor besides two per element (noise probes).
_PER_TENSOR_CALLS = 3


@dataclass(frozen=True)
class Plan:
    """For each tensor, in order: checked in full or by projections, and what full costs."""

    full: tuple[bool, ...]
    seconds_per_call: float
    #: Forward calls each tensor checked by projections may spend: what the budget has
    #: left after the full checks, shared out (more projections see smaller errors).
    projection_calls: int = 0


def full_calls(size: int) -> int:
    return 2 * size + _PER_TENSOR_CALLS


def plan(sizes: Sequence[int], seconds_per_call: float, config: CheckConfig) -> Plan:
    """Full for every tensor in mode ``full``, none in ``fast``; in ``auto``, the smallest
    tensors while their summed full checks fit in ``config.budget`` seconds."""
    if config.mode != "auto":
        return Plan(tuple(config.mode == "full" or n == 0 for n in sizes), seconds_per_call)
    full = [False] * len(sizes)
    spent = 0.0
    for position in sorted(range(len(sizes)), key=lambda i: sizes[i]):
        cost = full_calls(sizes[position]) * seconds_per_call / config.workers
        if sizes[position] and spent + cost > config.budget:
            break
        full[position] = True
        spent += cost
    projected = full.count(False)
    left = (config.budget - spent) / max(seconds_per_call, 1e-9)
    return Plan(tuple(full), seconds_per_call, int(left / projected) if projected else 0)


def fast_calls(shapes: Sequence[tuple[int, ...]], directions: int) -> int:
    """Forward calls fast mode spends on these tensors when every projection agrees: two
    per direction, the random ones and one per axis of a 2-D or larger tensor."""
    return sum(_projection_calls(shape, directions) for shape in shapes)


def planned_calls(shapes: Sequence[tuple[int, ...]], chosen: Plan, directions: int) -> int:
    """Forward calls the gradients of a check will take as planned (a failure's
    re-estimates and bisection come on top)."""
    return sum(
        full_calls(math.prod(shape))
        if full
        else chosen.projection_calls or _projection_calls(shape, directions)
        for shape, full in zip(shapes, chosen.full)
    )


def _projection_calls(shape: tuple[int, ...], directions: int) -> int:
    return 2 * (directions + projected_axes(shape))


def projected_axes(shape: tuple[int, ...]) -> int:
    """How many axes fast mode projects along, one direction each: those of a 2-D or
    larger tensor with two slices or more."""
    return sum(1 for length in shape if length >= 2) if len(shape) >= 2 else 0
