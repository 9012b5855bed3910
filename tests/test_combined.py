"""spatial_pgd_linf, the combined adversary: at least as strong as spatial and pgd_linf run separately, per
example, on the shipped models and against their committed records; and its "which part broke it" is true."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from robench.core import config
from robench.core.errors import UsageError
from robench.engine import evaluate
from robench.models import create_model
from robench.threats import create_threat
from robench.threats.ops.geometry import warp_transforms

REPO = Path(__file__).resolve().parent.parent
BOARD = REPO / "leaderboards" / "runs" / "mnist"


def _committed(model: str, threat: str, n: int) -> str:
    return json.loads((BOARD / model / f"{threat}.json").read_text())["per_example"][:n]


def _check_against_the_records(model: str, n: int) -> tuple[int, int]:
    """Run the combined threat on the board's first ``n`` examples of ``model`` and hold each example's
    part to the committed ``spatial`` and ``pgd_linf`` records; returns (robust under both records,
    robust under the combined threat)."""
    record = evaluate(model, "spatial_pgd_linf", "mnist", n_examples=n, progress=False)
    spatial, linf = _committed(model, "spatial", n), _committed(model, "pgd_linf", n)
    fate = record.details["broken_by"]
    assert len(fate) == len(record.per_example) == n
    for i in range(n):
        both = spatial[i] == linf[i] == "1"
        if record.per_example[i] == "1":
            assert both, f"example {i} is robust under the combined threat but not under both records"
        if record.clean_per_example[i] == "0":
            assert fate[i] == "c", i
        else:  # the parts are the records' own verdicts: PGD first, with pgd_linf's draws, then the grid
            expected = "l" if linf[i] == "0" else "s" if spatial[i] == "0" else "rb"
            assert fate[i] in expected, (i, fate[i], spatial[i], linf[i])
        assert (fate[i] == "r") == (record.per_example[i] == "1"), i
    n_both = sum(spatial[i] == linf[i] == "1" for i in range(n))
    return n_both, record.per_example.count("1")


@pytest.mark.parametrize("model", ["mnist_cnn_cusp_box15", "mnist_cnn_pgd_linf"])
def test_robust_set_is_within_both_committed_records(model):
    """64 examples, a prefix of the records' first batch: ℓ∞ PGD's starts are uniform draws, which torch
    makes one after another, so the first rows of the records' draw are this run's draw."""
    n_both, n_robust = _check_against_the_records(model, 64)
    assert n_robust <= n_both


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mnist_cnn_cusp_box15", "mnist_cnn_cusp_eps02"])
def test_robust_set_is_within_both_committed_records_on_the_whole_board(model):
    """All 1,000 board examples (two chunks of two batches): the combined record is strictly stronger here."""
    n_both, n_robust = _check_against_the_records(model, 1000)
    assert n_robust < n_both


@pytest.fixture(scope="module")
def cusp():
    """A shipped model robust enough to both parts that all three parts break something."""
    return create_model("mnist_cnn_cusp_box15")


@pytest.fixture(scope="module")
def board_batch(cusp):
    from robench.datasets import load_tensors

    x, y = load_tensors("mnist", "test", 48)
    with torch.inference_mode():
        clean = cusp(x).argmax(1) == y
    return x, y, clean


def test_each_part_is_what_broke_the_example(cusp, board_batch, ctx):
    x, y, clean = board_batch
    small = {"steps": 10, "step_size": 0.05}  # a cheaper ℓ∞ part
    threat = create_threat("spatial_pgd_linf", "mnist", **small)
    combined, linf = ctx(3), ctx(3)
    out = threat.run_batch(cusp, x, y, clean, combined)
    part, transform = out["part"], out["transform"]
    assert {1, 2, 3} <= set(part.tolist()), part
    # linf: exactly what the pgd family breaks from the same generator state
    alone = create_threat("pgd_linf", "mnist", **small).run_batch(cusp, x, y, clean, linf)
    assert torch.equal(part == 1, clean & ~alone["robust"])
    # and the later parts' draws leave the generator where PGD left it: the next batch's PGD must draw
    # what pgd_linf draws there
    assert torch.equal(combined.generator.get_state(), linf.generator.get_state())
    assert not (part.bool() & ~clean).any() and not (out["robust"] & part.bool()).any()
    with torch.inference_mode():
        under = cusp(warp_transforms(x, torch.nan_to_num(transform))).argmax(1) == y
        # spatial: the recorded grid transform alone misclassifies; both: the start transform alone does not
        assert not under[part == 2].any() and under[part == 3].all()
        grid = threat.grid.transforms.tolist()
        assert all(row in grid for row in transform[part >= 2].tolist())
        # survivors of the grid part survive every grid transform
        alive = (part == 0) | (part == 3)
        alive &= clean
        correct = threat.grid.correct_under(cusp, x[alive], y[alive], threat.grid.transforms, 256)
        assert correct.all()
    assert (out["rank"][part == 3] >= 0).all() and (out["rank"][part != 3] == -1).all()


@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "imagenet"])
def test_the_parts_are_the_spatial_and_pgd_linf_threats(dataset):
    threat = create_threat("spatial_pgd_linf", dataset)
    assert threat.config() == config.threat_config("spatial_pgd_linf", dataset)
    assert threat.grid.config() == create_threat("spatial", dataset).config()
    assert threat.pgd.config() == create_threat("pgd_linf", dataset).config()


@pytest.mark.parametrize("top_k", [0, 776])
def test_top_k_must_name_grid_transforms(top_k):
    with pytest.raises(UsageError, match="top_k"):
        create_threat("spatial_pgd_linf", "mnist", top_k=top_k)
