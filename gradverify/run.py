"""The steps of one check, in order, on an adapter that is already resolved.

`CheckRun.run` is the whole of it: warm up and read the outputs (watching for
random draws and writes into the inputs), draw the cotangent, run backward once,
find the weights, name what no gradient covers, run the contracts, measure the
cost of a forward call, then judge every tensor in full or by projections.
`checks.check` wraps it with argument validation, the snapshot and the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gradverify import contracts, coverage, numerics, planning, workers
from gradverify.adapters import Adapter, Gradients, ParamDeclaration, ParamSlot
from gradverify.adapters.base import is_float_array, private_copy
from gradverify.adapters.guarded import Guarded
from gradverify.by_projections import check_by_projections
from gradverify.carried import CarriedState, ways_to_hold
from gradverify.config import CheckConfig
from gradverify.errors import TargetContractError, interrupted
from gradverify.every_element import check_every_element
from gradverify.inputs import batch_size, shifted
from gradverify.outputs import Cotangent, Outputs, computed_precision, read_outputs
from gradverify.progress import Estimate, Tracker
from gradverify.randomness import RandomSources, generators_in
from gradverify.results import (
    Finding,
    FindingKind,
    Role,
    Severity,
    Status,
    TensorResult,
    worst_status,
)
from gradverify.state import Snapshot
from gradverify.tensors import (
    LossContext,
    TensorOutcome,
    TensorToCheck,
    base_fields,
    with_finding_hints,
    with_swap_hints,
)


@dataclass
class Found:
    """What a check found: one result per gradient, notes, and contract findings."""

    tensors: list[TensorResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    undifferentiated: list[str] = field(default_factory=list)

    def add(self, *findings: Finding | None) -> None:
        """Record the findings that were found (contract checks return None when all is well)."""
        self.findings += [f for f in findings if f is not None]

    @property
    def status(self) -> Status:
        errors = [Status.FAIL for f in self.findings if f.severity is Severity.ERROR]
        return worst_status([t.status for t in self.tensors] + errors)


@dataclass
class CheckRun:
    """The state of one running check: the adapter, working copies, the cotangent."""

    view: Adapter
    names: list[str]
    originals: list[Any]
    nondiff: set[str]
    constants: list[str]  # arrays the target holds that are declared not to be weights
    declared: ParamDeclaration
    config: CheckConfig
    accumulates: bool
    #: What the target holds before the first call, the adapter's own changes made (an
    #: optimizer's stand-in): a state forward carries is held fixed to it (see `checks`).
    initial: Snapshot = field(default_factory=Snapshot)
    #: How that state is held fixed, when forward carries one (see `carried`).
    carried: CarriedState | None = None
    #: Seconds of the forward calls the first steps make anyway: what one call costs,
    #: measured without spending a call on it.
    timings: list[float] = field(default_factory=list)
    tracker: Tracker = field(default_factory=Tracker)

    def run(self) -> Found:
        found = Found()
        work = [private_copy(v) for v in self.originals]
        view, outputs = self._first_forward(work, found)
        computed = self._computed_precision(view, work, outputs, found)
        cotangent = outputs.cotangent(np.random.default_rng(self.config.seed))
        first = view.backward(work, cotangent.for_backward)
        slots = self._parameters(view)
        found.notes += [slot.note for slot in slots if slot.note]
        if self.carried is not None:
            found.notes.append(self.carried.note(view.target))
        gradients = Gradients(
            first.inputs,
            {s.name: first.params.get(s.name, private_copy(s.read_gradient())) for s in slots},
            first.dout_modified,
        )
        returned = (None,) * len(work) if first.returned_none else gradients.inputs
        found.notes += _another_order(self.names, work, returned)
        tensors = self._input_tensors(work, returned, found)
        tensors += [
            TensorToCheck(s.name, s.grad_name, Role.PARAMETER, s.array, gradients.params[s.name])
            for s in slots
        ]
        context = self._loss_context(view, work, outputs, cotangent, computed)
        uncovered = self._uncovered(view, slots, work, context, cotangent, found)
        if not tensors and not uncovered:
            raise TargetContractError(_nothing_to_check(view, found))
        computation = numerics.precision_dtype(context.output_dtypes)
        self._contracts(view, work, tensors, first, gradients, cotangent, computation, found)
        chosen = planning.plan([t.array.size for t in tensors], min(self.timings), self.config)
        context = replace(
            context,
            seconds_per_call=chosen.seconds_per_call,
            projection_calls=chosen.projection_calls,
        )
        shapes, directions = [t.array.shape for t in tensors], self.config.directions
        fast = 0 if self.config.mode == "fast" else planning.fast_calls(shapes, directions)
        calls = planning.planned_calls(shapes, chosen, directions)
        why_not = workers.unavailable() or view.fork_hazard
        parallel = 1 if why_not else self.config.workers
        if parallel < self.config.workers:
            found.notes.append(f"workers={self.config.workers} asked for, but {why_not}")
            context = replace(context, config=replace(self.config, workers=1))
        self.tracker.start(Estimate(view.label, calls, chosen.seconds_per_call, fast, parallel))
        outcomes: list[TensorOutcome] = []
        try:
            for tensor, full in zip(tensors, chosen.full):
                strategy = check_every_element if full else check_by_projections
                outcomes.append(strategy(tensor, context))
        except KeyboardInterrupt as stop:
            stopped = interrupted(stop)
            if not stopped.tensors:  # the gradient in progress had nothing to show yet
                stopped.tensors = [_not_reached(tensors[len(outcomes)])]
            stopped.tensors[:0] = [o.result for o in outcomes]
            raise stopped from None
        finally:
            self.tracker.stop()
        found.tensors = with_finding_hints(with_swap_hints(outcomes), found.findings) + uncovered
        return found

    def _first_forward(self, work: list[Any], found: Found) -> tuple[Adapter, Outputs]:
        """Warm up, watch for random draws and input writes, and read the centre outputs.

        The warm-up runs on other valid inputs, so that a target latching onto its
        first input holds the wrong one; it also shows whether forward draws random
        numbers (then every later call starts from the same generator states) and
        whether it writes into its inputs (then every later call gets fresh copies).
        """
        sources = RandomSources(generators_in(self.view.target))
        warm_up = shifted(work)
        if warm_up is not None:
            self._timed(self.view, warm_up)
        raw = self._timed(self.view, work)
        drawn = sources.drawn_from()
        mutated = [
            name
            for name, original, used in zip(self.names, self.originals, work)
            if isinstance(original, np.ndarray)
            and not np.array_equal(original, used, equal_nan=True)
        ]
        view = self.view
        if drawn:
            sources.start_global_from(self.config.seed)
        if drawn or mutated:
            for original, used in zip(self.originals, work):
                if isinstance(original, np.ndarray):
                    np.copyto(used, original)
            view = Guarded(
                self.view, before_call=sources.pin if drawn else None, copy_inputs=bool(mutated)
            )
            raw = self._timed(view, work)
        if drawn:
            found.notes.append(
                f"forward draws from {' and '.join(drawn)}: reset before every call, so every "
                f"evaluation sees the same random numbers"
            )
        outputs = _kept(read_outputs(raw, self.view.name))
        found.add(contracts.forward_mutation(view, self.names, mutated))
        changing = contracts.deterministic_forward(view, work, outputs, pinned=bool(drawn))
        ways = (
            ways_to_hold(self.view.target, self.initial, self.view.hold_elsewhere)
            if changing
            else []
        )
        for way in ways:
            pin = sources.pin if drawn else None
            held = Guarded(self.view, before_call=_both(way.hold, pin), copy_inputs=bool(mutated))
            fixed = _kept(read_outputs(self._timed(held, work), self.view.name))
            if contracts.deterministic_forward(held, work, fixed, pinned=bool(drawn)) is None:
                view, outputs, changing, self.carried = held, fixed, None, way
                break
        found.add(changing)
        return view, outputs

    def _parameters(self, view: Adapter) -> list[ParamSlot]:
        """The weights, and the carried state the layer exposes a gradient for (see `carried`)."""
        slots = view.parameters(self.declared)
        if self.carried is not None:
            claimed = {id(s.array) for s in slots}
            slots += [s for s in self.carried.slots(view.target) if id(s.array) not in claimed]
        return slots

    def _timed(self, view: Adapter, args: list[Any]) -> Any:
        started = time.perf_counter()
        raw = view.forward(args)
        self.timings.append(time.perf_counter() - started)
        return raw

    def _computed_precision(
        self, view: Adapter, work: list[Any], outputs: Outputs, found: Found
    ) -> np.dtype | None:
        """The lower precision forward really computes in, if its outputs betray one."""
        held = [h.value for h in view.held_arrays() if isinstance(h.value, np.ndarray)]
        computed = computed_precision(outputs, view.forward, work, view.name, held)
        if computed is not None:
            found.notes.append(
                f"forward computes in {computed.name} (its outputs are exact {computed.name} "
                f"values): steps and tolerances are {computed.name}'s"
            )
        return computed

    def _contracts(
        self,
        view: Adapter,
        work: list[Any],
        tensors: list[TensorToCheck],
        first: Gradients,
        gradients: Gradients,
        cotangent: Cotangent,
        computation: np.dtype,
        found: Found,
    ) -> None:
        """The findings a gradient value cannot show (see `contracts`)."""
        probe = contracts.Probe(
            view, work, shifted(work), cotangent.for_backward, gradients, cotangent.centre.is_scalar
        )
        found.add(contracts.gradient_count(view, len(first.inputs), len(work)))
        found.add(
            *[
                contracts.gradient_dtype(
                    t.name, t.grad_name, t.array.dtype, t.analytic, computation
                )
                for t in tensors
            ]
        )
        found.add(
            contracts.linearity_in_dout(probe),
            contracts.dout_untouched(probe),
            contracts.repeated_backward(probe, self.accumulates),
            contracts.stale_state(probe),
        )

    def _loss_context(
        self,
        view: Adapter,
        work: list[Any],
        outputs: Outputs,
        cotangent: Cotangent,
        computed: np.dtype | None,
    ) -> LossContext:
        """The scalar loss the numerics differentiate, and the precision to judge it at."""
        scalarize, tracker = cotangent.scalarize, self.tracker

        def forward(args: list[Any]) -> Any:
            tracker.advance()
            return view.forward(args)

        def batch(tensor: TensorToCheck) -> numerics.BatchLoss | None:
            if not view.batches:
                return None
            where = (
                ("arg", self.names.index(tensor.name))
                if tensor.role is Role.INPUT
                else ("param", tensor.name)
            )

            def losses(positions: Any, values: Any) -> list[float]:
                tracker.advance(len(positions))
                return [scalarize(raw) for raw in view.forward_many(work, where, positions, values)]

            return losses

        return LossContext(
            loss=lambda: scalarize(forward(work)),
            batch=batch,
            changed=lambda: cotangent.changed_magnitude(forward(work)),
            output_dtypes=(*outputs.dtypes, *([computed] if computed is not None else [])),
            magnitude=cotangent.magnitude(outputs),
            config=self.config,
            batch_size=batch_size(self.originals),
            rng=np.random.default_rng([self.config.seed, 1]),
            advance=self._made_elsewhere,
            dout=None if outputs.is_tuple else cotangent.douts[0],
            indices={
                name: value
                for name, value in zip(self.names, work)
                if isinstance(value, np.ndarray) and value.dtype.kind in "iu"
            },
        )

    def _made_elsewhere(self, calls: int) -> None:
        """Count the forward calls a worker made on its copy of the target."""
        self.view.forward_calls += calls
        self.tracker.advance(calls)

    def _uncovered(
        self,
        view: Adapter,
        slots: list[ParamSlot],
        work: list[Any],
        context: LossContext,
        cotangent: Cotangent,
        found: Found,
    ) -> list[TensorResult]:
        """Arrays the target holds and forward reads that no gradient covers (INCONCLUSIVE)."""
        if any(f.kind is FindingKind.NONDETERMINISTIC_FORWARD for f in found.findings):
            return []  # every nudge would seem to move the loss
        missing = coverage.uncovered_arrays(view, slots, work, context.loss, self.constants)
        if not missing:
            return []
        suggestions = coverage.gradient_suggestions(
            view,
            missing,
            slots,
            lambda: view.forward(work),
            lambda: view.backward_again(cotangent.for_backward),
        )
        return coverage.results(view, missing, slots, suggestions)

    def _input_tensors(
        self, work: list[Any], returned: tuple[Any, ...], found: Found
    ) -> list[TensorToCheck]:
        if not self.view.differentiates_inputs:
            found.undifferentiated += [f"{n} (a network's input)" for n in self.names]
            return []
        grad_names = self.view.input_grad_names(self.names)
        tensors = []
        for position, (name, value) in enumerate(zip(self.names, work)):
            if not is_float_array(value) or name in self.nondiff:
                why = "nondiff" if name in self.nondiff else _kind_of(value)
                found.undifferentiated.append(f"{name} ({why})")
                continue
            if position >= len(returned):
                found.undifferentiated.append(f"{name} (no gradient returned)")
                found.notes.append(
                    f"backward returned {len(returned)} gradient(s) for {len(work)} inputs: "
                    f"{name} is not differentiated"
                )
                continue
            tensors.append(
                TensorToCheck(name, grad_names[position], Role.INPUT, value, returned[position])
            )
        return tensors


def _another_order(names: list[str], work: list[Any], returned: tuple[Any, ...]) -> list[str]:
    """A note when the gradients' shapes are the inputs' in another order (a backward
    returning ``(dW, db, dx)`` for ``f(x, W, b)``), naming the order they fit."""
    given = [np.shape(g) for g in returned if g is not None]
    shapes = [np.shape(v) for v in work[: len(given)]]
    if len(given) < 2 or given == shapes or sorted(given) != sorted(shapes):
        return []
    left = list(zip(names, shapes))
    order = []
    for shape in given:
        fitting = [name for name, s in left if s == shape]
        order.append(fitting[0] if len(fitting) == 1 else "?")
        left = [(n, s) for n, s in left if n != order[-1]]
    named = ", ".join(f"d{n}" for n in order)
    return [
        f"backward returned gradients shaped like the inputs in another order ({named}?): "
        f"if so, declare returns={tuple(order)!r} naming each in the order returned"
    ]


def _kept(outputs: Outputs) -> Outputs:
    """Outputs copied: a forward that writes into one buffer it returns every time would
    change them."""
    return replace(outputs, arrays=tuple(a.copy() for a in outputs.arrays))


def _both(first: Callable[[], None], then: Callable[[], None] | None) -> Callable[[], None]:
    """Run `first` and then `then` (if any) before every call."""
    if then is None:
        return first

    def both() -> None:
        first()
        then()

    return both


def _not_reached(tensor: TensorToCheck) -> TensorResult:
    """The gradient a Ctrl-C stopped before it had a number to show."""
    return TensorResult(
        **base_fields(tensor),
        status=Status.INCONCLUSIVE,
        notes=("interrupted before any element of it was compared",),
    )


def _kind_of(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return str(value.dtype)
    return type(value).__name__


def _nothing_to_check(view: Adapter, found: Found) -> str:
    seen = ", ".join(found.undifferentiated) or "no inputs"
    return (
        f"nothing to check for {view.label}: no float input to differentiate and no weight "
        f"found (inputs: {seen}). Integer arrays are never differentiated: pass float "
        f"arrays, or declare the weights with params=[...]."
    )
