"""One forward and one backward at fixed inputs, weights, random state and ``dout``.

What a comparison holds side by side: the target's observation and a reference's
(`regression`), or the submission's and the instructor's solution's (grading).
`pair_by_value` pairs two sets of weights built from the same arrays.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradverify.adapters import Adapter, Gradients, ParamDeclaration, ParamSlot
from gradverify.adapters.base import is_float_array, private_copy
from gradverify.objects import lookup
from gradverify.outputs import Outputs, read_outputs
from gradverify.randomness import seeded_global
from gradverify.references import Observation


@dataclass(frozen=True)
class Observed:
    """An observation, and the arrays it was made with, as they were before its forward:
    the weights (and held constants) by slot name, and every array the target held."""

    observation: Observation
    weights: dict[str, np.ndarray]
    held: dict[str, np.ndarray]


def observe(
    view: Adapter,
    names: Sequence[str],
    values: Sequence[Any],
    nondiff: Collection[str],
    declared: ParamDeclaration,
    seed: int,
    constants: Sequence[str] = (),
    slots: list[ParamSlot] | None = None,
) -> Observed:
    """Forward, then backward with a ``dout`` drawn from the seed (see `forward_backward`:
    a dropout mask is then the same on both sides).  `slots` are the weights when already
    found (finding them again may miss a read-only one, rebound to a writable copy)."""
    held = {h.path: np.array(h.value) for h in view.held_arrays() if is_float_array(h.value)}
    outputs, gradients = forward_backward(view, values, seed)
    slots = view.parameters(declared) if slots is None else slots
    found: dict[str, np.ndarray] = {}
    grad_names: dict[str, str] = {}
    if view.differentiates_inputs:
        input_grads = view.input_grad_names(list(names))
        for position, (name, value) in enumerate(zip(names, values)):
            if is_float_array(value) and name not in nondiff:
                grad_names[name] = input_grads[position]
                returned = gradients.inputs[position] if position < len(gradients.inputs) else None
                _keep(found, name, returned)
    for slot in slots:
        grad_names[slot.name] = slot.grad_name
        _keep(found, slot.name, gradients.params.get(slot.name, slot.read_gradient()))
    arrays = tuple(a.copy() for a in outputs.arrays)
    weights = {s.name: held[s.name] if s.name in held else s.array.copy() for s in slots}
    for path in constants:
        weights[path] = held[path] if path in held else np.array(lookup(view.target, path))
    return Observed(Observation(arrays, found, grad_names), weights, held)


def forward_backward(view: Adapter, values: Sequence[Any], seed: int) -> tuple[Outputs, Gradients]:
    """One forward and one backward, each from numpy's global generator seeded from
    `seed` (as in a graded child, which starts every call from it); the caller's global
    state is put back after."""
    with seeded_global(seed):
        outputs = read_outputs(view.forward([private_copy(v) for v in values]), view.name)
        cotangent = outputs.cotangent(np.random.default_rng([seed, 7]))
        np.random.seed(seed % 2**32)
        return outputs, view.backward([private_copy(v) for v in values], cotangent.for_backward)


def _keep(found: dict[str, np.ndarray], name: str, gradient: Any) -> None:
    """Record a gradient that is an array of numbers (the check reports any other)."""
    if gradient is None:
        return
    with contextlib.suppress(TypeError, ValueError):
        array = np.array(gradient)
        if array.dtype.kind in "fiub":  # complex, text or objects: not a gradient to compare
            found[name] = array if array.dtype.kind == "f" else array.astype(np.float64)


def pair_by_value(
    weights: Mapping[str, np.ndarray], candidates: Mapping[str, np.ndarray]
) -> dict[str, str]:
    """Each weight's counterpart among `candidates`: the one of the same name holding the
    same values, else the only one holding them (both built from the same arrays)."""
    pairs: dict[str, str] = {}
    for name, values in weights.items():
        same = [
            other
            for other, array in candidates.items()
            if other not in pairs.values()
            and array.shape == values.shape
            and np.array_equal(array, values, equal_nan=True)
        ]
        if name in same or len(same) == 1:
            pairs[name] = name if name in same else same[0]
    return pairs
