"""What a gradient value alone cannot show, checked as named findings.

A finding has a severity: ``error`` fails the check, ``warning`` is reported and
does not.  Each check here costs a forward and a backward or two, never a pass
over the elements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gradverify.adapters import Adapter, Gradients
from gradverify.results import Finding

#: Doubling a cotangent is exact in floating point, so a backward that is linear
#: in ``dout`` gives exactly twice the gradients up to re-association of sums.
_LINEAR_RTOL = 1e-9


def _as_arrays(gradients: Gradients) -> list[np.ndarray | None]:
    values = [*gradients.inputs, *gradients.params.values()]
    arrays: list[np.ndarray | None] = []
    for value in values:
        try:
            arrays.append(None if value is None else np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            arrays.append(None)
    return arrays


def _scaled_equal(doubled: np.ndarray | None, single: np.ndarray | None) -> bool:
    if doubled is None or single is None or doubled.shape != single.shape:
        return doubled is None and single is None
    scale = max(float(np.max(np.abs(single), initial=0.0)), 1e-300)
    return bool(np.all(np.abs(doubled - 2.0 * single) <= _LINEAR_RTOL * 2.0 * scale))


def linearity_in_dout(
    view: Adapter,
    args: Sequence[Any],
    cotangent: Any,
    gradients: Gradients,
    *,
    scalar_output: bool,
) -> Finding | None:
    """``backward(2 * dout)`` must return twice ``backward(dout)``.

    A loss layer (scalar output) that ignores ``dout`` is right only as the last
    node of a graph, where ``dout = 1``: a warning (the textbook's SoftmaxWithLoss).
    Any other non-linearity in ``dout`` is an error: chained layers would pass on
    wrong gradients even though ``dout = 1`` checks out.
    """
    if not view.takes_cotangent:
        return None
    doubled_cotangent = (
        tuple(2.0 * d for d in cotangent) if isinstance(cotangent, tuple) else 2.0 * cotangent
    )
    doubled = view.backward(args, doubled_cotangent)
    pairs = list(zip(_as_arrays(doubled), _as_arrays(gradients)))
    if all(_scaled_equal(d, s) for d, s in pairs):
        return None
    ignored = all(
        d is not None and s is not None and d.shape == s.shape and np.array_equal(d, s)
        for d, s in pairs
    )
    if ignored and scalar_output:
        return Finding(
            "dout ignored",
            "warning",
            f"{view.label} ignores dout (backward(2) == backward(1)): correct only as the "
            f"last layer of a network, where dout = 1.",
        )
    what = "ignores dout" if ignored else "is not linear in dout"
    return Finding(
        "dout ignored" if ignored else "not linear in dout",
        "error",
        f"{view.label} {what}: backward(2 * dout) != 2 * backward(dout); "
        f"multiply every gradient by the dout it receives.",
    )
