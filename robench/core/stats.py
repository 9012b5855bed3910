"""Uncertainty of accuracies measured on a fixed set of examples, and paired comparisons between them.

A robust accuracy of 20% on 1,000 examples is 20% ± 2.5 points (95%), so a page that prints bare numbers
ranks models that the data cannot tell apart. Everything here is exact or closed-form and uses only the
standard library (no scipy, no torch), because boards and CI use it without the evaluation stack.

- :func:`wilson`: the **Wilson score interval** for one accuracy k/n. Unlike the textbook normal
  ("Wald") interval it never leaves [0, 1] and keeps close to nominal coverage at 0% and 100%, where
  many robust accuracies sit.
- :func:`compare`: two accuracies on the *same* examples (every record keeps its per-example verdicts in
  ``per_example``, in dataset-index order). Only the discordant examples (right for one, wrong for the
  other) carry information about the difference, so the test is the **exact McNemar test**: a two-sided
  binomial test of the discordant counts against Binomial(b + c, 1/2), computed with integers. The
  interval for the difference is **Newcombe's hybrid score interval for paired proportions** (Newcombe
  1998, Statistics in Medicine 17:2635, method 10, "square-and-add"): the two Wilson intervals combined
  with the (continuity-corrected) correlation of the paired verdicts; like Wilson it stays in [-1, 1] and
  behaves at 0% and 100%.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

#: 95% two-sided: the 0.975 quantile of the standard normal.
Z95 = NormalDist().inv_cdf(0.975)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for k successes out of n (n > 0), as fractions in [0, 1]."""
    if not 0 <= k <= n or n <= 0:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # the exact endpoints at k = 0 or n are 0 and 1; rounding must not move them inside
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs: P(X <= min(b, c)) doubled, X ~
    Binomial(b + c, 1/2), capped at 1. Integer arithmetic, so tiny p-values do not round to 0 early."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


class Paired(NamedTuple):
    """Two accuracies on the same n examples and what their difference is worth."""

    n: int
    acc_a: float
    acc_b: float
    only_a: int  # examples A gets right and B wrong (McNemar's b)
    only_b: int  # examples B gets right and A wrong (McNemar's c)
    diff: float  # acc_a - acc_b
    low: float  # 95% interval for diff (Newcombe's hybrid score interval)
    high: float
    p: float  # exact McNemar p-value

    @property
    def distinguishable(self) -> bool:
        """Whether the two accuracies differ at the 5% level (exact McNemar)."""
        return self.p < 0.05


def compare(a: str, b: str) -> Paired:
    """Paired comparison of two per-example verdict strings ('0'/'1', same examples, same order)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired verdicts must have the same non-zero length, got {len(a)} and {len(b)}")
    both = only_a = only_b = 0
    for x, y in zip(a, b, strict=True):
        both += x == y == "1"
        only_a += x == "1" and y != "1"
        only_b += y == "1" and x != "1"
    n = len(a)
    neither = n - both - only_a - only_b
    k1, k2 = both + only_a, both + only_b
    p1, p2 = k1 / n, k2 / n
    (l1, u1), (l2, u2) = wilson(k1, n), wilson(k2, n)
    phi = _phi(both * neither - only_a * only_b, k1 * (n - k1) * k2 * (n - k2), n)
    diff = p1 - p2
    low = diff - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = diff + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    p = mcnemar_exact(only_a, only_b)
    return Paired(n, p1, p2, only_a, only_b, diff, max(-1.0, low), min(1.0, high), p)


def _phi(cross: int, margins: int, n: int) -> float:
    """Newcombe's continuity-corrected correlation of the paired verdicts: ``cross`` = ad - bc moved
    towards 0 by n/2 when positive (0 if within n/2), used as is when negative; 0 when a margin is 0."""
    if margins == 0 or 0 <= cross <= n / 2:
        return 0.0
    return (cross - n / 2 if cross > 0 else cross) / math.sqrt(margins)


def successes(per_example: str, n: int, acc: float) -> int:
    """How many of a record's n examples count as correct: from its verdicts where it has them (exact),
    else from its accuracy (records written before verdicts were kept, and hand-made test records)."""
    if len(per_example) == n:
        return per_example.count("1")
    return round(acc * n)
