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

from gradverify.adapters.base import private_copy
from gradverify.errors import InvalidArgument
from gradverify.objects import lookup, valid_path

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
        np.array(v, dtype=np.float64) if _is_numbers(v) else private_copy(v) for v in values
    ]
    for name, value in zip(names, converted):
        _require_finite(name, value)
    return names, converted


def _require_finite(name: str, value: Any) -> None:
    """Finite differences around NaN or inf mean nothing: say so before the target runs."""
    if not (isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)):
        return
    bad = np.argwhere(~np.isfinite(value))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise InvalidArgument(
            f"inputs[{name!r}] is not finite at {where} (value {value[where]}); finite "
            f"differences need finite inputs: pass data without NaN or inf."
        )


def empty_inputs(names: list[str], values: list[Any], nondiff: Sequence[str]) -> str:
    """Why there is nothing to check if a float input has no elements, else ''."""
    for name, value in zip(names, values):
        floats = isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)
        if floats and value.size == 0 and name not in nondiff:
            return (
                f"nothing to check: input {name} has no elements (shape {value.shape}); "
                f"every gradient of an empty batch is empty. Give it at least one row."
            )
    return ""


def constant_names(target: Any, nondiff: Sequence[str], names: list[str]) -> list[str]:
    """The `nondiff` names that are not inputs: arrays the target holds that are constants.

    Each must name an array the target holds (``running_mean``, ``bn.running_var``).
    """
    if isinstance(nondiff, str):
        raise InvalidArgument(
            f"`nondiff` must be a sequence of names, got nondiff={nondiff!r}; "
            f"pass nondiff=[{nondiff!r}]."
        )
    if not all(isinstance(n, str) for n in nondiff):
        raise InvalidArgument(
            f"`nondiff` must be a sequence of names, got nondiff={nondiff!r}; "
            f"pass e.g. nondiff=['t']."
        )
    constants = [n for n in nondiff if n not in names]
    unknown = [n for n in constants if not (valid_path(n) and hasattr(lookup(target, n), "shape"))]
    if unknown:
        raise InvalidArgument(
            f"`nondiff` names {unknown}, which are neither inputs nor arrays the target "
            f"holds; the inputs are {names}."
        )
    return constants


def display_name(target: Any) -> str:
    """A name for a target that could not be resolved or run."""
    named = target[0] if isinstance(target, tuple) and target else target
    return getattr(named, "__name__", type(named).__name__)


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
    """Names of forward's (a network's loss's) parameters when they can be read, else x0, x1..."""
    function = (
        getattr(target, "forward", None)
        or getattr(target, "loss", None)
        or (target[0] if isinstance(target, tuple) else target)
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
