"""State a layer carries from one call to the next, held fixed for a check.

The second volume's ``TimeRNN(stateful=True)`` starts each forward from the hidden
state the previous one left (``self.h``); so does anything counting its calls.
Central differences of such a forward compare outputs computed from different
states, and mean nothing.  When the same inputs give different outputs, the check
tries to hold the state fixed instead of giving up: before every call it re-binds
every attribute, dict and list the target held before the check (`Snapshot.rebind`:
no array's bytes are copied back, so a perturbed weight stays perturbed), or, where
re-binding is not enough, calls the layer's own ``reset_state()``.  If the outputs
then repeat, the check goes on from that fixed state and says so.

A carried array the layer exposes a gradient for (``h`` with ``dh``, the gradient of
the state it started from) is checked like a weight: perturbed in place, re-bound
before every call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradverify.adapters import ParamSlot
from gradverify.adapters.base import is_float_array
from gradverify.objects import attributes, holdings, lookup
from gradverify.state import Snapshot


@dataclass(frozen=True)
class CarriedState:
    """How the state is held fixed, and what forward changes of it."""

    hold: Callable[[], None]  # run before every call
    how: str  # for the note: "re-bound" or "reset_state()"
    changed: tuple[str, ...]  # the paths forward re-binds (``h``, ``layers[1].c``)
    initial: dict[str, Any]  # the target's attributes before the check
    #: False for a target in another process (a graded submission), which holds its state
    #: there: nothing of it is seen here, so no gradient of it is checked
    local: bool = True

    def note(self, target: Any) -> str:
        """What the check did about the state, after the first backward (which sets ``dh``)."""
        name = type(target).__name__
        shown = [
            *self.changed[:_SHOWN],
            *([f"+{len(self.changed) - _SHOWN} more"] * (len(self.changed) > _SHOWN)),
        ]
        if self.how == "reset_state()":
            start = f"from the state {name}.reset_state() gives"
        else:
            start = f"from the state {name} held before the check"
        text = (
            f"forward carries state from one call to the next (it re-binds "
            f"{', '.join(shown) or 'what it holds'}): every call starts {start}"
        )
        if not self.local:
            return text + " (in the process the target runs in)"
        checked = [s.name for s in self.slots(target)]
        unreadable = [n for n in self._exposed(target) if n not in checked]
        if checked:
            text += f"; the gradient of the state it starts from is checked: {_d(checked)}"
        if unreadable:
            text += f"; {_d(unreadable)} not checked (only numpy state is re-bound and perturbed)"
        if not checked and not unreadable:
            text += "; no gradient of the state it starts from is exposed (dh for h), none checked"
        return text

    def slots(self, target: Any) -> list[ParamSlot]:
        """The carried numpy arrays the layer exposes a gradient for (``h`` with ``dh``)."""
        if self.how != "re-bound" or not self.local:
            return []
        found = []
        for name in self._exposed(target):
            value = self.initial[name]
            if isinstance(value, np.ndarray) and is_float_array(value):
                found.append(ParamSlot(name, f"d{name}", value, _reader(target, f"d{name}")))
        return found

    def _exposed(self, target: Any) -> list[str]:
        """The target's own carried arrays with a ``d<name>`` beside them now."""
        now = attributes(target)
        return [
            n
            for n in self.changed
            if f"d{n}" in now and hasattr(self.initial.get(n), "shape") and "." not in n
        ]


def _d(names: list[str]) -> str:
    return ", ".join(f"d{n}" for n in names)


def _reader(target: Any, path: str) -> Callable[[], Any]:
    return lambda: lookup(target, path)


def ways_to_hold(
    target: Any, saved: Snapshot, elsewhere: Callable[[str], Callable[[], None] | None]
) -> list[CarriedState]:
    """The ways to hold `target`'s state fixed, to be tried in order; `elsewhere` gives,
    for a target in another process, the switch that has it held there."""
    remote = [elsewhere(how) for how in ("rebind", "reset_state")]
    if remote[0] is not None and remote[1] is not None:
        return [
            CarriedState(remote[0], "re-bound", (), {}, local=False),
            CarriedState(remote[1], "reset_state()", (), {}, local=False),
        ]
    initial = next((dict(held) for obj, held in saved.objects if obj is target), {})
    changed = tuple(_changed_paths(target, saved))
    ways = [CarriedState(saved.rebind, "re-bound", changed, initial)]
    reset = getattr(target, "reset_state", None)
    if callable(reset):
        ways.append(CarriedState(reset, "reset_state()", changed, initial))
    return ways


def _changed_paths(target: Any, saved: Snapshot) -> list[str]:
    """Every attribute, at any depth, that holds another object than before the check."""
    paths = {id(target): ""}
    for holding in holdings(target):
        paths.setdefault(id(holding.value), holding.path)
    found = []
    for obj, held in saved.objects:
        prefix = paths.get(id(obj))
        if prefix is None:
            continue
        now = attributes(obj)
        for name in {**held, **now}:
            if now.get(name, _GONE) is not held.get(name, _GONE):
                found.append(f"{prefix}.{name}" if prefix else name)
    return found


_GONE = object()
#: How many changed paths a note names.
_SHOWN = 5
