"""Integer shifts, the translation sweep and shift consistency."""

import pytest
import torch

from robench.core.errors import UsageError
from robench.threats import create_threat
from robench.threats.ops.geometry import shift
from robench.threats.translation import sweep_shifts


def _stats(out, clean):
    return {k: v.numpy() for k, v in out.items()} | {"clean_correct": clean.numpy()}


def _correct_under(model, x, y, tx, ty):
    """Per-image correctness under the one shift (tx, ty), classified directly."""
    with torch.inference_mode():
        return model(shift(x, torch.tensor([[tx, ty]] * len(x)))).argmax(1) == y


def test_sweep_curve_and_headline_equal_a_direct_loop_over_the_shifts(standard_model, batch, ctx):
    x, y, clean = batch
    threat = create_threat("translation_sweep", "mnist5k")
    assert len(threat.shifts) == 1 + 8 * 6 and threat.headline_magnitude == 4
    out = threat.run_batch(standard_model, x, y, clean, ctx(batch_size=50))  # forwards split the shifts
    curve = threat.summarize(_stats(out, clean))["curve"]
    assert curve["magnitude_px"] == [0, 1, 2, 3, 4, 6, 8]
    worst, mean, headline = [], [], clean.clone()
    for m in curve["magnitude_px"]:
        offsets = sorted(
            {(a * m, b * m) for a in (-1, 0, 1) for b in (-1, 0, 1)} - ({(0, 0)} if m else set())
        )
        correct = torch.stack([_correct_under(standard_model, x, y, tx, ty) for tx, ty in offsets], 1)
        worst.append(float(correct.all(1).double().mean()))
        mean.append(float(correct.double().mean()))
        if m <= threat.headline_magnitude:
            headline &= correct.all(1)
    assert curve["worst_case_accuracy"] == pytest.approx(worst)
    assert curve["mean_accuracy"] == pytest.approx(mean)
    assert torch.equal(out["robust"], headline)
    assert worst[0] == pytest.approx(float(clean.double().mean()))  # m = 0 is the clean image
    assert worst[-1] < worst[0]  # and the shifts do hurt this model, so the comparison has teeth


def test_headline_is_the_worst_case_up_to_its_magnitude(standard_model, batch, ctx):
    x, y, clean = batch
    at_zero = create_threat("translation_sweep", "mnist5k", headline_magnitude=0)
    assert torch.equal(at_zero.run_batch(standard_model, x, y, clean, ctx())["robust"], clean)
    threat = create_threat("translation_sweep", "mnist5k", magnitudes=[0, 1, 3], headline_magnitude=1)
    out = threat.run_batch(standard_model, x, y, clean, ctx())
    up_to_one = [_correct_under(standard_model, x, y, a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]
    assert torch.equal(out["robust"], torch.stack(up_to_one, 1).all(1) & clean)


def test_sweep_magnitude_groups_are_the_eight_shifts():
    shifts, group = sweep_shifts([0, 2])
    assert shifts[group == 0].tolist() == [[0, 0]]
    two = {tuple(s) for s in shifts[group == 1].tolist()}
    assert two == {(a, b) for a in (-2, 0, 2) for b in (-2, 0, 2)} - {(0, 0)}


def test_sweep_plot_is_a_reproducible_png(standard_model, batch, ctx):
    x, y, clean = batch
    threat = create_threat("translation_sweep", "mnist5k", magnitudes=[0, 2, 4], headline_magnitude=2)
    assert threat.artifacts() == {}  # nothing to draw before a run is summarised
    threat.summarize(_stats(threat.run_batch(standard_model, x, y, clean, ctx()), clean))
    first, second = threat.artifacts()["png"], threat.artifacts()["png"]
    assert first.startswith(b"\x89PNG\r\n\x1a\n") and first == second


@pytest.mark.parametrize(
    "override",
    [
        {"magnitudes": []},
        {"magnitudes": [3, 1]},
        {"magnitudes": [0, 0, 2]},
        {"magnitudes": [1.5]},
        {"magnitudes": "8"},
        {"headline_magnitude": 5},
        {"headline_magnitude": 4.0},
    ],
)
def test_bad_magnitudes_are_usage_errors(override):
    with pytest.raises(UsageError, match="magnitude"):
        create_threat("translation_sweep", "mnist5k", **override)


def test_consistency_without_shifts_is_clean_accuracy(standard_model, batch, ctx):
    x, y, clean = batch
    threat = create_threat("consistency", "mnist5k", max_shift=0)
    out = threat.run_batch(standard_model, x, y, clean, ctx())
    assert out["agree"].all() and torch.equal(out["robust"], clean)
    assert threat.summarize(_stats(out, clean))["consistency"] == 1.0


def test_consistency_compares_the_labels_of_its_reported_shifts(standard_model, batch, ctx):
    x, y, clean = batch
    threat = create_threat("consistency", "mnist5k")
    out = threat.run_batch(standard_model, x, y, clean, ctx(2))
    offsets = out["offsets"]
    assert offsets.shape == (len(x), 2, 2) and offsets.abs().max() <= 3
    assert (offsets[:, 0] != offsets[:, 1]).any()
    with torch.inference_mode():
        a = standard_model(shift(x, offsets[:, 0])).argmax(1)
        b = standard_model(shift(x, offsets[:, 1])).argmax(1)
    assert torch.equal(out["agree"], a == b) and torch.equal(out["robust"], clean & (a == b))
    details = threat.summarize(_stats(out, clean))
    assert details["consistency"] == pytest.approx(float((a == b).float().mean()))
    again = threat.run_batch(standard_model, x, y, clean, ctx(2))
    assert torch.equal(again["offsets"], offsets)
