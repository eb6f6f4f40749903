"""Find the adapter for a target: explicit choice, then third-party, then built-in.

Third-party packages add adapters through the entry-point group
``gradverify.adapters``; each entry point names an `Adapter` subclass.  They are
tried before the built-ins so that a more specific adapter wins.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from gradverify.adapters.base import Adapter, Gradients, ParamDeclaration, ParamSlot, TargetRaised
from gradverify.adapters.conventions import NO_CONVENTIONS, Conventions
from gradverify.adapters.functions import (
    FunctionPairAdapter,
    GradientPairAdapter,
    LossFunctionAdapter,
    is_pair,
)
from gradverify.adapters.layer import LayerAdapter
from gradverify.adapters.network import NetworkAdapter
from gradverify.errors import AdapterNotFound, InvalidArgument

__all__ = [
    "BUILTIN_ADAPTERS",
    "Adapter",
    "Gradients",
    "ParamDeclaration",
    "ParamSlot",
    "TargetRaised",
    "available_adapters",
    "resolve_adapter",
]

ENTRY_POINT_GROUP = "gradverify.adapters"

#: Order matters: a network also looks like nothing else; a pair must be told
#: apart by calling its first function, so the cheaper structural tests go first.
BUILTIN_ADAPTERS: tuple[type[Adapter], ...] = (
    NetworkAdapter,
    LayerAdapter,
    GradientPairAdapter,
    FunctionPairAdapter,
    LossFunctionAdapter,
)


@functools.cache
def _plugin_adapters() -> tuple[type[Adapter], ...]:
    """Adapters registered by other packages, loaded once per process (scanning costs ms)."""
    found = []
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        adapter = entry.load()
        if not (isinstance(adapter, type) and issubclass(adapter, Adapter)):
            raise InvalidArgument(
                f"entry point {entry.name!r} in group {ENTRY_POINT_GROUP!r} names "
                f"{adapter!r}, which is not a gradverify.adapters.Adapter subclass."
            )
        found.append(adapter)
    return tuple(found)


def available_adapters() -> list[type[Adapter]]:
    """Every adapter in the order detection tries them."""
    return [*_plugin_adapters(), *BUILTIN_ADAPTERS]


def resolve_adapter(
    target: Any,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    adapter: str | type[Adapter] | Adapter | None = None,
    conventions: Conventions = NO_CONVENTIONS,
) -> Adapter:
    """Wrap `target` in the adapter named by `adapter`, or the first one that accepts it.

    An `Adapter` instance is used as it is (the grader's view of a sandboxed submission);
    it serves one check, since it counts that check's calls and remembers its weights.
    Declared `conventions` narrow the choice to the adapters that take them.
    """
    if isinstance(adapter, Adapter):
        return adapter
    declared = set(conventions.declared)
    candidates = [a for a in available_adapters() if declared <= a.understands]
    if isinstance(adapter, str):
        by_kind = {a.kind: a for a in available_adapters()}
        if adapter not in by_kind:
            raise InvalidArgument(
                f"`adapter` must be one of {sorted(by_kind)} or an Adapter subclass, "
                f"got adapter={adapter!r}."
            )
        adapter = by_kind[adapter]
    if isinstance(adapter, type) and issubclass(adapter, Adapter):
        if declared - adapter.understands:
            raise InvalidArgument(_not_understood(adapter, declared, candidates))
        return _built(adapter, target, kwargs, conventions)
    # declared names are the test of a layer by other names; a pair's arguments, of a pair
    shortcut: type[Adapter] | None = LayerAdapter if "methods" in declared else None
    if "backward_args" in declared and is_pair(target):
        shortcut = FunctionPairAdapter
    if shortcut is not None and not isinstance(target, type):
        if declared - shortcut.understands:
            raise InvalidArgument(_not_understood(shortcut, declared, candidates))
        return shortcut(target, kwargs, conventions)
    _reject_class(target)
    for candidate in candidates:
        if _accepts(candidate, target, args):
            return _built(candidate, target, kwargs, conventions)
    if declared:
        raise InvalidArgument(
            f"{', '.join(f'`{d}`' for d in sorted(declared))} declared, but "
            f"{_describe(target)} is none of what takes them:\n"
            + "\n".join(f"  - {a.kind}: {a.looks_for}" for a in candidates)
        )
    tried = "\n".join(f"  - {a.kind}: {a.looks_for}" for a in candidates)
    raise AdapterNotFound(
        f"gradverify does not know how to check {_describe(target)}. It looks for:\n{tried}\n"
        f"{_other_names(target)}Pass adapter=... to choose one, or register your own in the "
        f"entry-point group {ENTRY_POINT_GROUP!r}."
    )


def _built(
    adapter: type[Adapter], target: Any, kwargs: Mapping[str, Any], conventions: Conventions
) -> Adapter:
    """An adapter of class `adapter`; declarations go only to the adapters taking them (an
    adapter of another package may not take the argument)."""
    if conventions.declared:
        return adapter(target, kwargs, conventions)
    return adapter(target, kwargs)


def _not_understood(
    adapter: type[Adapter], declared: set[str], candidates: list[type[Adapter]]
) -> str:
    taking = ", ".join(a.kind for a in candidates) or "none"
    refused = ", ".join(sorted(declared - adapter.understands))
    return (
        f"{refused} cannot be declared for a {adapter.kind} (adapter={adapter.kind!r}); the "
        f"adapters that take all that was declared: {taking}."
    )


#: Method names that play forward or backward in public from-scratch code.
_FORWARD_WORDS = ("forward", "fprop", "predict_step")
_BACKWARD_WORDS = ("backward", "backprop", "back_prop", "bprop", "gradient")


def _other_names(target: Any) -> str:
    """A hint naming the target's own forward and backward, when it has them by other names."""
    methods = [
        n for n in dir(type(target)) if not n.startswith("_") and callable(getattr(target, n, None))
    ]
    forward = [n for n in methods if any(w in n.lower() for w in _FORWARD_WORDS)]
    backward = [n for n in methods if any(w in n.lower() for w in _BACKWARD_WORDS)]
    if len(forward) != 1 or len(backward) != 1:
        return ""
    return (
        f"It has {forward[0]}() and {backward[0]}(): if they are forward and backward, declare "
        f"methods={{'forward': {forward[0]!r}, 'backward': {backward[0]!r}}} (on the command "
        f"line: --methods forward={forward[0]} --methods backward={backward[0]}).\n"
    )


def _accepts(candidate: type[Adapter], target: Any, args: Sequence[Any]) -> bool:
    """Whether `candidate` accepts `target`; a property of the target that raises while the
    adapter looks at it (``params`` not ready) means "not this adapter", not a crash."""
    try:
        return candidate.accepts(target, args)
    except TargetRaised:  # calling the target to tell pairs apart: its own error, reported
        raise
    except Exception:
        return False


def _reject_class(target: Any) -> None:
    """The two commonest slips get a message of their own."""
    if isinstance(target, type) and hasattr(target, "forward"):
        raise InvalidArgument(
            f"got the class {target.__name__} itself; pass an instance, e.g. "
            f"{target.__name__}(...) with its constructor arguments."
        )
    if callable(getattr(target, "forward", None)) and not hasattr(target, "backward"):
        name = type(target).__name__
        raise AdapterNotFound(
            f"{name} has forward() but no backward(); add backward(self, dout) returning the "
            f"gradient of each input (and setting d<name> for each weight). "
            f"{_other_names(target)}"
        )


def _describe(target: Any) -> str:
    text = repr(target)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({type(target).__name__})"
