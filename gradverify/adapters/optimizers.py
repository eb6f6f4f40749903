"""Gradients a layer hands to an optimizer inside backward, captured without a step.

Some from-scratch code never stores a weight's gradient: backward gives it to an
optimizer the layer holds, which updates the weight on the spot
(``self.W = self.W_opt.update(self.W, grad_w)``).  For the duration of a check,
`swap_in` puts a `RecordingOptimizer` wherever the target holds the declared
optimizer: it keeps the last gradient given for each weight and hands the weight
back unchanged, so the weights stay where the check put them (the check's
snapshot puts the real optimizer back afterwards).  Both call styles are read:
``update(w, grad)`` and the second volume's ``update(params, grads)`` lists.
"""

from __future__ import annotations

from typing import Any

from gradverify.adapters.base import private_copy
from gradverify.adapters.conventions import not_found
from gradverify.errors import InvalidArgument
from gradverify.objects import attributes, lookup, places_of, rebind, valid_path


class RecordingOptimizer:
    """Stands in for an optimizer: records ``(weight, gradient)``, changes nothing."""

    def __init__(self, path: str, method: str) -> None:
        self.path = path
        self.method = method
        self.calls = 0
        self._last: dict[int, Any] = {}  # id of the weight -> its last gradient

    def __getattr__(self, name: str) -> Any:
        if name == self.__dict__.get("method"):
            return self._update
        raise AttributeError(
            f"{name!r}: gradverify stands in for the optimizer at {self.__dict__.get('path')} "
            f"during a check and records only {self.__dict__.get('method')}()"
        )

    def _update(self, *args: Any, **named: Any) -> Any:
        """``update(w, grad)``, also by keyword (``update(w=W, grad_wrt_w=g)``): the first
        two arguments, by position or else in the order given."""
        given = [*args, *named.values()]
        if len(given) < 2:
            raise TypeError(
                f"{self.path}.{self.method}() was called with {len(given)} argument(s); "
                f"gradverify's stand-in reads a weight and its gradient from the first two"
            )
        weights, gradients = given[0], given[1]
        self.calls += 1
        if isinstance(weights, (list, tuple)) and isinstance(gradients, (list, tuple)):
            for weight, gradient in zip(weights, gradients):
                self._last[id(weight)] = private_copy(gradient)
        else:
            self._last[id(weights)] = private_copy(gradients)
        return weights

    def recorded(self, weight: Any) -> bool:
        return id(weight) in self._last

    def gradient(self, weight: Any) -> Any:
        return self._last.get(id(weight))


def optimizers_held(target: Any) -> list[str]:
    """The attributes of `target` holding something with an ``update`` method: what a
    backward that changes the weights may be handing its gradients to."""
    return [
        name
        for name, value in attributes(target).items()
        if not isinstance(value, RecordingOptimizer)
        and callable(getattr(value, "update", None))
        and not isinstance(value, (dict, set))
    ]


def swap_in(target: Any, declared: str) -> RecordingOptimizer:
    """Put a recorder wherever `target` holds the optimizer at `declared` (``W_opt``, or
    ``W_opt.step`` to name its method; ``update`` by default)."""
    path, method = declared, "update"
    found = lookup(target, path) if valid_path(path) else None
    if isinstance(found, (list, tuple, dict)):
        keys = list(found) if isinstance(found, dict) else list(range(len(found)))
        each = ", ".join(repr(f"{declared}[{k!r}]") for k in keys[:3])
        raise InvalidArgument(
            f"`optimizer`: {declared!r} holds a {type(found).__name__} of optimizers; name "
            f"each one, e.g. optimizer=[{each}]."
        )
    if not callable(getattr(found, method, None)) and "." in declared:
        path, _, method = declared.rpartition(".")
        found = lookup(target, path) if valid_path(path) else None
    if found is None or not callable(getattr(found, method, None)):
        raise InvalidArgument(
            not_found(
                "`optimizer`",
                declared,
                optimizers_held(target),
                "Name the attribute that holds the object whose update(weight, gradient) "
                "backward calls, e.g. optimizer='W_opt' (or 'W_opt.step' for another method).",
            )
        )
    recorder = RecordingOptimizer(path, method)
    for place in places_of(target, found):
        if place.kind != "tuple":
            rebind(place, recorder)
    return recorder
