"""Shape specs: which arrays a layer takes, with symbolic dimensions and value domains.

A spec is plain data (so an assignment file can hold one), for example::

    {
        "dims": {"N": [1, 4], "D": [1, 5], "M": [1, 5]},
        "init": {"W": ["D", "M"], "b": ["M"]},
        "inputs": {"x": ["N", "D"]},
    }

``dims`` bounds every symbolic dimension (``[lo, hi]`` inclusive, or a fixed int;
0 is allowed for int arguments such as a padding);
``init`` are the layer constructor's keyword arguments: arrays, or a dimension's
name for an int argument (``"hidden_size": "H"``); ``inputs`` are forward's
arguments in order.  An array is a shape (names and ints) or a dict
``{"shape": [...], "domain": ..., "scale": ..., "dtype": ..., "classes": ...}``.
Domains: ``real`` (default, magnitudes up to ``scale``), ``positive``, ``unit``
(inside (0, 1)), ``probabilities`` (rows sum to 1), ``onehot`` (rows of a
``classes``-way identity) and ``labels`` (integers in ``[0, classes)``); the last
two are never differentiated.  Labels may also hold an ``ignore`` value, a negative
int a loss leaves out (the second volume's padding label ``-1``): some entries take
it, never all.  `parse_spec` validates all of it once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradverify.errors import InvalidArgument

#: Real values stay this fraction of their scale away from 0 (the common kink).
KINK_MARGIN = 1e-2

DOMAINS = ("real", "positive", "unit", "probabilities", "onehot", "labels")
LABEL_DOMAINS = ("onehot", "labels")
DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class ArraySpec:
    """One array of a spec: its symbolic shape and what values it holds."""

    shape: tuple[str | int, ...]
    domain: str = "real"
    scale: float = 1.0
    dtype: str = "float64"
    classes: str | int | None = None
    ignore: int | None = None  # labels: a value that some entries take, never all

    @property
    def differentiable(self) -> bool:
        return self.domain not in LABEL_DOMAINS


@dataclass(frozen=True)
class Spec:
    """A validated spec: dimension bounds, constructor arrays, forward inputs."""

    dims: dict[str, tuple[int, int]]
    init: dict[str, ArraySpec | str]  # a str is a dimension passed as an int
    inputs: dict[str, ArraySpec]

    @property
    def nondiff(self) -> tuple[str, ...]:
        return tuple(name for name, array in self.inputs.items() if not array.differentiable)


def parse_spec(spec: Mapping[str, Any] | Spec) -> Spec:
    """Validate a spec, with an error that names the offending entry and the fix."""
    if isinstance(spec, Spec):
        return spec
    if not isinstance(spec, Mapping):
        raise InvalidArgument(
            f"`spec` must be a mapping with 'dims', 'inputs' and optionally 'init', got "
            f"{type(spec).__name__}; e.g. {{'dims': {{'N': [1, 4]}}, 'inputs': {{'x': ['N', 3]}}}}."
        )
    unknown = sorted(set(spec) - {"dims", "init", "inputs"})
    if unknown:
        raise InvalidArgument(f"`spec` has unknown keys {unknown}; it takes dims, init, inputs.")
    dims = {name: _bounds(name, value) for name, value in _table(spec, "dims").items()}
    if not spec.get("inputs"):
        raise InvalidArgument("`spec` needs 'inputs': forward's arguments, e.g. {'x': ['N', 3]}.")
    init = {n: _init_entry(f"init.{n}", v, dims) for n, v in _table(spec, "init").items()}
    inputs = {n: _array(f"inputs.{n}", v, dims) for n, v in _table(spec, "inputs").items()}
    return Spec(dims, init, inputs)


def _table(spec: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = spec.get(key, {})
    if not isinstance(value, Mapping):
        raise InvalidArgument(
            f"`spec` {key} must map names to entries, got {key}={value!r}; "
            f"e.g. {{'dims': {{'N': [1, 4]}}, 'inputs': {{'x': ['N', 3]}}}}."
        )
    return dict(value)


def _bounds(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        low = high = value
    elif (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        low, high = value
    else:
        raise InvalidArgument(
            f"dims.{name} must be an int or [low, high], got {value!r}; e.g. {name}: [1, 4]."
        )
    if not 0 <= low <= high:
        raise InvalidArgument(
            f"dims.{name} must satisfy 0 <= low <= high, got {value!r}; e.g. {name}: [1, 4]."
        )
    return low, high


def _init_entry(where: str, value: Any, dims: Mapping[str, tuple[int, int]]) -> ArraySpec | str:
    if isinstance(value, str):
        _check_size(where, value, dims)
        return value
    return _array(where, value, dims)


def _array(where: str, value: Any, dims: Mapping[str, tuple[int, int]]) -> ArraySpec:
    entry: Any = {"shape": value} if isinstance(value, (list, tuple)) else value
    if not isinstance(entry, Mapping) or "shape" not in entry:
        raise InvalidArgument(
            f"{where} must be a shape like ['N', 3] or a dict with 'shape', got {value!r}."
        )
    extra = sorted(set(entry) - {"shape", "domain", "scale", "dtype", "classes", "ignore"})
    if extra:
        raise InvalidArgument(
            f"{where} has unknown keys {extra}; it takes shape, domain, scale, dtype, classes, "
            f"ignore."
        )
    shape = tuple(entry["shape"])
    for size in shape:
        _check_size(where, size, dims)
    array = ArraySpec(
        shape,
        entry.get("domain", "real"),
        entry.get("scale", 1.0),
        entry.get("dtype", "float64"),
        entry.get("classes"),
        entry.get("ignore"),
    )
    _check_values(where, array, dims)
    return array


def _check_size(where: str, size: Any, dims: Mapping[str, tuple[int, int]]) -> None:
    if isinstance(size, str):
        if size not in dims:
            raise InvalidArgument(
                f"{where} uses dimension {size!r}, which dims does not declare; add it, "
                f"e.g. dims={{{size!r}: [1, 4], ...}}."
            )
    elif isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidArgument(
            f"{where} has size {size!r}; sizes are dimension names or positive ints."
        )


def _check_values(where: str, array: ArraySpec, dims: Mapping[str, tuple[int, int]]) -> None:
    if array.domain not in DOMAINS:
        raise InvalidArgument(
            f"{where} has domain {array.domain!r}; it must be one of {', '.join(DOMAINS)}."
        )
    if array.dtype not in DTYPES:
        raise InvalidArgument(f"{where} has dtype {array.dtype!r}; use float64 or float32.")
    if (
        isinstance(array.scale, bool)
        or not isinstance(array.scale, (int, float))
        or not (array.scale > 0)
    ):
        raise InvalidArgument(f"{where} has scale {array.scale!r}; use a positive number.")
    ignore = array.ignore
    if ignore is not None and (
        array.domain != "labels"
        or isinstance(ignore, bool)
        or not isinstance(ignore, int)
        or ignore >= 0
    ):
        raise InvalidArgument(
            f"{where} has ignore {ignore!r}; it is a negative int (a label a loss leaves "
            f"out, e.g. ignore: -1), for the labels domain only."
        )
    if array.domain in LABEL_DOMAINS:
        if array.classes is None:
            raise InvalidArgument(f"{where} is {array.domain}: give classes, a dim name or int.")
        _check_size(where, array.classes, dims)
        if isinstance(array.classes, str) and dims[array.classes][0] < 1:
            raise InvalidArgument(
                f"{where} has {array.classes!r} classes, whose dims bound starts at 0; "
                f"labels need at least one class, e.g. {array.classes}: [2, 5]."
            )
        if array.domain == "onehot" and array.shape[-1:] != (array.classes,):
            raise InvalidArgument(
                f"{where} is onehot over {array.classes!r} classes: its last dimension must "
                f"be {array.classes!r}, got shape {list(array.shape)}."
            )


def with_ignored(drawn: np.ndarray, classes: int, ignore: int | None) -> np.ndarray:
    """Labels drawn from ``[0, classes]``, the value ``classes`` standing for the ignored
    label; the last entry is kept where every one would be ignored (a mean over none)."""
    if ignore is None or drawn.size == 0:
        return drawn
    ignored = drawn == classes
    labels = np.where(ignored, ignore, drawn)
    if ignored.all():
        labels.flat[-1] = 0
    return labels


def sizes(shape: tuple[str | int, ...], dims: Mapping[str, int]) -> tuple[int, ...]:
    """A symbolic shape with every dimension name replaced by its drawn size."""
    return tuple(dims[s] if isinstance(s, str) else s for s in shape)


@dataclass(frozen=True)
class Case:
    """One drawn case: the dimensions, constructor arrays and inputs, all consistent."""

    dims: dict[str, int]
    init: dict[str, Any]  # arrays, and ints for dimension arguments
    inputs: dict[str, Any]
    nondiff: tuple[str, ...]

    def describe(self) -> str:
        """Dimensions and every array, for a report (arrays are small once shrunk)."""
        dims = ", ".join(f"{k}={v}" for k, v in self.dims.items())
        arrays = [
            f"  {kind} {name} {np.shape(value)} = {_values(value)}"
            for kind, group in (("init", self.init), ("input", self.inputs))
            for name, value in group.items()
        ]
        return "\n".join([f"  dims: {dims or '(none)'}", *arrays])


def _values(value: Any) -> str:
    return np.array2string(np.asarray(value), precision=4, threshold=24).replace("\n", " ")


def seeded_array(
    array: ArraySpec, shape: tuple[int, ...], rng: np.random.Generator, margin: float
) -> np.ndarray:
    """A large array in its domain from numpy: uniform magnitudes in [margin, 1] x scale."""
    if array.domain == "unit":
        values = rng.uniform(margin, 1.0 - margin, shape)
    else:
        values = array.scale * rng.uniform(margin, 1.0, shape)
        if array.domain == "real":
            values *= rng.choice(np.array([-1.0, 1.0]), shape)
        elif array.domain == "probabilities":
            values /= values.sum(axis=-1, keepdims=True)
    return values.astype(array.dtype)


def draw(spec: Mapping[str, Any] | Spec, rng: np.random.Generator) -> Case:
    """One case from a spec with numpy alone (no shrinking): what grading feeds every
    submission, the same for all of them for the same seed.

    Dimensions are drawn uniformly within their bounds; real values as `seeded_array`
    draws them (at least ``kink_margin`` of their scale away from 0), labels uniformly.
    """
    parsed = parse_spec(spec)
    dims = {name: int(rng.integers(low, high + 1)) for name, (low, high) in parsed.dims.items()}

    def values(array: ArraySpec) -> np.ndarray:
        shape = sizes(array.shape, dims)
        if array.domain in LABEL_DOMAINS:
            classes = (
                dims[array.classes] if isinstance(array.classes, str) else int(array.classes or 1)
            )
            label_shape = shape if array.domain == "labels" else shape[:-1]
            top = classes + (array.ignore is not None)  # the value `classes` stands for ignore
            labels = with_ignored(
                rng.integers(0, top, size=label_shape, dtype=np.int64), classes, array.ignore
            )
            return (
                labels if array.domain == "labels" else np.eye(classes, dtype=array.dtype)[labels]
            )
        return seeded_array(array, shape, rng, KINK_MARGIN)

    init = {n: dims[a] if isinstance(a, str) else values(a) for n, a in parsed.init.items()}
    inputs = {n: values(a) for n, a in parsed.inputs.items()}
    return Case(dims, init, inputs, parsed.nondiff)
