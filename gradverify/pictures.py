"""Pictures of a failing gradient, as inline SVG: drawn from the results, never re-run.

Two pictures, both plain SVG text so that a notebook cell, an HTML report and a
browser show them with no plotting library and no external asset:

* `heat_map`: the margin (error ÷ tolerance) of every element over the tensor's own
  layout (`ErrorMap`).  Bugs have shapes: a wrong row or column is a stripe, a
  missing mask a scatter that follows the input's signs, a border a frame.
* `scatter`: analytic against numeric for the worst elements, with the diagonal on
  which they agree; a missing factor puts them on another straight line.
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from gradverify.results import ElementRow, ErrorMap

#: Margins are coloured on a log scale from 1/`_SPAN` (agreement) to `_SPAN` and beyond.
_SPAN = 1e3
#: Light blue (well inside the tolerance) to white (at the tolerance): the passing half.
_INSIDE = ((0xDE, 0xEB, 0xF7), (0xFF, 0xFF, 0xFF))
#: Pale red (just outside) to dark red (a thousand times outside): the failing half.
_OUTSIDE = ((0xFC, 0xBB, 0xA1), (0x99, 0x00, 0x0D))
_FONT = "font-family='sans-serif' font-size='11'"
_SWATCHES, _SWATCH = 24, 8
_LEGEND_WIDTH = _SWATCHES * _SWATCH + 170  # the swatches and "red: outside the tolerance"


def colour(margin: float) -> str:
    """The fill for a margin: blues inside the tolerance, reds outside, darker further."""
    if not margin > 0:
        return _hex(_INSIDE[0])
    level = min(max(math.log10(margin) / math.log10(_SPAN), -1.0), 1.0)
    low, high = _INSIDE if level <= 0 else _OUTSIDE
    share = level + 1.0 if level <= 0 else level
    return _hex(tuple(round(a + (b - a) * share) for a, b in zip(low, high)))


def heat_map(error_map: ErrorMap, name: str, shape: tuple[int, ...]) -> str:
    """The margins of `name` over its layout, with a title, axis notes and a legend."""
    rows, cols = len(error_map.margins), len(error_map.margins[0])
    side = max(6, min(24, 360 // max(rows, cols)))
    top, left = 34, 8
    layout = _layout(shape, error_map.cell)
    width = max(left + cols * side + 8, left + _LEGEND_WIDTH, left + 7 * len(layout))
    height = top + rows * side + 44
    cells = []
    for i, line in enumerate(error_map.margins):
        for j, margin in enumerate(line):
            cells.append(
                f"<rect x='{left + j * side}' y='{top + i * side}' width='{side}' "
                f"height='{side}' fill='{colour(margin)}'><title>"
                f"{_elements(shape, error_map.cell, i, j)}: error ÷ tolerance "
                f"{_number(margin)}</title></rect>"
            )
    legend_y = top + rows * side + 12
    return (
        f"<svg class='gradverify-heatmap' xmlns='http://www.w3.org/2000/svg' "
        f"width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img' "
        f"aria-label='error map of {html.escape(name)}'>"
        f"<text x='{left}' y='14' {_FONT} font-weight='bold'>{html.escape(name)}: "
        f"error ÷ tolerance</text>"
        f"<text x='{left}' y='28' {_FONT}>{html.escape(layout)}</text>"
        f"<rect x='{left - 1}' y='{top - 1}' width='{cols * side + 2}' "
        f"height='{rows * side + 2}' fill='none' stroke='#888'/>"
        + "".join(cells)
        + _legend(left, legend_y)
        + "</svg>"
    )


def scatter(rows: tuple[ElementRow, ...], name: str) -> str:
    """Analytic against numeric for `rows`, with the diagonal where the two agree."""
    points = [(r.numeric, r.analytic) for r in rows if _finite(r.numeric, r.analytic)]
    if not points:
        return ""
    size, pad = 220, 36
    values = [v for point in points for v in point]
    low, high = min(values), max(values)
    if high - low < 1e-300:
        low, high = low - 1.0, high + 1.0
    margin = 0.08 * (high - low)
    low, high = low - margin, high + margin

    def at(value: float) -> float:
        return pad + (value - low) / (high - low) * (size - 2 * pad)

    dots = "".join(
        f"<circle cx='{at(n):.1f}' cy='{size - at(a):.1f}' r='3.5' fill='#a50f15' "
        f"fill-opacity='0.75'><title>{_index(r.index)}: analytic {r.analytic:.4g}, numeric "
        f"{r.numeric:.4g}</title></circle>"
        for r, (n, a) in zip((r for r in rows if _finite(r.numeric, r.analytic)), points)
    )
    return (
        f"<svg class='gradverify-scatter' xmlns='http://www.w3.org/2000/svg' width='{size}' "
        f"height='{size + 20}' viewBox='0 0 {size} {size + 20}' role='img' "
        f"aria-label='analytic against numeric for {html.escape(name)}'>"
        f"<text x='4' y='14' {_FONT} font-weight='bold'>{html.escape(name)}: worst "
        f"{len(points)}</text>"
        f"<rect x='{pad}' y='{pad}' width='{size - 2 * pad}' height='{size - 2 * pad}' "
        f"fill='none' stroke='#888'/>"
        f"<line x1='{pad}' y1='{size - pad}' x2='{size - pad}' y2='{pad}' stroke='#2b83ba' "
        f"stroke-dasharray='4 3'><title>analytic = numeric</title></line>"
        f"{dots}"
        f"<text x='{size / 2}' y='{size - 8}' {_FONT} text-anchor='middle'>numeric "
        f"(finite differences)</text>"
        f"<text x='12' y='{size / 2}' {_FONT} text-anchor='middle' "
        f"transform='rotate(-90 12 {size / 2})'>analytic (backward)</text>"
        f"<text x='{pad}' y='{size + 12}' {_FONT}>{low:.3g} … {high:.3g} on both axes</text>"
        "</svg>"
    )


def _legend(left: int, y: int) -> str:
    swatches = "".join(
        f"<rect x='{left + k * _SWATCH}' y='{y}' width='{_SWATCH}' height='10' "
        f"fill='{colour(_SPAN ** (2 * k / (_SWATCHES - 1) - 1))}'/>"
        for k in range(_SWATCHES)
    )
    end = left + _SWATCHES * _SWATCH
    return (
        swatches
        + f"<text x='{left}' y='{y + 24}' {_FONT}>≤{1 / _SPAN:g}</text>"
        + f"<text x='{(left + end) / 2}' y='{y + 24}' {_FONT} text-anchor='middle'>1</text>"
        + f"<text x='{end}' y='{y + 24}' {_FONT} text-anchor='end'>≥{_SPAN:g}</text>"
        + f"<text x='{end + 6}' y='{y + 9}' {_FONT}>red: outside the tolerance</text>"
    )


def _layout(shape: tuple[int, ...], cell: tuple[int, int]) -> str:
    if len(shape) == 1:
        how = f"{shape[0]} elements in one row"
    elif len(shape) == 2:
        how = f"{shape[0]} rows x {shape[1]} columns"
    else:
        how = f"axis {len(shape) - 1} across, axes 0-{len(shape) - 2} flattened down"
    pooled = f"; each cell the worst of {cell[0]}x{cell[1]}" if cell != (1, 1) else ""
    return f"shape {shape}: {how}{pooled}"


def _elements(shape: tuple[int, ...], cell: tuple[int, int], i: int, j: int) -> str:
    """The tensor indices a cell covers: its first and last element, within the tensor."""
    across = shape[-1]
    rows = max(1, math.prod(shape) // across)
    first_row, first_col = i * cell[0], j * cell[1]
    last_row, last_col = min(first_row + cell[0], rows) - 1, min(first_col + cell[1], across) - 1
    first = _index(np.unravel_index(first_row * across + first_col, shape))
    if (first_row, first_col) == (last_row, last_col):
        return first
    last = _index(np.unravel_index(last_row * across + last_col, shape))
    return f"{first} to {last}"


def _index(index: tuple[Any, ...]) -> str:
    return "(" + ", ".join(str(int(i)) for i in index) + ")"


def _number(value: float) -> str:
    return "not finite" if not math.isfinite(value) else f"{value:.3g}"


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def _hex(rgb: tuple[int, ...]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)
