"""Targets computing with arrays of another library: torch tensors, CuPy, JAX, array-API.

The checker's numerics run on numpy arrays on the host; the target computes in its
own namespace, on its own device.  `ForeignArrays` stands between them: every call
gets the inputs as arrays of the target's library (made from the host copies, on
the target's device), and every output and gradient comes back as a host copy.  A
weight of the target's library is mirrored by a numpy array, which the numerics
perturb; before every call a fresh array made from the mirror is bound wherever the
target holds the weight (fresh, so that libraries with immutable arrays, JAX, work
alike, and the user's own arrays are never written).  The check's snapshot puts the
original arrays back afterwards.

The namespace and device come from `array_api_compat`, imported only when such an
array is met.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from gradverify.adapters.base import (
    Adapter,
    Gradients,
    ParamDeclaration,
    ParamSlot,
    Wrapper,
    is_float_array,
)
from gradverify.errors import TargetContractError
from gradverify.objects import Holding, is_foreign_array, places_of, rebind


class Backend:
    """An array library: its array-API namespace, the device the target uses, conversions."""

    def __init__(self, example: Any) -> None:
        try:
            import array_api_compat
        except ImportError as missing:  # a dependency; a broken install says so
            raise TargetContractError(
                f"the target computes with {_library(example)} arrays, which gradverify reads "
                f"through array-api-compat: {missing}; pip install array-api-compat."
            ) from None
        try:
            self.namespace = array_api_compat.array_namespace(example)
        except TypeError:
            raise TargetContractError(
                f"the target computes with {type(example).__module__}.{type(example).__name__} "
                f"arrays, which no array-API namespace covers; gradverify checks numpy arrays "
                f"and those of array-API libraries (torch, CuPy, JAX, array-api-strict)."
            ) from None
        self.device = array_api_compat.device(example)
        self.library = _library(example)

    def is_float(self, value: Any) -> bool:
        """A float array of numpy or of this library."""
        if is_float_array(value):
            return True
        if not is_foreign_array(value):
            return False
        try:
            return bool(self.namespace.isdtype(value.dtype, "real floating"))
        except Exception:  # an array of a third library
            return False

    def to_host(self, value: Any) -> Any:
        """A numpy copy of an array of this library (other values as they are)."""
        if not is_foreign_array(value):
            return value
        if hasattr(value, "detach"):  # torch: a tensor that requires grad
            value = value.detach()
        try:
            return np.array(np.from_dlpack(value), copy=True)
        except Exception:  # on another device, or no DLPack: the library's own way
            pass
        getter = getattr(value, "get", None)  # CuPy
        try:
            return np.array(getter() if callable(getter) else value, copy=True)
        except Exception as error:  # a dtype numpy lacks (bfloat16), an unreadable array
            raise TargetContractError(
                f"a {self.library} array of dtype {getattr(value, 'dtype', '?')} has no numpy "
                f"copy ({type(error).__name__}: {error}); gradverify computes its differences "
                f"in numpy: check the layer in float32 or float64."
            ) from None

    def from_host(self, array: Any) -> Any:
        """An array of this library on the target's device, a copy of a numpy array."""
        if not isinstance(array, np.ndarray):
            return array
        return self.namespace.asarray(np.array(array, copy=True), device=self.device)


def is_float_like(value: Any) -> bool:
    """A float array of numpy or of another library (without asking for its namespace)."""
    return is_float_array(value) or (
        is_foreign_array(value) and "float" in str(getattr(value, "dtype", ""))
    )


def _library(value: Any) -> str:
    return type(value).__module__.split(".")[0]


class ForeignArrays(Wrapper):
    """Delegates to ``inner``, converting at the boundary (see the module docstring)."""

    def __init__(self, inner: Adapter, backend: Backend, foreign_inputs: Sequence[bool]) -> None:
        super().__init__(inner)
        self.backend = backend
        self.foreign_inputs = list(foreign_inputs)
        inner.weight_test = backend.is_float
        self.fork_hazard = (
            f"the target computes with {backend.library} arrays, and a forked copy of a library "
            f"that runs threads of its own can hang: checked in one process"
        )
        self._mirrors: list[tuple[np.ndarray, list[Holding]]] = []
        self._originals: set[int] = set()
        self._foreign_output = False  # then backward is given dout in the library, too

    @property
    def label(self) -> str:
        return f"{self.inner.label} ({self.backend.library})"

    def _args(self, args: Sequence[Any]) -> list[Any]:
        self._push()
        return [
            self.backend.from_host(a) if foreign else a
            for a, foreign in zip(args, self.foreign_inputs)
        ]

    def _push(self) -> None:
        """Bind a fresh array made from each weight's mirror wherever the target holds it."""
        for mirror, places in self._mirrors:
            fresh = self.backend.from_host(mirror)
            for place in places:
                rebind(place, fresh)

    def _to_library(self, cotangent: Any) -> Any:
        if not self._foreign_output:
            return cotangent
        if isinstance(cotangent, tuple):
            return tuple(self.backend.from_host(c) for c in cotangent)
        return self.backend.from_host(cotangent)

    def _host(self, value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return type(value)(self._host(v) for v in value)
        return self.backend.to_host(value)

    def _gradients(self, found: Gradients) -> Gradients:
        return replace(
            found,
            inputs=tuple(self._host(g) for g in found.inputs),
            params={k: self._host(v) for k, v in found.params.items()},
        )

    def forward(self, args: Sequence[Any]) -> Any:
        raw = self.inner.forward(self._args(args))
        parts = raw if isinstance(raw, tuple) else (raw,)
        self._foreign_output = any(is_foreign_array(p) for p in parts)
        return self._host(raw)

    def backward(self, args: Sequence[Any], cotangent: Any) -> Gradients:
        return self._gradients(self.inner.backward(self._args(args), self._to_library(cotangent)))

    def backward_again(self, cotangent: Any) -> Gradients | None:
        again = self.inner.backward_again(self._to_library(cotangent))
        return None if again is None else self._gradients(again)

    def parameters(self, declared: ParamDeclaration) -> list[ParamSlot]:
        """The inner adapter's weights, those of the target's library replaced by mirrors."""
        slots = []
        for slot in self.inner.parameters(declared):
            if isinstance(slot.array, np.ndarray):
                slots.append(slot)
                continue
            places = places_of(self.target, slot.array)
            if any(p.kind == "tuple" for p in places):
                raise TargetContractError(
                    f"{slot.name} is held in a tuple, so a {self.backend.library} array made "
                    f"from its perturbed copy cannot be put in its place; hold it in a list "
                    f"or an attribute."
                )
            mirror = self.backend.to_host(slot.array)
            self._originals.add(id(slot.array))
            self._mirrors.append((mirror, places))
            reader = _on_host(slot.read_gradient, self.backend)
            slots.append(replace(slot, array=mirror, read_gradient=reader))
        mirrored = [s for s in slots if any(s.array is m for m, _ in self._mirrors)]
        if mirrored:
            library, names = self.backend.library, ", ".join(s.name for s in mirrored)
            note = (
                f"{names}: {library} arrays (on {self.backend.device}), perturbed as numpy "
                f"copies; a {library} array made from each copy is put in its place before "
                f"every call, and the originals are back after the check"
            )
            index = slots.index(mirrored[0])
            slots[index] = replace(mirrored[0], note=note)
        return slots

    def held_arrays(self) -> list[Holding]:
        """The inner adapter's, but for the weights mirrored: their mirrors stand for them."""
        return [h for h in self.inner.held_arrays() if id(h.value) not in self._originals]


def on_host(view: Adapter, values: list[Any]) -> tuple[Adapter, list[Any]]:
    """`view` and `values` as the checker works with them: when the inputs or the target
    hold arrays of another library, the view converting at the boundary and host copies
    of the inputs; otherwise both as they are."""
    foreign = [is_foreign_array(v) for v in values]
    example = next((v for v, f in zip(values, foreign) if f), None)
    if example is None and view.foreign_example is None:
        return view, values
    try:
        backend = Backend(view.foreign_example if example is None else example)
    except TargetContractError:
        if example is not None:
            raise
        return view, values  # held only: the check names it as an array it cannot move
    return ForeignArrays(view, backend, foreign), [backend.to_host(v) for v in values]


def _on_host(read: Callable[[], Any], backend: Backend) -> Callable[[], Any]:
    return lambda: backend.to_host(read())
