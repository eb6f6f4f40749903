"""A check's forward outputs and gradients held against a trusted reference or a stored baseline.

`observe` runs one forward and one backward at the check's inputs, from a random
state and a ``dout`` drawn from the seed; `against_reference` observes a trusted
implementation the same way, with the target's weights copied into it, and
`against_baseline` reads (or first writes) the values a trusted run stored (see
`baselines`).  Both return a `Compared` that `checks.check` folds into the
result.  A difference is blamed on the target only once the reference has
passed its own gradient check.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gradverify import baselines
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
from gradverify.inputs import batch_size, display_name
from gradverify.objects import attributes, lookup
from gradverify.outputs import read_outputs
from gradverify.randomness import seeded_global
from gradverify.references import Observation, compare_observations, same_values
from gradverify.report import format_failure
from gradverify.results import CheckResult, Comparison, Status
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


@dataclass(frozen=True)
class Observed:
    """An observation, and copies of the weights it was made with (by slot name)."""

    observation: Observation
    weights: dict[str, np.ndarray]


def observe(
    view: Adapter,
    names: Sequence[str],
    values: Sequence[Any],
    nondiff: Collection[str],
    declared: ParamDeclaration,
    seed: int,
    constants: Sequence[str] = (),
) -> Observed:
    """Forward, then backward with a ``dout`` drawn from the seed, each from numpy's global
    generator seeded from it (a dropout mask is then the same on both sides).  The weights
    recorded include the held `constants` (running statistics): the outputs depend on them."""
    with seeded_global(seed):
        raw = view.forward([private_copy(v) for v in values])
        outputs = read_outputs(raw, view.name)
        cotangent = outputs.cotangent(np.random.default_rng([seed, 7]))
        np.random.seed(seed % 2**32)  # backward too starts from the seed, as in a graded child
        gradients = view.backward([private_copy(v) for v in values], cotangent.for_backward)
        slots = view.parameters(declared)
    found: dict[str, np.ndarray] = {}
    grad_names: dict[str, str] = {}
    if view.differentiates_inputs:
        input_grads = view.input_grad_names(list(names))
        for position, (name, value) in enumerate(zip(names, values)):
            if is_float_array(value) and name not in nondiff:
                grad_names[name] = input_grads[position]
                returned = gradients.inputs[position] if position < len(gradients.inputs) else None
                _keep(found, name, returned)
    for slot in slots:
        grad_names[slot.name] = slot.grad_name
        _keep(found, slot.name, gradients.params.get(slot.name, slot.read_gradient()))
    arrays = tuple(a.copy() for a in outputs.arrays)
    weights = {slot.name: slot.array.copy() for slot in slots}
    weights.update({path: np.array(lookup(view.target, path)) for path in constants})
    return Observed(Observation(arrays, found, grad_names), weights)


def _keep(found: dict[str, np.ndarray], name: str, gradient: Any) -> None:
    """Record a gradient that is an array of numbers (the check reports any other)."""
    if gradient is None:
        return
    with contextlib.suppress(TypeError, ValueError):
        array = np.array(gradient)
        found[name] = array if array.dtype.kind == "f" else array.astype(np.float64)


# ---------------------------------------------------------------- a trusted implementation


def against_reference(
    subject: Subject, reference: Any, own_check: Callable[[Any], CheckResult]
) -> Compared:
    """Observe the target and the reference (with the target's weights), and compare.

    `own_check` runs the gradient check on the reference: called only when the two
    differ, so that a difference is never blamed on the target when the reference
    is the one that is broken.
    """
    yours = _observe(subject, subject.view)
    trusted_object, label = resolve_reference(reference, subject.view.target)
    against = f"the reference {label}"
    saved = snapshot(trusted_object)
    try:
        view = resolve_adapter(trusted_object, subject.values, subject.keywords)
        copy_weights(yours.weights, view.parameters(None), trusted_object, label)
        trusted = _observe(replace(subject, declared=None), view)
        comparisons = _compare(subject, yours, trusted.observation, against)
        if all(c.status is Status.PASS for c in comparisons):
            return Compared(against, comparisons)
        comparisons = _with_mode_hints(subject, comparisons, yours, trusted_object)
        own = own_check(trusted_object)
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


def _observe(subject: Subject, view: Adapter) -> Observed:
    config = subject.config
    return observe(
        view,
        subject.names,
        subject.values,
        subject.nondiff,
        subject.declared,
        config.seed,
        subject.constants,
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


def resolve_reference(reference: Any, target: Any) -> tuple[Any, str]:
    """The trusted object and its name: a shipped layer's name (``"Affine"``), a class
    (built like the target), or an object used as it is."""
    if isinstance(reference, str):
        reference = shipped_reference(reference)
    if isinstance(reference, type):
        return built_like(reference, target), reference.__name__
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
            f"reference={name!r} is not a shipped reference layer; they are "
            f"{', '.join(shipped)}. Or pass an object: reference=MyTrustedLayer(...)."
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


def copy_weights(
    weights: Mapping[str, np.ndarray], slots: list[ParamSlot], trusted: Any, label: str
) -> None:
    """Copy each of the target's weights (and held constants) into the reference's array of
    the same name, or, when both were built from the same arrays, the one holding the same
    values."""
    by_name = {slot.name: slot.array for slot in slots}
    for name, values in weights.items():
        held = by_name.get(name)
        if held is None and is_float_array(lookup(trusted, name)):
            held = lookup(trusted, name)
        if held is None:
            same = [a for a in by_name.values() if a.shape == values.shape]
            held = next((a for a in same if np.array_equal(a, values)), None)
        if held is None:
            raise InvalidArgument(
                f"reference: {label} holds no weight named {name!r} (it holds "
                f"{', '.join(by_name) or 'none'}), so it cannot compute with the target's; "
                f"name the weights alike, or build both from the same arrays."
            )
        if held.shape != values.shape or not held.flags.writeable:
            raise InvalidArgument(
                f"reference: {label}'s {name} has shape {held.shape}"
                f"{'' if held.flags.writeable else ' and is read-only'}, the target's "
                f"{values.shape}; build the reference with the same sizes, writable."
            )
        np.copyto(held, values, casting="unsafe")


def _with_mode_hints(
    subject: Subject, comparisons: tuple[Comparison, ...], yours: Observed, trusted: Any
) -> tuple[Comparison, ...]:
    """A differing output that the reference gives with a flag flipped (``train_flg``):
    the target swapped its train and test behaviour.  Or, with such a flag, a constant
    factor: a scale that belongs to the other mode (dropout scaled at test time)."""
    flags = [k for k, v in subject.keywords.items() if isinstance(v, bool)]
    outputs = yours.observation.outputs
    if not flags or len(outputs) != 1 or comparisons[0].status is Status.PASS:
        return comparisons
    first = comparisons[0]
    if first.hint.startswith("yours = ") and " x " in first.hint:
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
            baselines.write(where, record)
            problem = (
                f"{verb} it ({len(yours.observation.named_arrays())} arrays); nothing was "
                f"compared: commit it, and later runs compare against it"
            )
        return Compared(
            against, (Comparison("baseline", "baseline", Status.INCONCLUSIVE, problem=problem),)
        )
    try:
        stored = baselines.read(where)
    except baselines.BaselineUnreadable as unreadable:
        return Compared(against, error=str(unreadable))
    mismatch = baselines.incompatible(stored, record)
    if mismatch:
        return Compared(against, error=f"{against} {mismatch}")
    return Compared(against, _compare(subject, yours, stored.observation, against))
