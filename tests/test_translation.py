"""Integer shifts, the translation sweep and shift consistency."""

import pytest
import torch

from robench.errors import UsageError
from robench.threats import BatchContext, create_threat
from robench.threats.geometry import shift
from robench.threats.translation import sweep_shifts


def _ctx(seed=0, batch_size=256):
    return BatchContext(generator=torch.Generator().manual_seed(seed), batch_size=batch_size)


@pytest.fixture(scope="module")
def batch(standard_model, mnist_test):
    x, y = mnist_test[0][:100], mnist_test[1][:100]
    with torch.inference_mode():
        clean = standard_model(x).argmax(1) == y
    return x, y, clean


def _stats(out, clean):
    return {k: v.numpy() for k, v in out.items()} | {"clean_correct": clean.numpy()}


def test_sweep_at_zero_is_clean_and_bounds_the_headline(standard_model, batch):
    x, y, clean = batch
    threat = create_threat("translation_sweep", "mnist5k")
    assert len(threat.shifts) == 1 + 8 * 6
    out = threat.run_batch(standard_model, x, y, clean, _ctx())
    details = threat.summarize(_stats(out, clean))
    curve = details["curve"]
    assert curve["magnitude_px"] == [0, 1, 2, 3, 4, 6, 8]
    assert torch.equal(out["correct"][:, 0], clean)
    assert curve["worst_case_accuracy"][0] == pytest.approx(float(clean.float().mean()))
    assert all(w <= m for w, m in zip(curve["worst_case_accuracy"], curve["mean_accuracy"]))
    assert float(out["robust"].double().mean()) <= min(curve["worst_case_accuracy"][:5])  # m <= 4 px
    assert curve["worst_case_accuracy"][-1] < curve["worst_case_accuracy"][0]  # 8 px shifts hurt this model


def test_headline_is_the_worst_case_up_to_its_magnitude(standard_model, batch):
    x, y, clean = batch
    at_zero = create_threat("translation_sweep", "mnist5k", headline_magnitude=0)
    assert torch.equal(at_zero.run_batch(standard_model, x, y, clean, _ctx())["robust"], clean)
    threat = create_threat("translation_sweep", "mnist5k", magnitudes=[0, 1, 3], headline_magnitude=1)
    out = threat.run_batch(standard_model, x, y, clean, _ctx())
    with torch.inference_mode():
        up_to_one = [standard_model(shift(x, torch.tensor([[a, b]] * len(x)))).argmax(1) == y
                     for a in (-1, 0, 1) for b in (-1, 0, 1)]
    assert torch.equal(out["robust"], torch.stack(up_to_one, 1).all(1) & clean)


def test_sweep_magnitude_groups_are_the_eight_shifts():
    shifts, group = sweep_shifts([0, 2])
    assert shifts[group == 0].tolist() == [[0, 0]]
    two = {tuple(s) for s in shifts[group == 1].tolist()}
    assert two == {(a, b) for a in (-2, 0, 2) for b in (-2, 0, 2)} - {(0, 0)}


def test_sweep_plot_is_a_reproducible_png(standard_model, batch):
    x, y, clean = batch
    threat = create_threat("translation_sweep", "mnist5k", magnitudes=[0, 2, 4], headline_magnitude=2)
    assert threat.artifacts() == {}  # nothing to draw before a run is summarised
    threat.summarize(_stats(threat.run_batch(standard_model, x, y, clean, _ctx()), clean))
    first, second = threat.artifacts()["png"], threat.artifacts()["png"]
    assert first.startswith(b"\x89PNG\r\n\x1a\n") and first == second


@pytest.mark.parametrize("override", [{"magnitudes": []}, {"magnitudes": [3, 1]}, {"magnitudes": [0, 0, 2]},
                                      {"magnitudes": [1.5]}, {"magnitudes": "8"}, {"headline_magnitude": 5},
                                      {"headline_magnitude": 4.0}])
def test_bad_magnitudes_are_usage_errors(override):
    with pytest.raises(UsageError, match="magnitude"):
        create_threat("translation_sweep", "mnist5k", **override)


def test_consistency_without_shifts_is_clean_accuracy(standard_model, batch):
    x, y, clean = batch
    threat = create_threat("consistency", "mnist5k", max_shift=0)
    out = threat.run_batch(standard_model, x, y, clean, _ctx())
    assert out["agree"].all() and torch.equal(out["robust"], clean)
    assert threat.summarize(_stats(out, clean))["consistency"] == 1.0


def test_consistency_compares_the_labels_of_its_reported_shifts(standard_model, batch):
    x, y, clean = batch
    threat = create_threat("consistency", "mnist5k")
    out = threat.run_batch(standard_model, x, y, clean, _ctx(2))
    offsets = out["offsets"]
    assert offsets.shape == (len(x), 2, 2) and offsets.abs().max() <= 3
    assert (offsets[:, 0] != offsets[:, 1]).any()
    with torch.inference_mode():
        a = standard_model(shift(x, offsets[:, 0])).argmax(1)
        b = standard_model(shift(x, offsets[:, 1])).argmax(1)
    assert torch.equal(out["agree"], a == b) and torch.equal(out["robust"], clean & (a == b))
    details = threat.summarize(_stats(out, clean))
    assert details["consistency"] == pytest.approx(float((a == b).float().mean()))
    again = threat.run_batch(standard_model, x, y, clean, _ctx(2))
    assert torch.equal(again["offsets"], offsets)
