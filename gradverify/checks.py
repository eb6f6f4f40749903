"""The public entry points: `check` returns a verdict, `assert_gradients` raises on one.

One check: validate the arguments, snapshot the target, resolve the adapter, run
the check's steps (`run.CheckRun`), and restore the target exactly as it was,
whatever happened; everything the target raised or broke becomes an ERROR result.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from gradverify.adapters import (
    Adapter,
    ParamDeclaration,
    TargetRaised,
    resolve_adapter,
)
from gradverify.adapters.base import Wrapper, is_float_array
from gradverify.adapters.conventions import Conventions, Layout, conventions
from gradverify.adapters.foreign import on_host
from gradverify.config import DEFAULT_BUDGET, CheckConfig
from gradverify.diagnosis import diagnose, held_layers
from gradverify.errors import (
    CheckInterrupted,
    GradientMismatch,
    InvalidArgument,
    TargetContractError,
    interrupted,
)
from gradverify.inputs import (
    Inputs,
    constant_names,
    display_name,
    empty_inputs,
    keyword_arguments,
    named_inputs,
)
from gradverify.progress import watching
from gradverify.regression import (
    Compared,
    Subject,
    against_baseline,
    against_reference,
)
from gradverify.results import CheckResult, Diagnosis, Status, worst_status
from gradverify.run import CheckRun, Found
from gradverify.state import snapshot
from gradverify.trusted import resolve_reference

#: Set while checks are to give their verdict alone: a failing network's layers are then
#: not checked one by one (see `verdict_only`).
_VERDICT_ONLY: ContextVar[bool] = ContextVar("gradverify_verdict_only", default=False)


@contextlib.contextmanager
def verdict_only() -> Iterator[None]:
    """Within it, a failing network's layers are not checked alone (see `diagnosis`).

    For callers that run many checks and read only their verdicts: fuzzing's search
    and its shrinking, a sweep over seeds; and for each layer's own check inside a
    diagnosis, which must not diagnose again (a layer holding itself would recurse).
    """
    token = _VERDICT_ONLY.set(True)
    try:
        with watching(None):  # nor is their progress shown: they are parts of a whole
            yield
    finally:
        _VERDICT_ONLY.reset(token)


def check(
    target: Any,
    inputs: Inputs = None,
    *,
    nondiff: Sequence[str] = (),
    params: ParamDeclaration = None,
    kwargs: Mapping[str, Any] | None = None,
    adapter: str | type[Adapter] | Adapter | None = None,
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
    max_reestimate: int = 20,
    mode: str = "auto",
    directions: int = 2,
    budget: float = DEFAULT_BUDGET,
    workers: int = 1,
    accumulates: bool = False,
    reference: Any = None,
    baseline: str | os.PathLike[str] | None = None,
    regen: bool = False,
    methods: Mapping[str, str] | None = None,
    returns: Layout | None = None,
    optimizer: str | Sequence[str] | None = None,
    flush: str | None = None,
    backward_args: Sequence[str] | None = None,
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
    adapter : str, Adapter subclass or Adapter, optional
        Force an adapter instead of detecting one (an instance is used as it is).
    accumulates : bool
        Declare that backward adds into its gradients, so two backward calls after
        one forward are expected to differ.
    reference : object, class or str, optional
        A trusted implementation to hold forward outputs and gradients against, run
        on the same inputs with the target's weights copied into it (by name, or
        into the weight holding the same values): an object, a class (built from
        the constructor arguments the target holds under the same names), a
        shipped layer's name (``"Affine"``) or ``"MODULE:OBJECT"``.  A difference
        FAILs the check; a reference that fails its own gradient check makes it an
        ERROR instead, and a gradient the reference lacks is INCONCLUSIVE.
    baseline : path, optional
        A ``.npz`` file of the outputs and gradients a trusted run stored: compared
        with when it exists, written (and the check INCONCLUSIVE) when it does not,
        and only when the gradients pass (see `gradverify.baselines`).
    regen : bool
        Rewrite `baseline` from this run instead of comparing with it.
    methods : mapping, optional
        Other names for a layer's methods: ``{"forward": "forward_pass",
        "backward": "back_propogate"}``.
    returns : names, nested in tuples or lists, optional
        What backward returns, naming for each gradient its input or weight:
        ``("x", ["W", "b"])`` for ``return dx, [dW, db]``, ``("W", "b", "x")`` for a
        function pair's ``return dW, db, dx``.  ``(dx, [dW, db])`` and
        ``(dx, {"W": dW})`` are understood without it where the weights' shapes or
        names say which is which.
    optimizer : str or sequence of str, optional
        The attribute(s) holding the optimizer backward hands its gradients to
        (``self.W = self.W_opt.update(self.W, grad_w)``): a recording stand-in takes
        its place during the check, and the weights are left untouched.
    flush : str, optional
        The method resetting what a layer accumulates (``"flush_gradients"``), called
        before every forward.
    backward_args : sequence of str, optional
        What a function pair's backward takes, in order: ``"dout"``, ``"cache"``,
        ``"out"`` or forward's inputs by name: ``("dout", "W", "x")``.
    seed, rtol, atol, max_reestimate, mode, directions, budget, workers
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
        workers=workers,
    )
    for flag, value in (("accumulates", accumulates), ("regen", regen)):
        if not isinstance(value, bool):
            raise InvalidArgument(f"`{flag}` must be True or False, got {flag}={value!r}.")
    _check_comparison(reference, baseline, regen)
    trusted = None if reference is None else resolve_reference(reference, target)
    names, values = named_inputs(target, inputs)
    declared = conventions(methods, returns, optimizer, flush, backward_args, names)
    constants = constant_names(target, nondiff, names)
    keywords = keyword_arguments(kwargs)
    empty = empty_inputs(names, values, nondiff)
    if empty:
        name = display_name(target)
        return CheckResult(name, name, Status.ERROR, config.seed, error=empty)
    saved = snapshot(target, *values, *keywords.values())
    started = time.perf_counter()
    try:  # telling (f, grad_f) from (f_forward, f_backward) calls f: that is the target too
        view = resolve_adapter(target, values, keywords, adapter=adapter, conventions=declared)
    except TargetRaised as raised:
        saved.restore()
        name = display_name(target)
        return CheckResult(name, name, Status.ERROR, config.seed, error=raised.describe())
    except BaseException:  # Ctrl-C, a wrong declaration: restored all the same
        saved.restore()
        raise
    try:
        view, values = on_host(view, values)
    except TargetContractError as unreadable:
        saved.restore()
        return CheckResult(view.name, view.label, Status.ERROR, config.seed, error=str(unreadable))
    summed = accumulates or view.accumulates
    # what a carried state is held to: the check's own record, unless the adapter bound
    # something into the target since (an optimizer's stand-in): then a walk copying no array
    initial = snapshot(target, contents=False) if declared.optimizer else saved
    steps = CheckRun(view, names, values, set(nondiff), constants, params, config, summed, initial)
    try:
        found = steps.run()
        error = ""
    except TargetRaised as raised:
        found, error = Found(), raised.describe()
    except TargetContractError as broken:
        found, error = Found(), str(broken)
    except KeyboardInterrupt as stop:
        stopped = interrupted(stop)
        raise _so_far(stopped, view, config, started, Found(list(stopped.tensors))) from None
    finally:
        saved.restore()
    diagnosis = None
    if not error and found.status is Status.FAIL and not _VERDICT_ONLY.get():
        try:
            diagnosis = _each_layer(view, values, set(nondiff), names, config)
        except KeyboardInterrupt as stop:  # in a layer's own check: the network's is reported
            where = "while checking the network's layers alone"
            raise _so_far(interrupted(stop), view, config, started, found, where) from None
        finally:
            saved.restore()
    compared = Compared("")
    if not error and (reference is not None or baseline is not None):
        subject = Subject(view, names, values, set(nondiff), constants, params, keywords, config)
        try:
            if baseline is not None:
                passed = found.status is Status.PASS
                compared = against_baseline(subject, baseline, regen=regen, gradients_pass=passed)
            else:
                assert trusted is not None
                with watching(None):  # the reference's own check is part of this one
                    compared = against_reference(
                        subject,
                        *trusted,
                        lambda other, declared: check(
                            other,
                            inputs,
                            nondiff=nondiff,
                            kwargs=kwargs,
                            params=declared,
                            accumulates=accumulates,
                            **config.check_options(),
                        ),
                    )
        except TargetRaised as raised:
            error = raised.describe()
        except TargetContractError as broken:
            error = str(broken)
        except KeyboardInterrupt as stop:
            where = "while holding it against the " + ("baseline" if baseline else "reference")
            raise _so_far(interrupted(stop), view, config, started, found, where) from None
        finally:
            saved.restore()
        error = error or compared.error
    statuses = [found.status, *(c.status for c in compared.comparisons)]
    return CheckResult(
        target=view.name,
        label=view.label,
        status=Status.ERROR if error else worst_status(statuses),
        seed=config.seed,
        tensors=tuple(found.tensors),
        forward_calls=view.forward_calls,
        backward_calls=view.backward_calls,
        seconds=time.perf_counter() - started,
        error=error,
        notes=tuple(found.notes),
        findings=tuple(found.findings),
        reproduce=f"gradverify.check(<the same {view.name}>, <same inputs>, seed={config.seed}"
        f"{_given(config, nondiff, params, keywords, accumulates, declared)}"
        f"{_held_against(reference, baseline)})",
        adapter=_kind(view),
        undifferentiated=tuple(found.undifferentiated),
        against=compared.against,
        trusted="" if not compared.against else "baseline" if baseline is not None else "reference",
        comparisons=compared.comparisons,
        diagnosis=diagnosis,
    )


def _so_far(
    stopped: CheckInterrupted,
    view: Adapter,
    config: CheckConfig,
    started: float,
    found: Found,
    where: str = "",
) -> CheckInterrupted:
    """`stopped`, carrying this check as far as it went: INCONCLUSIVE whatever it shows,
    since the rest was not seen.  What a check inside this one (a network's layer, the
    reference) had put there is replaced: the check the caller asked for is reported."""
    done = ", ".join(t.grad_name for t in found.tensors) or "none"
    stopped.tensors = list(found.tensors)
    stopped.result = CheckResult(
        target=view.name,
        label=view.label,
        status=Status.INCONCLUSIVE,
        seed=config.seed,
        tensors=tuple(found.tensors),
        forward_calls=view.forward_calls,
        backward_calls=view.backward_calls,
        seconds=time.perf_counter() - started,
        notes=(
            f"interrupted{' ' + where if where else ''} after {view.forward_calls:,} forward "
            f"calls: gradients reached: {done}; the target is restored",
            *found.notes,
        ),
        findings=tuple(found.findings),
        undifferentiated=tuple(found.undifferentiated),
        adapter=_kind(view),
    )
    return stopped


def _each_layer(
    view: Adapter,
    values: list[Any],
    nondiff: set[str],
    names: list[str],
    config: CheckConfig,
) -> Diagnosis | None:
    """A failing network's layers, each checked alone on its inputs (see `diagnosis`); a
    layer's own check diagnoses no further.  A layer that adds into its stored gradients
    is found by the check's own contract and left undecided, whatever the network
    declared (`accumulates` says the network's gradient() accumulates, not its layers)."""
    layers = held_layers(view.target)
    if not layers:
        return None
    # a layer-like target's forward is what its backward differentiates; a network's
    # gradient() runs a forward pass of its own, which loss() (what the numbers
    # differentiate) may not
    passes: dict[str, Callable[[list[Any]], Any]] = {f"{view.name}.forward": view.forward}
    if not view.takes_cotangent:
        passes = {"loss()": view.forward, "gradient()": lambda work: view.backward(work, None)}
    roles = [
        "labels" if name in nondiff else "data" if is_float_array(value) else "other"
        for name, value in zip(names, values)
    ]
    with verdict_only():
        return diagnose(
            view.name,
            layers,
            passes,
            values,
            roles,
            lambda layer, args, kwargs, nondiff, budget: check(
                layer,
                args,
                kwargs=kwargs,
                nondiff=nondiff,
                **(config.check_options() | {"budget": budget}),
            ),
            lambda layer, args: named_inputs(layer, args)[0],
            config.budget,
        )


def _kind(view: Adapter) -> str:
    """The kind of adapter that reads the target (a wrapper's is the one it wraps)."""
    while isinstance(view, Wrapper):
        view = view.inner
    return view.kind


def _given(
    config: CheckConfig,
    nondiff: Sequence[str],
    params: ParamDeclaration,
    keywords: Mapping[str, Any],
    accumulates: bool,
    declared: Conventions,
) -> str:
    """The options of the reproduce line that differ from the defaults, as given; keyword
    arguments that are not plain literals (arrays) are shown as ``<the same kwargs>``."""
    defaults = CheckConfig().check_options()
    plain = all(isinstance(v, (bool, int, float, str)) or v is None for v in keywords.values())
    shown = {
        "nondiff": repr(list(nondiff)) if nondiff else None,
        "params": None if params is None else repr(params),
        "kwargs": (repr(dict(keywords)) if plain else "<the same kwargs>") if keywords else None,
        **{
            k: repr(v)
            for k, v in config.check_options().items()
            if k not in ("seed", "workers") and v != defaults[k]  # workers: the same numbers
        },
        "accumulates": "True" if accumulates else None,
        "methods": repr(dict(declared.methods)) if declared.methods else None,
        "returns": None if declared.returns is None else repr(declared.returns),
        "optimizer": repr(list(declared.optimizer)) if declared.optimizer else None,
        "flush": None if declared.flush is None else repr(declared.flush),
        "backward_args": None if declared.backward_args is None else repr(declared.backward_args),
    }
    return "".join(f", {name}={text}" for name, text in shown.items() if text is not None)


def _held_against(reference: Any, baseline: Any) -> str:
    """The comparison's argument for the reproduce line."""
    if baseline is not None:
        return f", baseline={os.fspath(baseline)!r}"
    if reference is None:
        return ""
    if isinstance(reference, str):
        return f", reference={reference!r}"
    return f", reference=<the same {display_name(reference)}>"


def _check_comparison(reference: Any, baseline: Any, regen: bool) -> None:
    if reference is not None and baseline is not None:
        raise InvalidArgument(
            "pass `reference` or `baseline`, not both: a check is held against one trusted "
            "source (check twice to compare with both)."
        )
    example = "pass e.g. baseline='tests/baselines/affine.npz'"
    if baseline is not None and not isinstance(baseline, (str, os.PathLike)):
        raise InvalidArgument(
            f"`baseline` must be a file path, got baseline={baseline!r}; {example}."
        )
    path = None if baseline is None else os.fspath(baseline)
    if path is not None and (not path or "\0" in path or os.path.isdir(path)):
        what = "a folder" if path and os.path.isdir(path) else "no file name"
        raise InvalidArgument(
            f"`baseline` must name a file, got baseline={path!r} ({what}); {example}."
        )
    if regen and baseline is None:
        raise InvalidArgument("`regen=True` rewrites a baseline: pass baseline=PATH with it.")


def assert_gradients(target: Any, inputs: Inputs = None, **options: Any) -> CheckResult:
    """Like `check`, but raise `GradientMismatch` (an AssertionError) unless it passes.

    Returns the passing `CheckResult`.  Takes the same arguments as `check`.
    """
    __tracebackhide__ = True
    result = check(target, inputs, **options)
    if result.status is not Status.PASS:
        raise GradientMismatch(str(result), result)
    return result
