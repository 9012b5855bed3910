"""The board's plot: what it shows (:class:`Plot`), the SVG drawn from that, and the data read back.

``robench leaderboard --check`` must pass for a contributor whose matplotlib draws the same points with
other bytes (a new release moves a path by a hair or renames a style). So each SVG carries a
machine-readable copy of what it shows (axis labels; each point's label, x, y and front membership) in a
``<metadata id="robench-plot">`` element, and the check compares that copy, never the drawing: a stale
plot, a deleted one or one whose data was edited still fails, a re-rendered one does not. ``write``
likewise leaves an SVG alone while its data is unchanged, so a renderer upgrade does not churn the
committed files. Drawing on request also keeps matplotlib out of ``--check`` altogether.

The drawing is still deterministic on one machine (ids salted with a fixed string, no date or creator,
text as text rather than glyph paths), so a plot whose data changed is redrawn with a small diff.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from xml.sax import saxutils

#: Bump when :func:`draw` changes what the picture looks like: every plot's data then differs from what
#: its SVG carries, so ``write`` redraws them all and ``--check`` asks for that.
STYLE = 1

_DATA_ID = "robench-plot"
_DATA = re.compile(rb'<metadata id="' + _DATA_ID.encode() + rb'">([^<]*)</metadata>')

#: Fixed settings for deterministic SVGs, applied only while a plot is drawn (no global state).
_SVG_RC = {"svg.hashsalt": "robench", "svg.fonttype": "none", "font.family": "DejaVu Sans"}


@dataclasses.dataclass(frozen=True)
class Point:
    """One model on the plot: its label and its two accuracies in %."""

    label: str
    x: float
    y: float
    front: bool


@dataclasses.dataclass(frozen=True)
class Plot:
    """Everything a board's plot shows; two plots with equal data are the same picture."""

    x_label: str
    y_label: str
    points: tuple[Point, ...]

    def data(self) -> dict:
        """The JSON-ready copy that the SVG carries (and that ``--check`` compares)."""
        return {
            "style": STYLE,
            "x_label": self.x_label,
            "y_label": self.y_label,
            "points": [dataclasses.asdict(p) for p in self.points],
        }


def to_svg(plot: Plot) -> bytes:
    """The plot drawn as SVG, with its data embedded right after the root element's start tag."""
    drawing = draw(plot).decode()
    payload = json.dumps(plot.data(), ensure_ascii=False, indent=1, sort_keys=True)
    start = drawing.index(">", drawing.index("<svg")) + 1
    block = f'\n <metadata id="{_DATA_ID}">{saxutils.escape(payload)}</metadata>'
    return (drawing[:start] + block + drawing[start:]).encode()


def shows(svg_bytes: bytes, plot: Plot) -> bool:
    """Whether an SVG carries exactly ``plot``'s data (False for one without readable data)."""
    found = _DATA.search(svg_bytes)
    if found is None:
        return False
    try:
        return json.loads(saxutils.unescape(found.group(1).decode())) == plot.data()
    except ValueError:  # not UTF-8, or not JSON: not data this module wrote
        return False


def draw(plot: Plot) -> bytes:
    """Scatter of the entries (values in %), the front as a step line, each point labelled.

    The step line is the boundary of the region the front dominates: going right along x, the best y
    still reachable drops only at a front member, so the line steps down there (``where="pre"``).
    Labels are drawn with ``parse_math=False`` so a ``$`` in a model name is text, not mathtext.
    matplotlib is imported here, so building or checking a page never loads it.
    """
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_SVG_RC):
        fig = Figure(figsize=(7, 5))
        FigureCanvasSVG(fig)
        ax = fig.add_subplot()
        rest = [(p.x, p.y) for p in plot.points if not p.front]
        front = sorted((p.x, p.y) for p in plot.points if p.front)
        if rest:
            ax.scatter(*zip(*rest), color="tab:gray", label="dominated", zorder=2)
        if front:
            ax.step(*zip(*front), where="pre", color="tab:red", linewidth=1.2, zorder=1)
            ax.scatter(*zip(*front), marker="*", s=140, color="tab:red", label="Pareto front", zorder=3)
        for p in plot.points:
            ax.annotate(
                p.label, (p.x, p.y), xytext=(5, 4), textcoords="offset points", fontsize=8, parse_math=False
            )
        ax.set_xlim(-3, 103)
        ax.set_ylim(-3, 103)
        ax.set_xlabel(f"{plot.x_label} (%)", parse_math=False)
        ax.set_ylabel(f"{plot.y_label} (%)", parse_math=False)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    return out.getvalue()
