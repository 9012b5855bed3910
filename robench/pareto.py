"""The Pareto front of a board and its picture.

A board ranks models on two axes at once (worst-case spatial accuracy and ℓ∞ robust accuracy) because
the published evidence (Engstrom et al. 2019, Kamath et al. 2021) is that they trade off: no single
ordering is fair, but "not beaten on both" is. Kept apart from the markdown so the definition is tested
on its own and the plot is rendered the same way by every caller.

The SVG must be byte-identical across runs, because ``robench leaderboard --check`` compares committed
files byte for byte: the element ids are salted with a fixed string, the date and creator (which carries
the matplotlib version) are left out, and text is written as text rather than as glyph paths.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

#: Fixed settings for byte-deterministic SVGs, applied only while a plot is drawn (no global state).
_SVG_RC = {"svg.hashsalt": "robench", "svg.fonttype": "none", "font.family": "DejaVu Sans"}


def _missing(v: float | None) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def pareto_front(x: Sequence[float | None], y: Sequence[float | None]) -> list[bool]:
    """Which points are on the front, for "higher is better" on both axes.

    A point is on the front if no other point is at least as good on both axes and strictly better on
    one. Equal points do not dominate each other, so ties and exact duplicates are all on the front.
    A point with a missing coordinate (None or NaN) is not eligible and dominates nothing: a model that
    was never measured on an axis must neither win nor push others off.
    """
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length ({len(x)} vs {len(y)})")
    points = [(i, a, b) for i, (a, b) in enumerate(zip(x, y)) if not (_missing(a) or _missing(b))]
    on_front = [False] * len(x)
    for i, a, b in points:
        on_front[i] = not any(c >= a and d >= b and (c > a or d > b) for _, c, d in points)
    return on_front


def plot_svg(
    labels: Sequence[str],
    x: Sequence[float],
    y: Sequence[float],
    on_front: Sequence[bool],
    x_label: str,
    y_label: str,
) -> bytes:
    """Scatter of the entries (values in %), the front as a step line, each point labelled.

    The step line is the boundary of the region the front dominates: going right along x, the best y
    still reachable drops only at a front member, so the line steps down there (``where="pre"``).
    Labels are drawn with ``parse_math=False`` so a ``$`` in a model name is text, not mathtext.
    """
    with matplotlib.rc_context(_SVG_RC):
        fig = Figure(figsize=(7, 5))
        FigureCanvasSVG(fig)
        ax = fig.add_subplot()
        rest = [(a, b) for a, b, f in zip(x, y, on_front, strict=True) if not f]
        front = sorted((a, b) for a, b, f in zip(x, y, on_front, strict=True) if f)
        if rest:
            ax.scatter(*zip(*rest), color="tab:gray", label="dominated", zorder=2)
        if front:
            ax.step(*zip(*front), where="pre", color="tab:red", linewidth=1.2, zorder=1)
            ax.scatter(*zip(*front), marker="*", s=140, color="tab:red", label="Pareto front", zorder=3)
        for text, a, b in zip(labels, x, y, strict=True):
            ax.annotate(text, (a, b), xytext=(5, 4), textcoords="offset points", fontsize=8, parse_math=False)
        ax.set_xlim(-3, 103)
        ax.set_ylim(-3, 103)
        ax.set_xlabel(f"{x_label} (%)", parse_math=False)
        ax.set_ylabel(f"{y_label} (%)", parse_math=False)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    return out.getvalue()
