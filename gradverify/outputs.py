"""What a forward returned, and the seeded cotangent that turns it into one scalar.

Every output is contracted with a random ``dout`` drawn once per check:
``L = sum(dout * f(x))``, so the numeric gradient of ``L`` is exactly what a
correct ``backward(dout)`` returns.  A scalar output (a loss) uses ``dout = 1``,
the textbook's ``backward(dout=1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradverify.errors import TargetContractError
from gradverify.numerics import inner

#: Non-integer output values needed before `Outputs.computed_precision` concludes float16.
_EVIDENCE = 4


def _exact(values: np.ndarray, dtype: type[np.floating[Any]]) -> np.ndarray:
    """Which `values` survive a round trip through `dtype` unchanged."""
    return values.astype(dtype).astype(np.float64) == values


@dataclass(frozen=True)
class Outputs:
    """The forward's outputs at the centre, as float arrays, and whether it was one scalar."""

    arrays: tuple[np.ndarray, ...]
    is_tuple: bool
    is_scalar: bool

    @property
    def dtypes(self) -> tuple[np.dtype, ...]:
        return tuple(a.dtype for a in self.arrays)

    def computed_precision(self) -> np.dtype | None:
        """The lower precision the forward really computed in, if its values betray one.

        A forward that computes in float32 and returns float64 returns values that
        are all exactly float32 numbers; a genuine float64 result is one with
        probability 2**-29 per value.  Integers, zeros and short binary fractions
        (0.5, 0.375) are exact in every precision and prove nothing, so a value
        counts as evidence of float32 only if float16 cannot hold it, and float16
        is concluded only from at least `_EVIDENCE` non-integer values.
        """
        with np.errstate(over="ignore"):
            return self._lowest_exact_precision()

    def _lowest_exact_precision(self) -> np.dtype | None:
        values = np.concatenate([a.reshape(-1).astype(np.float64) for a in self.arrays])
        telling = values[np.isfinite(values) & (values != np.round(values))]
        declared = min(d.itemsize for d in self.dtypes)
        exact16, exact32 = (_exact(telling, np.float16), _exact(telling, np.float32))
        if declared > 2 and telling.size >= _EVIDENCE and np.all(exact16):
            return np.dtype(np.float16)
        if declared > 4 and np.all(exact32) and not np.all(exact16):
            return np.dtype(np.float32)
        return None

    def cotangent(self, rng: np.random.Generator) -> Cotangent:
        if self.is_scalar:
            return Cotangent((np.ones((), dtype=np.float64),), self, 1.0)
        # backward gets dout in each output's dtype (a float32 layer should return float32
        # gradients); the loss contracts with the very same numbers, held in float64.
        in_dtype = tuple(rng.standard_normal(a.shape).astype(a.dtype) for a in self.arrays)
        douts = tuple(d.astype(np.float64) for d in in_dtype)
        return Cotangent(douts, self, in_dtype if self.is_tuple else in_dtype[0])


def computed_precision(
    outputs: Outputs,
    forward: Callable[[list[Any]], Any],
    inputs: list[Any],
    name: str,
    held: Sequence[np.ndarray] = (),
) -> np.dtype | None:
    """`Outputs.computed_precision`, confirmed at inputs and weights nudged off float32's grid.

    A float64 layer that merely copies its inputs (ReLU, pooling) or its weights
    (an embedding's rows, from a float32 checkpoint) returns float32 values when
    they came from float32 data; a nudge of 2**-40 (relative) to every float input
    and every `held` weight tells a float32 computation from float32 data.  The
    weights are put back bit for bit.
    """
    precision = outputs.computed_precision()
    if precision is None:
        return None

    def finer(value: Any) -> bool:
        return (
            isinstance(value, np.ndarray)
            and np.issubdtype(value.dtype, np.floating)
            and value.dtype.itemsize > precision.itemsize
        )

    nudged = [v * (1 + 2.0**-40) if finer(v) else v for v in inputs]
    weights = [w for w in held if finer(w) and w.flags.writeable]
    originals = [w.copy() for w in weights]
    try:
        for weight in weights:
            weight *= 1 + 2.0**-40
        return read_outputs(forward(nudged), name).computed_precision()
    finally:
        for weight, original in zip(weights, originals):
            np.copyto(weight, original)


def read_outputs(raw: Any, name: str) -> Outputs:
    """Validate what forward returned: float arrays or scalars, all finite.

    A tuple (or a list of arrays) is several outputs; anything else must be one
    array or number.  Every malformed return is a `TargetContractError` saying
    what came back and what to return instead.
    """
    is_tuple = isinstance(raw, tuple) or (
        isinstance(raw, list) and bool(raw) and all(isinstance(i, np.ndarray) for i in raw)
    )
    items = raw if is_tuple else (raw,)
    if not items:
        raise TargetContractError(f"{name}.forward returned an empty tuple; return its output.")
    arrays = [
        _output_array(item, f"{name}.forward output {i}" if is_tuple else f"{name}.forward")
        for i, item in enumerate(items)
    ]
    if not any(np.issubdtype(a.dtype, np.floating) for a in arrays):
        raise TargetContractError(
            f"{name}.forward returned only integers ({arrays[0].dtype}): rounded or cast values "
            f"do not change under small steps, so there is nothing to differentiate; "
            f"return floats."
        )
    floats = [a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64) for a in arrays]
    is_scalar = not is_tuple and floats[0].ndim == 0
    return Outputs(tuple(floats), is_tuple, is_scalar)


def _output_array(item: Any, where: str) -> np.ndarray:
    """One output as an array of real numbers, all finite, or the contract error saying why."""
    if item is None:
        raise TargetContractError(
            f"{where} returned None: did it forget `return out`? (Assignment templates "
            f"leave forward unfinished this way.)"
        )
    if isinstance(item, (dict, str, bytes, set)) or not _array_convertible(item):
        raise TargetContractError(
            f"{where} returned {type(item).__name__}; return the output as a numpy array "
            f"(or a tuple of arrays for several outputs)."
        )
    if isinstance(item, list):
        raise TargetContractError(
            f"{where} returned a Python list (from .tolist()?); return a numpy array."
        )
    array = item if isinstance(item, np.ndarray) else np.asarray(item)
    if array.dtype.kind not in "biuf":
        raise TargetContractError(
            f"{where} returned {type(item).__name__} of dtype {array.dtype}, expected "
            f"real floats to differentiate."
        )
    if not np.all(np.isfinite(array)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise TargetContractError(
            f"{where} is not finite at index {bad} (value {array[bad]}) for the given inputs; "
            f"nothing can be differentiated there (overflow in exp? log of 0?)."
        )
    return array


def _array_convertible(item: Any) -> bool:
    """Whether `item` is a number, an array, or something numpy turns into numbers."""
    if isinstance(item, (np.ndarray, np.generic, int, float, list)):
        return True
    return hasattr(item, "__array__")


@dataclass(frozen=True)
class Cotangent:
    """The seeded ``dout`` and how to contract a raw forward output with it."""

    douts: tuple[np.ndarray, ...]
    centre: Outputs
    for_backward: Any

    def magnitude(self, outputs: Outputs) -> float:
        """``S = sum |dout * f(x)|``: the scale of the rounding error in the loss."""
        return sum(inner(np.abs(d), np.abs(a)) for d, a in zip(self.douts, outputs.arrays))

    def changed_magnitude(self, raw: Any) -> float:
        """``sum |dout * f|`` over the outputs that differ from the centre's.

        Outputs a perturbation leaves unchanged cancel exactly in ``L(x+h) - L(x-h)``
        (the loss is summed in float64), so only the changed ones carry rounding
        noise: moving ``x[i, j]`` of an Affine touches row ``i`` alone.
        """
        items = raw if self.centre.is_tuple else (raw,)
        total = 0.0
        for dout, centre, item in zip(self.douts, self.centre.arrays, items):
            now = np.asarray(item, dtype=np.float64)
            if now.shape != centre.shape:
                return self.magnitude(self.centre)
            changed = now != centre
            total += float(
                np.sum(
                    np.abs(dout[changed])
                    * np.maximum(np.abs(centre[changed]), np.abs(now[changed]))
                )
            )
        return total

    @property
    def scalarize(self) -> Callable[[Any], float]:
        """``raw -> sum(dout * raw)``, specialised to the output's structure (hot path)."""
        if self.centre.is_scalar:
            return _scalar_loss
        shapes = [a.shape for a in self.centre.arrays]
        douts = self.douts
        if not self.centre.is_tuple:
            dout, shape = douts[0], shapes[0]
            return lambda raw: inner(dout, _same_shape(raw, shape))
        count = len(shapes)
        return lambda raw: float(
            sum(
                inner(d, _same_shape(r, s))
                for d, r, s in zip(douts, _same_count(raw, count), shapes)
            )
        )


def _scalar_loss(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise TargetContractError(
            f"forward returned {type(raw).__name__} {getattr(raw, 'shape', '')} at a perturbed "
            f"point but a scalar at the centre; its output must not depend on input values."
        ) from None


def _same_count(raw: Any, count: int) -> Any:
    if not isinstance(raw, (tuple, list)) or len(raw) != count:
        found = f"{len(raw)} outputs" if isinstance(raw, (tuple, list)) else type(raw).__name__
        raise TargetContractError(
            f"forward returned {found} at a perturbed point but {count} at the centre; "
            f"the number of its outputs must not depend on input values."
        )
    return raw


def _same_shape(raw: Any, shape: tuple[int, ...]) -> Any:
    if getattr(raw, "shape", None) != shape:
        raise TargetContractError(
            f"forward returned shape {getattr(raw, 'shape', type(raw).__name__)} at a perturbed "
            f"point but {shape} at the centre; its output shape must not depend on input values."
        )
    return raw
