"""What ``reference=`` names: a trusted object, built or found.

An object is used as it is; a class is built from the constructor arguments the
checked target holds under the same names; a string is a shipped reference
layer's name or ``MODULE:OBJECT``.  Values that cannot be implementations are
refused before any check runs.
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

import numpy as np

from gradverify.adapters.base import private_copy
from gradverify.errors import InvalidArgument
from gradverify.inputs import display_name
from gradverify.loading import import_target
from gradverify.objects import attributes

#: What `reference=` cannot be: a value, not an implementation.
_NOT_A_REFERENCE = (bool, int, float, complex, list, dict, set, np.ndarray, ModuleType)


def resolve_reference(reference: Any, target: Any) -> tuple[Any, str]:
    """The trusted object and its name: a shipped layer's name (``"Affine"``) or
    ``"MODULE:OBJECT"``, a class (built like the target), or an object used as it is."""
    if isinstance(reference, _NOT_A_REFERENCE):
        raise InvalidArgument(
            f"`reference` must be a trusted layer (an object, its class, a shipped layer's "
            f"name such as 'Affine', or 'MODULE:OBJECT'), got reference={reference!r}."
        )
    if isinstance(reference, str):
        reference = import_target(reference) if ":" in reference else shipped_reference(reference)
    if isinstance(reference, type):
        name = reference.__name__
        if not reference.__module__.startswith("layers_under_test"):
            name = f"{reference.__module__}.{reference.__qualname__}"
        return built_like(reference, target), name
    if reference is target:
        raise InvalidArgument(
            "`reference` is the checked target itself; pass a separate trusted implementation "
            "(another instance, a class, or a shipped layer's name such as reference='Affine')."
        )
    return reference, display_name(reference)


def shipped_reference(name: str) -> Any:
    """The shipped reference layer (class or function pair) called `name`, in any case."""
    from layers_under_test.registry import REFERENCE

    by_name = {case.name.lower(): case for case in REFERENCE.values()}
    aliases = {getattr(c.target, "__name__", "").lower(): c for c in REFERENCE.values()}
    case = by_name.get(name.lower()) or aliases.get(name.lower())
    if case is None:
        shipped = sorted({getattr(c.target, "__name__", c.name) for c in REFERENCE.values()})
        raise InvalidArgument(
            f"reference {name!r} is not a shipped reference layer (they are "
            f"{', '.join(shipped)}); for a trusted layer of your own give MODULE:OBJECT, or "
            f"pass the object itself in Python."
        )
    return case.target


def built_like(cls: type, target: Any) -> Any:
    """An instance of `cls` built from the constructor arguments `target` holds under the
    same names (``Affine(W, b)`` from the target's ``W`` and ``b``), copied."""
    held = attributes(target)
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        parameters = []  # type: ignore[assignment]
    arguments, missing = {}, []
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.name in held:
            arguments[parameter.name] = private_copy(held[parameter.name])
        elif parameter.default is parameter.empty:
            missing.append(parameter.name)
    fix = f"build it yourself and pass the instance: reference={cls.__name__}(...)"
    if missing:
        raise InvalidArgument(
            f"reference={cls.__name__} is built from the constructor arguments the checked "
            f"target holds under the same names, but it holds no {', '.join(missing)}; {fix} "
            f"(its weights are then replaced by the target's, by name)."
        )
    try:
        return cls(**arguments)
    except Exception as error:  # the reference's own constructor
        raise InvalidArgument(
            f"reference={cls.__name__} could not be built from the target's "
            f"{', '.join(arguments) or 'nothing'}: {type(error).__name__}: {error}; {fix}."
        ) from None
