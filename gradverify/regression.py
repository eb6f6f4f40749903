"""A check's forward outputs and gradients held against a trusted reference or a stored baseline.

`against_reference` observes the target and a trusted implementation the same way
(`observing`), with the target's weights copied into it, and `against_baseline`
reads (or first writes) the values a trusted run stored (see `baselines`).  Both
return a `Compared` that `checks.check` folds into the result.  A difference is
blamed on the target only once the reference has passed its own gradient check.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gradverify import baselines, hints
from gradverify.adapters import (
    Adapter,
    ParamDeclaration,
    ParamSlot,
    TargetRaised,
    resolve_adapter,
)
from gradverify.adapters.base import is_float_array, private_copy
from gradverify.config import CheckConfig
from gradverify.errors import InvalidArgument, TargetContractError
from gradverify.inputs import batch_size
from gradverify.objects import lookup
from gradverify.observing import Observed, forward_backward, observe, pair_by_value
from gradverify.outputs import read_outputs
from gradverify.randomness import seeded_global
from gradverify.references import Observation, compare_observations, same_values
from gradverify.report import format_failure
from gradverify.results import CheckResult, Comparison, ComparisonKind, Status
from gradverify.state import snapshot


@dataclass(frozen=True)
class Subject:
    """The checked target as a comparison needs it: its view, inputs and options."""

    view: Adapter
    names: list[str]
    values: list[Any]
    nondiff: Collection[str]
    constants: Sequence[str]  # arrays the target holds that are not weights (running_mean)
    declared: ParamDeclaration
    keywords: Mapping[str, Any]
    config: CheckConfig


@dataclass(frozen=True)
class Compared:
    """What the outputs and gradients were held against, and how each fared."""

    against: str
    comparisons: tuple[Comparison, ...] = ()
    error: str = ""  # the reference or baseline could not serve (never the target's fault)


def against_reference(
    subject: Subject,
    trusted_object: Any,
    label: str,
    own_check: Callable[[Any, ParamDeclaration], CheckResult],
) -> Compared:
    """Observe the target and the reference (holding the target's weights), and compare.

    The reference of the target's own class takes its ``params=`` declaration too.
    `own_check` runs the gradient check on the reference: called only when the two
    differ, so that a difference is never blamed on the target when the reference
    is the one that is broken.
    """
    yours = _observe(subject, subject.view)
    against = f"the reference {label}"
    same_class = type(trusted_object) is type(subject.view.target)
    declared = subject.declared if same_class else None
    saved = snapshot(trusted_object)
    try:
        try:
            view = resolve_adapter(trusted_object, subject.values, subject.keywords)
        except InvalidArgument as unknown:
            raise InvalidArgument(f"reference={label}: {unknown}") from None
        forward_backward(view, subject.values, subject.config.seed)  # creates dW and the like
        slots = view.parameters(declared)  # once: finding them again may miss a read-only one
        names = hold_the_same(yours, slots, trusted_object, label)
        trusted = _observe(replace(subject, declared=declared), view, slots)
        comparisons = _compare(subject, yours, _renamed(trusted.observation, names), against)
        if all(c.status is Status.PASS for c in comparisons):
            return Compared(against, comparisons)
        comparisons = _with_mode_hints(
            subject, comparisons, yours, trusted.observation, trusted_object
        )
        own = own_check(trusted_object, declared)
    except (TargetRaised, TargetContractError) as failed:
        why = failed.describe() if isinstance(failed, TargetRaised) else str(failed)
        return Compared(against, error=f"{against} could not be run on these inputs: {why}")
    finally:
        saved.restore()
    if own.status is Status.PASS:
        return Compared(against, comparisons)
    indented = format_failure(own).replace("\n", "\n    ")
    return Compared(
        against,
        error=f"{against} does not pass its own gradient check ({own.status.name}), so the "
        f"differences from it say nothing about {subject.view.label}; fix the reference or "
        f"pass another:\n    {indented}",
    )


def hold_the_same(
    yours: Observed, slots: list[ParamSlot], trusted: Any, label: str
) -> dict[str, str]:
    """Copy into the reference every array the target holds at a place the reference
    holds one of the same shape (weights, running statistics), then each remaining
    weight into the reference's weight holding the same values (both built from the same
    arrays).  Returns the target's name of each weight paired so, by the reference's."""
    for path, values in yours.held.items():
        array = lookup(trusted, path)
        if is_float_array(array) and array.shape == values.shape and array.flags.writeable:
            np.copyto(array, values, casting="unsafe")
    by_name = {slot.name: slot.array for slot in slots}
    for name, values in yours.weights.items():
        array = by_name.get(name, lookup(trusted, name))
        if is_float_array(array) and array.shape != values.shape:
            raise InvalidArgument(
                f"reference: {label}'s {name} has shape {array.shape}, the target's "
                f"{values.shape}; build the reference with the same sizes."
            )
    unpaired = {n: v for n, v in yours.weights.items() if not is_float_array(lookup(trusted, n))}
    pairs = pair_by_value(unpaired, {n: a for n, a in by_name.items() if n not in yours.weights})
    missing = [name for name in unpaired if name not in pairs]
    if missing:
        raise InvalidArgument(
            f"reference: {label} holds no weight named {missing[0]!r} and no single weight "
            f"holding the same values (it holds {', '.join(by_name) or 'none'}), so it cannot "
            f"compute with the target's; name the weights alike, or build both from the same "
            f"arrays."
        )
    for name, other in pairs.items():
        np.copyto(by_name[other], yours.weights[name], casting="unsafe")
    return {other: name for name, other in pairs.items()}


def _renamed(observation: Observation, names: Mapping[str, str]) -> Observation:
    """`observation` with the reference's weight names replaced by the target's."""
    gradients = {names.get(k, k): v for k, v in observation.gradients.items()}
    grad_names = {names.get(k, k): v for k, v in observation.grad_names.items()}
    return Observation(observation.outputs, gradients, grad_names)


def _observe(subject: Subject, view: Adapter, slots: list[ParamSlot] | None = None) -> Observed:
    config = subject.config
    return observe(
        view,
        subject.names,
        subject.values,
        subject.nondiff,
        subject.declared,
        config.seed,
        subject.constants,
        slots,
    )


def _compare(
    subject: Subject, yours: Observed, trusted: Observation, against: str
) -> tuple[Comparison, ...]:
    return compare_observations(
        yours.observation,
        trusted,
        subject.config.tolerances,
        what=against,
        batch_size=batch_size(subject.values),
        max_rows=subject.config.max_rows,
    )


def _with_mode_hints(
    subject: Subject,
    comparisons: tuple[Comparison, ...],
    yours: Observed,
    observed: Observation,
    trusted: Any,
) -> tuple[Comparison, ...]:
    """A differing output that the reference gives with its train flag (``train_flg``,
    ``training``) flipped: the target swapped its train and test behaviour.  Or, with
    such a flag, a constant factor: a scale that belongs to the other mode (a dropout
    scaled at test time)."""
    flags = [k for k, v in subject.keywords.items() if isinstance(v, bool) and "train" in k]
    outputs = yours.observation.outputs
    if not flags or len(outputs) != 1 or comparisons[0].status is Status.PASS:
        return comparisons
    first, mine, theirs = comparisons[0], outputs[0], observed.outputs[0]
    scaled = mine.shape == theirs.shape and hints.constant_factor(mine, theirs) is not None
    if scaled and first.hint:
        mode = ", ".join(f"{flag}={subject.keywords[flag]}" for flag in flags)
        hint = (
            f"{first.hint} Or, with {mode}: a scale that belongs to the other mode "
            f"(dropout scaled at test time instead of train time)?"
        )
        return (replace(first, hint=hint), *comparisons[1:])
    for flag in flags:
        flipped = {**subject.keywords, flag: not subject.keywords[flag]}
        view = resolve_adapter(trusted, subject.values, flipped)
        with seeded_global(subject.config.seed):
            raw = view.forward([private_copy(v) for v in subject.values])
        other = read_outputs(raw, view.name).arrays
        if len(other) == 1 and same_values(outputs[0], other[0], subject.config.tolerances):
            hint = (
                f"yours with {flag}={subject.keywords[flag]} computes what the reference computes "
                f"with {flag}={not subject.keywords[flag]}: train and test behaviour swapped?"
            )
            return (replace(comparisons[0], hint=hint), *comparisons[1:])
    return comparisons


# ---------------------------------------------------------------- a stored baseline


def against_baseline(
    subject: Subject, path: str | os.PathLike[str], *, regen: bool, gradients_pass: bool
) -> Compared:
    """Compare with the baseline at `path`; write it when there is none (or `regen`).

    Writing is not passing: the line that says so is INCONCLUSIVE, as
    pytest-regressions fails a test that created its data file, so a baseline
    forgotten in a commit can never pass silently.  Only a layer whose gradients
    pass their check is recorded.
    """
    where = os.fspath(path)
    against = f"the baseline {where}"
    yours = _observe(subject, subject.view)
    record = baselines.Record(
        yours.observation,
        target=subject.view.label,
        seed=subject.config.seed,
        fingerprint=baselines.fingerprint(
            subject.names, subject.values, yours.weights, subject.keywords
        ),
        arrays=baselines.described(subject.names, subject.values, yours.weights),
        options={
            "rtol": subject.config.rtol,
            "atol": subject.config.atol,
            "mode": subject.config.mode,
            "kwargs": {k: repr(v) for k, v in subject.keywords.items()},
            "nondiff": sorted(subject.nondiff),
        },
    )
    if regen or not os.path.exists(where):
        verb = "rewrote" if os.path.exists(where) else "wrote"
        if not gradients_pass:
            problem = (
                "not written: the gradients do not pass their check, and a baseline must "
                "hold a correct layer's values"
            )
        else:
            try:
                baselines.write(where, record)
            except OSError as error:
                return Compared(
                    against,
                    error=f"{against} cannot be written ({error.strerror or error}); give a "
                    f"path in a folder you can write to.",
                )
            count = len(yours.observation.outputs) + len(yours.observation.gradients)
            problem = f"{verb} it ({count} arrays), compared nothing: commit it for later runs"
        written = Comparison(
            "baseline",
            ComparisonKind.BASELINE,
            Status.INCONCLUSIVE,
            problem=problem,
            written=gradients_pass,
        )
        return Compared(against, (written,))
    try:
        stored = baselines.read(where)
    except baselines.BaselineUnreadable as unreadable:
        return Compared(against, error=str(unreadable))
    mismatch = baselines.incompatible(stored, record)
    if mismatch:
        return Compared(against, error=f"{against} {mismatch}")
    return Compared(against, _compare(subject, yours, stored.observation, "the baseline"))
