"""The wire format between the grader and a submission's child process.

A message is a frame: a 4-byte length, a JSON header, then the raw bytes of the
arrays the header lists (dtype, shape, byte count).  Nothing is ever pickled:
the child runs untrusted code, and unpickling what it sends would run its code
in the grader.  `read_message` therefore trusts nothing it reads: sizes are
capped, dtypes must be plain numbers, shapes must match their byte counts, and
anything else is a `ProtocolError` (the grader turns it into an ERROR).

Values travel as descriptors: arrays by reference to the frame's arrays, plain
Python values (``True``, ``3``, ``"text"``) as JSON, tuples, lists and dicts of
those, and anything else as ``{"opaque": type name}``, so the grader can say
"forward returned generator" without ever holding the child's object.
"""

from __future__ import annotations

import json
import math
import re
import socket
import struct
import time
from typing import Any

import numpy as np

#: Largest JSON header accepted from a child (bytes).
MAX_HEADER = 1 << 20
#: Largest total of array bytes in one message (bytes): 256 MiB.
MAX_ARRAY_BYTES = 1 << 28
#: Array dtypes that may cross: booleans, integers, floats, complex; never objects.
_KINDS = "biufc"
#: The longest error text a reply may carry (the grader shows it to the student).
MAX_ERROR_TEXT = 4000
_LENGTH = struct.Struct(">I")


class ProtocolError(Exception):
    """A message that is malformed, too large, or cut off (the peer died or lied)."""


def encode(value: Any, arrays: list[np.ndarray]) -> Any:
    """A JSON-able descriptor of `value`, appending its arrays to `arrays`."""
    if value is None:
        return None
    if type(value) in (bool, int, float, str):  # plain values stay plain (train_flg=True)
        return {"json": value}
    if isinstance(value, tuple):
        return {"tuple": [encode(v, arrays) for v in value]}
    if isinstance(value, list) and all(isinstance(v, np.ndarray) for v in value):
        return {"list": [encode(v, arrays) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: encode(v, arrays) for k, v in value.items()}}
    if isinstance(value, (bool, int, float, np.generic, np.ndarray)):
        array = np.asarray(value)
        if array.dtype.kind in _KINDS:
            arrays.append(array)  # (not ascontiguousarray: it makes a 0-d array 1-d)
            return {"array": len(arrays) - 1}
    if isinstance(value, list):
        try:
            numbers = np.asarray(value)
        except (ValueError, TypeError):  # ragged
            return {"opaque": "list"}
        if numbers.dtype.kind in _KINDS:
            arrays.append(numbers)
            return {"numbers": len(arrays) - 1}  # a (nested) list of numbers, kept as such
    return {"opaque": type(value).__name__}


def decode(descriptor: Any, arrays: list[np.ndarray]) -> Any:
    """The value a descriptor stands for; opaque values become stand-ins of the same type name.

    Each array of the frame may be used once, and a list of numbers is at most
    `MAX_LIST` long: a small header cannot expand into gigabytes of Python objects.
    """
    return _decode(descriptor, arrays, set(), 0)


#: Longest list of numbers (``dx.tolist()``) rebuilt as Python objects.
MAX_LIST = 1 << 20
_DEPTH = 32


def _decode(descriptor: Any, arrays: list[np.ndarray], used: set[int], depth: int) -> Any:
    if descriptor is None:
        return None
    if depth > _DEPTH or not isinstance(descriptor, dict) or len(descriptor) != 1:
        raise ProtocolError(f"not a value descriptor: {str(descriptor)[:80]}")
    ((kind, body),) = descriptor.items()
    if kind in ("tuple", "list") and isinstance(body, list):
        items = [_decode(d, arrays, used, depth + 1) for d in body]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict" and isinstance(body, dict):
        return {str(k): _decode(d, arrays, used, depth + 1) for k, d in body.items()}
    if kind in ("array", "numbers") and type(body) is int and 0 <= body < len(arrays):
        if body in used:
            raise ProtocolError(f"array {body} used twice in one message")
        used.add(body)
        if kind == "array":
            return arrays[body]
        if arrays[body].size > MAX_LIST:
            raise ProtocolError(f"a list of {arrays[body].size} numbers (at most {MAX_LIST})")
        return arrays[body].tolist()
    if kind == "opaque" and isinstance(body, str):
        return stand_in(body)
    if kind == "json" and type(body) in (bool, int, float, str):
        return body
    raise ProtocolError(f"not a value descriptor: {str(descriptor)[:80]}")


def stand_in(type_name: str) -> Any:
    """An empty object whose type has the child's type name, for messages ("returned dict")."""
    name = re.sub(r"[^A-Za-z0-9_.]", "", type_name)[:40] or "object"
    return type(name, (), {})()


def write_message(sock: socket.socket, header: dict[str, Any], arrays: list[np.ndarray]) -> None:
    """Send one frame: header (with the arrays' layouts added) and the arrays' bytes, in one
    system call unless the arrays are large (then joining them would double the memory)."""
    layouts = [[a.dtype.str, list(a.shape), int(a.nbytes)] for a in arrays]
    body = json.dumps({**header, "_arrays": layouts}).encode()
    head = _LENGTH.pack(len(body)) + body
    if sum(a.nbytes for a in arrays) <= _JOINED_BYTES:
        sock.sendall(b"".join([head, *(a.tobytes(order="C") for a in arrays)]))
        return
    sock.sendall(head)
    for array in arrays:
        sock.sendall(array.tobytes(order="C"))


def read_message(
    sock: socket.socket, deadline: float | None = None
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Receive one frame by `deadline` (time.monotonic), validating every size, dtype and
    shape before trusting it; anything malformed is a `ProtocolError`, a late one a timeout."""
    frame = _Frame(sock, deadline)
    (length,) = _LENGTH.unpack(frame.take(_LENGTH.size))
    if length > MAX_HEADER:
        raise ProtocolError(f"a header of {length} bytes (at most {MAX_HEADER})")
    try:
        header = json.loads(frame.take(length))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ProtocolError(f"a header that is not JSON: {str(error)[:80]}") from None
    if not isinstance(header, dict) or not isinstance(header.get("_arrays"), list):
        raise ProtocolError("a header without its list of arrays")
    layouts = _checked_layouts(header.pop("_arrays"))
    return header, [frame.array(layout) for layout in layouts]


#: Array bytes up to which a frame is sent joined, in one system call.
_JOINED_BYTES = 1 << 20
#: Bytes the first receive of a frame asks for: most frames arrive whole in it.
_FIRST_READ = 1 << 16


class _Frame:
    """One frame as it arrives: a first receive of up to `_FIRST_READ` bytes, then exactly
    what is still missing.  The protocol is one reply per request, so a first receive
    reaches past its frame only if the peer sent a second one unasked; that is dropped,
    and what follows no longer parses (a `ProtocolError` for a check gone wrong anyway)."""

    def __init__(self, sock: socket.socket, deadline: float | None) -> None:
        self._sock, self._deadline = sock, deadline
        _wait(sock, deadline)
        self._held = sock.recv(_FIRST_READ)
        if not self._held:
            raise EOFError("the other side closed the connection")
        self._at = 0

    def _held_part(self, count: int) -> bytes:
        start, self._at = self._at, min(self._at + count, len(self._held))
        return self._held[start : self._at]

    def take(self, count: int) -> bytes:
        data = self._held_part(count)
        if len(data) < count:
            data += _read_exactly(self._sock, count - len(data), self._deadline)
        return data

    def array(self, layout: tuple[np.dtype, tuple[int, ...], int]) -> np.ndarray:
        dtype, shape, nbytes = layout
        array = np.empty(shape, dtype=dtype)
        view = array.reshape(-1).view(np.uint8).data  # the bytes land in the array itself
        held = self._held_part(nbytes)
        view[: len(held)] = held
        received = len(held)
        while received < nbytes:
            _wait(self._sock, self._deadline)
            count = self._sock.recv_into(view[received:], min(nbytes - received, 1 << 20))
            if not count:
                raise EOFError("the other side closed the connection")
            received += count
        return array


def _checked_layouts(layouts: list[Any]) -> list[tuple[np.dtype, tuple[int, ...], int]]:
    checked, total = [], 0
    for layout in layouts:
        try:
            dtype_text, shape, nbytes = layout
            dtype = np.dtype(str(dtype_text))
            if not all(type(n) is int for n in shape) or type(nbytes) is not int:
                raise TypeError("sizes must be integers")
            shape = tuple(shape)
        except (TypeError, ValueError) as error:
            raise ProtocolError(f"an array layout {str(layout)[:80]}: {error}") from None
        expected = math.prod(shape) * dtype.itemsize  # Python ints: no wrap-around
        if (
            dtype.kind not in _KINDS
            or dtype.hasobject
            or len(shape) > 32
            or any(n < 0 for n in shape)
            or nbytes != expected
        ):
            raise ProtocolError(f"an array layout that does not add up: {str(layout)[:80]}")
        total += nbytes
        if total > MAX_ARRAY_BYTES:
            raise ProtocolError(f"arrays over {MAX_ARRAY_BYTES} bytes in one message")
        checked.append((dtype, shape, nbytes))
    return checked


def _read_exactly(sock: socket.socket, count: int, deadline: float | None) -> bytes:
    chunks, left = [], count
    while left:
        _wait(sock, deadline)
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _wait(sock: socket.socket, deadline: float | None) -> None:
    """The time left before `deadline` for the next receive: a peer that trickles bytes
    cannot stretch a request past it."""
    if deadline is None:
        sock.settimeout(None)
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline passed")
    sock.settimeout(left)


def reply_error(reply: dict[str, Any]) -> tuple[str, str] | None:
    """``(kind, text)`` of a reply that reports an error (``raised``, ``contract``), else
    None; the text is cut to `MAX_ERROR_TEXT`, whatever the child sent."""
    error = reply.get("error")
    if error is None:
        return None
    if isinstance(error, dict):
        return str(error.get("kind", "raised")), str(error.get("text", "failed"))[:MAX_ERROR_TEXT]
    return "raised", str(error)[:MAX_ERROR_TEXT]
