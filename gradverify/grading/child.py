"""The submission's side of a graded check: runs in the sandboxed child, answers requests.

The child imports the submission, builds the target, and evaluates ``forward`` and
``backward`` on the arrays the grader sends, returning raw arrays.  It decides
nothing: every numeric gradient, comparison, verdict and score is computed by the
grader from what comes back, so nothing the submission does in here (patching
numpy or gradverify, printing "PASSED", writing files) can change a verdict.

The grader's copies of the inputs and weights are the truth; each request brings
the elements that changed since the last one (the numerics move one or two at a
time), and the child writes them into its own arrays before the call.  Every
call starts from the same random state, so a stochastic layer sees the same
draws each time, as in an in-process check.
"""

from __future__ import annotations

import os
import socket
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradverify.adapters import Adapter, Gradients, ParamSlot, TargetRaised, resolve_adapter
from gradverify.adapters.conventions import conventions
from gradverify.errors import GradverifyError, TargetContractError
from gradverify.grading.protocol import (
    MAX_ERROR_TEXT,
    decode,
    encode,
    read_message,
    write_message,
)
from gradverify.loading import MissingName, attribute, module_from_file
from gradverify.randomness import RandomSources, generators_in
from gradverify.state import Snapshot, snapshot

#: The first calls of a target, watched for random draws (the checker watches two forwards).
WATCHED_CALLS = 2


@dataclass
class Session:
    """The target being graded and the grader's view of its arrays."""

    view: Adapter
    args: list[Any]
    random: RandomSources  # as after building the target: every call starts from it
    #: The target as built (and adapted): a state forward carries is held fixed to it
    initial: Snapshot
    slots: list[ParamSlot] = field(default_factory=list)
    hold: str = ""  # "rebind" or "reset_state": asked by the grader (see `carried`)
    watching: int = WATCHED_CALLS  # calls left to watch for random draws
    draws: bool = False  # seen drawing: every call starts from `random`

    def apply(self, updates: list[dict[str, Any]], arrays: list[np.ndarray]) -> None:
        """Write the grader's changes into the inputs and weights."""
        for update in updates:
            destination = self.destination(update["where"], update["key"])
            values = decode(update["values"], arrays)
            if update.get("indices") is None:
                if isinstance(destination, np.ndarray) and destination.shape == np.shape(values):
                    np.copyto(destination, values, casting="unsafe")
                elif update["where"] == "arg":
                    self.args[update["key"]] = values
            else:
                flat = destination.reshape(-1) if destination.flags.c_contiguous else None
                indices = decode(update["indices"], arrays)
                if flat is not None:
                    flat[indices] = values
                else:
                    destination[np.unravel_index(indices, destination.shape)] = values

    def destination(self, where: str, key: Any) -> Any:
        """The input (``arg``, by position) or the weight (``param``, by name) a request names."""
        if where == "arg":
            return self.args[key]
        return next(s.array for s in self.slots if s.name == key)

    def call_arguments(self, runs_forward: bool = True) -> list[Any]:
        """Copies of the inputs for one call (the target may keep or write into them), with
        the target's state held where the grader asked for it, before a call that runs
        forward (a backward alone reads what the last forward left)."""
        if not runs_forward:
            pass
        elif self.hold == "rebind":
            self.initial.rebind()
        elif self.hold == "reset_state" and callable(
            getattr(self.view.target, "reset_state", None)
        ):
            self.view.target.reset_state()
        if self.watching or self.draws:
            self.random.pin()
        return [a.copy() if isinstance(a, np.ndarray) else a for a in self.args]

    def called(self) -> None:
        """After a call: while watching, note whether it drew random numbers.

        Pinning costs a generator state per call (tens of microseconds, most of a small
        layer's call), so, as the checker does in process, only a target seen drawing
        in its first calls is pinned; one that starts drawing later fails the
        determinism contract there as here.
        """
        if self.watching:
            self.watching -= 1
            self.draws = self.draws or bool(self.random.drawn_from())

    def changed_inputs(self, passed: list[Any], arrays: list[np.ndarray]) -> list[Any]:
        """The inputs the target wrote into, so the grader can see it (a contract)."""
        changed = []
        for position, (given, used) in enumerate(zip(self.args, passed)):
            if isinstance(given, np.ndarray) and not np.array_equal(given, used, equal_nan=True):
                changed.append({"key": position, "values": encode(used, arrays)})
        return changed


def load(module_file: str, object_path: str) -> Any:
    """Import the submission's module from the working directory and find the object; a
    file or a name the submission lacks is said as such, with what it has instead."""
    if not os.path.isfile(module_file):
        raise TargetContractError(
            f"the submission has no file {module_file}{_elsewhere(module_file)}"
        )
    if "" not in sys.path:
        sys.path.insert(0, "")  # the submission's own helper modules import too
    module = module_from_file(module_file)
    try:
        return attribute(module, object_path)
    except MissingName as missing:
        raise TargetContractError(f"the submission's {missing}") from None


def _elsewhere(module_file: str) -> str:
    """`` (found hw5/layers.py: ...)``: the file where the submission put it instead."""
    wanted = os.path.basename(module_file)
    for folder, _, files in os.walk("."):
        if wanted in files and folder != ".":
            found = os.path.normpath(os.path.join(folder, wanted))
            return f" (found {found}: it must be at the top of the submission, as {module_file})"
    return ""


def _setup(header: dict[str, Any], arrays: list[np.ndarray]) -> tuple[Session, dict[str, Any]]:
    stage = f"importing {header['module']}"
    init = decode(header["init"], arrays)
    args = list(decode(header["args"], arrays))
    kwargs = decode(header["kwargs"], arrays)
    try:
        found = load(header["module"], header["object"])
        stage = f"building {header['object']}"
        np.random.seed(int(header["seed"]) % 2**32)  # as the grader seeds its reference
        target = found(**init) if isinstance(found, type) else found
    except TargetContractError:
        raise  # a missing file or name: said as such, not as a crash
    except BaseException as error:  # an import that raises, exits or interrupts: its verdict
        raise TargetRaised(stage, error) from error
    declared = conventions(**header.get("declared", {}), inputs=header.get("inputs", ()))
    view = resolve_adapter(target, args, kwargs, conventions=declared)
    initial = snapshot(target, contents=False)  # as built: a carried state is held to it
    session = Session(view, args, RandomSources(generators_in(target)), initial)
    # what the target is, by the adapter that took it; its traits are the grader's to decide
    return session, {"kind": view.kind, "name": view.name}


def _forward_many(
    session: Session, header: dict[str, Any], arrays: list[np.ndarray], out: list[np.ndarray]
) -> list[Any]:
    """Forward with one element of an input or a weight set to each value in turn."""
    kind, key = header["where"]
    destination = session.destination(kind, key)
    positions, values = decode(header["positions"], arrays), decode(header["values"], arrays)
    outputs = []
    for position, value in zip(positions.tolist(), values.tolist()):
        index = np.unravel_index(position, destination.shape)
        original = destination[index]
        destination[index] = value
        try:
            outputs.append(encode(session.view.forward(session.call_arguments()), out))
            session.called()
        finally:
            destination[index] = original
    return outputs


def _gradients(gradients: Gradients, arrays: list[np.ndarray]) -> dict[str, Any]:
    return {
        "inputs": [encode(g, arrays) for g in gradients.inputs],
        "params": {name: encode(g, arrays) for name, g in gradients.params.items()},
        "dout_modified": bool(gradients.dout_modified),
        "returned_none": bool(gradients.returned_none),
    }


def handle(
    session: Session | None, header: dict[str, Any], arrays: list[np.ndarray]
) -> tuple[Session | None, dict[str, Any], list[np.ndarray]]:
    """One request: its reply and the arrays that go with it."""
    out: list[np.ndarray] = []
    op = header.get("op")
    if op == "setup":
        session, reply = _setup(header, arrays)
        return session, reply, out
    if session is None:
        raise TargetContractError("the grader asked for a call before setting up the target")
    session.apply(header.get("updates", []), arrays)
    session.hold = str(header.get("hold", ""))
    if op == "forward":
        passed = session.call_arguments()
        value = session.view.forward(passed)
        session.called()
        reply = {"value": encode(value, out), "changed": session.changed_inputs(passed, out)}
    elif op == "forward_many":
        reply = {"values": _forward_many(session, header, arrays, out)}
    elif op in ("backward", "backward_again"):
        cotangent = decode(header["cotangent"], arrays)
        passed = session.call_arguments(runs_forward=op == "backward")
        gradients: Gradients | None = (
            session.view.backward(passed, cotangent)
            if op == "backward"
            else session.view.backward_again(cotangent)
        )
        session.called()
        reply = {"gradients": None if gradients is None else _gradients(gradients, out)}
        reply["changed"] = session.changed_inputs(passed, out)
    elif op == "parameters":
        session.slots = session.view.parameters(header.get("declared"))
        reply = {
            "slots": [
                {
                    "name": s.name,
                    "grad_name": s.grad_name,
                    "note": s.note,
                    "value": encode(s.array, out),
                }
                for s in session.slots
            ]
        }
    elif op == "gradients":
        reply = {"params": {s.name: encode(s.read_gradient(), out) for s in session.slots}}
    else:
        raise TargetContractError(f"unknown request {op!r}")
    return session, reply, out


def _unreadable_python(error: BaseException) -> str:
    """Why an import fails for the sandbox user although it works for the grader."""
    library = os.path.dirname(os.__file__)
    if not isinstance(error, ImportError) or os.access(library, os.R_OK | os.X_OK):
        return ""
    return (
        f"\n(the sandbox's unprivileged user cannot read Python's library at {library}: "
        f"only modules the grader loaded beforehand import. Install Python where other "
        f"users can read it, as Gradescope's image does.)"
    )


def serve(sock: socket.socket) -> None:
    """Answer requests until the grader hangs up; every failure becomes an error reply."""
    session: Session | None = None
    while True:
        try:
            header, arrays = read_message(sock)
        except (EOFError, OSError):
            return
        try:
            session, reply, out = handle(session, header, arrays)
        except BaseException as error:  # SystemExit, KeyboardInterrupt: still an answer
            reply, out = {"error": _describe(error)}, []
        write_message(sock, reply, out)


def _describe(error: BaseException) -> dict[str, str]:
    if isinstance(error, TargetRaised):
        kind, text = "raised", error.describe() + _unreadable_python(error.exc)
    elif isinstance(error, GradverifyError):
        kind, text = "contract", str(error)
    else:
        kind = "raised"
        frames = traceback.format_exception_only(type(error), error)
        text = f"the submission raised {''.join(frames).strip()}"
    return {"kind": kind, "text": text[:MAX_ERROR_TEXT]}
