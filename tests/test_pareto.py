"""The Pareto front on hand-made points, and the plot's byte-determinism (``--check`` compares bytes)."""

import pytest

from robench.pareto import pareto_front, plot_svg

NAN = float("nan")


def test_dominated_point_is_off_the_front():
    # (0.9, 0.1) and (0.1, 0.9) trade off; (0.1, 0.1) is beaten by both on both axes.
    assert pareto_front([0.9, 0.1, 0.1], [0.1, 0.9, 0.1]) == [True, True, False]


def test_better_on_one_axis_equal_on_the_other_dominates():
    assert pareto_front([0.5, 0.5], [0.4, 0.6]) == [False, True]
    assert pareto_front([0.4, 0.6], [0.5, 0.5]) == [False, True]


def test_exact_duplicates_are_both_on_the_front():
    assert pareto_front([0.5, 0.5, 0.2], [0.5, 0.5, 0.2]) == [True, True, False]


def test_ties_on_the_front_and_dominated_duplicates_stay_off():
    # Two tied best points, and two tied points that both are dominated.
    assert pareto_front([0.8, 0.8, 0.3, 0.3], [0.7, 0.7, 0.2, 0.2]) == [True, True, False, False]


def test_single_entry_is_on_the_front():
    assert pareto_front([0.0], [0.0]) == [True]


def test_empty():
    assert pareto_front([], []) == []


def test_all_on_the_front_when_strictly_trading_off():
    x = [0.1, 0.2, 0.3, 0.4]
    y = [0.4, 0.3, 0.2, 0.1]
    assert pareto_front(x, y) == [True] * 4


@pytest.mark.parametrize("missing", [None, NAN])
def test_missing_axis_value_is_not_eligible_and_dominates_nothing(missing):
    # The point with a missing y would "dominate" on x alone if it were counted; it must not be.
    assert pareto_front([1.0, 0.5, 0.2], [missing, 0.5, 0.4]) == [False, True, False]
    assert pareto_front([missing], [0.3]) == [False]


def test_lengths_must_match():
    with pytest.raises(ValueError):
        pareto_front([0.1, 0.2], [0.1])


def test_plot_is_byte_deterministic_and_labels_are_text():
    labels = ["a$b$", "<script>x</script>", "c"]
    args = (labels, [10.0, 50.0, 30.0], [90.0, 20.0, 10.0], [True, True, False], "x", "y")
    first = plot_svg(*args)
    assert first == plot_svg(*args)
    text = first.decode()
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "a$b$" in text  # shown literally, not parsed as mathtext
    assert "<dc:date>" not in text and "Matplotlib v" not in text
