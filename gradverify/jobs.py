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
import shlex
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gradverify.errors import InvalidArgument, TargetNotFound
from gradverify.loading import import_target
from gradverify.specs import DOMAINS, LABEL_DOMAINS, draw


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

    seed = arguments.seed
    if not arguments.targets:
        return [_case_job(case, _rng(seed)) for case in REFERENCE.values()]
    jobs = []
    for spec in arguments.targets:
        if ":" not in spec:
            case = case_named(spec)
            if case is None:
                raise TargetNotFound(_no_such_case(spec))
            jobs.append(_case_job(case, _rng(seed)))
            continue
        obj = import_target(spec)
        case = find_case(obj)
        if case is not None and not arguments.input and not arguments.spec:
            jobs.append(_case_job(case, _rng(seed)))
        else:
            jobs.append(_user_job(spec, obj, arguments, _rng(seed)))
    return jobs


def _rng(seed: int) -> np.random.Generator:
    """A job's own generator, as the first job of a run always had: its inputs do not
    depend on the jobs before it, so its reproduce line, which names it alone, draws the
    same ones (and a baseline written by checking it alone still matches)."""
    return np.random.default_rng(seed)


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


def _init_arrays(arguments: argparse.Namespace) -> dict[str, Any]:
    """The --init arguments: arrays drawn from their own seeded generator (the target and a
    class given as --reference are built from the same values), and int or float values."""
    rng = np.random.default_rng([arguments.seed, 3])
    return {entry.name: entry.value(rng) for entry in map(_Argument.parse_init, arguments.init)}


def _built(spec: str, cls: type, init: dict[str, Any]) -> Any:
    try:
        return cls(
            **{name: np.copy(v) if isinstance(v, np.ndarray) else v for name, v in init.items()}
        )
    except TypeError as error:
        raise InvalidArgument(
            f"could not construct {spec} with --init {sorted(init) or '(none)'}: {error}; "
            f"give its arguments, e.g. --init W=4,3 --init b=3 --init stride=int:1."
        ) from None


def _user_job(spec: str, obj: Any, arguments: argparse.Namespace, rng: np.random.Generator) -> Job:
    given = [_Argument.parse_input(text) for text in arguments.input]
    shape_spec = _read_spec(arguments.spec)
    factory = obj
    if given:
        init = _init_arrays(arguments)
        inputs = {entry.name: entry.value(rng) for entry in given}
        nondiff = [entry.name for entry in given if entry.domain in LABEL_DOMAINS]
    elif shape_spec is not None:  # the fixed case is one the spec describes
        case = draw(shape_spec, rng)
        init, inputs, nondiff = dict(case.init), dict(case.inputs), list(case.nondiff)
    else:
        raise InvalidArgument(
            f"{spec} is not a shipped layer, so its inputs must be given: e.g. --input x=2,4, "
            f"or --spec FILE.json to draw them (and its constructor arguments) from a spec."
        )
    if isinstance(obj, type):
        obj = _built(spec, obj, init)
    flags = " ".join(
        [
            *(f"--init {s}" for s in arguments.init),
            *(f"--input {s}" for s in arguments.input),
            *(f"--nondiff {s}" for s in arguments.nondiff),
            *([f"--spec {arguments.spec}"] if arguments.spec else []),
            *_declaration_flags(arguments),
        ]
    )
    return Job(
        spec.rsplit(":", 1)[-1],
        obj,
        inputs,
        (*nondiff, *arguments.nondiff),
        f"gradverify check {spec} {flags}",
        spec=shape_spec,
        factory=factory,
        source=spec,
    )


def _declaration_flags(arguments: argparse.Namespace) -> list[str]:
    """The declared conventions as they were given, for the reproduce line."""
    repeated = [
        (flag, value)
        for flag in ("params", "methods", "optimizer")
        for value in getattr(arguments, flag)
    ]
    single = [(flag, getattr(arguments, flag)) for flag in ("returns", "flush", "backward_args")]
    given = repeated + [(flag, value) for flag, value in single if value is not None]
    return [f"--{flag.replace('_', '-')} {shlex.quote(value)}" for flag, value in given]


#: What --input and --init say, documented in `gradverify check --help`.
ARGUMENT_SYNTAX = (
    "NAME=SHAPE draws floats from N(0, 1) (x=2,4); NAME=DOMAIN:SHAPE draws from a domain: "
    "positive, unit, probabilities, onehot (t=onehot:3,4: 3 rows over 4 classes) or labels "
    "(t=labels:3,classes=4: 3 integers in [0, 4)); labels and one-hot rows are never "
    "differentiated. --init also takes NAME=int:VALUE and NAME=float:VALUE (stride=int:2)."
)


@dataclass(frozen=True)
class _Argument:
    """One --input or --init: a name, and an array's domain and shape or a number."""

    name: str
    domain: str | None = None  # None: floats from N(0, 1)
    shape: tuple[int, ...] = ()
    classes: int | None = None
    number: int | float | None = None

    @classmethod
    def parse_input(cls, text: str) -> _Argument:
        return cls._parse("--input", text, numbers=False)

    @classmethod
    def parse_init(cls, text: str) -> _Argument:
        return cls._parse("--init", text, numbers=True)

    @classmethod
    def _parse(cls, flag: str, text: str, numbers: bool) -> _Argument:
        name, _, rest = text.partition("=")
        domain, _, shape_text = rest.rpartition(":")
        try:
            if numbers and domain in ("int", "float"):
                return cls(name, number=int(shape_text) if domain == "int" else float(shape_text))
            parts = [p.strip() for p in shape_text.split(",") if p.strip()]
            classes = [int(p.split("=", 1)[1]) for p in parts if p.startswith("classes=")]
            dims = tuple(int(p) for p in parts if not p.startswith("classes="))
        except ValueError:
            dims, classes = (), []
        known = domain == "" or domain in DOMAINS
        if not name or not dims or any(d <= 0 for d in dims) or not known:
            raise InvalidArgument(
                f"{flag} must be NAME=SHAPE or NAME=DOMAIN:SHAPE, got {flag} {text!r}; "
                f"e.g. {flag} x=2,4. {ARGUMENT_SYNTAX}"
            )
        found = cls(name, domain or None, dims, classes[0] if classes else None)
        if found.domain == "labels" and found.classes is None:
            raise InvalidArgument(
                f"{flag} {text!r} draws labels: say how many classes, e.g. {flag} "
                f"{name}=labels:{shape_text},classes=10."
            )
        return found

    def value(self, rng: np.random.Generator) -> Any:
        if self.number is not None:
            return self.number
        if self.domain is None:
            return rng.standard_normal(self.shape)
        entry: dict[str, Any] = {"shape": list(self.shape), "domain": self.domain}
        if self.domain in LABEL_DOMAINS:
            entry["classes"] = self.classes or self.shape[-1]
        return draw({"dims": {}, "inputs": {self.name: entry}}, rng).inputs[self.name]


def _read_spec(path: str | None) -> Any:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise InvalidArgument(f"--spec {path!r} could not be read as JSON: {error}.") from None
