"""Spatial grid: the grid itself, verdicts equal to a brute-force loop over all 775 transforms, and the
``warp`` parameter (recorded only away from its default, so committed records keep their hashes).

The warp's conventions are pinned in tests/test_geometry.py."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from robench.core import config, record
from robench.core.errors import UsageError
from robench.threats import BatchContext, create_threat
from robench.threats.ops.geometry import warp_transforms
from robench.threats.spatial import grid_transforms

RUNS = Path(__file__).resolve().parent.parent / "leaderboards" / "runs" / "mnist5k"


def _warp_one(x, angle, tx, ty, convention="robench"):
    row = torch.tensor([[angle, tx, ty]], dtype=torch.float64)
    return warp_transforms(x, row.expand(len(x), 3), convention=convention)


def test_grid_is_engstroms():
    t = grid_transforms(30, 31, 3, 5)
    assert t.shape == (775, 3)
    assert torch.equal(torch.unique(t[:, 0]), torch.linspace(-30, 30, 31, dtype=torch.float64))
    assert torch.equal(torch.unique(t[:, 1]), torch.tensor([-3, -1.5, 0, 1.5, 3], dtype=torch.float64))
    assert ((t == 0).all(1)).sum() == 1  # the identity is in the grid exactly once


def _brute_force(model, x, y, threat):
    robust = torch.ones(len(x), dtype=torch.bool)
    with torch.inference_mode():
        robust &= model(x).argmax(1) == y
        for angle, tx, ty in threat.transforms.tolist():
            robust &= model(_warp_one(x, angle, tx, ty, threat.warp)).argmax(1) == y
    return robust


@pytest.mark.parametrize(
    "name, n, curves",
    [
        ("spatial", 16, False),
        ("spatial", 16, True),
        ("spatial_rotation", 100, True),
        ("spatial_translation", 100, True),
        ("spatial_madrylab", 16, False),
    ],
)
def test_verdicts_equal_brute_force(standard_model, mnist_test, name, n, curves):
    x, y = mnist_test[0][:n], mnist_test[1][:n]
    threat = create_threat(name, "mnist5k", axis_curves=curves)
    with torch.inference_mode():
        clean = standard_model(x).argmax(1) == y
    expected = _brute_force(standard_model, x, y, threat)
    for batch_size in (7, 256):  # group sizes and image sub-batches differ; verdicts must not
        got = threat.run_batch(standard_model, x, y, clean, BatchContext(torch.Generator(), batch_size))
        assert torch.equal(got["robust"], expected)
        fooled_by = got["fooled_by"]
        assert ((fooled_by == -1) == got["robust"]).all()
        # the recorded fooling transform really fools each broken example
        for i in torch.nonzero(~got["robust"]).flatten().tolist()[:10]:
            angle, tx, ty = threat.transforms[int(fooled_by[i])].tolist()
            with torch.inference_mode():
                pred = standard_model(_warp_one(x[i : i + 1], angle, tx, ty, threat.warp)).argmax(1)
            assert pred.item() != y[i].item()


def test_a_robust_example_survives_everything():
    """A model that ignores its input is robust everywhere it is right: the search must visit all 775."""

    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((len(x),), 3), 10).float()

    threat = create_threat("spatial", "mnist5k")
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([3, 3, 1, 3])
    out = threat.run_batch(Constant(), x, y, y == 3, BatchContext(torch.Generator(), 64))
    assert out["robust"].tolist() == [True, True, False, True]
    assert out["tried"][out["robust"]].eq(775).all()


def test_axis_details_and_identity_flag(standard_model, mnist_test):
    threat = create_threat("spatial", "mnist5k", axis_curves=True)
    x, y = mnist_test[0][:50], mnist_test[1][:50]
    with torch.inference_mode():
        clean = standard_model(x).argmax(1) == y
    stats = {
        k: v.numpy()
        for k, v in threat.run_batch(
            standard_model, x, y, clean, BatchContext(torch.Generator(), 256)
        ).items()
    }
    stats["clean_correct"] = clean.numpy()
    details = threat.summarize(stats)
    rot = details["accuracy_by_rotation"]
    assert len(rot["rotation_deg"]) == 31 and rot["accuracy"][
        rot["rotation_deg"].index(0.0)
    ] == pytest.approx(float(clean.float().mean()))
    assert len(details["accuracy_by_translation"]["accuracy"]) == 25
    assert threat.flags(stats) == []
    assert "accuracy_by_rotation" not in create_threat("spatial", "mnist5k").summarize(
        {k: v for k, v in stats.items() if k != "axis_correct"}
    )
    assert create_threat("spatial", "mnist5k", n_rotations=4).flags(stats)  # an even count misses 0 degrees


@pytest.mark.parametrize("threat", ["spatial", "spatial_rotation", "spatial_random", "spatial_pgd"])
def test_the_default_warp_keeps_the_committed_records_hashes(threat):
    """``warp`` is left out of the recorded config at its default: a committed record's hash, recomputed
    from the threat as configured now, is still the record's own."""
    rec = record.load(RUNS / "mnist_cnn_aug30" / f"{threat}.json")
    for overrides in ({}, {"warp": "robench"}):
        params = create_threat(threat, "mnist5k", **overrides).config()
        assert "warp" not in params and params == rec.threat_config
        identity = record.stated_identity(dataclasses.replace(rec, threat_config=params))
        assert record.config_hash(identity) == rec.config_hash
    madrylab = create_threat(threat, "mnist5k", warp="madrylab").config()
    assert madrylab == {**rec.threat_config, "warp": "madrylab"}


def test_the_named_madrylab_grid_is_the_grid_with_the_papers_warp():
    grid, paper = create_threat("spatial", "mnist5k"), create_threat("spatial_madrylab", "mnist5k")
    assert paper.warp == "madrylab" and grid.warp == "robench"
    assert (
        paper.config()
        == {**grid.config(), "warp": "madrylab"}
        == config.threat_config("spatial_madrylab", "mnist5k")
    )
    assert torch.equal(paper.transforms, grid.transforms)
    assert "MadryLab" in paper.summarize(_no_stats())["convention"]
    assert "MadryLab" not in grid.summarize(_no_stats())["convention"]


def _no_stats():
    """The arrays summarize reads, for a run of no examples."""
    return {"fooled_by": np.zeros(0, np.int64), "clean_correct": np.zeros(0, bool), "tried": np.zeros(0)}


@pytest.mark.parametrize("threat", ["spatial", "spatial_random", "spatial_pgd"])
def test_an_unknown_warp_names_the_allowed_ones(threat):
    with pytest.raises(UsageError, match="warp must be one of 'robench', 'madrylab', got 'tf'"):
        create_threat(threat, "mnist5k", warp="tf")
