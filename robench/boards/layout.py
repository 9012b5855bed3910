"""Where a board plot's labels go, so that no two overlap and none covers a marker.

matplotlib places annotations where it is told, so seven models near (0, 0) printed their names on top
of each other. Here the figure's geometry is fixed in points (the axes rectangle and the data limits), so
every marker's position and every label's box (its width estimated from the number of characters) is
known before drawing, and :func:`place` tries positions around each point, nearest first, keeping the
first whose box is free. It is pure arithmetic on the plot's data, hence deterministic and testable
without matplotlib.
"""

from __future__ import annotations

import math
from typing import NamedTuple

#: The figure in points (1/72 in) and the axes rectangle in figure fractions: 360 x 330 pt of plot area,
#: with room on the right for the legend and the key of numbered points.
FIG_W, FIG_H = 640.0, 400.0
AXES = (56 / FIG_W, 48 / FIG_H, 360 / FIG_W, 330 / FIG_H)
KEY_X = (56 + 360 + 16) / FIG_W
LIMITS = (-3.0, 103.0)

_MARKER = 9.0  # a marker's box side in points; markers closer than this share one label
_CHAR_W, _LINE_H = 0.62, 1.3  # label box per character and height, in units of the font size
_RADII = (4.0, 10.0, 18.0, 28.0, 40.0, 55.0, 75.0, 100.0, 130.0, 170.0, 220.0)
_LEADER_FROM = 18.0  # labels this far from their point get a leader line
_ANGLES = 16


class Label(NamedTuple):
    text: str
    anchor: tuple[float, float]  # the data point the label belongs to
    offset: tuple[float, float]  # the label box's lower-left corner, in points from the anchor
    leader: bool


def to_points(x: float, y: float) -> tuple[float, float]:
    """A data point's position in points from the axes' lower-left corner."""
    lo, hi = LIMITS
    return (x - lo) / (hi - lo) * AXES[2] * FIG_W, (y - lo) / (hi - lo) * AXES[3] * FIG_H


def clusters(points: list) -> list[list]:
    """Points (with ``.x`` and ``.y``) grouped so that markers closer than a marker's size share a label;
    each group is anchored at its first point, in the given order."""
    groups: list[list] = []
    for p in points:
        here = to_points(p.x, p.y)
        for group in groups:
            there = to_points(group[0].x, group[0].y)
            if math.dist(here, there) < _MARKER:
                group.append(p)
                break
        else:
            groups.append([p])
    return groups


def _overlaps(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _candidates(w: float, h: float):
    """Offsets of a w x h box's lower-left corner around a point, nearest first: at each radius the
    positions that read best (right, above, left, then the same below), then the box's centre on a
    circle of that radius."""
    for r in _RADII:
        yield from [
            (r, r / 2),
            (-w / 2, r),
            (-r - w, r / 2),
            (r, -h - r / 2),
            (-w / 2, -h - r),
            (-r - w, -h - r / 2),
        ]
        for i in range(_ANGLES):
            angle = 2 * math.pi * i / _ANGLES
            cx, cy = (r + w / 2) * math.cos(angle), (r + h / 2) * math.sin(angle)
            yield cx - w / 2, cy - h / 2


def place(
    texts: list[tuple[str, list[tuple[float, float]]]], markers: list[tuple[float, float]], fontsize: float
) -> list[Label]:
    """A label for each ``(text, points)``, anchored at its first point, none overlapping another label,
    any marker or the axes' edge. Placed in the given order (front names first): an earlier label gets
    the nearer spot. A label that fits nowhere (a crowded plot) goes at its last candidate inside the axes.
    """
    width, height = AXES[2] * FIG_W, AXES[3] * FIG_H
    pad = _MARKER / 2
    taken = [(x - pad, y - pad, x + pad, y + pad) for x, y in (to_points(*m) for m in markers)]
    out = []
    for text, points in texts:
        ax, ay = to_points(*points[0])
        w, h = _CHAR_W * fontsize * len(text), _LINE_H * fontsize
        fallback = None
        for dx, dy in _candidates(w, h):
            box = (ax + dx, ay + dy, ax + dx + w, ay + dy + h)
            if not (box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height):
                continue
            fallback = (dx, dy, box)
            if not any(_overlaps(box, other) for other in taken):
                break
        else:
            if fallback is None:  # wider than the axes: put it at the point, whatever it covers
                fallback = (0.0, 0.0, (ax, ay, ax + w, ay + h))
        dx, dy, box = fallback
        taken.append(box)
        nearest = (min(max(0.0, dx), dx + w), min(max(0.0, dy), dy + h))  # the box's point nearest the anchor
        out.append(Label(text, points[0], (dx, dy), math.hypot(*nearest) > _LEADER_FROM))
    return out
