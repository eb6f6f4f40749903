"""Nothing unchecked, unsaid: arrays the target holds that no gradient covers.

A check differentiates the inputs and the weights whose gradients it found.  A
weight whose gradient it did not find (``self.grad_of_weights``, a slots layer
before discovery knew slots, an empty ``params`` list) would otherwise be
skipped without a word, and a wrong gradient for it would pass.  So every array
the target has held at the same place since before the check, and that no
gradient covers, is tried: moved a little, does the loss change?  If it does,
forward reads it, and the check says so: INCONCLUSIVE, naming the array and the
declaration that would check it.  Arrays gradverify cannot move (integers with a
gradient attribute, arrays of other libraries) are named the same way.  Arrays
declared constant (``nondiff=["running_mean"]``) are left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradverify.adapters import Adapter, ParamSlot
from gradverify.adapters.base import is_float_array
from gradverify.objects import Holding, attributes, gradient_path, holdings, places_of, rebind
from gradverify.results import CheckedBy, Role, Status, TensorResult

#: Relative size of the nudge that tells whether forward reads an array: far above
#: rounding (any effect at all shows as a changed loss), small enough to stay near
#: the point being checked.
_NUDGE = 1e-3


@dataclass(frozen=True)
class Uncovered:
    """An array the check could not differentiate although the target holds it."""

    path: str
    value: Any
    problem: str


def uncovered_arrays(
    view: Adapter,
    slots: Sequence[ParamSlot],
    inputs: Sequence[Any],
    loss: Callable[[], float],
    constants: Sequence[str],
) -> list[Uncovered]:
    """The arrays forward reads (or that look like weights) that no gradient covers."""
    covered = [s.array for s in slots] + [v for v in inputs if isinstance(v, np.ndarray)]
    gradients = {id(s.read_gradient()) for s in slots}
    seen: set[int] = set()
    candidates: list[Holding] = []
    for holding in view.held_arrays():
        value = holding.value
        if id(value) in seen or id(value) in gradients or holding.path in constants:
            continue
        seen.add(id(value))
        if isinstance(value, np.ndarray) and any(_shares(value, c) for c in covered):
            continue
        candidates.append(holding)
    if not candidates:
        return []
    centre = loss()
    found = []
    for holding in candidates:
        problem = _problem(view.target, holding, loss, centre)
        if problem:
            found.append(Uncovered(holding.path, holding.value, problem))
    return found


def _shares(array: np.ndarray, other: np.ndarray) -> bool:
    return array is other or np.may_share_memory(array, other)


def _problem(target: Any, holding: Holding, loss: Callable[[], float], centre: float) -> str:
    value, path = holding.value, holding.path
    if not isinstance(value, np.ndarray):
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        if "float" not in str(getattr(value, "dtype", "")):
            return ""
        return (
            f"{path} is a {kind}: gradverify perturbs numpy arrays in place and cannot check "
            f"it, nor its gradient"
        )
    if not is_float_array(value):
        if holding.kind == "attr" and f"d{holding.key}" in attributes(holding.parent):
            return (
                f"{path} is {value.dtype}: integers cannot move by small steps, so its "
                f"gradient d{holding.key} was not checked"
            )
        return ""
    if value.size == 0 or not _moves_loss(target, holding, loss, centre):
        return ""
    return f"{path} changes the output, but no gradient for it was found: not checked"


def _moves_loss(target: Any, holding: Holding, loss: Callable[[], float], centre: float) -> bool:
    """Whether nudging the array (in place, or through a copy for a read-only one) moves the
    loss; the array is put back bit for bit."""
    array = holding.value
    rng = np.random.default_rng(0)
    nudge = _NUDGE * np.maximum(1.0, np.abs(array)) * rng.choice([-1.0, 1.0], size=array.shape)
    if array.flags.writeable:
        original = array.copy()
        try:
            np.add(array, nudge, out=array, casting="unsafe")
            return loss() != centre
        finally:
            np.copyto(array, original)
    places = [h for h in places_of(target, array) if h.kind != "tuple"]
    try:
        for place in places:
            rebind(place, (array + nudge).astype(array.dtype))
        return loss() != centre
    finally:
        for place in places:
            rebind(place, array)


def results(
    view: Adapter,
    uncovered: list[Uncovered],
    slots: Sequence[ParamSlot],
    suggestions: dict[str, str],
) -> list[TensorResult]:
    """One INCONCLUSIVE result per uncovered array, with the declaration that checks it."""
    declared = {s.name: s.grad_name for s in slots}
    for item in uncovered:
        declared[item.path] = suggestions.get(item.path, gradient_path(item.path))
    out = []
    for item in uncovered:
        shape = tuple(getattr(item.value, "shape", ()))
        fix = (
            f"{view.declaration_hint(item.path, declared)}; or, if {item.path} is a constant "
            f"(running statistics), nondiff=[{item.path!r}]."
        )
        out.append(
            TensorResult(
                name=item.path,
                grad_name=suggestions.get(item.path, gradient_path(item.path)),
                role=Role.PARAMETER,
                shape=shape,
                dtype=str(getattr(item.value, "dtype", "?")),
                status=Status.INCONCLUSIVE,
                checked_by=CheckedBy.NOT_CHECKED,
                method=CheckedBy.NOT_CHECKED.value,
                problem=item.problem,
                hint=fix,
            )
        )
    return out


def gradient_suggestions(
    view: Adapter,
    uncovered: list[Uncovered],
    slots: Sequence[ParamSlot],
    forward: Callable[[], Any],
    backward_only: Callable[[], Any],
) -> dict[str, str]:
    """Where backward seems to put each uncovered array's gradient: the one held array of the
    same shape that backward alone writes (``self.grad_of_weights``), if there is exactly one."""
    wanted = [u for u in uncovered if is_float_array(u.value)]
    if not wanted:
        return {}
    forward()
    before = {h.path: (id(h.value), _bytes(h.value)) for h in holdings(view.target)}
    backward_only()
    taken = {s.grad_name for s in slots}
    written = [
        h
        for h in holdings(view.target)
        if isinstance(h.value, np.ndarray)
        and h.path not in taken
        and before.get(h.path) != (id(h.value), _bytes(h.value))
    ]
    suggestions = {}
    for item in wanted:
        same_shape = [h.path for h in written if h.value.shape == item.value.shape]
        if len(same_shape) == 1:
            suggestions[item.path] = same_shape[0]
    return suggestions


def _bytes(value: Any) -> bytes | None:
    return value.tobytes() if isinstance(value, np.ndarray) else None
