"""spatial_random: the draws it reports are the draws it used, and worst-of-k obeys its orderings."""

import itertools

import pytest
import torch

from robench.core.errors import UsageError
from robench.models.affine import box_half_widths, draw_transforms
from robench.threats import create_threat
from robench.threats.ops.geometry import warp_transforms
from robench.threats.ops.predict import predict_under


def test_identity_only_box_gives_clean_accuracy(standard_model, batch, ctx):
    x, y, clean = batch
    threat = create_threat("spatial_random", "mnist5k", max_rotation=0, max_translation=0, k=3)
    out = threat.run_batch(standard_model, x, y, clean, ctx())
    assert torch.equal(out["robust"], clean)
    assert torch.equal(out["correct"], clean.view(-1, 1).expand(-1, 3))  # every draw is the identity


def test_worst_of_k_never_exceeds_the_first_draw(standard_model, batch, ctx):
    x, y, clean = batch
    threat = create_threat("spatial_random", "mnist5k")
    out = threat.run_batch(standard_model, x, y, clean, ctx(1))
    assert not (out["robust"] & ~out["correct"][:, 0]).any()
    stats = {k: v.numpy() for k, v in out.items()} | {"clean_correct": clean.numpy()}
    details = threat.summarize(stats)
    curve = details["worst_of_j_accuracy"]
    assert details["random_accuracy"] == pytest.approx(float(out["correct"][:, 0].float().mean()))
    assert all(a >= b for a, b in itertools.pairwise(curve)) and len(curve) == threat.k
    assert float(out["robust"].double().mean()) <= curve[-1] < curve[0]  # the box does fool this model


@pytest.mark.parametrize("warp", ["robench", "madrylab"])
def test_uses_exactly_the_reported_seeded_draws(standard_model, batch, ctx, warp):
    x, y, clean = batch
    threat = create_threat("spatial_random", "mnist5k", k=4, warp=warp)
    out = threat.run_batch(standard_model, x, y, clean, ctx(7))
    again = threat.run_batch(standard_model, x, y, clean, ctx(7))
    assert torch.equal(out["draws"], again["draws"]) and torch.equal(out["correct"], again["correct"])
    half = box_half_widths(30.0, 3.0)
    expected = draw_transforms((len(x), 4), half, torch.Generator().manual_seed(7))
    assert torch.equal(out["draws"], expected)
    assert (out["draws"].abs() <= half).all() and out["draws"][..., 0].abs().max() > 15  # spans the box
    # re-warping every image with its reported draws, one at a time, gives the reported verdicts
    for j in range(4):
        with torch.inference_mode():
            pred = standard_model(warp_transforms(x, out["draws"][:, j], convention=warp)).argmax(1)
        assert torch.equal(pred == y, out["correct"][:, j])


def test_grid_is_no_weaker_than_random_draws_from_the_same_grid(standard_model, batch, ctx):
    x, y, clean = batch
    grid = create_threat("spatial", "mnist5k", n_rotations=5, n_translations=3)
    grid_robust = grid.run_batch(standard_model, x, y, clean, ctx())["robust"]
    picks = torch.randint(len(grid.transforms), (len(x), 6), generator=torch.Generator().manual_seed(3))
    correct = predict_under(standard_model, x, grid.transforms[picks], warp_transforms, 128) == y.view(-1, 1)
    assert not (grid_robust & ~correct.all(1)).any()
    assert int(grid_robust.sum()) < int((clean & correct.all(1)).sum())  # the grid finds strictly more here


def test_predict_under_is_independent_of_batch_size(standard_model, batch):
    x = batch[0][:16]
    draws = draw_transforms((len(x), 3), box_half_widths(30.0, 3.0), torch.Generator().manual_seed(0))
    assert torch.equal(
        predict_under(standard_model, x, draws, warp_transforms, 7),
        predict_under(standard_model, x, draws, warp_transforms, 1000),
    )


@pytest.mark.parametrize(
    "override, match",
    [
        ({"k": 0}, "k must be"),
        ({"max_rotation": -1}, "max_rotation"),
        ({"max_translation": "3"}, "max_translation"),
    ],
)
def test_bad_parameters_are_usage_errors(override, match):
    with pytest.raises(UsageError, match=match):
        create_threat("spatial_random", "mnist5k", **override)
