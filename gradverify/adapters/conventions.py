"""Declared conventions: how to call and read a target written another way.

gradverify finds the textbook's layers, the second volume's ``params``/``grads``
lists, cs231n pairs and networks by itself.  Public from-scratch code also calls
its methods ``forward_pass``/``back_propogate``, returns ``(dx, [dW, db])``, hands
its gradients to an optimizer inside backward, accumulates until a flush, or
writes backward as ``fc_backward(dout, W, x) -> (dW, db, dx)``.  Such a target
says so with keywords of `check`; this module holds them (`Conventions`),
validates their form, and reads a backward's return by its declared layout
(`ReturnLayout`).  Whether the target really has what they name is checked by the
adapter that uses them, which knows the target.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gradverify.errors import InvalidArgument, TargetContractError

#: What ``returns=`` declares: a name (an input or a weight), or a sequence of layouts,
#: one per item of the returned tuple or list (``("x", ["W", "b"])``).
Layout = str | Sequence["Layout"]

#: What a function pair's backward may be given besides the forward's inputs.
BACKWARD_ARGUMENTS = ("dout", "cache", "out")

METHOD_ROLES = ("forward", "backward")


@dataclass(frozen=True)
class Conventions:
    """What the user declared about a target's calls and returns (empty: the defaults)."""

    methods: Mapping[str, str] = field(default_factory=dict)
    returns: Layout | None = None
    optimizer: tuple[str, ...] = ()
    flush: str | None = None
    backward_args: tuple[str, ...] | None = None
    #: forward's inputs by name, in order: what ``returns`` and ``backward_args`` may name
    inputs: tuple[str, ...] = ()

    @property
    def declared(self) -> list[str]:
        """The keywords given, for messages and for choosing an adapter."""
        given = {
            "methods": bool(self.methods),
            "returns": self.returns is not None,
            "optimizer": bool(self.optimizer),
            "flush": self.flush is not None,
            "backward_args": self.backward_args is not None,
        }
        return [name for name, on in given.items() if on]

    def method(self, role: str) -> str:
        return self.methods.get(role, role)


NO_CONVENTIONS = Conventions()


def conventions(
    methods: Mapping[str, str] | None = None,
    returns: Layout | None = None,
    optimizer: str | Sequence[str] | None = None,
    flush: str | None = None,
    backward_args: Sequence[str] | None = None,
    inputs: Sequence[str] = (),
) -> Conventions:
    """`Conventions` from `check`'s keywords, each validated for its form."""
    if methods is not None:
        if not isinstance(methods, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) and v.isidentifier()
            for k, v in methods.items()
        ):
            raise InvalidArgument(
                f"`methods` must map 'forward' and/or 'backward' to method names, got "
                f"methods={methods!r}; e.g. methods={{'forward': 'forward_pass', "
                f"'backward': 'backward_pass'}}."
            )
        unknown = sorted(set(methods) - set(METHOD_ROLES))
        if unknown:
            raise InvalidArgument(
                f"`methods` names the role(s) {unknown}, but a layer has only "
                f"{list(METHOD_ROLES)}; e.g. methods={{'backward': 'back_propogate'}}."
            )
    if returns is not None:
        _check_layout(returns)
    if isinstance(optimizer, str):
        optimizer = [optimizer]
    if optimizer is not None and (
        not isinstance(optimizer, Sequence)
        or not optimizer
        or not all(isinstance(o, str) and o for o in optimizer)
    ):
        raise InvalidArgument(
            f"`optimizer` must name the attribute(s) holding the optimizer(s) backward "
            f"hands its gradients to, got optimizer={optimizer!r}; e.g. optimizer='W_opt' "
            f"or optimizer=['W_opt', 'b_opt']."
        )
    if flush is not None and not (isinstance(flush, str) and flush.isidentifier()):
        raise InvalidArgument(
            f"`flush` must name the method that resets what the layer accumulates, got "
            f"flush={flush!r}; e.g. flush='flush_gradients'."
        )
    if backward_args is not None and (
        isinstance(backward_args, str)
        or not isinstance(backward_args, Sequence)
        or not all(isinstance(a, str) for a in backward_args)
        or "dout" not in backward_args
    ):
        raise InvalidArgument(
            f"`backward_args` must list what the backward function takes, in order: 'dout', "
            f"'cache', 'out' or forward's inputs by name, got backward_args={backward_args!r}; "
            f"e.g. backward_args=('dout', 'W', 'x')."
        )
    for name, names in (("optimizer", optimizer), ("backward_args", backward_args)):
        repeated = sorted({n for n in names or () if list(names or ()).count(n) > 1})
        if repeated:
            raise InvalidArgument(
                f"`{name}` names {', '.join(map(repr, repeated))} more than once, got "
                f"{name}={names!r}; name each once."
            )
    return Conventions(
        dict(methods or {}),
        returns,
        tuple(optimizer or ()),
        flush,
        None if backward_args is None else tuple(backward_args),
        tuple(inputs),
    )


def _check_layout(layout: Any) -> None:
    names = _leaves(layout)
    if names is None or not names:
        raise InvalidArgument(
            f"`returns` must name, for each gradient backward returns, its input or weight, "
            f"as nested tuples or lists of names, got returns={layout!r}; e.g. "
            f"returns=('x', ['W', 'b']) for `return dx, [dW, db]`."
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidArgument(
            f"`returns` names {', '.join(repeated)} more than once, got returns={layout!r}; "
            f"each gradient belongs to one input or weight."
        )


def _leaves(layout: Any) -> list[str] | None:
    """The names in a layout, in order, or None if it is not one."""
    if isinstance(layout, str):
        return [layout] if layout else None
    if not isinstance(layout, (tuple, list)):
        return None
    names: list[str] = []
    for item in layout:
        inner = _leaves(item)
        if inner is None:
            return None
        names += inner
    return names


#: A name on the command line: quoted (``'params[0]'``, which holds brackets) or bare.
_NAME = re.compile(r"'[^']*'|\"[^\"]*\"|[^,\[\]()\s'\"]+")


def parse_layout(text: str) -> Layout:
    """A layout written on a command line without quotes: ``x,[W,b]`` is ``("x", ["W", "b"])``;
    a name holding brackets is quoted: ``x,['params[0]','params[1]']``."""
    quoted = _NAME.sub(lambda m: m.group(0) if m.group(0)[0] in "'\"" else repr(m.group(0)), text)
    try:
        layout = ast.literal_eval(f"({quoted})")
    except (ValueError, SyntaxError):
        layout = None
    names_apart = re.search(r"[^\s,\[\]()]\s+[^\s,\[\]()]", text)  # 'x y' would join
    if layout is None or _leaves(layout) is None or names_apart:
        raise InvalidArgument(
            f"--returns takes names separated by commas, a bracketed group for a returned "
            f"list, got --returns {text!r}; e.g. --returns 'x,[W,b]' (quote a name holding "
            f"brackets: --returns \"x,['params[0]','params[1]']\")."
        )
    return list(layout) if isinstance(layout, tuple) else layout


def layout_text(layout: Layout) -> str:
    """A layout as it would be written in Python: ``('x', ['W', 'b'])``."""
    return repr(layout)


class ReturnLayout:
    """Reads what backward returned into input gradients and weight gradients.

    Declared (``returns=``): every name is an input (its gradient goes to the inputs,
    in forward's order) or anything else, a weight of the target (resolved by the
    adapter).  Undeclared: the usual one array or tuple per input, or, understood by
    its shape, ``(dx, [dW, db])`` or ``(dx, {"W": dW, "b": db})``: input gradients
    first and one list or dict of the weights' gradients last.  The weights' part is
    keyed by name (declared, or a dict's key) or by position (a list), for the adapter
    to match with the weights it holds.
    """

    def __init__(
        self, declared: Layout | None, inputs: Sequence[str], *, holds_weights: bool = True
    ) -> None:
        self.declared = declared
        self.inputs = list(inputs)
        self.holds_weights = holds_weights  # a function has none: its return is inputs' only
        names = _leaves(declared) or [] if declared is not None else []
        #: Each name of an input's gradient and the input: ``x`` or ``dx`` for input x.
        self.input_of = {n: _input_named(n, self.inputs) for n in names}
        self.input_of = {n: i for n, i in self.input_of.items() if i is not None}
        self.weight_names = [n for n in names if n not in self.input_of]

    def split(self, returned: Any, label: str) -> tuple[tuple[Any, ...] | Any, dict[Any, Any]]:
        """``(input part, weights)``: the input part is what `gradient_values` reads (the
        whole return when it is the usual kind), the weights keyed as described above."""
        if self.declared is None:
            if self.holds_weights and _with_weights(returned):
                *inputs, weights = returned
                keyed = weights.items() if isinstance(weights, Mapping) else enumerate(weights)
                return tuple(inputs), dict(keyed)
            return returned, {}
        found: dict[str, Any] = {}
        _read(self.declared, returned, found, label, self.declared)
        by_input = {self.input_of[n]: v for n, v in found.items() if n in self.input_of}
        given = [by_input.get(n) for n in self.inputs]
        while given and given[-1] is None:
            given.pop()
        return tuple(given), {n: found[n] for n in self.weight_names}


def _input_named(name: str, inputs: Sequence[str]) -> str | None:
    """The input a gradient's name stands for: ``x`` for ``x`` and for ``dx``."""
    if name in inputs:
        return name
    if name.startswith("d") and name[1:] in inputs:
        return name[1:]
    return None


def _with_weights(returned: Any) -> bool:
    """``(dx, [dW, db])`` or ``(dx, {...})``: a tuple whose last item holds several arrays
    (a list of numbers, ``dx.tolist()``, is one gradient, not a collection)."""
    if not isinstance(returned, (tuple, list)) or len(returned) < 2:
        return False
    last = returned[-1]
    if isinstance(last, Mapping):
        return bool(last) and all(hasattr(v, "shape") for v in last.values())
    return isinstance(last, (list, tuple)) and all(hasattr(v, "shape") for v in last)


def _read(layout: Layout, value: Any, found: dict[str, Any], label: str, whole: Layout) -> None:
    if isinstance(layout, str):
        found[layout] = value
        return
    names = [n for n in layout if isinstance(n, str)]
    if isinstance(value, Mapping) and len(names) == len(layout):
        missing = [n for n in names if n not in value]  # a dict is read by its keys
        if missing:
            raise TargetContractError(
                f"{label} returned a dict without the key(s) {missing} that returns="
                f"{layout_text(whole)} names; its keys are {list(value)}."
            )
        found.update({n: value[n] for n in names})
        return
    if not isinstance(value, (tuple, list)) or len(value) != len(layout):
        count = len(value) if isinstance(value, (tuple, list)) else 0
        got = f"{count} item{'s' * (count != 1)}" if count else type(value).__name__
        raise TargetContractError(
            f"{label} returned {got} where returns={layout_text(whole)} declares "
            f"{len(layout)} ({layout_text(layout)}); declare what it returns."
        )
    for part, item in zip(layout, value):
        _read(part, item, found, label, whole)


def not_found(kind: str, name: str, available: Sequence[str], fix: str, found: Any = None) -> str:
    """The message for a name the target does not have: what was looked for, what was
    found, the closest name, and how to fix it; or, where the name is there but holds
    the wrong kind of thing (`found`), what it holds."""
    if found is not None:
        return f"{kind}: {name!r} is {_a(found)}, not what it must be. {fix}"
    by_lower = {a.lower(): a for a in available}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    guess = f" (did you mean {by_lower[close[0]]!r}?)" if close else ""
    listed = ", ".join(available) if available else "none"
    return f"{kind}: {name!r} was not found{guess}; found: {listed}. {fix}"


def _a(value: Any) -> str:
    """How a value found under a declared name is described: ``an int (3)``."""
    kind = type(value).__name__
    shown = repr(value)
    shown = f" ({shown})" if len(shown) <= 30 else ""
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}{shown}"
