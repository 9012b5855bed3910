"""spatial_pgd: ascent really climbs the loss, stays in the box, and reports transforms that fool."""

import pytest
import torch
import torch.nn.functional as F

from robench.core.errors import UsageError
from robench.models.affine import draw_transforms
from robench.threats import create_threat
from robench.threats.ops.geometry import warp_transforms


def _loss(model, x, y, params, warp="robench"):
    with torch.inference_mode():
        return F.cross_entropy(model(warp_transforms(x, params, convention=warp)), y, reduction="none")


def test_identity_only_box_gives_clean_accuracy(standard_model, batch, ctx):
    x, y, clean = batch
    threat = create_threat("spatial_pgd", "mnist5k", max_rotation=0, max_translation=0, steps=3)
    out = threat.run_batch(standard_model, x, y, clean, ctx())
    assert torch.equal(out["robust"], clean.cpu()) and (out["transform"] == 0).all()


@pytest.mark.parametrize("warp", ["robench", "madrylab"])  # both warps are differentiable
def test_gradient_steps_climb_the_loss_inside_the_box(standard_model, batch, warp):
    x, y, _ = batch
    threat = create_threat(
        "spatial_pgd", "mnist5k", max_rotation=10, max_translation=1, steps=8, step_size=0.1, warp=warp
    )
    start = draw_transforms((len(x),), threat.half, torch.Generator().manual_seed(0))
    fooled, _, params = threat.attack(standard_model, x, y, start)
    assert (params.abs() <= threat.half).all()
    survivors = ~fooled
    assert survivors.sum() > 10
    before = _loss(standard_model, x[survivors], y[survivors], start[survivors], warp)
    after = _loss(standard_model, x[survivors], y[survivors], params[survivors], warp)
    assert float((after > before).float().mean()) > 0.8, (before, after)


@pytest.mark.parametrize("warp", ["robench", "madrylab"])
def test_reported_transforms_fool_and_steps_only_add_breaks(standard_model, batch, ctx, warp):
    x, y, clean = batch
    starts_only = create_threat("spatial_pgd", "mnist5k", steps=0, restarts=1, warp=warp)
    with_steps = create_threat("spatial_pgd", "mnist5k", steps=10, restarts=1, warp=warp)
    r0 = starts_only.run_batch(standard_model, x, y, clean, ctx(4))
    r1 = with_steps.run_batch(standard_model, x, y, clean, ctx(4))
    assert not (r1["robust"] & ~r0["robust"]).any()  # same random starts, then only more chances to fool
    assert int(r1["robust"].sum()) < int(r0["robust"].sum())  # and the gradient does find more
    broken = r1["fooled_at"] >= 0
    with torch.inference_mode():
        pred = standard_model(warp_transforms(x[broken], r1["transform"][broken], convention=warp)).argmax(1)
    assert (pred != y[broken]).all()
    assert not (broken & ~clean).any()  # misclassified examples are not attacked


def test_same_seed_same_verdicts(standard_model, batch, ctx):
    x, y, clean = batch
    x, y, clean = x[:32], y[:32], clean[:32]
    threat = create_threat("spatial_pgd", "mnist5k", steps=3)
    a = threat.run_batch(standard_model, x, y, clean, ctx(9))
    b = threat.run_batch(standard_model, x, y, clean, ctx(9))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "override, match",
    [({"steps": -1}, "steps"), ({"restarts": 0}, "restarts"), ({"step_size": 0}, "step_size")],
)
def test_bad_parameters_are_usage_errors(override, match):
    with pytest.raises(UsageError, match=match):
        create_threat("spatial_pgd", "mnist5k", **override)
