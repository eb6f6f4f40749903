"""Which layer of a failing network is wrong: each layer checked alone on the inputs it saw.

A network's gradient check can only say that ``W1`` and ``b1`` disagree.  The bug may be
in ``Affine1``, in the activation above it (a parameter-free layer shows up only in the
weights upstream of it), in the loss layer, or in the network's own code that chains
the backward calls.  A network that holds its layers as attributes — a ``layers``
mapping or list, a ``lastLayer``, a ``loss_layer``, an ``fc_out`` — lets the check tell
these apart: a pass of ``gradient()`` (the forward pass it differentiates, then its
backward calls) with every layer's ``forward`` and ``backward`` recorded gives each
layer its own inputs, and each layer is then checked alone on them; a pass of
``loss()`` shows whether it runs the same forward pass.  A layer whose own
check fails is the faulty one; when every layer passes alone, the fault is in the
network's own code, and what the recording saw says where: a layer whose backward is
never called, one object whose forward runs again on other inputs, a ``loss()`` that runs another
forward pass than ``gradient()`` (a train flag).  Networks that hold no layer objects
keep the per-tensor report.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gradverify.adapters.base import TargetRaised, private_copy
from gradverify.adapters.foreign import is_float_like
from gradverify.errors import InvalidArgument, TargetContractError
from gradverify.objects import is_foreign_array
from gradverify.results import CheckResult, Diagnosis, FindingKind, LayerVerdict, Status

#: Checks one layer on recorded inputs: (layer, positional inputs, kwargs, nondiff names,
#: its share of the time budget in seconds).
CheckLayer = Callable[[Any, list[Any], dict[str, Any], list[str], float], CheckResult]


@dataclass(frozen=True)
class HeldLayer:
    """One layer object and every place the network holds it (``layers['Relu1']``)."""

    names: tuple[str, ...]  # what the report calls it: "Relu1", "layers[2]", "lastLayer"
    paths: tuple[str, ...]  # where: "layers['Relu1']", "lastLayer"
    layer: Any

    @property
    def name(self) -> str:
        return " = ".join(self.names)


@dataclass
class Call:
    """The first forward call of a layer in the recorded pass: private copies of its
    arguments, and which of them are data and which labels."""

    args: list[Any]
    kwargs: dict[str, Any]
    flowing: list[int]  # positions holding data: the network's input, or a layer's output
    labels: list[int]  # positions holding one of the network's nondiff inputs
    # what the arguments were, beyond arrays: told apart between two passes (train flags)
    switches: dict[str, Any]


@dataclass
class Recording:
    """What one pass of the network showed about each layer object, by ``id``."""

    calls: dict[int, Call] = field(default_factory=dict)  # in the order of first calls
    #: layers whose forward ran again on other inputs in the same pass
    called_again: set[int] = field(default_factory=set)
    backwards: dict[int, int] = field(default_factory=dict)  # backward calls per layer
    returned: dict[int, int] = field(default_factory=dict)  # gradients its backward returned
    #: layers whose backward was handed something their forward returned (a cache)
    takes_cache: set[int] = field(default_factory=set)
    outputs: dict[int, list[Any]] = field(default_factory=dict)  # what each forward returned
    #: the arrays data flows through: the network's data inputs, then every layer's output
    flowing: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)  # the network's nondiff inputs


def held_layers(network: Any) -> list[HeldLayer]:
    """The layer objects the network holds as attributes, directly or in a dict, list or
    tuple, in attribute order: only instances with ``forward`` and ``backward`` count,
    never the network itself.  One object held in several places is one layer with
    several names."""
    found: dict[int, HeldLayer] = {id(network): HeldLayer((), (), network)}
    for attribute, value in _attributes(network):
        if isinstance(value, Mapping):
            entries = [(str(k), f"{attribute}[{k!r}]", v) for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            entries = [(f"{attribute}[{i}]", f"{attribute}[{i}]", v) for i, v in enumerate(value)]
        else:
            entries = [(attribute, attribute, value)]
        for name, path, layer in entries:
            if not _is_layer(layer):
                continue
            held = found.get(id(layer))
            if held is not None and not held.names:
                continue  # the network holding itself
            found[id(layer)] = (
                HeldLayer((name,), (path,), layer)
                if held is None
                else HeldLayer((*held.names, name), (*held.paths, path), layer)
            )
    return [h for h in found.values() if h.names]


def _attributes(network: Any) -> list[tuple[str, Any]]:
    own = getattr(network, "__dict__", None)
    return list(own.items()) if isinstance(own, dict) else []


def _is_layer(value: Any) -> bool:
    """An instance whose class has ``forward`` and ``backward`` (read from the class: an
    object's own ``__getattr__`` may raise anything)."""
    kind = type(value)
    return (
        not isinstance(value, type)
        and callable(getattr(kind, "forward", None))
        and callable(getattr(kind, "backward", None))
    )


def record(
    layers: list[HeldLayer],
    run: Callable[[], Any],
    data: list[Any],
    labels: list[Any] | None = None,
) -> Recording:
    """Run `run` once with every layer's ``forward`` and ``backward`` recorded; every layer
    gets its own methods back.  `data` and `labels` are the network's inputs that carry
    data and labels: an argument sharing memory with data or with an array a layer's
    forward returned flows through the network; one sharing memory with labels is one.
    A layer that cannot take an attribute (``__slots__`` without ``__dict__``), or whose
    methods the network bound before the check, is not seen."""
    seen = Recording(
        flowing=[a for a in data if _is_array(a)],
        labels=[a for a in labels or [] if _is_array(a)],
    )
    undo: list[Callable[[], None]] = []
    try:
        for held in layers:
            undo += _shadow(held.layer, "forward", _recording_forward(held.layer, seen))
            undo += _shadow(held.layer, "backward", _recording_backward(held.layer, seen))
        run()
    finally:
        for restore in reversed(undo):
            restore()
    return seen


def _shadow(layer: Any, method: str, wrap: Callable[..., Any]) -> list[Callable[[], None]]:
    """Put `wrap` of ``layer.<method>`` in the instance's ``__dict__`` (bypassing a
    ``__setattr__`` of its own); returns how to undo it, or nothing if it cannot."""
    own = getattr(layer, "__dict__", None)
    if not isinstance(own, dict):
        return []
    original = getattr(layer, method)
    had, previous = method in own, own.get(method)
    own[method] = functools.wraps(original)(wrap(original))

    def undo() -> None:
        if had:
            own[method] = previous
        else:
            own.pop(method, None)

    return [undo]


def _recording_forward(layer: Any, seen: Recording) -> Callable[..., Any]:
    key = id(layer)

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            first = seen.calls.get(key)
            if first is not None and not _same_arguments(first, args):
                seen.called_again.add(key)
            if first is None:
                seen.calls[key] = Call(
                    [private_copy(a) for a in args],
                    {k: private_copy(v) for k, v in kwargs.items()},
                    [i for i, a in enumerate(args) if _shares(a, seen.flowing)],
                    [i for i, a in enumerate(args) if _shares(a, seen.labels)],
                    {
                        **{_parameter(original, i): a for i, a in enumerate(args) if _is_switch(a)},
                        **{k: v for k, v in kwargs.items() if _is_switch(v)},
                    },
                )
            returned = original(*args, **kwargs)
            results = list(returned) if isinstance(returned, tuple) else [returned]
            seen.outputs.setdefault(key, results)
            seen.flowing += [r for r in results if _is_array(r)]
            return returned

        return forward

    return wrap


def _recording_backward(layer: Any, seen: Recording) -> Callable[..., Any]:
    key = id(layer)

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def backward(*args: Any, **kwargs: Any) -> Any:
            seen.backwards[key] = seen.backwards.get(key, 0) + 1
            outputs = seen.outputs.get(key, [])[1:]  # a cache comes after the output
            if any(a is o for a in [*args, *kwargs.values()] for o in outputs):
                seen.takes_cache.add(key)
            returned = original(*args, **kwargs)
            count = len(returned) if isinstance(returned, (tuple, list)) else returned is not None
            seen.returned.setdefault(key, int(count))
            return returned

        return backward

    return wrap


def _is_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) or is_foreign_array(value)


def _shares(value: Any, arrays: list[Any]) -> bool:
    """Whether `value` is one of `arrays` or a view of one (for another library's arrays,
    which numpy cannot look inside: the very object)."""
    if not isinstance(value, np.ndarray):
        return any(value is a for a in arrays)
    return any(isinstance(a, np.ndarray) and np.shares_memory(value, a) for a in arrays)


def _same_arguments(call: Call, args: tuple[Any, ...]) -> bool:
    """Whether `args` are the arguments of the recorded first call again (a network that
    runs its forward pass twice), not a second use of one layer object."""
    return len(args) == len(call.args) and all(_equal(a, b) for a, b in zip(args, call.args))


def _equal(first: Any, second: Any) -> bool:
    if isinstance(first, np.ndarray) or isinstance(second, np.ndarray):
        same_shape = np.shape(first) == np.shape(second)
        return same_shape and bool(np.array_equal(first, second))
    try:
        return bool(first is second or first == second)
    except Exception:  # an object whose == raises or is not a truth value
        return False


def _parameter(function: Callable[..., Any], position: int) -> str:
    """The name of `function`'s positional parameter at `position`, or ``argument N``."""
    try:
        names = list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        names = []
    return names[position] if position < len(names) else f"argument {position}"


def _is_switch(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str)) or value is None


def diagnose(
    network_name: str,
    layers: list[HeldLayer],
    passes: Mapping[str, Callable[[list[Any]], Any]],
    values: list[Any],
    roles: list[str],
    check_layer: CheckLayer,
    names_of: Callable[[Any, list[Any]], list[str]],
    budget: float,
) -> Diagnosis:
    """Every layer's verdict, checked alone on the inputs it saw, and what the passes showed.

    `passes` run the network on its inputs, by name, the one its backward differentiates
    last (``"gradient()"``, after an optional ``"loss()"``); each gets fresh copies of
    `values`, whose `roles` say which carry ``"data"`` and which ``"labels"``.  Layers
    are checked on the last pass's inputs; one that got other switches (``train_flg``)
    in two passes is noted.  `names_of` names a layer's positional inputs.  The layers
    share one time `budget`: each gets what is left of it divided by the layers still to
    check, so the diagnosis costs at most about one more budget.
    """

    def recorded_pass(run: Callable[[list[Any]], Any]) -> Recording:
        work = [private_copy(v) for v in values]
        data = [w for w, role in zip(work, roles) if role == "data"]
        labels = [w for w, role in zip(work, roles) if role == "labels"]
        return record(layers, lambda: run(work), data, labels)

    try:
        recorded = {name: recorded_pass(run) for name, run in passes.items()}
    except TargetRaised as raised:
        return Diagnosis(notes=(f"the recorded pass raised: {raised.describe()}",))
    except TargetContractError as broken:
        return Diagnosis(notes=(f"the recorded pass broke the contract: {broken}",))
    *_, last = recorded.values()
    notes, switched = _pass_notes(layers, recorded)
    deadline = time.perf_counter() + budget
    verdicts: list[LayerVerdict] = []
    for position, held in enumerate(_in_call_order(layers, last)):
        share = max(deadline - time.perf_counter(), 0.0) / (len(layers) - position)
        verdicts.append(_verdict(network_name, held, last, check_layer, names_of, share))
    return Diagnosis(tuple(verdicts), tuple(notes), switched)


def _in_call_order(layers: list[HeldLayer], seen: Recording) -> list[HeldLayer]:
    called = [h for h in layers if id(h.layer) in seen.calls]
    order = {key: i for i, key in enumerate(seen.calls)}
    return sorted(called, key=lambda h: order[id(h.layer)]) + [
        h for h in layers if id(h.layer) not in seen.calls
    ]


def _verdict(
    network_name: str,
    held: HeldLayer,
    seen: Recording,
    check_layer: CheckLayer,
    names_of: Callable[[Any, list[Any]], list[str]],
    budget: float,
) -> LayerVerdict:
    class_name = type(held.layer).__name__

    def undecided(why: str) -> LayerVerdict:
        path = held.paths[0]
        return LayerVerdict(held.name, path, class_name, Status.INCONCLUSIVE, problem=why)

    key = id(held.layer)
    call = seen.calls.get(key)
    if call is None:
        if not isinstance(getattr(held.layer, "__dict__", None), dict):
            return undecided("its forward cannot be recorded (an object without __dict__)")
        return undecided(
            f"its forward was not seen in {network_name}'s pass: not called, or called "
            f"through a method bound before the check"
        )
    if key in seen.takes_cache:
        return undecided(
            "its backward is handed what its forward returned (a cache): check it as a "
            "function pair (forward, backward)"
        )
    try:
        names = names_of(held.layer, call.args)
        differentiated = _differentiated(call, seen.returned.get(key))
        nondiff = [name for i, name in enumerate(names) if i not in differentiated]
        result = check_layer(held.layer, call.args, call.kwargs, nondiff, budget)
    except InvalidArgument as refused:  # e.g. an input it saw was not finite
        return undecided(f"could not be checked alone: {refused}")
    kinds = {f.kind for f in result.findings}
    if FindingKind.TOO_MANY_GRADIENTS in kinds:
        return undecided(
            "its backward returns more gradients than its forward takes inputs (dx, dW, "
            "db?): weight gradients are read from attributes, so it cannot be checked alone"
        )
    if FindingKind.BACKWARD_NOT_REPEATABLE in kinds:
        return undecided(
            "its backward adds into its stored gradients: right only where the network "
            "resets them before each backward, which a check of the layer alone cannot see"
        )
    alone = f"gradverify.check(<the same {result.target}>, <same inputs>"
    inside = (
        f"gradverify.check(<the same {network_name}>.{held.paths[0]}, <the inputs it saw in "
        f"the forward pass>"
    )
    result = replace(
        result,
        label=f"{held.name} ({result.label})",
        reproduce=result.reproduce.replace(alone, inside, 1),
    )
    return LayerVerdict(held.name, held.paths[0], class_name, result.status, result)


def _differentiated(call: Call, returned: int | None) -> list[int]:
    """The positions of a layer's arguments to differentiate: its float arrays that are not
    the network's labels; when its backward returned fewer gradients than that (a loss
    layer taking labels the network built), the ones data flows through, if they match."""
    floats = [i for i, a in enumerate(call.args) if is_float_like(a) and i not in call.labels]
    flowing = [i for i in floats if i in call.flowing]
    if returned is not None and len(flowing) == returned < len(floats):
        return flowing
    return floats


def _pass_notes(
    layers: list[HeldLayer], recorded: Mapping[str, Recording]
) -> tuple[list[str], bool]:
    """What the recorded passes show about the network's own code, and whether two passes
    gave a layer different switches (a train flag)."""
    (*earlier, last_name), last = list(recorded), list(recorded.values())[-1]
    order = list(last.calls)
    notes = []
    for held in layers:
        key = id(held.layer)
        if key in last.called_again:
            notes.append(
                f"{held.name}'s forward runs again on other inputs in one pass: one object "
                f"keeps one input, so its backward sees only the last"
            )
        # skipped in backward: its forward ran, and the backward chain went on past it to
        # a layer whose forward ran before it
        before = order[: order.index(key)] if key in order else []
        if (
            key in order
            and not last.backwards.get(key)
            and any(last.backwards.get(b) for b in before)
        ):
            notes.append(f"{last_name} calls {held.name}'s forward but never its backward")
    switched = []
    for name in earlier:
        for held in layers:
            first, then = recorded[name].calls.get(id(held.layer)), last.calls.get(id(held.layer))
            if first is not None and then is not None and first.switches != then.switches:
                switched.append(f"{held.name} ({_switches(first)} / {_switches(then)})")
        if switched:
            notes.append(
                f"{name} and {last_name} run different forward passes: {', '.join(switched)}; "
                f"pass the switch to both, e.g. kwargs={{'train_flg': True}}"
            )
    return notes, bool(switched)


def _switches(call: Call) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in call.switches.items()) or "no switch"
