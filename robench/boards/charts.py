"""Small inline-SVG charts for the site's model pages: curves and a heatmap, drawn as text.

The model pages are static HTML (they need no script), so their charts are drawn here rather than in the
browser, and without matplotlib: a few dozen SVG elements per chart, with numbers printed at fixed
precision, so that the site is byte-deterministic across machines and library versions. Every label
goes through :func:`html.escape`.
"""

from __future__ import annotations

import math
from html import escape

W, H = 360, 220  # chart size in px
_L, _R, _T, _B = 44, 12, 22, 36  # margins: the plot area is [_L, W - _R] x [_T, H - _B]
COLOURS = ("#c0392b", "#2c6fbb", "#7f8c8d")
#: Cells darker than this lightness (in %, of hsl(210, 60%, L)) get white numbers, the others black: near
#: 47.5% the two contrast equally (about 4.6:1), so each side of it keeps at least 4.5:1.
_WHITE_INK_BELOW = 47.5


def _f(v: float) -> str:
    return f"{v:.1f}"


def nice_ticks(lo: float, hi: float, most: int = 9) -> list[float]:
    """Tick values for an axis over [lo, hi]: the multiples of the smallest round step (1, 2, 2.5 or 5 times a
    power of ten) that gives at most ``most`` of them, so that a ±30° axis reads -30, -20, ..., 30 and not
    every k-th data point (-22, -14, ..., 26), and labels never overlap."""
    if hi <= lo:
        return [lo]
    magnitude = 10 ** math.floor(math.log10((hi - lo) / most))
    for factor in (1, 2, 2.5, 5, 10):  # 10 magnitudes always fits: (hi - lo) / step < most
        step = factor * magnitude
        first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
        if last - first + 1 <= most or factor == 10:
            return [round(k * step, 10) for k in range(first, last + 1)]


def line_chart(title: str, x_label: str, xs: list[float], series: list[tuple[str, list[float]]]) -> str:
    """Curves of rates in [0, 1] (drawn in %) over the shared ``xs``, each point marked and titled."""
    lo, hi = min(xs), max(xs)
    span = (hi - lo) or 1.0

    def px(x: float) -> float:
        return _L + (x - lo) / span * (W - _L - _R)

    def py(y: float) -> float:
        return H - _B - y * (H - _T - _B)

    out = [_frame(title)]
    for pct in (0, 25, 50, 75, 100):
        y = py(pct / 100)
        out.append(f'<line class="grid" x1="{_L}" x2="{W - _R}" y1="{_f(y)}" y2="{_f(y)}"/>')
        out.append(f'<text x="{_L - 4}" y="{_f(y + 3)}" text-anchor="end">{pct}</text>')
    for x in nice_ticks(lo, hi):
        out.append(f'<text x="{_f(px(x))}" y="{H - _B + 14}" text-anchor="middle">{escape(f"{x:g}")}</text>')
    out.append(f'<text x="{(W + _L) / 2:.1f}" y="{H - 4}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text x="{_L - 4}" y="{_T - 8}" text-anchor="end">%</text>')
    for i, (name, ys) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{_f(px(x))},{_f(py(y))}" for x, y in zip(xs, ys, strict=True))
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
        for x, y in zip(xs, ys, strict=True):
            tip = escape(f"{name}: {x:g} → {100 * y:.1f}%")
            out.append(
                f'<circle cx="{_f(px(x))}" cy="{_f(py(y))}" r="2.5" fill="{colour}">'
                f"<title>{tip}</title></circle>"
            )
        if len(series) > 1:
            out.append(
                f'<text x="{W - _R - 4}" y="{_T + 12 + 12 * i}" text-anchor="end" style="fill: {colour}">'
                f"{escape(name)}</text>"
            )
    return "\n".join([*out, "</svg>"])


def heatmap(title: str, tx: list[float], ty: list[float], acc: list[float]) -> str:
    """Accuracy per (tx, ty) translation as a grid of cells, tx across and ty down, each labelled in %.

    The shading is on the fixed scale 0% (lightest) to 100% (darkest), the same for every grid, so that two
    models' heatmaps compare by eye (a scale stretched over each grid's own range made 40-45% look like
    0-100%); the numbers in the cells carry the exact values. Each number is drawn in black or white,
    whichever contrasts more with its cell (at least 4.5:1, the WCAG AA level for text), set in a style
    attribute because the site's stylesheet greys chart text and CSS overrides an SVG fill attribute."""
    cols, rows = sorted(set(tx)), sorted(set(ty))
    cell = min((W - _L - _R) / len(cols), (H - _T - _B) / len(rows))
    value = {(x, y): a for x, y, a in zip(tx, ty, acc, strict=True)}
    out = [_frame(title)]
    for j, y in enumerate(rows):
        out.append(f'<text x="{_L - 4}" y="{_f(_T + (j + 0.5) * cell + 3)}" text-anchor="end">{y:g}</text>')
        for i, x in enumerate(cols):
            a = value.get((x, y))
            left, top = _L + i * cell, _T + j * cell
            lightness = 96 - 66 * min(max(a or 0.0, 0.0), 1.0)
            shade = "#eee" if a is None else f"hsl(210, 60%, {_f(lightness)}%)"
            label = "—" if a is None else f"{100 * a:.1f}"
            ink = "#fff" if a is not None and lightness < _WHITE_INK_BELOW else "#000"
            out.append(
                f'<rect x="{_f(left)}" y="{_f(top)}" width="{_f(cell - 1)}" height="{_f(cell - 1)}" '
                f'fill="{shade}">'
                f"<title>{escape(f'tx {x:g} px, ty {y:g} px: {label}%')}</title></rect>"
            )
            out.append(
                f'<text x="{_f(left + cell / 2)}" y="{_f(top + cell / 2 + 3)}" text-anchor="middle" '
                f'style="fill: {ink}">{label}</text>'
            )
    for i, x in enumerate(cols):
        out.append(
            f'<text x="{_f(_L + (i + 0.5) * cell)}" y="{_f(_T + len(rows) * cell + 12)}" '
            f'text-anchor="middle">{x:g}</text>'
        )
    out.append(
        f'<text x="{_f(_L + len(cols) * cell / 2)}" y="{H - 4}" text-anchor="middle">'
        "tx (px) →, ty (px) ↓</text>"
    )
    return "\n".join([*out, "</svg>"])


def _frame(title: str) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" '
        f'width="{W}" height="{H}" '
        f'role="img" aria-label="{escape(title)}">'
    )
