"""The caller's inputs: names, private copies, validation, and shifted variants.

`check` takes forward's arguments as a mapping (name -> value, in forward's
order) or a sequence (named after forward's parameters); this module turns them
into names and copies the check may use freely, and makes the "other valid
inputs" that expose stale caches.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradverify.adapters.base import copy_gradient
from gradverify.errors import InvalidArgument

Inputs = Mapping[str, Any] | Sequence[Any] | None


def named_inputs(target: Any, inputs: Inputs) -> tuple[list[str], list[Any]]:
    """Names and copies of the inputs; Python floats become 0-d float64 arrays."""
    if inputs is None:
        return [], []
    if isinstance(inputs, Mapping):
        names, values = [str(k) for k in inputs], list(inputs.values())
    elif isinstance(inputs, (list, tuple)):
        values = list(inputs)
        names = _positional_names(target, len(values))
    else:
        raise InvalidArgument(
            f"`inputs` must be a mapping name -> array in forward's order, or a sequence, "
            f"got inputs={type(inputs).__name__}; pass e.g. inputs={{'x': x}}."
        )
    converted = [
        np.array(v, dtype=np.float64) if _is_numbers(v) else copy_gradient(v) for v in values
    ]
    return names, converted


def _is_numbers(value: Any) -> bool:
    """A Python float, or a (nested) list of numbers: given to forward as a float array."""
    if isinstance(value, float):
        return True
    if not isinstance(value, list):
        return False
    try:
        return np.asarray(value).dtype.kind in "fi"
    except ValueError:  # ragged
        return False


def _positional_names(target: Any, count: int) -> list[str]:
    """Names of forward's parameters when they can be read, else x0, x1, ..."""
    function = getattr(target, "forward", None) or (
        target[0] if isinstance(target, tuple) else target
    )
    try:
        parameters = [
            p.name
            for p in inspect.signature(function).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        parameters = []
    if len(parameters) >= count:
        return parameters[:count]
    return [f"x{i}" for i in range(count)]


def validate_names(argument: str, given: Sequence[str], names: list[str]) -> None:
    if isinstance(given, str):
        raise InvalidArgument(
            f"`{argument}` must be a sequence of input names, got {argument}={given!r}; "
            f"pass {argument}=[{given!r}]."
        )
    unknown = [n for n in given if n not in names]
    if unknown:
        raise InvalidArgument(
            f"`{argument}` names {unknown}, which are not inputs; the inputs are {names}."
        )


def keyword_arguments(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise InvalidArgument(
            f"`kwargs` must be a mapping of forward's keyword arguments, got "
            f"kwargs={kwargs!r}; pass e.g. kwargs={{'train_flg': True}}."
        )
    return dict(kwargs)


def shifted(values: list[Any]) -> list[Any] | None:
    """Different but equally valid inputs, or None if none can be made.

    Each array is rolled by one along its last axis (a one-hot label moves to
    another class in every row), or along its first when the last has length 1.
    """
    shifted = []
    for value in values:
        if isinstance(value, np.ndarray) and value.ndim >= 1:
            axis = -1 if value.shape[-1] > 1 else 0
            value = np.roll(value, 1, axis=axis)
        shifted.append(value)
    changed = any(
        isinstance(v, np.ndarray) and not np.array_equal(v, s) for v, s in zip(values, shifted)
    )
    return shifted if changed else None


def batch_size(values: list[Any]) -> int | None:
    for value in values:
        if isinstance(value, np.ndarray) and value.ndim >= 2:
            return int(value.shape[0])
    return None
