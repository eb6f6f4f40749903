"""Snapshot everything a target holds, and put it back exactly as it was.

A check calls ``forward`` and ``backward`` thousands of times: caches (``self.x``,
``self.mask``), gradient attributes, running statistics, counters and random
generators (the target's own and numpy's global one) all change.
`snapshot` walks the target (attributes, dicts, lists, nested layers) and
records, for every container, which objects it held and, for every array, its
bytes; `Snapshot.restore` re-binds the original objects and copies the original
bytes back *into the same arrays*, so arrays shared between layers (the
textbook's network shares ``params`` with its layers) stay shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradverify.objects import (
    GENERATORS,
    attributes,
    delete_attribute,
    has_state,
    reachable,
    set_attribute,
)


@dataclass
class Snapshot:
    """What `snapshot` recorded; `restore` is idempotent."""

    arrays: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    dicts: list[tuple[dict[Any, Any], dict[Any, Any]]] = field(default_factory=list)
    lists: list[tuple[list[Any], list[Any]]] = field(default_factory=list)
    objects: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    generators: list[tuple[Any, Any]] = field(default_factory=list)
    global_random_state: Any = field(default_factory=np.random.get_state)

    def restore(self) -> None:
        """Re-bind every attribute and item, copy every array's bytes back, rewind generators."""
        np.random.set_state(self.global_random_state)
        for generator, state in self.generators:
            set_generator_state(generator, state)
        self.rebind()
        for array, saved in self.arrays:
            if array.shape == saved.shape and array.flags.writeable:
                np.copyto(array, saved, casting="no")

    def rebind(self) -> None:
        """Re-bind every attribute and item to the object it held, leaving every array's
        contents as they are now (see `carried`: state held fixed around perturbed weights)."""
        for obj, held in self.objects:
            for name in [n for n in attributes(obj) if n not in held]:
                delete_attribute(obj, name)
            for name, value in held.items():
                set_attribute(obj, name, value)
        for mapping, entries in self.dicts:
            mapping.clear()
            mapping.update(entries)
        for sequence, elements in self.lists:
            sequence[:] = elements

    def changed_arrays(self) -> list[np.ndarray]:
        """Arrays whose bytes differ from the snapshot (NaN payloads included)."""
        return [
            array
            for array, saved in self.arrays
            if array.shape != saved.shape or array.tobytes() != saved.tobytes()
        ]


def generator_state(generator: Any) -> Any:
    """The state of a numpy Generator or RandomState (what a draw advances)."""
    if isinstance(generator, np.random.Generator):
        return generator.bit_generator.state
    return generator.get_state()


def set_generator_state(generator: Any, state: Any) -> None:
    if isinstance(generator, np.random.Generator):
        generator.bit_generator.state = state
    else:
        generator.set_state(state)


def same_generator_state(first: Any, second: Any) -> bool:
    """Compare two generator states, whose RandomState form holds an array."""
    if isinstance(first, dict) or isinstance(second, dict):
        return bool(first == second)
    return bool(
        first[0] == second[0] and np.array_equal(first[1], second[1]) and first[2:] == second[2:]
    )


def snapshot(*roots: Any, contents: bool = True) -> Snapshot:
    """Record the state reachable from `roots` (a target and its pass-through arguments)."""
    record = Snapshot()
    for obj in reachable(*roots):
        if isinstance(obj, np.ndarray):
            if contents:  # without: enough to `Snapshot.rebind`, not to restore
                record.arrays.append((obj, obj.copy()))
        elif isinstance(obj, GENERATORS):
            record.generators.append((obj, generator_state(obj)))
        elif isinstance(obj, dict):
            record.dicts.append((obj, dict(obj)))
        elif isinstance(obj, list):
            record.lists.append((obj, list(obj)))
        elif has_state(obj):
            record.objects.append((obj, attributes(obj)))
    return record
