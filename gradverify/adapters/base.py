"""The uniform view of a target that the rest of gradverify works with.

An `Adapter` wraps what the user handed over (a layer object, a network, a pair
of functions) and exposes: ``forward(args)`` returning the raw output,
``backward(args, cotangent)`` returning the gradients (running ``forward`` at
``args`` first, so every cache is fresh), and ``parameters()``, the float arrays
*held by the target* that are differentiated in place.  No other module knows
what a "layer" looks like.
"""

from __future__ import annotations

import os
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from gradverify.adapters.conventions import NO_CONVENTIONS, Conventions
from gradverify.errors import GradverifyError, TargetContractError
from gradverify.objects import Holding, holdings, is_foreign_array, places_of, rebind

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STANDARD_LIBRARY = os.path.dirname(os.__file__) + os.sep


class TargetRaised(GradverifyError):
    """The target's own code raised; carries where (stage) and its innermost frame."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        self.stage = stage
        self.exc = exc
        self.frame = _user_frame(exc)
        super().__init__(f"{stage} raised {type(exc).__name__}: {exc}")

    def describe(self) -> str:
        return f"{self.stage} raised {self.cause()}"

    def cause(self) -> str:
        """What was raised, and the user's line that raised it."""
        text = f"{type(self.exc).__name__}: {self.exc}"
        message = str(self.exc)
        if (
            isinstance(self.exc, TypeError)
            and "required positional argument" in message
            and ("forward" in message)
        ):
            text += " (every argument of forward goes in inputs={name: value, ...}, in order)"
        return f"{text}\n{self.frame}" if self.frame else text


def _user_frame(exc: BaseException) -> str:
    """The innermost traceback frame outside gradverify and numpy: the user's own line."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not os.path.abspath(f.filename).startswith(_PACKAGE_DIR)
        and f"{os.sep}numpy{os.sep}" not in f.filename
        and not _machinery(f.filename)
    ]
    if not frames:
        return ""
    frame = frames[-1]
    location = f'  File "{os.path.basename(frame.filename)}", line {frame.lineno}, in {frame.name}'
    return f"{location}\n    {frame.line}" if frame.line else location


def _machinery(filename: str) -> bool:
    """Python's own frames (importlib, the standard library), which are never the user's line."""
    if filename.startswith("<frozen"):
        return True
    return filename.startswith(_STANDARD_LIBRARY) and "-packages" not in filename


def call_target(stage: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call into the target, turning anything it raises into `TargetRaised`."""
    try:
        return function(*args, **kwargs)
    except Exception as exc:
        raise TargetRaised(stage, exc) from exc


def private_copy(value: Any) -> Any:
    """A private copy of an array (an input, a returned gradient): the target may reuse or
    overwrite its buffer, and the caller's arrays are never written."""
    return value.copy() if isinstance(value, np.ndarray) else value


def gradient_values(returned: Any, label: str) -> tuple[Any, ...]:
    """The gradients a backward returned, as a tuple in input order (empty for None).

    One array (or number), or a tuple or list of them; a nested list of numbers
    (``dx.tolist()``) is one gradient.  Anything else (a dict, a string, a
    generator) breaks the contract: the check cannot tell which input it is for.
    """
    if returned is None:
        return ()
    if isinstance(returned, list) and _is_number_list(returned):
        return (np.asarray(returned),)
    if isinstance(returned, (tuple, list)):
        return tuple(private_copy(g) for g in returned)
    if _is_gradient_value(returned):
        return (private_copy(returned),)
    raise TargetContractError(
        f"{label} returned {_kind(returned)}; return the gradient of each input: one array, "
        f"or a tuple (dx, dy, ...) in forward's order."
    )


def _is_gradient_value(value: Any) -> bool:
    return isinstance(value, (np.ndarray, np.generic, int, float)) or (
        hasattr(value, "__array__") and not isinstance(value, (str, bytes, dict))
    )


def _is_number_list(value: list[Any]) -> bool:
    """A (nested) list of Python numbers, such as ``dx.tolist()`` gives (not a list of arrays)."""
    if not value or any(isinstance(item, np.ndarray) or item is None for item in value):
        return False
    try:
        return np.asarray(value).dtype.kind in "biuf"
    except (ValueError, TypeError):
        return False


def _kind(value: Any) -> str:
    """How a value is named in a message: its type, with the module for foreign ones."""
    module = type(value).__module__
    name = type(value).__qualname__
    return name if module in ("builtins", "numpy") else f"{module}.{name}"


def pass_cotangent(cotangent: Any) -> tuple[tuple[Any, ...], Any]:
    """Private copies of the cotangent(s) for a backward call, and a test of whether it wrote
    into them (the textbook's ReLU does: ``dout[mask] = 0``)."""
    douts = cotangent if isinstance(cotangent, tuple) else (cotangent,)
    copies = tuple(private_copy(d) for d in douts)

    def modified() -> bool:
        return any(
            isinstance(c, np.ndarray) and not np.array_equal(c, d, equal_nan=True)
            for c, d in zip(copies, douts)
        )

    return copies, modified


def is_float_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)


@dataclass(frozen=True)
class ParamSlot:
    """A float array held by the target, its report names, and how to read its gradient."""

    name: str
    grad_name: str
    #: The weight, perturbed in place: an ndarray (one of another library only until
    #: `foreign.ForeignArrays` puts a numpy mirror in its place).
    array: Any
    read_gradient: Callable[[], Any]
    note: str = ""  # what was done to make it checkable (a read-only array copied)


def writable(target: Any, slot: ParamSlot) -> ParamSlot:
    """`slot`, with a read-only array (``np.broadcast_to``, ``setflags(write=False)``, a
    memory map) replaced by a writable copy at every place the target holds it.

    The numerics perturb weights in place; the copy is wired in wherever the
    original was, so the target computes with it, and the snapshot puts the
    original back afterwards.  A weight held inside a tuple cannot be replaced.
    """
    if not isinstance(slot.array, np.ndarray) or slot.array.flags.writeable:
        return slot  # another library's array is mirrored, never perturbed in place
    places = places_of(target, slot.array)
    if not places or any(h.kind == "tuple" for h in places):
        where = "a tuple" if places else "a place gradverify cannot reach"
        raise TargetContractError(
            f"{slot.name} is read-only and held in {where}, so it cannot be perturbed in place; "
            f"hold a writable array (e.g. {slot.name} = np.array({slot.name}))."
        )
    copy = np.array(slot.array)
    for place in places:
        rebind(place, copy)
    note = (
        f"{slot.name} is read-only (np.broadcast_to or setflags(write=False)): checked on a "
        f"writable copy, the original put back afterwards"
    )
    return replace(slot, array=copy, note=note)


@dataclass(frozen=True)
class Gradients:
    """What one backward produced: input gradients in input order, and parameter gradients."""

    inputs: tuple[Any, ...]
    params: dict[str, Any]
    #: Whether backward wrote into the ``dout`` it was given (it gets a private copy).
    dout_modified: bool = False
    #: Whether backward returned None (then no input has a gradient: a forgotten return).
    returned_none: bool = False


class Adapter(ABC):
    """Base of every adapter; subclasses register through ``gradverify.adapters`` entry points.

    ``kind`` names the adapter for ``check(..., adapter=kind)``; ``looks_for`` is
    one line saying what it recognises, quoted when no adapter fits.
    """

    kind: ClassVar[str]
    looks_for: ClassVar[str]
    #: False when the target reports no gradients for its inputs (a network's ``gradient``);
    #: a class trait an instance may override (a wrapper or a remote view takes its target's).
    differentiates_inputs: bool = True
    #: False when backward takes no ``dout`` (a network's ``gradient(x, t)``, ``f -> (loss, dx)``).
    takes_cotangent: bool = True
    #: True when the target is an object holding weights (not a function).
    holds_state: ClassVar[bool] = False
    #: The declarations (`Conventions` fields) this adapter takes; others are refused.
    understands: ClassVar[frozenset[str]] = frozenset()
    #: What counts as a weight to differentiate: a float ndarray; also a float array of
    #: the target's own library when `foreign.ForeignArrays` mirrors those on the host.
    weight_test: Callable[[Any], bool] = staticmethod(is_float_array)
    #: Why a forked copy of the target may hang (a threaded array library), or "": then
    #: ``workers=`` is not used and the report says why.
    fork_hazard: str = ""
    #: True when backward sums into stored gradients by design (a layer flushed before
    #: every forward): two backward calls after one forward are then expected to differ.
    accumulates: bool = False

    def __init__(
        self, target: Any, kwargs: Mapping[str, Any], conventions: Conventions = NO_CONVENTIONS
    ) -> None:
        self.target = target
        self.kwargs = dict(kwargs)
        self.conventions = conventions
        self.forward_calls = 0
        self.backward_calls = 0
        # Which object each place held before any call: weights and constants stay the
        # same object across calls, per-call caches (self.x, self.out) do not.
        held = holdings(target) if self.holds_state else []
        self._initial_ids = {h.path: id(h.value) for h in held}
        #: An array of another library the target holds (see `foreign`), or None.
        self.foreign_example = next((h.value for h in held if is_foreign_array(h.value)), None)

    def held_arrays(self) -> list[Holding]:
        """Arrays (and foreign array objects) the target has held at the same place since
        before the check: its weights and constants, not its per-call caches."""
        if not self.holds_state:
            return []
        return [
            h
            for h in holdings(self.target)
            if (isinstance(h.value, np.ndarray) or is_foreign_array(h.value))
            and self._initial_ids.get(h.path) == id(h.value)
        ]

    @classmethod
    @abstractmethod
    def accepts(cls, target: Any, args: Sequence[Any]) -> bool:
        """Whether this adapter understands `target` (may not call it)."""

    @property
    def name(self) -> str:
        """Short name of the target for reports: ``Affine``, ``affine_backward``."""
        return type(self.target).__name__

    @property
    @abstractmethod
    def label(self) -> str:
        """What produced the analytic gradients: ``Affine.backward``."""

    @abstractmethod
    def forward(self, args: Sequence[Any]) -> Any:
        """The raw output of the target's forward at `args`."""

    @abstractmethod
    def backward(self, args: Sequence[Any], cotangent: Any) -> Gradients:
        """Forward at `args`, then the target's backward with `cotangent`."""

    def backward_again(self, cotangent: Any) -> Gradients | None:
        """Backward without a forward before it, or None where the target has no such
        call (a network's ``gradient`` always runs its own forward)."""
        return None

    #: True when `forward_many` answers (a target in another process: one message, many
    #: evaluations); otherwise the numerics call `forward` once per evaluation.
    batches: bool = False

    def forward_many(
        self, args: Sequence[Any], where: tuple[str, Any], positions: Any, values: Any
    ) -> list[Any]:
        """The raw output of forward with one element of an input (``("arg", position)``)
        or a weight (``("param", name)``) set to each of `values` in turn, then restored."""
        raise NotImplementedError(f"{type(self).__name__} does not batch evaluations")

    def parameters(self, declared: ParamDeclaration) -> list[ParamSlot]:
        """Arrays held by the target to differentiate (none by default).

        Called after one `backward`, so adapters may discover gradient attributes
        that only exist once backward has run.
        """
        return []

    def input_grad_names(self, names: Sequence[str]) -> list[str]:
        return [f"d{name}" for name in names]

    def hold_elsewhere(self, how: str) -> Callable[[], None] | None:
        """For a target in another process: a switch that has every later call there start
        from the state the target held before the check (`how`: ``"rebind"`` or
        ``"reset_state"``, see `carried`); None for a target here, held here."""
        return None

    def declaration_hint(self, uncovered: str, declared: Mapping[str, str]) -> str:
        """How to have `uncovered` checked, given every weight and its gradient's place."""
        listed = ", ".join(f"{k!r}: {v!r}" for k, v in declared.items())
        return f"declare the weights and where backward puts their gradients: params={{{listed}}}"


class Wrapper(Adapter):
    """An adapter around another one (`guarded`, `foreign`): everything is the inner
    adapter's unless a subclass changes it, and calls are counted once, by the inner one."""

    kind = "wrapper"
    looks_for = "(never detected: wraps another adapter)"

    def __init__(self, inner: Adapter) -> None:  # the target was walked by `inner` already
        self.inner = inner
        self.target, self.kwargs, self.conventions = inner.target, inner.kwargs, inner.conventions
        self.differentiates_inputs = inner.differentiates_inputs
        self.takes_cotangent = inner.takes_cotangent
        self.accumulates = inner.accumulates
        self.foreign_example = inner.foreign_example
        self.fork_hazard = inner.fork_hazard

    @property
    def forward_calls(self) -> int:
        return self.inner.forward_calls

    @forward_calls.setter
    def forward_calls(self, value: int) -> None:
        self.inner.forward_calls = value

    @property
    def backward_calls(self) -> int:
        return self.inner.backward_calls

    @backward_calls.setter
    def backward_calls(self, value: int) -> None:
        self.inner.backward_calls = value

    @classmethod
    def accepts(cls, target: Any, args: Sequence[Any]) -> bool:
        return False

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def label(self) -> str:
        return self.inner.label

    def forward(self, args: Sequence[Any]) -> Any:
        return self.inner.forward(args)

    def backward(self, args: Sequence[Any], cotangent: Any) -> Gradients:
        return self.inner.backward(args, cotangent)

    def backward_again(self, cotangent: Any) -> Gradients | None:
        return self.inner.backward_again(cotangent)

    def parameters(self, declared: ParamDeclaration) -> list[ParamSlot]:
        return self.inner.parameters(declared)

    def held_arrays(self) -> list[Holding]:
        return self.inner.held_arrays()

    def input_grad_names(self, names: Sequence[str]) -> list[str]:
        return self.inner.input_grad_names(names)

    def hold_elsewhere(self, how: str) -> Callable[[], None] | None:
        return self.inner.hold_elsewhere(how)

    def declaration_hint(self, uncovered: str, declared: Mapping[str, str]) -> str:
        return self.inner.declaration_hint(uncovered, declared)


#: Parameters the user declared: None (discover), names, or name -> gradient attribute.
ParamDeclaration = Sequence[str] | Mapping[str, str] | None
