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
STYLE = 3

_DATA_ID = "robench-plot"
_DATA = re.compile(rb'<metadata id="' + _DATA_ID.encode() + rb'">([^<]*)</metadata>')

#: Fixed settings for deterministic SVGs, applied only while a plot is drawn (no global state).
_SVG_RC = {"svg.hashsalt": "robench", "svg.fonttype": "none", "font.family": "DejaVu Sans"}


@dataclasses.dataclass(frozen=True)
class Point:
    """One model on the plot: its label, its two accuracies in % and their 95% intervals."""

    label: str
    x: float
    y: float
    front: bool
    x_ci: tuple[float, float]
    y_ci: tuple[float, float]


@dataclasses.dataclass(frozen=True)
class Plot:
    """Everything a board's plot shows; two plots with equal data are the same picture."""

    x_label: str
    y_label: str
    points: tuple[Point, ...]

    def keys(self) -> dict[str, int]:
        """The number each point off the front is drawn with (front members are labelled by name)."""
        return {p.label: i for i, p in enumerate((p for p in self.points if not p.front), start=1)}

    def data(self) -> dict:
        """The JSON-ready copy that the SVG carries (and that ``--check`` compares)."""
        keys = self.keys()
        return {
            "style": STYLE,
            "x_label": self.x_label,
            "y_label": self.y_label,
            "points": [
                {
                    **dataclasses.asdict(p),
                    "x_ci": list(p.x_ci),
                    "y_ci": list(p.y_ci),
                    "key": keys.get(p.label),
                }
                for p in self.points
            ],
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
    """Scatter of the entries (values in %, 95% intervals as whiskers), the front as a step line.

    Front members are labelled with their names; every other point gets a number, explained in a key
    beside the axes, and points whose markers touch share one label ("4,5"). Labels are placed by
    :func:`robench.boards.layout.place`, so they never overlap each other, a marker or the axes' edge.
    The step line is the boundary of the region the front dominates: going right along x, the best y still
    reachable drops only at a front member, so the line steps down there (``where="pre"``). Text is drawn
    with ``parse_math=False`` so a ``$`` in a model name is text, not mathtext. matplotlib is imported
    here, so building or checking a page never loads it.
    """
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    from robench.boards import layout

    keys = plot.keys()
    with matplotlib.rc_context(_SVG_RC):
        fig = Figure(figsize=(layout.FIG_W / 72, layout.FIG_H / 72))
        FigureCanvasSVG(fig)
        ax = fig.add_axes(layout.AXES)
        for p in plot.points:
            ax.errorbar(
                p.x,
                p.y,
                xerr=[[p.x - p.x_ci[0]], [p.x_ci[1] - p.x]],
                yerr=[[p.y - p.y_ci[0]], [p.y_ci[1] - p.y]],
                fmt="none",
                ecolor="tab:red" if p.front else "0.6",
                elinewidth=0.7,
                zorder=1,
            )
        rest = [(p.x, p.y) for p in plot.points if not p.front]
        front = sorted((p.x, p.y) for p in plot.points if p.front)
        if rest:
            ax.scatter(
                *zip(*rest, strict=True),
                s=22,
                color="tab:gray",
                label="other models (numbered, see key)",
                zorder=2,
            )
        if front:
            ax.step(*zip(*front, strict=True), where="pre", color="tab:red", linewidth=1.2, zorder=1)
            xy = zip(*front, strict=True)
            ax.scatter(*xy, marker="*", s=140, color="tab:red", label="Pareto front", zorder=3)
        markers = [(p.x, p.y) for p in plot.points]
        texts = [(p.label, [(p.x, p.y)]) for p in plot.points if p.front]
        texts += [
            (",".join(str(keys[p.label]) for p in group), [(p.x, p.y) for p in group])
            for group in layout.clusters([p for p in plot.points if not p.front])
        ]
        for label in layout.place(texts, markers, fontsize=8):
            ax.annotate(
                label.text,
                label.anchor,
                xytext=label.offset,
                textcoords="offset points",
                fontsize=8,
                va="bottom",
                ha="left",
                parse_math=False,
                arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5} if label.leader else None,
            )
        ax.set_xlim(*layout.LIMITS)
        ax.set_ylim(*layout.LIMITS)
        ax.set_xlabel(f"{plot.x_label} (%)", parse_math=False)
        ax.set_ylabel(f"{plot.y_label} (%)", parse_math=False)
        ax.grid(True, alpha=0.3)
        top = layout.AXES[1] + layout.AXES[3]
        fig.legend(loc="upper left", bbox_to_anchor=(layout.KEY_X, top), fontsize=7, frameon=False)
        key = [f"{keys[p.label]}  {p.label}  ({p.x:.1f}, {p.y:.1f})" for p in plot.points if not p.front]
        if key:
            fig.text(
                layout.KEY_X,
                top - 48 / layout.FIG_H,
                "Key: number  model  (x, y in %)\n" + "\n".join(key),
                fontsize=7,
                va="top",
                ha="left",
                parse_math=False,
                linespacing=1.5,
            )
        out = io.BytesIO()
        fig.savefig(
            out, format="svg", bbox_inches="tight", pad_inches=0.1, metadata={"Date": None, "Creator": None}
        )
    return out.getvalue()
