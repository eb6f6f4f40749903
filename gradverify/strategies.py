"""Hypothesis strategies that draw complete, consistent cases from a spec.

``cases(spec)`` draws every symbolic dimension once, then every constructor array
and every input with those sizes, in their domains: no NaN, no infinity, no
subnormals, and real values kept at least ``kink_margin * scale`` away from 0,
where ReLU, abs and max have their kinks.  Use it in your own tests::

    @given(cases({"dims": {"N": [1, 4], "D": [1, 5]}, "inputs": {"x": ["N", "D"]}}))
    def test_relu(case):
        assert gradverify.check(Relu(), case.inputs, nondiff=case.nondiff).passed

A failing case shrinks to the smallest dimensions and simplest values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradverify.specs import (
    KINK_MARGIN,
    ArraySpec,
    Case,
    Spec,
    parse_spec,
    seeded_array,
    sizes,
    with_ignored,
)

#: Arrays up to this many elements are drawn element by element, so a failing case
#: shrinks to the simplest values; larger ones from a drawn seed, because drawing
#: thousands of elements one by one costs hypothesis far more than the check itself.
#: Shrinking makes a failing case small first, so its arrays end up drawn elementwise.
ELEMENTWISE_LIMIT = 64


def _magnitudes(array: ArraySpec, low: float, high: float) -> st.SearchStrategy[float]:
    width: Literal[32, 64] = 32 if array.dtype == "float32" else 64
    if width == 32:  # bounds must be float32 numbers: round them inwards
        low32, high32 = np.float32(low), np.float32(high)
        low = float(low32 if low32 >= low else np.nextafter(low32, np.float32(np.inf)))
        high = float(high32 if high32 <= high else np.nextafter(high32, np.float32(-np.inf)))
    return st.floats(
        min_value=low,
        max_value=high,
        allow_nan=False,
        allow_infinity=False,
        allow_subnormal=False,
        width=width,
    )


def array_strategy(
    array: ArraySpec, dims: Mapping[str, int], kink_margin: float = KINK_MARGIN
) -> st.SearchStrategy[Any]:
    """The values of one array of the spec, given the drawn dimensions."""
    shape = sizes(array.shape, dims)
    dtype = np.dtype(array.dtype)
    if array.domain in ("labels", "onehot"):
        classes = dims[array.classes] if isinstance(array.classes, str) else int(array.classes or 1)
        label_shape = shape if array.domain == "labels" else shape[:-1]
        top = classes - 1 + (array.ignore is not None)  # `classes` stands for the ignored one
        labels = hnp.arrays(np.int64, label_shape, elements=st.integers(0, top))
        if array.domain == "labels":
            return labels.map(lambda drawn: with_ignored(drawn, classes, array.ignore))
        return labels.map(lambda t: np.eye(classes, dtype=dtype)[t])
    scale = float(array.scale)
    if int(np.prod(shape)) > ELEMENTWISE_LIMIT:
        return st.integers(0, 2**32 - 1).map(
            lambda seed: seeded_array(array, shape, np.random.default_rng(seed), kink_margin)
        )
    if array.domain == "unit":
        elements = _magnitudes(array, kink_margin, 1.0 - kink_margin)
    elif array.domain in ("positive", "probabilities"):
        elements = _magnitudes(array, kink_margin * scale, scale)
    else:
        positive = _magnitudes(array, kink_margin * scale, scale)
        elements = st.one_of(positive, positive.map(lambda v: -v))
    values = hnp.arrays(dtype, shape, elements=elements)
    if array.domain == "probabilities":
        return values.map(lambda p: (p / p.sum(axis=-1, keepdims=True)).astype(dtype))
    return values


@st.composite
def _cases(draw: st.DrawFn, spec: Spec, kink_margin: float) -> Case:
    dims = {name: draw(st.integers(low, high)) for name, (low, high) in spec.dims.items()}
    init = {
        name: dims[a] if isinstance(a, str) else draw(array_strategy(a, dims, kink_margin))
        for name, a in spec.init.items()
    }
    inputs = {name: draw(array_strategy(a, dims, kink_margin)) for name, a in spec.inputs.items()}
    return Case(dims, init, inputs, spec.nondiff)


def cases(
    spec: Mapping[str, Any] | Spec, *, kink_margin: float = KINK_MARGIN
) -> st.SearchStrategy[Case]:
    """Draw a complete `Case` (dims, constructor arrays, inputs) from a spec."""
    return _cases(parse_spec(spec), kink_margin)
