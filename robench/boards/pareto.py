"""The Pareto front of a board.

A board ranks models on two axes at once (worst-case spatial accuracy and ℓ∞ robust accuracy) because
the published evidence (Engstrom et al. 2019, Kamath et al. 2021) is that they trade off: no single
ordering is fair, but "not beaten on both" is. Kept apart from the page so the definition is tested on its
own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


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
    points = [
        (i, a, b) for i, (a, b) in enumerate(zip(x, y, strict=True)) if not (_missing(a) or _missing(b))
    ]
    on_front = [False] * len(x)
    for i, a, b in points:
        on_front[i] = not any(c >= a and d >= b and (c > a or d > b) for _, c, d in points)
    return on_front
