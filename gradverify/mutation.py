"""Corrupt a target's analytic gradients on purpose, to measure what a check detects.

`mutated_adapter` wraps whichever adapter would check a target so that every
gradient it reports (returned or read from the target) passes through a
function first.  `scaled_adapter` multiplies every gradient by a factor;
`confined_adapter` multiplies only the elements of one gradient inside a mask
(a row, a column, a border).  ``bench/detection.py`` uses them to find the
smallest error a check reliably catches; tests use them to prove a 1% error fails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from gradverify.adapters import Adapter, Gradients, ParamDeclaration, ParamSlot, resolve_adapter

#: ``mutate(grad_key, value) -> value``: grad_key is the input's position or the slot's name.
Mutation = Callable[[int | str, Any], Any]


def _mutated(gradients: Gradients, mutate: Mutation) -> Gradients:
    return replace(
        gradients,
        inputs=tuple(mutate(i, g) for i, g in enumerate(gradients.inputs)),
        params={name: mutate(name, g) for name, g in gradients.params.items()},
    )


def mutated_adapter(
    target: Any, args: Sequence[Any], kwargs: Mapping[str, Any], mutate: Mutation
) -> type[Adapter]:
    """An adapter class that checks `target` as usual but reports ``mutate``d gradients.

    Pass it as ``check(target, inputs, adapter=mutated_adapter(target, args, {}, f))``.
    """
    base = type(resolve_adapter(target, args, kwargs))

    class Mutated(base):  # type: ignore[valid-type, misc]
        def backward(self, args: Sequence[Any], cotangent: Any) -> Gradients:
            return _mutated(super().backward(args, cotangent), mutate)

        def backward_again(self, cotangent: Any) -> Gradients | None:
            gradients = super().backward_again(cotangent)
            return None if gradients is None else _mutated(gradients, mutate)

        def parameters(self, declared: ParamDeclaration) -> list[ParamSlot]:
            return [
                replace(
                    slot,
                    read_gradient=lambda read=slot.read_gradient, key=slot.name: mutate(
                        key, read()
                    ),
                )
                for slot in super().parameters(declared)
            ]

    Mutated.__name__ = f"Mutated{base.__name__}"
    return Mutated


def scaled_adapter(
    target: Any, args: Sequence[Any], kwargs: Mapping[str, Any], factor: float
) -> type[Adapter]:
    """Every gradient times `factor`."""
    return mutated_adapter(
        target, args, kwargs, lambda _, value: None if value is None else value * factor
    )


def confined_adapter(
    target: Any,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    grad_key: int | str,
    mask: np.ndarray,
    factor: float,
) -> type[Adapter]:
    """The elements of gradient `grad_key` inside `mask` times `factor`; the rest untouched."""

    def mutate(key: int | str, value: Any) -> Any:
        if key != grad_key or value is None:
            return value
        return np.where(mask, np.asarray(value) * factor, value)

    return mutated_adapter(target, args, kwargs, mutate)
