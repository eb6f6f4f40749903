"""The object graph of a target: attributes (instance dict and slots), items, and paths.

Two parts of gradverify walk what a target holds: `state` (to put every array
and attribute back after a check) and the adapters (to find the weights and
their gradients).  Both must see the same things: attributes in ``__dict__``
*and* in ``__slots__``, items of dicts and lists, nested objects.  This module
is that one walk.  Reading never triggers a property or ``__getattr__`` (a
property that raises, or a ``__getattr__`` that invents attributes, must not
change what is found); `lookup` resolves a path string back to its value.
"""

from __future__ import annotations

import ast
import functools
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Objects never walked into: code, types and modules hold no per-check state.
OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)

GENERATORS = (np.random.Generator, np.random.RandomState)

#: Values that are leaves of the walk: they hold no further state to visit.
_LEAVES = (np.ndarray, str, bytes, int, float, complex, bool, *GENERATORS)

#: Values `has_state` never walks into (containers are walked as such, not as objects).
_NOT_WALKED = (*OPAQUE, *_LEAVES, dict, list, tuple)

#: How deep `holdings` follows nested objects (a layer inside a layer inside a network).
MAX_DEPTH = 6

_MISSING = object()


def slot_names(obj: Any) -> tuple[str, ...]:
    """The ``__slots__`` names declared along the class hierarchy of `obj`."""
    cls: Any = type(obj)
    try:
        return _slot_names_of(cls)
    except TypeError:  # a metaclass that makes its classes unhashable
        return _slot_names_of.__wrapped__(cls)


@functools.lru_cache(maxsize=4096)  # every walk asks, for every object it meets
def _slot_names_of(cls: Any) -> tuple[str, ...]:
    names: list[str] = []
    for klass in cls.__mro__:
        declared = klass.__dict__.get("__slots__", ())
        declared = (declared,) if isinstance(declared, str) else declared
        names += [n for n in declared if n not in ("__dict__", "__weakref__") and n not in names]
    return tuple(names)


def attributes(obj: Any) -> dict[str, Any]:
    """The instance attributes of `obj` that are set: its ``__dict__`` and its slots.

    Slots are read through their descriptors, so neither a property nor a
    ``__getattr__`` fallback runs; an unset slot is left out.
    """
    found: dict[str, Any] = {}
    for name in slot_names(obj):
        descriptor = _class_attribute(obj, name)
        try:
            value = descriptor.__get__(obj, type(obj)) if descriptor is not None else _MISSING
        except AttributeError:  # declared but never set
            continue
        if value is not _MISSING:
            found[name] = value
    instance_dict = getattr(obj, "__dict__", None)
    if isinstance(instance_dict, dict):
        found.update(instance_dict)
    return found


def has_state(obj: Any) -> bool:
    """Whether `obj` is an object whose attributes hold state worth walking (an array of
    another library is a leaf: its insides are that library's business)."""
    if isinstance(obj, _NOT_WALKED) or is_foreign_array(obj):
        return False
    return isinstance(getattr(obj, "__dict__", None), dict) or bool(slot_names(obj))


def is_foreign_array(value: Any) -> bool:
    """An array of another library (torch, jax, cupy): it has a shape and converts to numpy
    (its class has ``__array__`` or ``__dlpack__``, where numpy looks for them)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return False
    kind = type(value)
    converts = hasattr(kind, "__array__") or hasattr(kind, "__dlpack__")
    return converts and _has_class_attribute(value, "shape")


def _has_class_attribute(value: Any, name: str) -> bool:
    """Looked up on the instance without running ``__getattr__`` (which may invent anything)."""
    try:
        object.__getattribute__(value, name)
    except Exception:  # AttributeError, or a property that raises
        return False
    return True


def set_attribute(obj: Any, name: str, value: Any) -> None:
    """Set an instance attribute without running a custom ``__setattr__``."""
    if name in slot_names(obj):
        _class_attribute(obj, name).__set__(obj, value)
    else:
        vars(obj)[name] = value


def delete_attribute(obj: Any, name: str) -> None:
    if name in slot_names(obj):
        _class_attribute(obj, name).__delete__(obj)
    else:
        del vars(obj)[name]


def _class_attribute(obj: Any, name: str) -> Any:
    for cls in type(obj).__mro__:
        if name in cls.__dict__:
            return cls.__dict__[name]
    return None


def children(obj: Any) -> Iterator[tuple[str, Any, Any]]:
    """``(kind, key, value)`` for what `obj` holds directly: ``attr``, ``item`` or ``tuple``."""
    if isinstance(obj, dict):
        for key, value in list(obj.items()):
            yield "item", key, value
    elif isinstance(obj, list):
        for index, value in enumerate(list(obj)):
            yield "item", index, value
    elif isinstance(obj, tuple):
        for index, value in enumerate(obj):
            yield "tuple", index, value
    elif has_state(obj):
        for name, value in attributes(obj).items():
            yield "attr", name, value


def reachable(*roots: Any) -> Iterator[Any]:
    """Every object reachable from `roots` through attributes, dict values, list and
    tuple items, once each; code, types and modules are not entered (no state there)."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, OPAQUE):
            continue
        seen.add(id(obj))
        yield obj
        if not isinstance(obj, _LEAVES):
            stack.extend(value for _, _, value in children(obj))


@dataclass(frozen=True)
class Holding:
    """One value a target holds, where: ``parent[key]`` or ``parent.key``, named by `path`."""

    path: str  # "W", "fc.W", "params['W']", "layers[0].W"
    value: Any
    parent: Any
    key: Any
    kind: str  # "attr", "item" or "tuple" (a tuple item cannot be re-bound)


def holdings(target: Any) -> list[Holding]:
    """Every value reachable from `target`, breadth first, each object once, with its path.

    A value held at several places (an array shared by a network and its layer)
    appears once per place, so that all of them can be re-bound together.
    """
    found: list[Holding] = []
    entered: set[int] = {id(target)}
    level = [("", target)]
    for _ in range(MAX_DEPTH):
        following = []
        for prefix, obj in level:
            for kind, key, value in children(obj):
                path = _join(prefix, kind, key)
                found.append(Holding(path, value, obj, key, kind))
                walked = has_state(value) or isinstance(value, _CONTAINERS)
                if walked and id(value) not in entered:
                    entered.add(id(value))
                    following.append((path, value))
        level = following
    return found


_CONTAINERS = (dict, list, tuple)


def places_of(target: Any, value: Any) -> list[Holding]:
    """Every place below `target` that holds this very object (to re-bind them together)."""
    return [h for h in holdings(target) if h.value is value]


def _join(prefix: str, kind: str, key: Any) -> str:
    if kind == "attr":
        return f"{prefix}.{key}" if prefix else str(key)
    return f"{prefix}[{key!r}]"


def rebind(holding: Holding, value: Any) -> None:
    """Put `value` where `holding` was found (not possible for a tuple item)."""
    if holding.kind == "attr":
        set_attribute(holding.parent, holding.key, value)
    elif holding.kind == "item":
        holding.parent[holding.key] = value
    else:
        raise TypeError(f"{holding.path} is an item of a tuple and cannot be replaced")


_SEGMENT = re.compile(r"\.?([A-Za-z_]\w*)|\[([^\]]+)\]")


def lookup(root: Any, path: str) -> Any:
    """The value at `path` (as `holdings` names it) below `root`, or None if there is none.

    Attributes are read with ``getattr``, so a path may name a property; anything
    it raises means "not there".
    """
    obj, position = root, 0
    while position < len(path):
        match = _SEGMENT.match(path, position)
        if match is None:
            return None
        position = match.end()
        try:
            if match.group(1) is not None:
                obj = getattr(obj, match.group(1))
            else:
                obj = obj[ast.literal_eval(match.group(2))]
        except Exception:
            return None
    return obj


def valid_path(path: str) -> bool:
    """Whether `path` is written as `holdings` writes paths (``fc.W``, ``params['W']``)."""
    position = 0
    while position < len(path):
        match = _SEGMENT.match(path, position)
        if match is None or (position == 0 and path.startswith(".")):
            return False
        if match.group(2) is not None:
            try:
                ast.literal_eval(match.group(2))
            except (ValueError, SyntaxError):
                return False
        position = match.end()
    return bool(path)


def gradient_path(path: str) -> str:
    """``W`` -> ``dW``, ``fc.W`` -> ``fc.dW``: the textbook's name for the gradient of the
    attribute at `path`.  An item (``params['W1']``) has no such name: its gradient's place
    must be declared, and the answer says so."""
    if path.endswith("]"):
        return f"<gradient of {path}>"
    head, dot, last = path.rpartition(".")
    return f"{head}{dot}d{last}"
