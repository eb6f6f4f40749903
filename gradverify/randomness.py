"""Stochastic targets: find the random generators a forward draws from, and pin them.

A Dropout layer draws a new mask on every forward, so every perturbed
evaluation would see a different function.  `RandomSources` records the state
of numpy's global generator and of every ``np.random.Generator`` /
``RandomState`` the target holds; `RandomSources.pin` puts them all back to that
state, and checks call it before every forward once a target is seen drawing.
The global generator is touched only for such targets, and is restored after the
check like everything else (see `state`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradverify.objects import GENERATORS, reachable
from gradverify.state import generator_state, same_generator_state, set_generator_state

Generator = np.random.Generator | np.random.RandomState


def generators_in(root: Any) -> list[Generator]:
    """Every numpy generator the target holds (through attributes, dicts and lists)."""
    return [obj for obj in reachable(root) if isinstance(obj, GENERATORS)]


@dataclass
class RandomSources:
    """The states of the global generator and of the target's own, recorded once."""

    generators: list[Generator]
    global_state: Any = field(default_factory=np.random.get_state)
    states: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.states = [generator_state(g) for g in self.generators]

    def drawn_from(self) -> list[str]:
        """Which sources changed since they were recorded (a forward drew from them)."""
        changed = []
        if not same_generator_state(np.random.get_state(), self.global_state):
            changed.append("numpy's global generator (np.random.*)")
        changed += [
            f"its {type(g).__name__}"
            for g, state in zip(self.generators, self.states)
            if not same_generator_state(generator_state(g), state)
        ]
        return changed

    def start_global_from(self, seed: int) -> None:
        """Pin the global generator to a state from the check's seed, not to whatever
        state the caller's session left it in: the verdict then depends on the seed only."""
        self.global_state = np.random.RandomState(seed % 2**32).get_state()

    def pin(self) -> None:
        """Put every source back to its recorded state: the next draws repeat the last ones."""
        np.random.set_state(self.global_state)
        for generator, state in zip(self.generators, self.states):
            set_generator_state(generator, state)


@contextlib.contextmanager
def seeded_global(seed: int) -> Iterator[None]:
    """numpy's global generator seeded from `seed` inside the block, as the caller had it
    after: what a layer drawing its weights or masks from ``np.random`` sees is the seed's."""
    saved = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(saved)
