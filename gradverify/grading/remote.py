"""The grader's view of a submission running in a sandboxed child: one more adapter.

`RemoteAdapter` answers ``forward``, ``backward`` and ``parameters`` by asking the
child (see `child`), so the whole checker runs unchanged in the grader: it draws
the inputs, perturbs them and the weights, computes every numeric gradient and
every verdict.  The weights it perturbs are mirrors held here; each request
carries only the elements that changed since the last one.  What the child sends
back is only ever raw arrays, checked by `protocol` before they are used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from gradverify.adapters import Adapter, Gradients, ParamDeclaration, ParamSlot, TargetRaised
from gradverify.adapters.base import private_copy
from gradverify.errors import TargetContractError
from gradverify.grading.protocol import ProtocolError, decode, encode, reply_error
from gradverify.grading.sandbox import Child, SubmissionDied

#: Above this fraction of changed elements a whole array is sent instead of a diff.
_FULL_ABOVE = 0.25


class RemoteRaised(TargetRaised):
    """The submission raised, crashed or stalled in its child; the text says where and why."""

    def __init__(self, text: str) -> None:
        Exception.__init__(self, text)
        self.stage, self.exc, self.frame, self._text = "submission", self, "", text

    def describe(self) -> str:
        return self._text


class RemoteTarget:
    """Stands for the submission's object in the grader: a name and nothing to walk."""

    def __init__(self, name: str) -> None:
        self.name = name


class RemoteAdapter(Adapter):
    """A target that lives in a child process; see the module docstring."""

    kind = "remote"
    looks_for = "(never detected: a submission in a sandboxed child)"

    def __init__(
        self,
        child: Child,
        name: str,
        traits: tuple[bool, bool],
        deadline: float,
        limit: float,
    ) -> None:
        """`traits` (differentiates inputs, takes a cotangent) are the grader's to decide,
        from the kind of target the assignment grades, never the child's to claim."""
        name = "".join(c for c in name if c.isalnum() or c in "_.")[:80] or "submission"
        super().__init__(RemoteTarget(name), {})
        self._child, self._deadline, self._limit = child, deadline, limit
        self._name = name
        self.differentiates_inputs, self.takes_cotangent = traits
        self._label = f"{name}.backward" if self.takes_cotangent else f"{name}.gradient"
        self._sent_args: dict[int, Any] = {}
        self._sent_params: dict[str, np.ndarray] = {}
        self._hold = ""  # how the child holds the target's state before every call
        self._slots: list[ParamSlot] = []
        self._gradients: dict[str, Any] = {}

    @classmethod
    def accepts(cls, target: Any, args: Sequence[Any]) -> bool:
        return False

    @property
    def name(self) -> str:
        return self._name

    @property
    def label(self) -> str:
        return self._label

    def forward(self, args: Sequence[Any]) -> Any:
        self.forward_calls += 1
        reply, arrays = self._call({"op": "forward"}, args)
        with self._reading():
            return decode(reply.get("value"), arrays)

    batches = True
    #: Bytes of outputs one batch of evaluations may send back.
    BATCH_BYTES = 8 << 20

    def forward_many(
        self, args: Sequence[Any], where: tuple[str, Any], positions: Any, values: Any
    ) -> list[Any]:
        """Many evaluations a message, sized so that their outputs stay under `BATCH_BYTES`."""
        results: list[Any] = []
        size, start = 16, 0
        while start < len(positions):
            chunk = slice(start, start + size)
            out: list[np.ndarray] = []
            header = {
                "op": "forward_many",
                "where": list(where),
                "positions": encode(np.asarray(positions[chunk]), out),
                "values": encode(np.asarray(values[chunk]), out),
            }
            reply, arrays = self._call(header, args, out)
            with self._reading():
                outputs = [decode(d, arrays) for d in reply["values"]]
                if len(outputs) != len(positions[chunk]):
                    raise ProtocolError("a batch of evaluations came back short")
            self.forward_calls += len(outputs)
            results += outputs
            start += size
            each = max(1, sum(a.nbytes for a in arrays) // max(len(outputs), 1))
            size = int(min(4096, max(1, self.BATCH_BYTES // each)))
        return results

    def backward(self, args: Sequence[Any], cotangent: Any) -> Gradients:
        self.forward_calls += 1
        found = self._backward("backward", args, cotangent)
        if found is None:
            raise RemoteRaised(f"{self._label}: the submission's process sent no gradients")
        return found

    def backward_again(self, cotangent: Any) -> Gradients | None:
        return self._backward("backward_again", None, cotangent)

    def parameters(self, declared: ParamDeclaration) -> list[ParamSlot]:
        wanted = dict(declared) if isinstance(declared, dict) else declared
        reply, arrays = self._call({"op": "parameters", "declared": wanted}, None)
        self._slots, self._sent_params = [], {}
        with self._reading():
            for slot in reply["slots"]:
                name = str(slot["name"])[:80]
                if name in self._sent_params:
                    raise ProtocolError(f"two weights named {name!r}")
                value = np.array(decode(slot["value"], arrays))  # its own dtype: float32 stays
                if value.dtype.kind != "f":
                    raise ProtocolError(f"a weight {name!r} of dtype {value.dtype}")
                self._sent_params[name] = value.copy()
                note = str(slot.get("note", ""))[:400]
                grad_name = str(slot["grad_name"])[:80]
                self._slots.append(ParamSlot(name, grad_name, value, self._reader(name), note))
        return self._slots

    @property
    def holding(self) -> str:
        """How the child holds the target's state before every call ("": it does not)."""
        return self._hold

    def hold_elsewhere(self, how: str) -> Callable[[], None] | None:
        """The child holds the state (see `child.Session.call_arguments`); the switch
        rides on every later request, so holding costs no round trip."""

        def switch() -> None:
            self._hold = how

        return switch

    def _reader(self, name: str) -> Callable[[], Any]:
        return lambda: self._gradient(name)

    def _gradient(self, name: str) -> Any:
        """A weight's gradient as the target holds it now (after the last backward)."""
        if name not in self._gradients:
            reply, arrays = self._call({"op": "gradients"}, None)
            with self._reading():
                params = dict(reply["params"])
                self._gradients = {str(k): decode(v, arrays) for k, v in params.items()}
        return self._gradients.get(name)

    def _backward(self, op: str, args: Sequence[Any] | None, cotangent: Any) -> Gradients | None:
        self.backward_calls += 1
        out: list[np.ndarray] = []
        header = {"op": op, "cotangent": encode(cotangent, out)}
        reply, arrays = self._call(header, args, out)
        with self._reading():
            found = reply["gradients"]
            if found is None:
                return None  # backward_again of a network: it has no such call
            params = {str(k): decode(v, arrays) for k, v in dict(found["params"]).items()}
            self._gradients = dict(params)
            return Gradients(
                tuple(decode(d, arrays) for d in found["inputs"]),
                params,
                bool(found.get("dout_modified")),
                bool(found.get("returned_none")),
            )

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """A reply that does not have the shape it must have is garbage, and says so."""
        try:
            yield
        except (ProtocolError, KeyError, TypeError, ValueError, AttributeError) as broken:
            raise self._garbage(broken) from None

    def _garbage(self, broken: Exception) -> RemoteRaised:
        """The child is past trusting: closed, and the check says what it sent."""
        self._child.close()
        return RemoteRaised(f"{self._label}: the submission's process sent garbage ({broken})")

    def _call(
        self,
        header: dict[str, Any],
        args: Sequence[Any] | None,
        arrays: list[np.ndarray] | None = None,
    ) -> tuple[dict[str, Any], list[np.ndarray]]:
        """One request with the changed inputs and weights; the reply, or the child's error."""
        arrays = [] if arrays is None else arrays
        updates = self._updates(args, arrays)
        self._gradients = {}  # whatever the target holds may change with this call
        try:
            reply, received = self._child.request(
                {**header, "updates": updates, "hold": self._hold}, arrays, self._deadline
            )
        except SubmissionDied as died:
            raise RemoteRaised(self._died(header["op"], str(died))) from None
        except ProtocolError as broken:
            raise self._garbage(broken) from None
        problem = reply_error(reply)
        if problem is not None:
            kind, text = problem
            raise TargetContractError(text) if kind == "contract" else RemoteRaised(text)
        if args is not None:
            with self._reading():
                self._mirror_input_writes(reply, received, args)
        return reply, received

    def _died(self, op: str, how: str) -> str:
        if how == "ran out of time":
            return (
                f"{self._label}: no answer within the time limit of {self._limit:g} s during "
                f"{op} (an endless loop, or far too slow?)"
            )
        return f"{self._label}: the submission's process {how} during {op}"

    def _updates(
        self, args: Sequence[Any] | None, arrays: list[np.ndarray]
    ) -> list[dict[str, Any]]:
        updates = []
        if args is not None:
            for position, value in enumerate(args):
                update = _diff(self._sent_args.get(position), value, arrays)
                if update is not None:
                    updates.append({"where": "arg", "key": position, **update})
                    self._sent_args[position] = private_copy(value)
        for slot in self._slots:
            update = _diff(self._sent_params.get(slot.name), slot.array, arrays)
            if update is not None:
                updates.append({"where": "param", "key": slot.name, **update})
                self._sent_params[slot.name] = slot.array.copy()
        return updates

    def _mirror_input_writes(
        self, reply: dict[str, Any], arrays: list[np.ndarray], args: Sequence[Any]
    ) -> None:
        """Apply the child's writes into its inputs to ours, so the contract sees them."""
        for change in reply.get("changed", []):
            position = int(change["key"])
            if 0 <= position < len(args) and isinstance(args[position], np.ndarray):
                values = np.asarray(decode(change["values"], arrays))
                if values.shape == args[position].shape and values.dtype.kind in "biuf":
                    np.copyto(args[position], values, casting="unsafe")


def _diff(sent: Any, value: Any, arrays: list[np.ndarray]) -> dict[str, Any] | None:
    """What to send so the child holds `value`: nothing, the changed elements, or all of it."""
    if not isinstance(value, np.ndarray):
        if sent is not None and type(sent) is type(value) and _same(sent, value):
            return None
        return {"indices": None, "values": encode(value, arrays)}
    if not isinstance(sent, np.ndarray) or sent.shape != value.shape or sent.dtype != value.dtype:
        return {"indices": None, "values": encode(value, arrays)}
    changed = np.flatnonzero(
        np.not_equal(sent, value) & ~(np.isnan(sent) & np.isnan(value))
        if value.dtype.kind in "fc"
        else np.not_equal(sent, value)
    )
    if changed.size == 0:
        return None
    if changed.size > _FULL_ABOVE * value.size:
        return {"indices": None, "values": encode(value, arrays)}
    flat = value.reshape(-1)
    return {"indices": encode(changed, arrays), "values": encode(flat[changed], arrays)}


def _same(first: Any, second: Any) -> bool:
    try:
        return bool(first == second)
    except Exception:
        return False
