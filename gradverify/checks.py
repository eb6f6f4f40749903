"""The public entry points: `check` returns a verdict, `assert_gradients` raises on one.

One check: resolve the adapter, snapshot the target, run forward once at the
inputs, draw the cotangent, run backward once for the analytic gradients, then
differentiate every differentiable input and every parameter numerically
(`tensor_check`), and restore the target exactly as it was, whatever happened.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Any

import numpy as np

from gradverify import contracts, coverage, hints, numerics, planning
from gradverify.adapters import (
    Adapter,
    Gradients,
    ParamDeclaration,
    ParamSlot,
    TargetRaised,
    resolve_adapter,
)
from gradverify.adapters.base import is_float_array, private_copy
from gradverify.adapters.guarded import Guarded
from gradverify.config import DEFAULT_BUDGET, CheckConfig
from gradverify.errors import GradientMismatch, InvalidArgument, TargetContractError
from gradverify.fast_check import check_tensor_fast
from gradverify.inputs import (
    Inputs,
    batch_size,
    constant_names,
    display_name,
    empty_inputs,
    keyword_arguments,
    named_inputs,
    shifted,
)
from gradverify.outputs import Cotangent, Outputs, read_outputs
from gradverify.randomness import RandomSources, generators_in
from gradverify.results import CheckResult, Finding, Status, TensorResult, worst_status
from gradverify.state import snapshot
from gradverify.tensor_check import LossContext, TensorOutcome, TensorToCheck, check_tensor


def check(
    target: Any,
    inputs: Inputs = None,
    *,
    nondiff: Sequence[str] = (),
    params: ParamDeclaration = None,
    kwargs: Mapping[str, Any] | None = None,
    adapter: str | type[Adapter] | None = None,
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
    max_reestimate: int = 20,
    mode: str = "auto",
    directions: int = 2,
    budget: float = DEFAULT_BUDGET,
    accumulates: bool = False,
) -> CheckResult:
    """Check the analytic gradients of `target` against central differences.

    Parameters
    ----------
    target : object
        A layer (``forward``/``backward``), a network (``params``, ``loss``,
        ``gradient``), a pair ``(f_forward, f_backward)`` or ``(f, grad_f)``, or a
        loss function ``f(*inputs) -> (loss, grad)``.
    inputs : mapping of name to value, or sequence
        ``forward``'s positional arguments in order.  Float arrays are
        differentiated, integer arrays and other values are passed through.  The
        caller's arrays are never modified: the check works on copies.
    nondiff : sequence of str
        Float inputs not to differentiate (one-hot labels), and arrays the target
        holds that are constants, not weights (``"running_mean"``).
    params : sequence of str, mapping, or None
        Where the target holds its weights (``["W", "b"]``, ``["fc.W"]``), or
        ``{"W": "grad_W"}`` naming each gradient too; ``None`` discovers them.
    kwargs : mapping, optional
        Keyword arguments for every forward call (``train_flg=True``).
    adapter : str or Adapter subclass, optional
        Force an adapter instead of detecting one.
    accumulates : bool
        Declare that backward adds into its gradients, so two backward calls after
        one forward are expected to differ.
    seed, rtol, atol, max_reestimate, mode, directions, budget
        See `CheckConfig`.

    Returns
    -------
    CheckResult
        ``status`` is PASS, FAIL, INCONCLUSIVE or ERROR; ``print(result)`` shows why,
        and ``bool(result)`` is whether it passed.

    Examples
    --------
    >>> import numpy as np
    >>> from layers_under_test.reference import Affine
    >>> rng = np.random.default_rng(0)
    >>> layer = Affine(rng.standard_normal((4, 3)), rng.standard_normal(3))
    >>> check(layer, {"x": rng.standard_normal((2, 4))}).status
    <Status.PASS: 'pass'>
    """
    config = CheckConfig(
        seed=seed,
        rtol=rtol,
        atol=atol,
        max_reestimate=max_reestimate,
        mode=mode,
        directions=directions,
        budget=budget,
    )
    if not isinstance(accumulates, bool):
        raise InvalidArgument(
            f"`accumulates` must be True or False, got accumulates={accumulates!r}."
        )
    names, values = named_inputs(target, inputs)
    constants = constant_names(target, nondiff, names)
    keywords = keyword_arguments(kwargs)
    empty = empty_inputs(names, values, nondiff)
    if empty:
        name = display_name(target)
        return CheckResult(name, name, Status.ERROR, config.seed, error=empty)
    saved = snapshot(target, *values, *keywords.values())
    started = time.perf_counter()
    try:  # telling (f, grad_f) from (f_forward, f_backward) calls f: that is the target too
        view = resolve_adapter(target, values, keywords, adapter=adapter)
    except TargetRaised as raised:
        saved.restore()
        name = display_name(target)
        return CheckResult(name, name, Status.ERROR, config.seed, error=raised.describe())
    plan = _Plan(view, names, values, set(nondiff), constants, params, config, accumulates)
    try:
        found = plan.run()
        error = ""
    except TargetRaised as raised:
        found, error = _Found(), raised.describe()
    except TargetContractError as broken:
        found, error = _Found(), str(broken)
    finally:
        saved.restore()
    return CheckResult(
        target=view.name,
        label=view.label,
        status=Status.ERROR if error else found.status,
        seed=config.seed,
        tensors=tuple(found.tensors),
        forward_calls=view.forward_calls,
        backward_calls=view.backward_calls,
        seconds=time.perf_counter() - started,
        error=error,
        notes=tuple(found.notes),
        findings=tuple(found.findings),
        reproduce=f"gradverify.check(<the same {view.name}>, <same inputs>, seed={config.seed})",
        adapter=view.kind,
        undifferentiated=tuple(found.undifferentiated),
    )


def assert_gradients(target: Any, inputs: Inputs = None, **options: Any) -> CheckResult:
    """Like `check`, but raise `GradientMismatch` (an AssertionError) unless it passes.

    Returns the passing `CheckResult`.  Takes the same arguments as `check`.
    """
    __tracebackhide__ = True
    result = check(target, inputs, **options)
    if result.status is not Status.PASS:
        raise GradientMismatch(str(result), result)
    return result


@dataclass
class _Found:
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
        errors = [Status.FAIL for f in self.findings if f.severity == "error"]
        return worst_status([t.status for t in self.tensors] + errors)


@dataclass
class _Plan:
    """The state of one running check: the adapter, working copies, the cotangent."""

    view: Adapter
    names: list[str]
    originals: list[Any]
    nondiff: set[str]
    constants: list[str]  # arrays the target holds that are declared not to be weights
    declared: ParamDeclaration
    config: CheckConfig
    accumulates: bool

    def run(self) -> _Found:
        found = _Found()
        work = [private_copy(v) for v in self.originals]
        view, outputs = self._first_forward(work, found)
        computed = self._computed_precision(view, work, outputs, found)
        cotangent = outputs.cotangent(np.random.default_rng(self.config.seed))
        first = view.backward(work, cotangent.for_backward)
        slots = view.parameters(self.declared)
        found.notes += [slot.note for slot in slots if slot.note]
        gradients = Gradients(
            first.inputs,
            {s.name: first.params.get(s.name, private_copy(s.read_gradient())) for s in slots},
            first.dout_modified,
        )
        returned = (None,) * len(work) if first.returned_none else gradients.inputs
        tensors = self._input_tensors(work, returned, found)
        tensors += [
            TensorToCheck(s.name, s.grad_name, "parameter", s.array, gradients.params[s.name])
            for s in slots
        ]
        context = self._loss_context(view, work, outputs, cotangent, computed)
        uncovered = self._uncovered(view, slots, work, context, cotangent, found)
        if not tensors and not uncovered:
            raise TargetContractError(_nothing_to_check(view, self.names, found))
        self._contracts(view, work, tensors, first, gradients, cotangent, outputs, found)
        computation = numerics.precision_dtype([*context.output_dtypes])
        found.add(
            *[
                contracts.gradient_dtype(
                    t.name, t.grad_name, t.array.dtype, t.analytic, computation
                )
                for t in tensors
            ]
        )
        chosen = planning.plan(
            [t.array.size for t in tensors], planning.seconds_per_call(context.loss), self.config
        )
        context = replace(context, seconds_per_call=chosen.seconds_per_call)
        outcomes = [
            (check_tensor if full else check_tensor_fast)(t, context)
            for t, full in zip(tensors, chosen.full)
        ]
        found.tensors = _with_finding_hints(_with_swap_hints(outcomes), found.findings) + uncovered
        return found

    def _first_forward(self, work: list[Any], found: _Found) -> tuple[Adapter, Outputs]:
        """Warm up, watch for random draws and input writes, and read the centre outputs.

        The warm-up runs on other valid inputs, so that a target latching onto its
        first input holds the wrong one; it also shows whether forward draws random
        numbers (then every later call starts from the same generator states) and
        whether it writes into its inputs (then every later call gets fresh copies).
        """
        sources = RandomSources(generators_in(self.view.target))
        warm_up = shifted(work)
        if warm_up is not None:
            self.view.forward(warm_up)
        raw = self.view.forward(work)
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
            view = Guarded.around(
                self.view, before_call=sources.pin if drawn else None, copy_inputs=bool(mutated)
            )
            raw = view.forward(work)
        if drawn:
            found.notes.append(
                f"forward draws from {' and '.join(drawn)}: reset before every call, so every "
                f"evaluation sees the same random numbers"
            )
        outputs = read_outputs(raw, self.view.name)
        found.add(contracts.forward_mutation(view, self.names, mutated))
        found.add(contracts.deterministic_forward(view, work, raw, pinned=bool(drawn)))
        return view, outputs

    def _computed_precision(
        self, view: Adapter, work: list[Any], outputs: Outputs, found: _Found
    ) -> np.dtype | None:
        """The lower precision forward really computes in, if its outputs betray one."""
        computed = outputs.computed_precision()
        if computed is not None and _computed_at_a_nudge(view, work, computed) is None:
            return None  # the inputs were float32 data, the computation is not
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
        outputs: Outputs,
        found: _Found,
    ) -> None:
        probe = contracts.Probe(
            view, work, shifted(work), cotangent.for_backward, gradients, outputs.is_scalar
        )
        found.add(contracts.gradient_count(view, len(first.inputs), len(work)))
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
        scalarize, forward = cotangent.scalarize, view.forward
        return LossContext(
            loss=lambda: scalarize(forward(work)),
            changed=lambda: cotangent.changed_magnitude(forward(work)),
            output_dtypes=(*outputs.dtypes, *([computed] if computed is not None else [])),
            magnitude=cotangent.magnitude(outputs),
            config=self.config,
            batch_size=batch_size(self.originals),
            rng=np.random.default_rng([self.config.seed, 1]),
            dout=None if outputs.is_tuple else cotangent.douts[0],
        )

    def _uncovered(
        self,
        view: Adapter,
        slots: list[ParamSlot],
        work: list[Any],
        context: LossContext,
        cotangent: Cotangent,
        found: _Found,
    ) -> list[TensorResult]:
        """Arrays the target holds and forward reads that no gradient covers (INCONCLUSIVE)."""
        if any(f.name == "nondeterministic forward" for f in found.findings):
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
        return coverage.results(missing, slots, suggestions)

    def _input_tensors(
        self, work: list[Any], returned: tuple[Any, ...], found: _Found
    ) -> list[TensorToCheck]:
        if not self.view.differentiates_inputs:
            found.undifferentiated += [
                f"{n} (the network's gradient() covers params)" for n in self.names
            ]
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
                TensorToCheck(name, grad_names[position], "input", value, returned[position])
            )
        return tensors


def _kind_of(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return str(value.dtype)
    return type(value).__name__


def _computed_at_a_nudge(view: Adapter, work: list[Any], precision: np.dtype) -> np.dtype | None:
    """`Outputs.computed_precision` at inputs nudged off float32's grid.

    A float64 layer that merely copies its inputs (ReLU, pooling) returns float32
    values when its inputs came from float32 data; a nudge of 2**-40 (relative) to
    every float input tells a float32 computation from float32 data.
    """
    nudged = [
        v * (1 + 2.0**-40)
        if isinstance(v, np.ndarray) and v.dtype.itemsize > precision.itemsize
        else v
        for v in work
    ]
    return read_outputs(view.forward(nudged), view.name).computed_precision()


def _nothing_to_check(view: Adapter, names: list[str], found: _Found) -> str:
    seen = ", ".join(found.undifferentiated) or "no inputs"
    return (
        f"nothing to check for {view.label}: no float input to differentiate and no weight "
        f"found (inputs: {seen}). Integer arrays are never differentiated: pass float "
        f"arrays, or declare the weights with params=[...]."
    )


def _with_finding_hints(results: list[TensorResult], findings: list[Finding]) -> list[TensorResult]:
    """Point failing gradients without a hint of their own at a finding that explains them."""
    ignored = [f for f in findings if f.name == "dout ignored"]
    if not ignored:
        return results
    hint = "backward ignores dout (see the finding above): multiply the gradient by dout."
    return [replace(r, hint=hint) if r.status is Status.FAIL and not r.hint else r for r in results]


def _with_swap_hints(outcomes: list[TensorOutcome]) -> list[TensorResult]:
    """The results, with a hint on both of any two failing gradients that are swapped."""
    results = [o.result for o in outcomes]
    failing = [
        (i, (o.result.grad_name, o.analytic, o.numeric))
        for i, o in enumerate(outcomes)
        if o.result.status is Status.FAIL and o.analytic is not None and o.numeric is not None
    ]
    for (i, first), (j, second) in combinations(failing, 2):
        found = hints.swapped(first, second)
        if found:
            results[i] = replace(results[i], hint=found)
            results[j] = replace(results[j], hint=found)
    return results
