"""Intervals and paired tests against published worked examples and against brute force."""

import math

import pytest

from robench.core import stats


def paired(both, only_a, only_b, neither):
    """Verdict strings for A and B with the given 2x2 counts."""
    a = "1" * both + "1" * only_a + "0" * only_b + "0" * neither
    b = "1" * both + "0" * only_a + "1" * only_b + "0" * neither
    return a, b


def test_wilson_matches_the_closed_form_and_is_exact_at_the_ends():
    low, high = stats.wilson(200, 1000)
    assert (round(low, 4), round(high, 4)) == (0.1764, 0.2259)  # 20% of 1,000: about ±2.5 points
    assert stats.wilson(0, 1000) == (0.0, pytest.approx(0.003827, abs=1e-6))
    assert stats.wilson(1000, 1000)[1] == 1.0
    with pytest.raises(ValueError):
        stats.wilson(5, 4)


def test_exact_mcnemar_is_the_doubled_binomial_tail():
    assert stats.mcnemar_exact(1, 7) == 2 * (1 + 8) / 2**8
    assert stats.mcnemar_exact(5, 5) == 1.0 and stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(0, 600) > 0  # integer arithmetic: no underflow to 0 before the end
    for b, c in [(3, 11), (40, 61)]:  # brute force over the binomial distribution
        n = b + c
        probs = [math.comb(n, i) / 2**n for i in range(n + 1)]
        assert stats.mcnemar_exact(b, c) == pytest.approx(sum(p for p in probs if p <= probs[b] * (1 + 1e-9)))


def test_paired_interval_reproduces_fagerland_et_al_2013():
    # Cavo et al. 2012 in Fagerland, Lydersen & Laake (2013), "Recommended tests and confidence intervals
    # for paired binomial proportions": Newcombe square-and-add -0.119 to -0.005, exact McNemar p = 0.052.
    result = stats.compare(*paired(59, 6, 16, 80))
    assert (result.only_a, result.only_b, result.n) == (6, 16, 161)
    assert result.diff == pytest.approx(-10 / 161)
    assert (round(result.low, 3), round(result.high, 3)) == (-0.119, -0.005)
    assert round(result.p, 3) == 0.052 and not result.distinguishable


def test_paired_interval_tracks_the_normal_approximation_for_large_n():
    a, b = paired(300, 80, 40, 580)
    result = stats.compare(a, b)
    wald = 1.96 * math.sqrt(120 - 40**2 / 1000) / 1000
    assert result.low == pytest.approx(0.04 - wald, abs=0.003)
    assert result.high == pytest.approx(0.04 + wald, abs=0.003)
    assert result.distinguishable and result.p < 0.001
    assert stats.compare(b, a).diff == -result.diff  # symmetric


def test_identical_verdicts_are_not_distinguishable():
    result = stats.compare("1100", "1100")
    assert (result.diff, result.p, result.low <= 0 <= result.high) == (0.0, 1.0, True)
    with pytest.raises(ValueError):
        stats.compare("10", "1")


def test_successes_prefers_the_verdicts_over_the_rounded_accuracy():
    assert stats.successes("1101", 4, 0.5) == 3
    assert stats.successes("", 1000, 0.2004) == 200
