"""The Pareto front on hand-made points, and the plot drawn from them."""

import pytest

from robench.boards.pareto import pareto_front
from robench.boards.plot import Plot, Point, draw, shows, to_svg

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


def test_plot_is_deterministic_labels_are_text_and_it_carries_its_data():
    points = [("a$b$", 10.0, 90.0, True), ("<script>x</script>", 50.0, 20.0, True), ("c", 30.0, 10.0, False)]
    plot = Plot("x", "y", tuple(Point(*p, (p[1] - 1, p[1] + 1), (p[2] - 2, p[2] + 2)) for p in points))
    first = to_svg(plot)
    assert first == to_svg(plot)  # on one machine, so a redrawn plot has a small diff
    text = draw(plot).decode()
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "a$b$" in text  # shown literally, not parsed as mathtext
    assert "<dc:date>" not in text and "Matplotlib v" not in text
    assert shows(first, plot) and not shows(draw(plot), plot)


def test_plot_data_survives_any_label():
    labels = ["</metadata>", "a&amp;b", "<!-- -->", "]]>", 'q"uote', "ℓ∞ ★"]
    points = tuple(
        Point(label, 10.0 * i, 5.0, i % 2 == 0, (10.0 * i - 1, 10.0 * i + 1), (4.0, 6.0))
        for i, label in enumerate(labels)
    )
    plot = Plot("x <b>", "y & z", points)
    svg = to_svg(plot)
    assert shows(svg, plot)
    assert not shows(svg, Plot("x <b>", "y & z", points[:-1]))
