"""What a gradient value alone cannot show, checked as named findings.

A finding has a severity: ``error`` fails the check, ``warning`` is reported and
does not.  Each check here costs a forward and a backward or two, never a pass
over the elements.  They all compare gradients from differently ordered calls,
so they share `Probe`, which holds what one check already knows.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradverify.adapters import Adapter, Gradients
from gradverify.adapters.optimizers import optimizers_held
from gradverify.numerics import CHUNK, real_array, real_values
from gradverify.outputs import Outputs, read_outputs
from gradverify.results import Finding, FindingKind, Severity

#: Gradients from calls that must agree are compared to this relative precision:
#: doubling a cotangent is exact, and a deterministic backward repeats itself
#: bit for bit; the slack only covers re-associated sums.
_SAME_RTOL = 1e-9


@dataclass(frozen=True)
class Probe:
    """What the contract checks share: the target, the inputs, dout and the first gradients."""

    view: Adapter
    args: list[Any]
    shifted: list[Any] | None  # other valid inputs (see checks._shifted), or None
    cotangent: Any
    gradients: Gradients
    scalar_output: bool

    def backward(self, cotangent: Any = None, args: Sequence[Any] | None = None) -> Gradients:
        chosen = self.cotangent if cotangent is None else cotangent
        return self.view.backward(self.args if args is None else args, chosen)


def _array(value: Any) -> np.ndarray | None:
    return None if value is None else real_array(value, copy=False)


def _agree(first: Gradients, second: Gradients, factor: float = 1.0) -> bool:
    """Whether `first` is `factor` times `second`: input gradients by position,
    parameter gradients by name (a network's dict may come back in any order)."""
    pairs = _paired(first, second)
    return pairs is not None and all(_times(a, b, factor) for a, b in pairs)


def _summed_into(first: Gradients, again: Gradients, third: Gradients) -> bool:
    """Whether each further backward after one forward adds the same amount to every
    gradient: a sum into stored gradients, not a backward that changes its cache."""
    one, two = _paired(again, first), _paired(third, again)
    if (
        one is None
        or two is None
        or not _agree(Gradients(again.inputs, {}), Gradients(first.inputs, {}))
    ):
        return False  # a sum into stored gradients leaves the input gradients as they were
    steps = []
    for (raw_again, raw_first), (raw_third, _) in zip(one, two):
        x1, x2, x3 = (_array(raw) for raw in (raw_first, raw_again, raw_third))
        if x1 is None or x2 is None or x3 is None or not x1.shape == x2.shape == x3.shape:
            return False
        steps.append((x2 - x1, x3 - x2))
    moved = any(np.any(step != 0) for step, _ in steps)
    return moved and all(_times(later, step, 1.0) for step, later in steps)


def _paired(first: Gradients, second: Gradients) -> list[tuple[Any, Any]] | None:
    """The gradients of two backward calls side by side, or None if they do not pair."""
    if len(first.inputs) != len(second.inputs) or set(first.params) != set(second.params):
        return None
    return [
        *zip(first.inputs, second.inputs),
        *((first.params[k], second.params[k]) for k in first.params),
    ]


def _kept(gradients: Gradients, probe: Probe) -> Gradients:
    """`gradients`, or the check's first gradients where they are the same bit for bit (the
    usual case): a contract then holds one copy fewer while it calls backward again (the
    gradients may be most of memory)."""
    pairs = _paired(gradients, probe.gradients)
    identical = pairs is not None and all(_times(a, b, 1.0, exactly=True) for a, b in pairs)
    return probe.gradients if identical else gradients


def _times(raw_a: Any, raw_b: Any, factor: float, *, exactly: bool = False) -> bool:
    whole_a = None if raw_a is None else real_values(raw_a)
    whole_b = None if raw_b is None else real_values(raw_b)
    if whole_a is None or whole_b is None or whole_a.shape != whole_b.shape:
        return whole_a is None and whole_b is None
    # a chunk at a time, in float64: the gradients may be most of memory (a float32 one
    # made float64 whole would double), and this runs on every check
    flat_a, flat_b = whole_a.reshape(-1), whole_b.reshape(-1)
    pieces = [slice(i, i + CHUNK) for i in range(0, flat_a.size, CHUNK)] or [slice(0, 0)]

    def pair(piece: slice) -> tuple[np.ndarray, np.ndarray]:
        a, b = (flat[piece].astype(np.float64, copy=False) for flat in (flat_a, flat_b))
        return a, factor * b

    if all(bool((a == b).all()) for a, b in map(pair, pieces)):
        return True  # bit for bit: the usual case (doubling dout is exact)
    if exactly:
        return False
    rtol, atol = _agreement(raw_a)
    with np.errstate(invalid="ignore"):
        scale = max((float(np.nanmax(np.abs(b), initial=0.0)) for _, b in map(pair, pieces)))
        return all(_same(a, b, rtol * scale + atol) for a, b in map(pair, pieces))


def _same(a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    same = np.abs(a - b) <= tolerance
    return bool(np.all(same | (np.isnan(a) & np.isnan(b))))  # a NaN is the same NaN


def _agreement(value: Any) -> tuple[float, float]:
    """How closely two gradients in `value`'s dtype can agree: a few of its eps, and its
    subnormal spacing (float16 products fall below the normal range quickly)."""
    return _agreement_of(getattr(value, "dtype", np.dtype(np.float64)))


@functools.cache
def _agreement_of(dtype: np.dtype) -> tuple[float, float]:
    if not np.issubdtype(dtype, np.floating):
        return _SAME_RTOL, 0.0
    info = np.finfo(dtype)
    return max(_SAME_RTOL, 16 * float(info.eps)), 4 * float(info.smallest_subnormal)


def _scaled(cotangent: Any, factor: float) -> Any:
    if isinstance(cotangent, tuple):
        return tuple(factor * d for d in cotangent)
    return factor * cotangent


def linearity_in_dout(probe: Probe) -> Finding | None:
    """``backward(2 * dout)`` must return twice ``backward(dout)``.

    This also covers "zero dout gives zero gradients": a backward that adds a
    constant ``c`` gives ``2g + c`` for ``2 * dout``, not ``2g + 2c``.

    A loss layer (scalar output) that ignores ``dout`` is right only as the last
    node of a graph, where ``dout = 1``: a warning (the textbook's SoftmaxWithLoss).
    Any other non-linearity in ``dout`` is an error: chained layers would pass on
    wrong gradients even though ``dout = 1`` checks out.
    """
    if not probe.view.takes_cotangent:
        return None
    doubled = probe.backward(_scaled(probe.cotangent, 2.0))
    if _agree(doubled, probe.gradients, 2.0):
        return None
    ignored = _agree(doubled, probe.gradients, 1.0)
    label = probe.view.label
    if ignored and probe.scalar_output:
        return Finding(
            FindingKind.DOUT_IGNORED,
            Severity.WARNING,
            f"{label} ignores dout (backward(2) == backward(1)): correct only as the last "
            f"layer of a network, where dout = 1.",
        )
    what = "ignores dout" if ignored else "is not linear in dout"
    return Finding(
        FindingKind.DOUT_IGNORED if ignored else FindingKind.NOT_LINEAR_IN_DOUT,
        Severity.ERROR,
        f"{label} {what}: backward(2 * dout) != 2 * backward(dout); "
        f"multiply every gradient by the dout it receives.",
    )


def dout_untouched(probe: Probe) -> Finding | None:
    """Writing into ``dout`` is a warning: the textbook's ReLU does it (``dout[mask] = 0``)."""
    if not probe.gradients.dout_modified:
        return None
    return Finding(
        FindingKind.DOUT_MODIFIED,
        Severity.WARNING,
        f"{probe.view.label} writes into the dout it is given. Harmless in a chain, but where "
        f"a gradient fans out (one output feeding two layers) the second layer receives the "
        f"first one's edits; use dout = dout.copy() first.",
    )


def repeated_backward(probe: Probe, accumulates: bool) -> Finding | None:
    """Two backward calls after one forward must agree, unless declared accumulating."""
    if accumulates:
        return None
    first = _kept(probe.backward(), probe)
    again = probe.view.backward_again(probe.cotangent)
    if again is None or _agree(again, first):
        return None
    label = probe.view.label
    third = probe.view.backward_again(probe.cotangent)
    if third is not None and _summed_into(first, again, third):
        message = (
            f"{label} accumulates (each call after one forward adds the same gradient "
            f"again); reset gradients in backward, or pass accumulates=True if summing into "
            f"them is intended."
        )
    else:  # not a sum: backward changed what the next backward reads
        message = (
            f"{label} returns other gradients when called twice after one forward: backward "
            f"must depend only on what forward left (does it change the cache, self.out or "
            f"self.mask, or the weights, or draw random numbers?)."
        )
        held = optimizers_held(probe.view.target)
        if held:
            message += (
                f" If backward updates the weights through {', '.join(held)}, declare "
                f"optimizer={held if len(held) > 1 else held[0]!r}: the check then records the "
                f"gradients it hands over and leaves the weights alone."
            )
    return Finding(FindingKind.BACKWARD_NOT_REPEATABLE, Severity.ERROR, message)


def stale_state(probe: Probe) -> Finding | None:
    """``forward(x1); forward(x2); backward`` must equal ``forward(x2); forward(x2); backward``."""
    if probe.shifted is None or not probe.view.takes_cotangent:
        return None
    probe.view.forward(probe.shifted)
    after_other = _kept(probe.backward(), probe)
    probe.view.forward(probe.args)
    after_same = probe.backward()
    if _agree(after_other, after_same):
        return None
    return Finding(
        FindingKind.STALE_STATE,
        Severity.ERROR,
        f"{probe.view.label} depends on an earlier forward: backward after forward(x1), "
        f"forward(x2) differs from after forward(x2), forward(x2). Cache what backward "
        f"needs on every forward, not once.",
    )


def deterministic_forward(
    view: Adapter, args: list[Any], first: Outputs, pinned: bool
) -> Finding | None:
    """The same inputs must give the same outputs (after pinning the target's RNG)."""
    repeated = read_outputs(view.forward(args), view.name).arrays
    same = len(first.arrays) == len(repeated) and all(
        a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
        for a, b in zip(first.arrays, repeated)
    )
    if same:
        return None
    source = " even with its random generators reset before each call" if pinned else ""
    return Finding(
        FindingKind.NONDETERMINISTIC_FORWARD,
        Severity.ERROR,
        f"{view.name}.forward returned different outputs for the same inputs{source}; finite "
        f"differences of a changing function mean nothing. Draw random numbers from numpy "
        f"(np.random or a Generator attribute) so the check can hold them fixed.",
    )


def forward_mutation(view: Adapter, names: list[str], mutated: list[str]) -> Finding | None:
    """Writing into an input array is an error: the caller's data changes under them."""
    if not mutated:
        return None
    return Finding(
        FindingKind.INPUT_MODIFIED,
        Severity.ERROR,
        f"{view.name}.forward writes into its input {', '.join(mutated)}: the caller's array "
        f"changes (and a layer before it would see it). Copy first: x = x.copy(). The check "
        f"continued on fresh copies for every call.",
    )


def gradient_count(view: Adapter, returned: int, inputs: int) -> Finding | None:
    """More gradients than inputs is an error (fewer marks trailing inputs non-differentiable)."""
    if not view.differentiates_inputs or returned <= inputs:
        return None
    return Finding(
        FindingKind.TOO_MANY_GRADIENTS,
        Severity.ERROR,
        f"{view.label} returned {returned} gradients for {inputs} inputs; return one per "
        f"input, in forward's order (if the others are the weights' gradients, say whose: "
        f"returns=('x', 'W', 'b') names each in order).",
    )


def gradient_dtype(
    name: str, grad_name: str, array_dtype: np.dtype, value: Any, computation: np.dtype
) -> Finding | None:
    """A gradient less precise than the computation it differentiates loses digits (error).

    `computation` is the least precise of forward's outputs and of what it was seen to
    compute in: a float32 gradient of a layer computing in float32 throughout is as
    precise as its forward, whatever the dtype of the input.  A gradient more precise
    than its array only costs memory (warning: float32 layers often return float64
    through an ``np.zeros(shape)``).
    """
    grad_dtype = getattr(value, "dtype", None)
    if not isinstance(grad_dtype, np.dtype) or grad_dtype == array_dtype:
        return None
    if not np.issubdtype(grad_dtype, np.floating):
        return Finding(
            FindingKind.GRADIENT_DTYPE,
            Severity.ERROR,
            f"{grad_name} is {grad_dtype} but {name} is {array_dtype}: a gradient must hold "
            f"real floats; compute it in {array_dtype}.",
        )
    precise_enough = np.finfo(grad_dtype).eps <= max(
        np.finfo(computation).eps, np.finfo(array_dtype).eps
    )
    if grad_dtype.itemsize < array_dtype.itemsize:
        if precise_enough:
            return None
        return Finding(
            FindingKind.GRADIENT_DTYPE,
            Severity.ERROR,
            f"{grad_name} is {grad_dtype} but {name} is {array_dtype} and forward computes in "
            f"{computation}: precision is lost; compute it in {computation}.",
        )
    return Finding(
        FindingKind.GRADIENT_DTYPE,
        Severity.WARNING,
        f"{grad_name} is {grad_dtype} but {name} is {array_dtype} (an upcast, e.g. from "
        f"np.zeros(shape) without dtype=).",
    )
