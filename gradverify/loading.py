"""Import what a user names: ``MODULE:OBJECT`` on the command line, a submission's or a
reference solution's file in grading.

One way to execute a ``.py`` file as a module and to walk an attribute path, for
the command line, the sandboxed child and the reference.  The current folder is
importable (as with ``python -m``), and a module that fails to import is one
line naming its own line, not a traceback through gradverify.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import FunctionType, ModuleType
from typing import Any

from gradverify.adapters import TargetRaised
from gradverify.errors import InvalidArgument, TargetNotFound


def import_target(spec: str) -> Any:
    """The object a ``MODULE:OBJECT`` names, the module by dotted name or by file path."""
    module_name, _, path = spec.partition(":")
    if not module_name or not path:
        raise InvalidArgument(
            f"a target must be MODULE:OBJECT, got {spec!r}; "
            f"e.g. layers_under_test.reference:Affine."
        )
    if os.getcwd() not in sys.path:  # like `python -m`: modules in this directory import
        sys.path.insert(0, os.getcwd())
    by_file = module_name.endswith(".py") or os.sep in module_name
    file = os.path.abspath(module_name if module_name.endswith(".py") else module_name + ".py")
    if by_file and not os.path.isfile(file):
        raise TargetNotFound(f"cannot import {module_name!r} of target {spec!r}: no file {file}.")
    try:
        module = module_from_file(file) if by_file else importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if not (module_name == error.name or module_name.startswith(f"{error.name}.")):
            raise TargetNotFound(_raised(module_name, spec, error)) from None
        raise TargetNotFound(
            f"cannot import module {module_name!r} of target {spec!r}: {error}. "
            f"Run from the directory that contains it, or install it."
        ) from None
    except Exception as error:  # the module's own code failed: its line, not ours
        raise TargetNotFound(_raised(module_name, spec, error)) from None
    try:
        return attribute(module, path)
    except MissingName as missing:
        raise TargetNotFound(f"{missing} (target {spec!r}).") from None


def _raised(module_name: str, spec: str, error: BaseException) -> str:
    cause = TargetRaised("importing", error).cause()
    return f"importing {module_name!r} (target {spec!r}) raised {cause}"


def module_from_file(path: str, name: str | None = None) -> ModuleType:
    """Execute the ``.py`` file at `path` as the module `name` (its file name by default).

    The module is in ``sys.modules`` while it runs (dataclasses and pickling look it
    up there) and stays there only if it imported without an error.
    """
    name = name or os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


class MissingName(AttributeError):
    """An attribute path that names nothing; the text says what is there instead."""


def attribute(root: Any, path: str) -> Any:
    """``root.a.b`` for the path ``"a.b"`` (`MissingName` if a part is missing)."""
    found = root
    for part in path.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise MissingName(f"{_called(found)} has no {part!r}{_defining(found)}") from None
    return found


def _called(holder: Any) -> str:
    """A module by its file name (``layers.py``), anything else by its type."""
    file = getattr(holder, "__file__", None) if isinstance(holder, ModuleType) else None
    return os.path.basename(file) if isinstance(file, str) else f"{type(holder).__name__} object"


def _defining(holder: Any) -> str:
    """`` (it defines: A, B)``: the classes and functions a module defines itself."""
    if not isinstance(holder, ModuleType):
        return ""
    names = sorted(
        name
        for name, value in vars(holder).items()
        if not name.startswith("_")
        and isinstance(value, (type, FunctionType))
        and getattr(value, "__module__", None) == holder.__name__
    )
    if not names:
        return " (it defines no class or function)"
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f" (it defines: {shown})"
