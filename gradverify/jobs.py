"""What ``gradverify check`` checks: the jobs its arguments name.

A shipped case by name (``Affine4D``), a ``MODULE:OBJECT`` (a shipped class finds its
case; any other is built from ``--init`` arrays and fed ``--input`` arrays drawn from
the seed), each with what it is held against (``--reference``), how to rerun it, and
what to fuzz it over.
"""

from __future__ import annotations

import argparse
import difflib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gradverify.errors import InvalidArgument, TargetNotFound
from gradverify.loading import import_target


@dataclass(frozen=True)
class Job:
    """One thing to check: a name for the table, the target, its inputs, how to rerun it."""

    name: str
    target: Any
    inputs: dict[str, Any]
    nondiff: tuple[str, ...] = ()
    reproduce: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    spec: Any = None  # for --fuzz: a gradverify.specs spec, and the factory it feeds
    factory: Any = None
    reference: Any = None  # what forward and gradients are held against (--reference)
    source: str = ""  # the case's name or MODULE:OBJECT: names its --baseline file


def jobs(arguments: argparse.Namespace) -> list[Job]:
    """One job per target named on the command line (every shipped reference by default)."""
    jobs = _targets(arguments)
    if arguments.baseline is not None:  # instead of a wrong-function twin's own reference
        return [replace(job, reference=None) for job in jobs]
    if arguments.reference is None:
        return jobs
    return [_with_reference(job, arguments) for job in jobs]


def _with_reference(job: Job, arguments: argparse.Namespace) -> Job:
    """The job held against --reference: a shipped name is passed on as it is; a class
    given --init is built from the same arrays as the target (its factory's twin)."""
    spec = arguments.reference
    reference = spec if ":" not in spec else import_target(spec)
    if isinstance(reference, type) and arguments.init:
        reference = _built(spec, reference, _init_arrays(arguments))
    flag = f" --reference {spec}"
    return replace(job, reference=reference, reproduce=job.reproduce + flag)


def _targets(arguments: argparse.Namespace) -> list[Job]:
    from layers_under_test.registry import REFERENCE, case_named, find_case

    rng = np.random.default_rng(arguments.seed)
    if not arguments.targets:
        return [_case_job(case, rng) for case in REFERENCE.values()]
    jobs = []
    for spec in arguments.targets:
        if ":" not in spec:
            case = case_named(spec)
            if case is None:
                raise TargetNotFound(_no_such_case(spec))
            jobs.append(_case_job(case, rng))
            continue
        obj = import_target(spec)
        case = find_case(obj)
        if case is not None and not arguments.input:
            jobs.append(_case_job(case, rng))
        else:
            jobs.append(_user_job(spec, obj, arguments, rng))
    return jobs


def _no_such_case(spec: str) -> str:
    from layers_under_test.registry import BROKEN, REFERENCE, SHAPE_DEPENDENT, WRONG_FUNCTION

    names = [*REFERENCE, *BROKEN, *SHAPE_DEPENDENT, *WRONG_FUNCTION]
    close = difflib.get_close_matches(spec, names, n=3, cutoff=0.6)
    guess = f" Did you mean {' or '.join(close)}?" if close else ""
    return (
        f"{spec!r} is neither MODULE:OBJECT (./my_layers.py:MyLayer, package.module:MyLayer) "
        f"nor a shipped case.{guess} The reference cases are {', '.join(REFERENCE)}; "
        f"{len(names) - len(REFERENCE)} broken twins are listed in layers_under_test/registry.py."
    )


def _case_job(case: Any, rng: np.random.Generator) -> Job:
    """A shipped case, rerun by its name: ``gradverify check Affine4D``.  A wrong-function
    twin is held against the reference it is wrong against (a gradient check passes it)."""
    target, inputs = case.build(rng), case.make_inputs(rng)
    reproduce = f"gradverify check {case.name}"
    return Job(
        case.name,
        target,
        inputs,
        tuple(case.nondiff),
        reproduce,
        dict(case.kwargs),
        getattr(case, "spec", None),
        getattr(case, "factory", None) or case.target,
        reference=getattr(case, "reference", "") or None,
        source=case.name,
    )


def _init_arrays(arguments: argparse.Namespace) -> dict[str, np.ndarray]:
    """The --init arrays, drawn from their own seeded generator: the target and a class
    given as --reference are built from the same values."""
    rng = np.random.default_rng([arguments.seed, 3])
    return {name: rng.standard_normal(shape) for name, shape in _shapes("--init", arguments.init)}


def _built(spec: str, cls: type, init: dict[str, np.ndarray]) -> Any:
    try:
        return cls(**{name: array.copy() for name, array in init.items()})
    except TypeError as error:
        raise InvalidArgument(
            f"could not construct {spec} with --init {sorted(init) or '(none)'}: {error}; "
            f"give its array arguments, e.g. --init W=4,3 --init b=3."
        ) from None


def _user_job(spec: str, obj: Any, arguments: argparse.Namespace, rng: np.random.Generator) -> Job:
    init = _init_arrays(arguments)
    inputs = {
        name: rng.standard_normal(shape) for name, shape in _shapes("--input", arguments.input)
    }
    if not inputs:
        raise InvalidArgument(
            f"{spec} is not a shipped layer, so its inputs must be given: e.g. --input x=2,4."
        )
    factory = obj
    if isinstance(obj, type):
        obj = _built(spec, obj, init)
    flags = " ".join(
        [
            *(f"--init {s}" for s in arguments.init),
            *(f"--input {s}" for s in arguments.input),
            *(f"--nondiff {s}" for s in arguments.nondiff),
        ]
    )
    return Job(
        spec.rsplit(":", 1)[-1],
        obj,
        inputs,
        tuple(arguments.nondiff),
        f"gradverify check {spec} {flags}",
        spec=_read_spec(arguments.spec),
        factory=factory,
        source=spec,
    )


def _read_spec(path: str | None) -> Any:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise InvalidArgument(f"--spec {path!r} could not be read as JSON: {error}.") from None


def _shapes(flag: str, specs: list[str]) -> list[tuple[str, tuple[int, ...]]]:
    parsed = []
    for spec in specs:
        name, _, shape = spec.partition("=")
        try:
            dims = tuple(int(d) for d in shape.split(",") if d.strip())
        except ValueError:
            dims = ()
        if not name or not dims or any(d <= 0 for d in dims):
            raise InvalidArgument(
                f"{flag} must be NAME=SHAPE with positive sizes, got {flag} {spec!r}; "
                f"e.g. {flag} x=2,4."
            )
        parsed.append((name, dims))
    return parsed
