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

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Generator = np.random.Generator | np.random.RandomState


def generators_in(root: Any) -> list[Generator]:
    """Every numpy generator reachable from `root` through attributes, dicts and lists."""
    found: list[Generator] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None:
            continue
        seen.add(id(obj))
        if isinstance(obj, (np.random.Generator, np.random.RandomState)):
            found.append(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack.extend(vars(obj).values())
    return found


def _state(generator: Generator) -> Any:
    if isinstance(generator, np.random.Generator):
        return generator.bit_generator.state
    return generator.get_state()


def _set_state(generator: Generator, state: Any) -> None:
    if isinstance(generator, np.random.Generator):
        generator.bit_generator.state = state
    else:
        generator.set_state(state)


@dataclass
class RandomSources:
    """The states of the global generator and of the target's own, recorded once."""

    generators: list[Generator]
    global_state: Any = field(default_factory=np.random.get_state)
    states: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.states = [_state(g) for g in self.generators]

    def drawn_from(self) -> list[str]:
        """Which sources changed since they were recorded (a forward drew from them)."""
        changed = []
        if not _same_global_state(np.random.get_state(), self.global_state):
            changed.append("numpy's global generator (np.random.*)")
        changed += [
            f"its {type(g).__name__}"
            for g, state in zip(self.generators, self.states)
            if _state(g) != state
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
            _set_state(generator, state)


def _same_global_state(first: Any, second: Any) -> bool:
    return bool(
        first[0] == second[0] and np.array_equal(first[1], second[1]) and first[2:] == second[2:]
    )
