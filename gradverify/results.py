"""Frozen records of what a check found; every renderer reads these and none computes.

`CheckResult` holds one `TensorResult` per checked gradient; each holds the worst
elements as `ElementRow`s.  A check held against a reference or a baseline also
holds one `Comparison` per forward output and gradient.  `to_dict` gives plain
JSON data with a schema version.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

#: Bumped whenever a key of `CheckResult.to_dict` changes meaning or disappears.
SCHEMA_VERSION = 1


class Status(enum.Enum):
    """The verdict on one gradient, or on a whole check (the worst of its tensors)."""

    PASS = "pass"  # every element agrees within the tolerance
    FAIL = "fail"  # at least one element disagrees by more than the numerics can explain
    INCONCLUSIVE = "inconclusive"  # the numerics cannot decide (kink, unstable estimate)
    ERROR = "error"  # the target raised, returned something malformed, or broke its contract

    @property
    def severity(self) -> int:
        """Order used to combine statuses: the worst one wins."""
        return _SEVERITY[self]


class Kind(str, enum.Enum):
    """A closed set of codes that decisions are made on; the value is what JSON and the
    report show, so no code ever decides by reading a message."""

    def __str__(self) -> str:
        return str(self.value)


class Role(Kind):
    """What a checked array is to the target."""

    INPUT = "input"  # an argument of forward: its gradient is returned by backward
    PARAMETER = "parameter"  # a weight the target holds: its gradient is stored


class CheckedBy(Kind):
    """How a gradient was examined."""

    ELEMENTS = "elements"  # every element by central differences
    PROJECTIONS = "projections"  # fast mode: directional derivatives, then bisection
    NOT_CHECKED = "not checked"  # an array found that could not be differentiated


class Severity(Kind):
    """An ``error`` finding fails the check; a ``warning`` is only reported."""

    ERROR = "error"
    WARNING = "warning"


class FindingKind(Kind):
    """Each contract a gradient value cannot show (see `contracts`); the value is its name."""

    DOUT_IGNORED = "dout ignored"
    NOT_LINEAR_IN_DOUT = "not linear in dout"
    DOUT_MODIFIED = "dout modified"
    BACKWARD_NOT_REPEATABLE = "backward not repeatable"
    STALE_STATE = "stale state"
    NONDETERMINISTIC_FORWARD = "nondeterministic forward"
    INPUT_MODIFIED = "input modified"
    TOO_MANY_GRADIENTS = "too many gradients"
    GRADIENT_DTYPE = "gradient dtype"
    FORWARD_DIFFERS = "forward differs from the reference"  # grading against a reference


class ElementOutcome(Kind):
    """What re-estimating one suspect element on the ladder of smaller steps found."""

    NOT_REESTIMATED = ""
    CONFIRMED = "confirmed"  # outside the tolerance by more than its estimated error: FAIL
    CLEARED = "cleared"  # inside the tolerance on re-estimate: PASS
    KINK = "kink"  # at a kink, analytic between the one-sided slopes: PASS
    KINK_OUTSIDE = "kink outside"  # at a kink, analytic neither slope: INCONCLUSIVE
    UNCERTAIN = "uncertain"  # outside, but within the estimate's error: INCONCLUSIVE
    NOT_FINITE = "not finite"  # forward not finite near the element: INCONCLUSIVE

    @property
    def at_kink(self) -> bool:
        return self in (ElementOutcome.KINK, ElementOutcome.KINK_OUTSIDE)


class ComparisonKind(Kind):
    """What a `Comparison` holds against the trusted one."""

    OUTPUT = "output"
    GRADIENT = "gradient"
    BASELINE = "baseline"  # the line saying a baseline was written, or could not be used


_SEVERITY = {Status.PASS: 0, Status.INCONCLUSIVE: 1, Status.FAIL: 2, Status.ERROR: 3}


def worst_status(statuses: list[Status]) -> Status:
    """The most severe of `statuses` (PASS for none)."""
    return max(statuses, key=lambda s: s.severity, default=Status.PASS)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Finding:
    """A contract finding (what a gradient value cannot show); ``error`` fails the check."""

    kind: FindingKind
    severity: Severity
    message: str

    @property
    def name(self) -> str:
        return self.kind.value

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "severity": self.severity.value, "message": self.message}


@dataclass(frozen=True)
class ElementRow:
    """One element of a gradient: where, both values, both errors, and what was found."""

    index: tuple[int, ...]
    analytic: float
    numeric: float
    abs_err: float
    rel_err: float
    note: str = ""
    outcome: ElementOutcome = ElementOutcome.NOT_REESTIMATED

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": list(self.index),
            "analytic": _finite_or_none(self.analytic),
            "numeric": _finite_or_none(self.numeric),
            "abs_err": _finite_or_none(self.abs_err),
            "rel_err": _finite_or_none(self.rel_err),
            "note": self.note,
            "outcome": self.outcome.value,
        }


@dataclass(frozen=True, repr=False)
class ErrorMap:
    """Where a gradient disagrees, laid out like the tensor, for a picture (`pictures`).

    Each cell holds the largest margin (``|analytic - numeric| / tolerance``: above 1
    is outside the tolerance) of the elements it covers, so one wrong element still
    shows in a large tensor.  Laid out as numpy prints the tensor: its last axis across,
    the others, flattened, down (a 1-D tensor is one row).  A cell covers
    ``cell[0] x cell[1]`` elements.
    """

    margins: tuple[tuple[float, ...], ...]  # inf where a value was not finite
    cell: tuple[int, int] = (1, 1)

    def __repr__(self) -> str:
        return f"<ErrorMap {len(self.margins)}x{len(self.margins[0])} cells of {self.cell}>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "margins": [[_finite_or_none(m) for m in row] for row in self.margins],
            "cell": list(self.cell),
        }


@dataclass(frozen=True, repr=False)
class TensorResult:
    """The verdict on one gradient (of an input or of a parameter held by the target).

    ``margin`` is the largest ``|analytic - numeric| / tolerance`` over the elements:
    below 1 every element is inside its tolerance.
    """

    name: str
    grad_name: str
    role: Role
    shape: tuple[int, ...]
    dtype: str
    status: Status
    checked_by: CheckedBy = CheckedBy.ELEMENTS
    method: str = "central differences"  # for the reader: "12 projections + bisection"
    step: float = math.nan
    rtol: float = math.nan
    atol: float = math.nan
    max_noise: float = 0.0
    checked: int = 0
    mismatched: int = 0
    reestimated: int = 0
    max_abs_err: float = 0.0
    max_abs_index: tuple[int, ...] | None = None
    max_rel_err: float = 0.0
    margin: float = 0.0
    rows: tuple[ElementRow, ...] = ()
    problem: str = ""  # for a gradient that could not be compared at all
    hint: str = ""
    notes: tuple[str, ...] = ()
    error_map: ErrorMap | None = None  # a gradient checked element by element that failed

    @property
    def projected(self) -> bool:
        """Whether this gradient was checked by projections (fast mode), not element by element."""
        return self.checked_by is CheckedBy.PROJECTIONS

    def __repr__(self) -> str:
        return f"<TensorResult {self.grad_name} {self.status.name} shape={self.shape}>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "grad_name": self.grad_name,
            "role": self.role.value,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "status": self.status.value,
            "checked_by": self.checked_by.value,
            "method": self.method,
            "step": _finite_or_none(self.step),
            "rtol": _finite_or_none(self.rtol),
            "atol": _finite_or_none(self.atol),
            "max_noise": self.max_noise,
            "checked": self.checked,
            "mismatched": self.mismatched,
            "reestimated": self.reestimated,
            "max_abs_err": _finite_or_none(self.max_abs_err),
            "max_abs_index": None if self.max_abs_index is None else list(self.max_abs_index),
            "max_rel_err": _finite_or_none(self.max_rel_err),
            "margin": _finite_or_none(self.margin),
            "rows": [row.to_dict() for row in self.rows],
            "problem": self.problem,
            "hint": self.hint,
            "notes": list(self.notes),
            "error_map": None if self.error_map is None else self.error_map.to_dict(),
        }


@dataclass(frozen=True)
class DifferenceRow:
    """One element where the target's value and the reference's (or baseline's) differ."""

    index: tuple[int, ...]
    yours: float
    reference: float
    abs_err: float
    rel_err: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": list(self.index),
            "yours": _finite_or_none(self.yours),
            "reference": _finite_or_none(self.reference),
            "abs_err": _finite_or_none(self.abs_err),
            "rel_err": _finite_or_none(self.rel_err),
        }


@dataclass(frozen=True, repr=False)
class Comparison:
    """One forward output or gradient held against a trusted reference's or a baseline's.

    ``kind`` is an output or a gradient (or, for the line that says a baseline was
    written instead of compared, the baseline).  The rule is the gradient
    check's: ``|yours - reference| <= atol + rtol*|reference|``.
    """

    name: str  # "output", "output 1", "dx", "dW"
    kind: ComparisonKind
    status: Status
    shape: tuple[int, ...] = ()
    dtype: str = ""
    rtol: float = math.nan
    atol: float = math.nan
    checked: int = 0
    differing: int = 0
    max_abs_err: float = 0.0
    max_abs_index: tuple[int, ...] | None = None
    max_rel_err: float = 0.0
    rows: tuple[DifferenceRow, ...] = ()
    problem: str = ""  # why it could not be compared element by element
    hint: str = ""
    written: bool = False  # kind "baseline": the baseline was written, so nothing compared

    def __repr__(self) -> str:
        return f"<Comparison {self.name} {self.status.name}>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "status": self.status.value,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "rtol": _finite_or_none(self.rtol),
            "atol": _finite_or_none(self.atol),
            "checked": self.checked,
            "differing": self.differing,
            "max_abs_err": _finite_or_none(self.max_abs_err),
            "max_abs_index": None if self.max_abs_index is None else list(self.max_abs_index),
            "max_rel_err": _finite_or_none(self.max_rel_err),
            "rows": [row.to_dict() for row in self.rows],
            "problem": self.problem,
            "hint": self.hint,
            "written": self.written,
        }


@dataclass(frozen=True, repr=False)
class LayerVerdict:
    """One layer of a failing network, checked alone on the inputs it saw in the forward pass.

    ``result`` is that check; None when the layer could not be checked (``problem`` says
    why: its forward was never called, or it could not be recorded).
    """

    name: str  # what the report calls it: "Relu1", "layers[2]", "lastLayer"
    path: str  # where the network holds it: "layers['Relu1']", "lastLayer"
    class_name: str  # "ReluNoMask"
    status: Status
    result: CheckResult | None = None
    problem: str = ""

    def __repr__(self) -> str:
        return f"<LayerVerdict {self.name} ({self.class_name}) {self.status.name}>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "class_name": self.class_name,
            "status": self.status.value,
            "result": None if self.result is None else self.result.to_dict(),
            "problem": self.problem,
        }


@dataclass(frozen=True)
class Diagnosis:
    """A failing network's layers, each checked alone on the inputs it saw, and what the
    recorded passes showed about the network's own code (see `gradverify.diagnosis`)."""

    layers: tuple[LayerVerdict, ...] = ()
    notes: tuple[str, ...] = ()
    #: loss() and gradient() gave a layer different switches: they run different passes
    passes_differ: bool = False

    @property
    def faulty(self) -> tuple[LayerVerdict, ...]:
        """The layers whose own check fails."""
        return tuple(v for v in self.layers if v.status is Status.FAIL)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": [v.to_dict() for v in self.layers],
            "notes": list(self.notes),
            "passes_differ": self.passes_differ,
        }


@dataclass(frozen=True, repr=False)
class CheckResult:
    """Everything one check found.  ``print(result)`` shows the report.

    ``status`` is the worst status of the tensors, of the contract findings and of
    the comparisons with a reference or baseline, or ERROR when the target (or the
    reference) could not be run at all (then ``error`` says why, quoting the
    target's own frame).
    ``bool(result)`` is ``result.passed``, so ``assert gradverify.check(...)`` works.
    """

    target: str
    label: str
    status: Status
    seed: int
    tensors: tuple[TensorResult, ...] = ()
    forward_calls: int = 0
    backward_calls: int = 0
    seconds: float = 0.0
    error: str = ""
    notes: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    reproduce: str = ""
    adapter: str = ""
    #: Inputs not differentiated, each with why: "t (int64)", "t (nondiff)".
    undifferentiated: tuple[str, ...] = ()
    #: What the outputs and gradients were held against ("the reference Sigmoid"), if any,
    #: and which kind of trusted source that is: "reference" or "baseline".
    against: str = ""
    trusted: str = ""
    comparisons: tuple[Comparison, ...] = ()
    #: A failing network's layers, each checked alone on the inputs it saw.
    diagnosis: Diagnosis | None = None

    @property
    def faulty_layers(self) -> tuple[LayerVerdict, ...]:
        """The layers of a failing network whose own check fails."""
        return () if self.diagnosis is None else self.diagnosis.faulty

    @property
    def passed(self) -> bool:
        return self.status is Status.PASS

    def __bool__(self) -> bool:
        return self.passed

    @property
    def coverage(self) -> str:
        """How the gradients were checked, for summary tables: ``all elements``, or which
        were checked by projections (``projections: dW``), and what they were held
        against (``; vs reference``)."""
        projected = [t.grad_name for t in self.tensors if t.projected]
        how = f"projections: {', '.join(projected)}" if projected else "all elements"
        return f"{how}; vs {self.trusted}" if self.trusted else how

    def __repr__(self) -> str:
        tensors = ", ".join(f"{t.grad_name} {t.status.name}" for t in self.tensors)
        return f"<CheckResult {self.label}: {self.status.name} ({tensors}) seed={self.seed}>"

    @property
    def worst(self) -> TensorResult | None:
        """The tensor with the largest margin among the most severe ones, if any."""
        if not self.tensors:
            return None
        return max(self.tensors, key=lambda t: (t.status.severity, _sortable(t.margin)))

    @property
    def baseline_written(self) -> bool:
        """Whether the check wrote its baseline instead of comparing with one."""
        return any(c.kind is ComparisonKind.BASELINE and c.written for c in self.comparisons)

    @property
    def worst_comparison(self) -> Comparison | None:
        """The first output or gradient that is not the trusted one, if any."""
        return next((c for c in self.comparisons if c.status is not Status.PASS), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "target": self.target,
            "label": self.label,
            "adapter": self.adapter,
            "status": self.status.value,
            "seed": self.seed,
            "forward_calls": self.forward_calls,
            "backward_calls": self.backward_calls,
            "seconds": self.seconds,
            "error": self.error,
            "notes": list(self.notes),
            "findings": [f.to_dict() for f in self.findings],
            "reproduce": self.reproduce,
            "undifferentiated": list(self.undifferentiated),
            "tensors": [t.to_dict() for t in self.tensors],
            "against": self.against,
            "trusted": self.trusted,
            "comparisons": [c.to_dict() for c in self.comparisons],
            "diagnosis": None if self.diagnosis is None else self.diagnosis.to_dict(),
        }

    def __str__(self) -> str:
        # Imported here because rendering sits above results in the module order.
        from gradverify.report import format_result

        return format_result(self)

    def _repr_html_(self) -> str:
        """What a notebook cell shows: the verdict, the gradients, pictures of a failure."""
        from gradverify.html_report import check_fragment

        return check_fragment(self)


def _sortable(value: float) -> float:
    return math.inf if math.isnan(value) else value
