"""Corrupt a target's analytic gradients on purpose, to measure what a check detects.

`scaled_adapter` wraps whichever adapter would check a target so that every
gradient it reports (returned or read from the target) is multiplied by a
factor.  ``bench/detection.py`` uses it to find the smallest scaling error a
check reliably catches; tests use it to prove a 1% error fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from gradverify.adapters import Adapter, Gradients, ParamDeclaration, ParamSlot, resolve_adapter


def _scale(value: Any, factor: float) -> Any:
    return None if value is None else value * factor


def _scaled(gradients: Gradients, factor: float) -> Gradients:
    return replace(
        gradients,
        inputs=tuple(_scale(g, factor) for g in gradients.inputs),
        params={name: _scale(g, factor) for name, g in gradients.params.items()},
    )


def scaled_adapter(
    target: Any, args: Sequence[Any], kwargs: Mapping[str, Any], factor: float
) -> type[Adapter]:
    """An adapter class that checks `target` as usual but reports gradients times `factor`.

    Pass it as ``check(target, inputs, adapter=scaled_adapter(target, args, {}, 1.01))``.
    """
    base = type(resolve_adapter(target, args, kwargs))

    class Scaled(base):  # type: ignore[valid-type, misc]
        def backward(self, args: Sequence[Any], cotangent: Any) -> Gradients:
            return _scaled(super().backward(args, cotangent), factor)

        def backward_again(self, cotangent: Any) -> Gradients | None:
            gradients = super().backward_again(cotangent)
            return None if gradients is None else _scaled(gradients, factor)

        def parameters(self, declared: ParamDeclaration) -> list[ParamSlot]:
            return [
                replace(slot, read_gradient=lambda read=slot.read_gradient: _scale(read(), factor))
                for slot in super().parameters(declared)
            ]

    Scaled.__name__ = f"Scaled{base.__name__}"
    return Scaled
