"""Notebook submissions: the definitions of a notebook's code cells, as a module.

Students write their layers in Jupyter notebooks, between training loops, data
downloads and plots.  Grading runs none of that: from each code cell it keeps
the top-level imports (each guarded: a missing plotting library must not sink
the module), functions, classes and constants (names bound to literals), drops
everything else (statements, magics, shell escapes), and writes what is left as
the module the checks import.  The notebook is read with
`nbformat` in the grader; its code runs only in the sandboxed child.  A notebook
that cannot be read becomes a module that raises the reason when imported.
"""

from __future__ import annotations

import ast
import os
from typing import Any

from gradverify.errors import InvalidArgument

_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def reader() -> Any:
    """nbformat, which only notebook submissions need; its absence is the grader's error,
    said before any submission is graded (see `runner.grade`)."""
    try:
        import nbformat
    except ImportError:
        raise InvalidArgument(
            "grading notebooks needs nbformat: pip install 'gradverify[grade]'."
        ) from None
    return nbformat


def notebook_source(path: str) -> str:
    """The module a notebook's definitions make, with a comment per cell it skipped."""
    nbformat = reader()
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as error:  # not JSON, not a notebook, a version nbformat cannot read
        return _unreadable(f"the notebook {os.path.basename(path)} cannot be read: {error}")
    kept = [f"# definitions from {os.path.basename(path)}"]
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type == "code":
            kept.append(_definitions(number, cell.source))
    return "\n\n".join(part for part in kept if part) + "\n"


def _unreadable(reason: str) -> str:
    """A module that says why when the child imports it: the student's verdict, not a crash
    of the grader."""
    return f"raise ImportError({reason[:500]!r})\n"


def _definitions(number: int, source: str) -> str:
    """The definitions of one cell; magics and shell lines are dropped before parsing."""
    lines = [
        line if not line.lstrip().startswith(("%", "!")) else "" for line in source.splitlines()
    ]
    text = "\n".join(lines)
    try:
        tree = ast.parse(text)
    except SyntaxError as error:
        return f"# cell {number} skipped: it does not parse ({error.msg}, line {error.lineno})"
    except (ValueError, MemoryError, RecursionError):  # NUL bytes, absurd nesting
        return f"# cell {number} skipped: it cannot be parsed"
    kept = [node for node in tree.body if isinstance(node, _DEFINITIONS) or _is_constant(node)]
    return "\n\n".join(_guarded(_source(text, node), node) for node in kept)


def _source(text: str, node: ast.stmt) -> str:
    """A statement's source with its decorators (``@dataclass`` belongs to its class)."""
    decorators = getattr(node, "decorator_list", [])
    first = min([node.lineno, *(d.lineno for d in decorators)])
    lines = text.splitlines()[first - 1 : node.end_lineno]
    return "\n".join(lines)


def _guarded(source: str, node: ast.stmt) -> str:
    """An import that may fail where grading runs (matplotlib, tqdm) does not sink the module:
    only the definitions are graded, and one that needs the import fails when it runs."""
    if not isinstance(node, (ast.Import, ast.ImportFrom)):
        return source
    return f"try:\n    {source}\nexcept ImportError:\n    pass"


def _is_constant(node: ast.stmt) -> bool:
    """``N = 3``, ``LABELS = ("a", "b")``: a name bound to a literal."""
    if isinstance(node, ast.Assign):
        targets, value = node.targets, node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets, value = [node.target], node.value
    else:
        return False
    if not all(isinstance(t, ast.Name) for t in targets):
        return False
    try:
        ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True
