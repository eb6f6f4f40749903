"""Baseline files: the forward outputs and gradients of one check, stored to compare later.

One compressed ``.npz`` per check, as pytest-regressions' ``ndarrays_regression``
keeps its data: the arrays, and a JSON header saying what they are and where
they were observed (format version, gradverify version, the target, the seed,
and a fingerprint of the inputs, weights and keyword arguments).  A later run
at other inputs, another seed or other keywords cannot be compared with it and
says so instead of reporting every value as moved.  Files are read with
``allow_pickle=False``: a baseline can hold only arrays of numbers and text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.npyio import NpzFile

from gradverify.errors import GradverifyError
from gradverify.references import Observation

#: Bumped when the layout of a baseline file changes; older files stay readable.
FORMAT = 1

_REGENERATE = "regenerate it with --gradverify-regen (pytest) or --regen (gradverify check)"


#: What reading a file that is not a baseline, or a damaged one, raises.
_DAMAGED = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error)


class BaselineUnreadable(GradverifyError):
    """A baseline file that exists but cannot be read as one."""


@dataclass(frozen=True)
class Record:
    """What a baseline holds: the observation, and where it was observed."""

    observation: Observation
    target: str
    seed: int
    fingerprint: str
    #: What the check was run with (tolerances, keyword arguments), for the reader of the
    #: file; the fingerprint already covers what the values depend on.
    options: dict[str, Any] = field(default_factory=dict)
    #: The shape and dtype of each input and weight ("x": "(2, 4) float64"): what a
    #: different fingerprint most often comes from, named when it does.
    arrays: dict[str, str] = field(default_factory=dict)


def described(
    names: Sequence[str], values: Sequence[Any], weights: Mapping[str, Any]
) -> dict[str, str]:
    """Each array's shape and dtype, for a header: ``{"x": "(2, 4) float64"}``."""
    items = [*zip(names, values), *weights.items()]
    return {
        name: f"{value.shape} {value.dtype}"
        for name, value in items
        if isinstance(value, np.ndarray)
    }


def fingerprint(
    names: Sequence[str],
    values: Sequence[Any],
    weights: Mapping[str, np.ndarray],
    keywords: Mapping[str, Any],
) -> str:
    """A digest of everything the stored values depend on but the layer's code."""
    digest = hashlib.sha256()
    items = [*zip(names, values), *sorted(weights.items()), *sorted(keywords.items())]
    for name, value in items:
        digest.update(name.encode())
        if isinstance(value, np.ndarray):
            digest.update(f"{value.dtype.str}{value.shape}".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        else:  # an object's default repr holds its address, new in every run: not a value
            text = repr(value)
            digest.update((type(value).__qualname__ if " at 0x" in text else text).encode())
    return digest.hexdigest()


def write(path: str, record: Record) -> None:
    """Write `record` to `path` (creating its folder), atomically: a run killed while
    writing leaves the old file or none, never half of one."""
    from gradverify import __version__

    observation = record.observation
    arrays = {
        **{f"output_{i}": a for i, a in enumerate(observation.outputs)},
        **{f"gradient_{i}": g for i, g in enumerate(observation.gradients.values())},
    }
    header = {
        "format": FORMAT,
        "gradverify": __version__,
        "target": record.target,
        "seed": record.seed,
        "fingerprint": record.fingerprint,
        "options": record.options,
        "inputs_and_weights": record.arrays,
        "outputs": len(observation.outputs),
        "gradients": [
            {"name": name, "grad_name": observation.grad_names.get(name, name)}
            for name in observation.gradients
        ],
        "arrays": {k: {"shape": list(a.shape), "dtype": a.dtype.name} for k, a in arrays.items()},
    }
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(temporary, "xb") as file:  # the umask's permissions, as for any file written
            arrays["header"] = np.array(json.dumps(header))
            np.savez_compressed(file, **arrays)  # type: ignore[arg-type]  # numpy's stub
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read(path: str) -> Record:
    """The record stored at `path`; `BaselineUnreadable` says why it cannot be one."""
    try:
        with open(path, "rb") as file:
            loaded = np.load(file, allow_pickle=False)
            if not isinstance(loaded, NpzFile):
                raise _unreadable(path, "it holds one array, not an .npz archive")
            with loaded as data:
                return _record(path, data)
    except BaselineUnreadable:
        raise
    except _DAMAGED as error:
        raise _unreadable(path, _why_unreadable(path, error)) from None


def _unreadable(path: str, reason: str) -> BaselineUnreadable:
    return BaselineUnreadable(
        f"baseline {path} cannot be read ({reason}); it is not a file gradverify wrote, or it "
        f"was damaged: restore it from version control, or {_REGENERATE}."
    )


def _record(path: str, data: NpzFile) -> Record:
    header = json.loads(str(data["header"]))
    if not isinstance(header, dict) or header.get("format") is None:
        raise ValueError("its header has no format version")
    if int(header["format"]) > FORMAT:
        raise BaselineUnreadable(
            f"baseline {path} was written by a newer gradverify ({header.get('gradverify')}, "
            f"format {header['format']}); upgrade gradverify, or {_REGENERATE}."
        )
    declared = header["arrays"]

    def array(key: str) -> np.ndarray:
        """The stored array, as the header says it is: floats of that shape and dtype."""
        found, said = data[key], declared[key]
        if found.dtype.kind != "f" or [found.dtype.name, list(found.shape)] != [
            said["dtype"],
            said["shape"],
        ]:
            raise _unreadable(
                path,
                f"{key} holds {found.dtype.name} of shape {found.shape}, its header says "
                f"{said['dtype']} of shape {tuple(said['shape'])}",
            )
        return found

    outputs = tuple(array(f"output_{i}") for i in range(int(header["outputs"])))
    entries = header["gradients"]
    gradients = {e["name"]: array(f"gradient_{i}") for i, e in enumerate(entries)}
    grad_names = {e["name"]: e["grad_name"] for e in entries}
    return Record(
        Observation(outputs, gradients, grad_names),
        target=str(header["target"]),
        seed=int(header["seed"]),
        fingerprint=str(header["fingerprint"]),
        options=dict(header.get("options", {})),
        arrays=dict(header.get("inputs_and_weights", {})),
    )


def _why_unreadable(path: str, error: BaseException) -> str:
    said = f"{type(error).__name__}: {error}".rstrip(": ")
    if isinstance(error, OSError) or zipfile.is_zipfile(path):
        return said
    with open(path, "rb") as file:
        zipped = file.read(2) == b"PK"  # every zip archive starts so: a truncated one
    return f"a damaged .npz archive, {said}" if zipped else "not an .npz archive"


def incompatible(stored: Record, current: Record) -> str:
    """Why `stored` cannot be compared with `current` (completing "the baseline ..."), or ''."""
    if stored.seed != current.seed:
        return (
            f"was recorded with seed={stored.seed}, this check runs with seed={current.seed}; "
            f"run with the same seed, or {_REGENERATE}."
        )
    changed = [
        f"{name} {stored.arrays.get(name, 'absent')} then, {now} now"
        for name, now in current.arrays.items()
        if stored.arrays and stored.arrays.get(name) != now
    ]
    if changed:
        return (
            f"was recorded at other shapes ({'; '.join(changed)}), so its values cannot be "
            f"compared with this check's: keep a baseline per shape (another file or folder), "
            f"or {_REGENERATE}."
        )
    if stored.fingerprint != current.fingerprint:
        return (
            "was recorded at other inputs, weights or keyword arguments (the fingerprint "
            "differs), so its values cannot be compared with this check's; build the layer "
            f"and its inputs as when it was written, or {_REGENERATE}."
        )
    return ""
