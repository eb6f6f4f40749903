"""Assignment files: which layers a class is graded on, how they are fed, what they are worth.

An assignment is a TOML file (read with ``tomllib``; ``tomli`` on Python 3.10)::

    [assignment]
    name = "Chapter 5: backpropagation"
    module = "layers.py"        # the file of the submission the checks look in
    reference = "solution.py"   # optional: a trusted solution with the same names
    seed = 0                    # every submission gets the same inputs
    time_limit = 10             # seconds per check
    memory_limit = 512          # MiB per check
    submission_time_limit = 120 # seconds for all of one submission's checks

    [[check]]
    name = "Affine"             # the test's name (Gradescope shows it)
    object = "Affine"           # or "layers.py:Affine"
    gradients = {dx = 1, dW = 2, db = 1}   # partial credit; or points = 4
    visibility = "visible"      # visible, hidden, after_due_date, after_published
    spec = {dims = {N = 3, D = 4, M = 2}, init = {W = ["D", "M"], b = ["M"]},
            inputs = {x = ["N", "D"]}}
    # also: kwargs = {train_flg = true}, nondiff = ["t"], mode, rtol, atol,
    # time_limit, reference = "solution.py:Affine" or false

`load_assignment` validates everything once; each error names the key, the value
and the fix.  Relative paths are relative to the assignment file.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradverify.adapters import ParamDeclaration
from gradverify.adapters.conventions import conventions
from gradverify.config import MODES, CheckConfig
from gradverify.errors import InvalidArgument
from gradverify.specs import Case, Spec, draw, parse_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")

#: Limits when the assignment sets none: seconds per check, MiB per check, seconds per
#: submission; and the bounds of what it may set (a limit beyond a day is a typo).
DEFAULT_TIME_LIMIT = 10.0
DEFAULT_MEMORY_MIB = 512
DEFAULT_SUBMISSION_TIME_LIMIT = 300.0
_MAX_SECONDS = 86400.0
_MIN_MEMORY_MIB = 16  # below this, Python and numpy do not even import

_ASSIGNMENT_KEYS = {
    "name": "the assignment's title",
    "module": "the submission file the checks look in, e.g. 'layers.py'",
    "reference": "a trusted solution file with the same names, e.g. 'solution.py'",
    "seed": "seed of every drawn input (the same for every submission)",
    "time_limit": "seconds per check",
    "memory_limit": "MiB of memory per check",
    "submission_time_limit": "seconds for all checks of one submission",
    "mode": "full (default), fast or auto",
    "rtol": "relative tolerance",
    "atol": "absolute tolerance",
}
_CHECK_KEYS = {
    "name": "the test's name",
    "object": "the class in the submission, e.g. 'Affine' or 'layers.py:Affine'",
    "points": "what the check is worth",
    "gradients": "partial credit per gradient, e.g. {dx = 1, dW = 2}",
    "visibility": "visible, hidden, after_due_date or after_published",
    "spec": "shapes and domains of the constructor's arrays and forward's inputs",
    "kwargs": "keyword arguments of every forward call, e.g. {train_flg = true}",
    "nondiff": "inputs not to differentiate (float labels)",
    "params": "where the layer holds its weights, if not discoverable",
    "methods": "other names of forward and backward, e.g. {forward = 'forward_pass'}",
    "returns": "what backward returns, by input and weight, e.g. ['x', ['W', 'b']]",
    "optimizer": "the attribute(s) holding the optimizer backward hands gradients to",
    "flush": "the method resetting what the layer accumulates, e.g. 'flush_gradients'",
    "reference": "the trusted object, e.g. 'solution.py:Affine', or false for none",
    "mode": "full, fast or auto",
    "rtol": "relative tolerance",
    "atol": "absolute tolerance",
    "time_limit": "seconds for this check",
}


@dataclass(frozen=True)
class GradedCheck:
    """One check of an assignment, validated."""

    number: int  # 1, 2, ... in file order
    name: str
    module: str  # the submission file, relative to the submission folder
    object: str  # the attribute path in that module
    points: float
    gradients: dict[str, float]  # partial credit by gradient name; empty: all or nothing
    visibility: str
    spec: Spec
    kwargs: dict[str, Any]
    nondiff: tuple[str, ...]
    params: ParamDeclaration
    #: Declared conventions (`gradverify.check`'s methods, returns, optimizer, flush), as
    #: given: plain data for the submission's child, which applies them
    declared: dict[str, Any]
    reference: tuple[str, str] | None  # absolute file, attribute path
    options: dict[str, Any]  # mode, rtol, atol for `check`
    time_limit: float


@dataclass(frozen=True)
class Assignment:
    """A whole assignment file, validated; `checks` are in file order."""

    name: str
    path: str  # the file, absolute
    seed: int
    memory_limit: int  # bytes
    submission_time_limit: float
    checks: tuple[GradedCheck, ...]

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def modules(self) -> tuple[str, ...]:
        """The submission files the checks look in (a notebook becomes each one missing)."""
        return tuple(dict.fromkeys(c.module for c in self.checks))

    def fingerprint(self) -> str:
        """A hash of what scores depend on besides the submissions: the assignment file and
        its references.  Results graded against another are never resumed into these."""
        digest = hashlib.sha256()
        references = sorted({c.reference[0] for c in self.checks if c.reference is not None})
        for path in [self.path, *references]:
            with open(path, "rb") as handle:
                digest.update(handle.read())
        return digest.hexdigest()[:16]

    def case(self, graded: GradedCheck) -> Case:
        """The inputs and weights of a check: the same for every submission and the reference."""
        return draw(graded.spec, np.random.default_rng([self.seed, graded.number]))


def load_assignment(path: str) -> Assignment:
    """Read and validate an assignment file."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise InvalidArgument(f"cannot read the assignment file {path!r}: {error}.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"the assignment file {path!r} is not valid TOML: {error}.") from None
    return parse_assignment(data, os.path.abspath(path))


def parse_assignment(data: Mapping[str, Any], path: str) -> Assignment:
    """Validate the parsed TOML of an assignment at `path`."""
    unknown = sorted(set(data) - {"assignment", "check"})
    if unknown:
        raise InvalidArgument(
            f"{path}: unknown top-level key(s) {unknown}; an assignment has an [assignment] "
            f"table and [[check]] tables."
        )
    head = _mapping("[assignment]", data.get("assignment", {}), "[assignment] then name = ...")
    _known_keys("[assignment]", head, _ASSIGNMENT_KEYS)
    checks = data.get("check")
    if not isinstance(checks, list) or not checks:
        raise InvalidArgument(
            f"{path}: no [[check]] tables; add one per layer, e.g.\n[[check]]\n"
            f'name = "Affine"\nobject = "Affine"\nspec = {{dims = {{N = 2, D = 3}}, '
            f'inputs = {{x = ["N", "D"]}}}}'
        )
    folder = os.path.dirname(path)
    defaults: dict[str, Any] = {k: head[k] for k in ("mode", "rtol", "atol") if k in head}
    defaults.setdefault("mode", "full")
    time_limit = _seconds("[assignment] time_limit", head.get("time_limit", DEFAULT_TIME_LIMIT))
    parsed = tuple(
        _check(number, entry, head, defaults, folder, time_limit)
        for number, entry in enumerate(checks, start=1)
    )
    names = [c.name for c in parsed]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InvalidArgument(f"{path}: check names must differ; repeated: {duplicated}.")
    return Assignment(
        name=_text("[assignment] name", head.get("name", os.path.basename(path))),
        path=path,
        seed=_count("[assignment] seed", head.get("seed", 0)),
        memory_limit=_memory("[assignment] memory_limit", head) * 2**20,
        submission_time_limit=_seconds(
            "[assignment] submission_time_limit",
            head.get("submission_time_limit", DEFAULT_SUBMISSION_TIME_LIMIT),
        ),
        checks=parsed,
    )


def _check(
    number: int,
    entry: Any,
    head: Mapping[str, Any],
    defaults: Mapping[str, Any],
    folder: str,
    time_limit: float,
) -> GradedCheck:
    where = f"[[check]] number {number}"
    if not isinstance(entry, Mapping):
        raise InvalidArgument(f"{where} must be a table of keys, got {entry!r}.")
    _known_keys(where, entry, _CHECK_KEYS)
    if "object" not in entry:
        raise InvalidArgument(f"{where} needs object = the class to check, e.g. object = 'Affine'.")
    module, _, attribute = str(entry["object"]).rpartition(":")
    module = module or str(head.get("module", ""))
    if not module.endswith(".py") or not attribute:
        raise InvalidArgument(
            f"{where}: object = {entry['object']!r} must name a class in a .py file of the "
            f"submission: 'layers.py:Affine', or 'Affine' with module = 'layers.py' in "
            f"[assignment]."
        )
    if os.path.isabs(module) or ".." in module.replace("\\", "/").split("/"):
        raise InvalidArgument(
            f"{where}: module {module!r} must be a path inside the submission folder, "
            f"e.g. 'layers.py' or 'src/layers.py'."
        )
    name = _text(f"{where} name", entry.get("name", attribute))
    where = f"[[check]] {name!r}"
    gradients = _gradients(where, entry.get("gradients", {}))
    points = _points(where, entry, gradients)
    visibility = str(entry.get("visibility", "visible"))
    if visibility not in VISIBILITIES:
        raise InvalidArgument(
            f"{where}: visibility = {visibility!r}; it is one of {', '.join(VISIBILITIES)}."
        )
    if "spec" not in entry:
        raise InvalidArgument(
            f"{where} needs spec = the shapes it is fed, e.g. spec = {{dims = {{N = 2, D = 3}}, "
            f'inputs = {{x = ["N", "D"]}}}}.'
        )
    try:
        spec = parse_spec(entry["spec"])
    except InvalidArgument as error:
        raise InvalidArgument(f"{where} spec: {error}") from None
    options = {**defaults, **{k: entry[k] for k in ("mode", "rtol", "atol") if k in entry}}
    _options(where, options)
    return GradedCheck(
        number=number,
        name=name,
        module=module,
        object=attribute,
        points=points,
        gradients=gradients,
        visibility=visibility,
        spec=spec,
        kwargs=_mapping(f"{where} kwargs", entry.get("kwargs", {}), "{train_flg = true}"),
        nondiff=tuple(_names(f"{where} nondiff", entry.get("nondiff", []))),
        params=_params(f"{where} params", entry.get("params")),
        declared=_declared(where, entry),
        reference=_reference(where, entry, head, attribute, folder),
        options=options,
        time_limit=(
            _seconds(f"{where} time_limit", entry["time_limit"])
            if "time_limit" in entry
            else time_limit
        ),
    )


def _known_keys(where: str, table: Mapping[str, Any], known: Mapping[str, str]) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        listing = "\n".join(f"  {key}: {meaning}" for key, meaning in known.items())
        raise InvalidArgument(f"{where}: unknown key(s) {unknown}; the keys are:\n{listing}")


def _gradients(where: str, value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{where}: gradients = {value!r} must be a table, e.g. {{dx = 1}}.")
    return {str(k): _positive(f"{where} gradients.{k}", v, zero=True) for k, v in value.items()}


def _points(where: str, entry: Mapping[str, Any], gradients: Mapping[str, float]) -> float:
    if not gradients:
        return _positive(f"{where} points", entry.get("points", 1), zero=True)
    total = sum(gradients.values())
    points = _positive(f"{where} points", entry.get("points", total), zero=True)
    if not math.isclose(points, total):
        raise InvalidArgument(
            f"{where}: points = {entry['points']!r} but the gradients add up to {total:g}; "
            f"drop points or make them agree."
        )
    return total


def _reference(
    where: str, entry: Mapping[str, Any], head: Mapping[str, Any], attribute: str, folder: str
) -> tuple[str, str] | None:
    value = entry.get("reference", head.get("reference"))
    if value is None or value is False:
        return None
    file, _, path = str(value).rpartition(":")
    if not file:  # "solution.py": the same attribute as in the submission
        file, path = str(value), attribute
    file = os.path.join(folder, file)
    if not file.endswith(".py") or not path:
        raise InvalidArgument(
            f"{where}: reference = {value!r} must name a .py file, e.g. 'solution.py' or "
            f"'solution.py:Affine'."
        )
    if not os.path.isfile(file):
        raise InvalidArgument(
            f"{where}: reference file {file!r} does not exist; give a path relative to the "
            f"assignment file, or reference = false."
        )
    return file, path


def _options(where: str, options: Mapping[str, Any]) -> None:
    if options.get("mode") not in MODES:
        raise InvalidArgument(
            f"{where}: mode = {options.get('mode')!r}; it is one of {', '.join(MODES)}."
        )
    try:
        CheckConfig(rtol=options.get("rtol"), atol=options.get("atol"))
    except InvalidArgument as error:
        raise InvalidArgument(f"{where}: {error}") from None


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{where} must be a non-empty string, got {value!r}.")
    return value


def _count(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"{where} must be a non-negative integer, got {value!r}.")
    return value


def _positive(where: str, value: Any, zero: bool = False) -> float:
    number_ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number_ok or not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        kind = "a non-negative" if zero else "a positive"
        raise InvalidArgument(f"{where} must be {kind} number, got {value!r}.")
    return float(value)


def _seconds(where: str, value: Any) -> float:
    seconds = _positive(where, value)
    if seconds > _MAX_SECONDS:
        raise InvalidArgument(f"{where} = {value!r} is over a day; give seconds, e.g. 10.")
    return seconds


def _memory(where: str, head: Mapping[str, Any]) -> int:
    value = head.get("memory_limit", DEFAULT_MEMORY_MIB)
    if isinstance(value, bool) or not isinstance(value, int) or value < _MIN_MEMORY_MIB:
        raise InvalidArgument(
            f"{where} must be a whole number of MiB, at least {_MIN_MEMORY_MIB}, got {value!r}; "
            f"e.g. memory_limit = {DEFAULT_MEMORY_MIB}."
        )
    return value


def _mapping(where: str, value: Any, example: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{where} must be a table, e.g. {example}, got {value!r}.")
    return dict(value)


#: The declared conventions an assignment may give a check (a layer's, not a pair's).
DECLARATIONS = ("methods", "returns", "optimizer", "flush")


def _declared(where: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The check's declared conventions, validated for their form now (whether each
    submission has what they name is that submission's verdict)."""
    given = {key: entry[key] for key in DECLARATIONS if key in entry}
    try:
        conventions(**given)
    except InvalidArgument as error:
        raise InvalidArgument(f"{where}: {error}") from None
    return given


def _params(where: str, value: Any) -> ParamDeclaration:
    """None (discover the weights), a list of names, or a table name -> gradient's name."""
    if value is None:
        return None
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return dict(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidArgument(
        f"{where} must be a list of names or a table of name = gradient name, got {value!r}; "
        f'e.g. params = ["W", "b"] or params = {{W = "grad_W"}}.'
    )


def _names(where: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{where} must be a list of names, e.g. ['t'], got {value!r}.")
    return value
