"""Which layer of a failing network is wrong: each layer checked alone on the inputs it saw.

A network's gradient check can only say that ``W1`` and ``b1`` disagree.  The bug may be
in ``Affine1``, in the activation above it (a parameter-free layer shows up only in the
weights upstream of it), in the loss layer, or in the network's own code that chains
the backward calls.  A network that holds its layers as attributes — a ``layers``
mapping or list, a ``lastLayer``, a ``loss_layer``, an ``fc_out`` — lets the check tell
these apart: one pass of ``gradient()`` (the forward pass it differentiates, then its
backward calls) with every layer's ``forward`` and ``backward`` recorded gives each
layer its own inputs, and each layer is then checked alone on them.  A layer whose own
check fails is the faulty one; when every layer passes alone, the fault is in the
network's own code, and what the recording saw says where: a layer whose backward is
never called, one object whose forward runs twice, a ``loss()`` that runs another
forward pass than ``gradient()`` (a train flag).  Networks that hold no layer objects
keep the per-tensor report.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gradverify.adapters.base import TargetRaised, private_copy
from gradverify.errors import InvalidArgument
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
    arguments, and the positions that carry data flowing from the network's input."""

    args: list[Any]
    kwargs: dict[str, Any]
    flowing: list[int]
    # what the arguments were, beyond arrays: told apart between two passes (train flags)
    switches: dict[str, Any]


@dataclass
class Recording:
    """What one pass of the network showed about each layer object, by ``id``."""

    calls: dict[int, Call] = field(default_factory=dict)
    forwards: dict[int, int] = field(default_factory=dict)  # forward calls per layer
    backwards: dict[int, int] = field(default_factory=dict)  # backward calls per layer
    #: layers whose backward was handed something their forward returned (a cache)
    takes_cache: set[int] = field(default_factory=set)
    outputs: dict[int, list[Any]] = field(default_factory=dict)  # what each forward returned
    produced: list[np.ndarray] = field(default_factory=list)  # every array a forward returned


def held_layers(network: Any) -> list[HeldLayer]:
    """The layer objects the network holds as attributes, directly or in a dict, list or
    tuple, in attribute order: only instances with ``forward`` and ``backward`` count.
    One object held in several places is one layer with several names."""
    found: dict[int, HeldLayer] = {}
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
            found[id(layer)] = (
                HeldLayer((name,), (path,), layer)
                if held is None
                else HeldLayer((*held.names, name), (*held.paths, path), layer)
            )
    return list(found.values())


def _attributes(network: Any) -> list[tuple[str, Any]]:
    own = getattr(network, "__dict__", None)
    return list(own.items()) if isinstance(own, dict) else []


def _is_layer(value: Any) -> bool:
    return (
        not isinstance(value, type)
        and callable(getattr(value, "forward", None))
        and callable(getattr(value, "backward", None))
    )


def record(layers: list[HeldLayer], run: Callable[[], Any], inputs: list[Any]) -> Recording:
    """Run `run` once with every layer's ``forward`` and ``backward`` recorded; every layer
    gets its own methods back.  `inputs` are the network's inputs that carry data (not
    labels): an argument sharing memory with one of them, or with an array a layer's
    forward returned, is data flowing through the network; any other is a constant.
    A layer that cannot take an attribute (``__slots__`` without ``__dict__``), or whose
    methods the network bound before the check, is not seen."""
    seen = Recording(produced=[a for a in inputs if isinstance(a, np.ndarray)])
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
    own[method] = wrap(original)

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
            seen.forwards[key] = seen.forwards.get(key, 0) + 1
            if key not in seen.calls:
                seen.calls[key] = Call(
                    [private_copy(a) for a in args],
                    {k: private_copy(v) for k, v in kwargs.items()},
                    [i for i, a in enumerate(args) if _flows(a, seen.produced)],
                    {
                        **{_parameter(original, i): a for i, a in enumerate(args) if _is_switch(a)},
                        **{k: v for k, v in kwargs.items() if _is_switch(v)},
                    },
                )
            returned = original(*args, **kwargs)
            results = list(returned) if isinstance(returned, tuple) else [returned]
            seen.outputs.setdefault(key, results)
            seen.produced += [r for r in results if isinstance(r, np.ndarray)]
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
            return original(*args, **kwargs)

        return backward

    return wrap


def _flows(value: Any, produced: list[np.ndarray]) -> bool:
    return isinstance(value, np.ndarray) and any(np.shares_memory(value, p) for p in produced)


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
    data: list[bool],
    check_layer: CheckLayer,
    names_of: Callable[[Any, list[Any]], list[str]],
    budget: float,
) -> Diagnosis:
    """Every layer's verdict, checked alone on the inputs it saw, and what the passes showed.

    `passes` run the network on its inputs, by name, the one its backward differentiates
    last (``"gradient()"``, after an optional ``"loss()"``); each gets fresh copies of
    `values`, of which `data` marks those that carry data (not labels).  Layers are
    checked on the last pass's inputs; one that got other switches (``train_flg``) in
    two passes is noted.  `names_of` names a layer's positional inputs.  The layers share
    one time `budget`: each gets what is left of it divided by the layers still to
    check, so the diagnosis costs at most about one more budget.
    """

    def recorded_pass(run: Callable[[list[Any]], Any]) -> Recording:
        work = [private_copy(v) for v in values]
        return record(layers, lambda: run(work), [w for w, d in zip(work, data) if d])

    try:
        recorded = {name: recorded_pass(run) for name, run in passes.items()}
    except TargetRaised as raised:
        why = f"the recorded pass raised: {raised.describe()}"
        return Diagnosis(notes=(why,))
    *_, last = recorded.values()
    notes = _pass_notes(network_name, layers, recorded)
    deadline = time.perf_counter() + budget
    verdicts: list[LayerVerdict] = []
    for position, held in enumerate(_in_call_order(layers, last)):
        share = max(deadline - time.perf_counter(), 0.0) / (len(layers) - position)
        verdicts.append(_verdict(network_name, held, last, check_layer, names_of, share))
    return Diagnosis(tuple(verdicts), tuple(notes))


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
    kind = type(held.layer).__name__

    def undecided(why: str) -> LayerVerdict:
        return LayerVerdict(held.name, held.paths[0], kind, Status.INCONCLUSIVE, problem=why)

    call = seen.calls.get(id(held.layer))
    if call is None:
        if not isinstance(getattr(held.layer, "__dict__", None), dict):
            return undecided("its forward cannot be recorded (an object without __dict__)")
        return undecided(
            f"its forward was not seen in {network_name}'s pass: not called, or called "
            f"through a method bound before the check"
        )
    if id(held.layer) in seen.takes_cache:
        return undecided(
            "its backward is handed what its forward returned (a cache): check it as a "
            "function pair (forward, backward)"
        )
    try:
        names = names_of(held.layer, call.args)
        nondiff = [name for i, name in enumerate(names) if i not in call.flowing]
        result = check_layer(held.layer, call.args, call.kwargs, nondiff, budget)
    except InvalidArgument as refused:  # e.g. an input it saw was not finite
        return undecided(f"could not be checked alone: {refused}")
    if any(f.kind is FindingKind.TOO_MANY_GRADIENTS for f in result.findings):
        return undecided(
            "its backward returns more gradients than its forward takes inputs (dx, dW, "
            "db?): weight gradients are read from attributes, so it cannot be checked alone"
        )
    result = replace(
        result,
        label=f"{held.name} ({result.label})",
        reproduce=f"gradverify.check(<the same {network_name}>.{held.paths[0]}, <the inputs "
        f"it saw in the forward pass>, seed={result.seed})",
    )
    return LayerVerdict(held.name, held.paths[0], kind, result.status, result)


def _pass_notes(
    network_name: str, layers: list[HeldLayer], recorded: Mapping[str, Recording]
) -> list[str]:
    """What the recorded passes show about the network's own code."""
    (*earlier, last_name), last = list(recorded), list(recorded.values())[-1]
    notes = []
    for held in layers:
        key = id(held.layer)
        if last.forwards.get(key, 0) > 1:
            notes.append(
                f"{held.name}'s forward runs {last.forwards[key]} times in one pass: one "
                f"object caches one input, so its backward sees only the last"
            )
        if last.forwards.get(key) and last.backwards and not last.backwards.get(key):
            notes.append(f"{last_name} calls {held.name}'s forward but never its backward")
        for name in earlier:
            first, then = recorded[name].calls.get(key), last.calls.get(key)
            if first is not None and then is not None and first.switches != then.switches:
                notes.append(
                    f"{held.name} got {_switches(first)} from {name} but {_switches(then)} "
                    f"from {last_name}: the two run different forward passes (pass the same "
                    f"switch to both, e.g. kwargs={{'train_flg': True}})"
                )
    return notes


def _switches(call: Call) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in call.switches.items()) or "no switch"
