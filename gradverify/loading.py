"""Import what the command line names: ``MODULE:OBJECT``, the module by name or by file.

The current folder is importable (as with ``python -m``), and a module that fails
to import is one line naming its own line, not a traceback through gradverify.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

from gradverify.adapters import TargetRaised
from gradverify.errors import InvalidArgument


def import_target(spec: str) -> Any:
    """The object a ``MODULE:OBJECT`` names, the module by dotted name or by file path."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise InvalidArgument(
            f"a target must be MODULE:OBJECT, got {spec!r}; "
            f"e.g. layers_under_test.reference:Affine."
        )
    if os.getcwd() not in sys.path:  # like `python -m`: modules in this directory import
        sys.path.insert(0, os.getcwd())
    try:
        module = _module(module_name)
    except ImportError as error:
        raise InvalidArgument(
            f"cannot import module {module_name!r} of target {spec!r}: {error}. "
            f"Run from the directory that contains it, or install it."
        ) from None
    except Exception as error:  # the module's own code failed: its line, not ours
        raise InvalidArgument(
            f"importing {module_name!r} (target {spec!r}) raised "
            f"{TargetRaised('import', error).describe().split(' raised ', 1)[1]}"
        ) from None
    obj: Any = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise InvalidArgument(f"module {module_name!r} has no {attribute!r} (target {spec!r}).")
        obj = getattr(obj, part)
    return obj


def _module(name: str) -> Any:
    """A module by dotted name, or by file path (``layers.py``, ``./lib/layers.py``)."""
    if not name.endswith(".py") and os.sep not in name:
        return importlib.import_module(name)
    path = os.path.abspath(name if name.endswith(".py") else name + ".py")
    if not os.path.isfile(path):
        raise ImportError(f"no file {path}")
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
