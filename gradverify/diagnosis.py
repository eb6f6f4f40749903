"""Which layer of a failing network is wrong: each layer checked alone on the inputs it saw.

A network's gradient check can only say that ``W1`` and ``b1`` disagree.  The bug may be
in ``Affine1``, in the activation above it (a parameter-free layer shows up only in the
weights upstream of it), in the loss layer, or in the network's own code that chains
the backward calls.  A network that keeps its layers in a ``layers`` mapping or list
(and its loss layer in ``lastLayer``, as the textbook's networks do) lets the check tell
these apart: one forward pass with every layer's ``forward`` recorded gives each layer
its own inputs, and each layer is then checked alone on them.  A layer whose own check
fails is the faulty one; when every layer passes alone, the fault is in the network's
code.  Networks without such a container keep the per-tensor report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from gradverify.adapters.base import TargetRaised, private_copy
from gradverify.errors import InvalidArgument
from gradverify.results import CheckResult, LayerVerdict, Status

#: Where networks in the textbook's style keep their loss layer, after ``layers``.
_LOSS_LAYER_ATTRIBUTES = ("lastLayer", "last_layer")

#: Checks one layer on recorded inputs: (layer, positional inputs, kwargs, nondiff names,
#: its share of the time budget in seconds).
CheckLayer = Callable[[Any, list[Any], dict[str, Any], list[str], float], CheckResult]


@dataclass(frozen=True)
class HeldLayer:
    """One layer and where the network holds it (``layers['Relu1']``, ``lastLayer``)."""

    name: str  # what the report calls it: the mapping key, "layers[2]", "lastLayer"
    path: str
    layer: Any


@dataclass
class Call:
    """The arguments of a layer's first forward call in the recorded pass (private copies)."""

    args: list[Any]
    kwargs: dict[str, Any]
    passed_through: list[int]  # positions holding one of the network's nondiff inputs


def held_layers(network: Any) -> list[HeldLayer]:
    """The network's layers in forward order: its ``layers`` mapping or list, then its loss
    layer; only objects with ``forward`` and ``backward`` count.  Empty when it keeps none."""
    container = getattr(network, "layers", None)
    if isinstance(container, Mapping):
        entries = [(str(key), f"layers[{key!r}]", value) for key, value in container.items()]
    elif isinstance(container, (list, tuple)):
        entries = [(f"layers[{i}]", f"layers[{i}]", value) for i, value in enumerate(container)]
    else:
        return []
    for attribute in _LOSS_LAYER_ATTRIBUTES:
        loss_layer = getattr(network, attribute, None)
        if loss_layer is not None:
            entries.append((attribute, attribute, loss_layer))
            break
    return [HeldLayer(name, path, value) for name, path, value in entries if _is_layer(value)]


def _is_layer(value: Any) -> bool:
    return callable(getattr(value, "forward", None)) and callable(getattr(value, "backward", None))


def record_calls(
    layers: list[HeldLayer], forward: Callable[[], Any], passed_through: list[Any]
) -> dict[int, Call]:
    """Run `forward` once with every layer's ``forward`` recorded; the first call of each
    layer object, by ``id``.  A layer whose instance cannot take an attribute (``__slots__``
    without ``__dict__``) is not recorded.  Every layer gets its own ``forward`` back."""
    calls: dict[int, Call] = {}
    undo = []
    try:
        for held in {id(h.layer): h for h in layers}.values():
            undo.append(_record_into(held.layer, calls, passed_through))
        forward()
    finally:
        for uninstall in reversed(undo):
            uninstall()
    return calls


def _record_into(
    layer: Any, calls: dict[int, Call], passed_through: list[Any]
) -> Callable[[], None]:
    """Shadow ``layer.forward`` with an instance attribute that records, then calls it."""
    own = getattr(layer, "__dict__", None)
    if not isinstance(own, dict):
        return lambda: None
    original = layer.forward
    had, previous = "forward" in own, own.get("forward")

    def recording(*args: Any, **kwargs: Any) -> Any:
        if id(layer) not in calls:
            calls[id(layer)] = Call(
                [private_copy(a) for a in args],
                {k: private_copy(v) for k, v in kwargs.items()},
                [i for i, a in enumerate(args) if any(a is p for p in passed_through)],
            )
        return original(*args, **kwargs)

    own["forward"] = recording  # into __dict__: a __setattr__ of the layer's own is bypassed

    def uninstall() -> None:
        if had:
            own["forward"] = previous
        else:
            own.pop("forward", None)

    return uninstall


def check_each_layer(
    network_name: str,
    layers: list[HeldLayer],
    forward: Callable[[], Any],
    passed_through: list[Any],
    check_layer: CheckLayer,
    names_of: Callable[[Any, list[Any]], list[str]],
    budget: float,
) -> tuple[LayerVerdict, ...]:
    """Every layer's verdict, checked alone on the inputs it saw in one forward pass.

    `forward` runs the network's forward pass on the check's inputs; `passed_through`
    are the network's inputs declared nondiff (labels), which stay nondiff where a layer
    receives them; `names_of` names a layer's positional inputs.  The layers share one
    time `budget`: each gets what is left of it divided by the layers still to check, so
    the diagnosis costs at most about one more budget, however many layers there are.
    """
    deadline = time.perf_counter() + budget
    try:
        calls = record_calls(layers, forward, passed_through)
    except TargetRaised as raised:
        why = f"the forward pass that records each layer's inputs raised: {raised.describe()}"
        return tuple(
            LayerVerdict(h.name, h.path, _kind(h), Status.ERROR, problem=why) for h in layers
        )
    verdicts: list[LayerVerdict] = []
    for position, held in enumerate(layers):
        call = calls.get(id(held.layer))
        if call is None:
            verdicts.append(_not_recorded(network_name, held))
            continue
        try:
            names = names_of(held.layer, call.args)
            nondiff = [names[i] for i in call.passed_through if i < len(names)]
            share = max(deadline - time.perf_counter(), 0.0) / (len(layers) - position)
            result = check_layer(held.layer, call.args, call.kwargs, nondiff, share)
        except InvalidArgument as refused:  # e.g. an input it saw was not finite
            why = f"could not be checked alone: {refused}"
            verdicts.append(
                LayerVerdict(held.name, held.path, _kind(held), Status.ERROR, problem=why)
            )
            continue
        result = replace(
            result,
            label=f"{held.name} ({result.label})",
            reproduce=f"gradverify.check(<the same {network_name}>.{held.path}, <the inputs it "
            f"saw in the forward pass>, seed={result.seed})",
        )
        verdicts.append(LayerVerdict(held.name, held.path, _kind(held), result.status, result))
    return tuple(verdicts)


def _not_recorded(network_name: str, held: HeldLayer) -> LayerVerdict:
    if not isinstance(getattr(held.layer, "__dict__", None), dict):
        why = "its forward cannot be recorded (an object without __dict__)"
    else:
        why = f"{network_name}'s forward pass did not call its forward"
    return LayerVerdict(held.name, held.path, _kind(held), Status.INCONCLUSIVE, problem=why)


def _kind(held: HeldLayer) -> str:
    return type(held.layer).__name__
