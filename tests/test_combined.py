"""spatial_pgd_linf, the combined adversary: at least as strong as spatial and pgd_linf run separately, per
example, on the shipped models and against their committed records; and its "which part broke it" is true."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robench.core import config, record
from robench.core.errors import UsageError
from robench.engine import evaluate
from robench.models import create_model
from robench.submission import verify
from robench.threats import create_threat
from robench.threats.ops.geometry import warp_transforms

REPO = Path(__file__).resolve().parent.parent
BOARD = REPO / "leaderboards" / "runs" / "mnist"


def _committed(model: str, threat: str) -> record.RunRecord:
    return record.load_checked(BOARD / model / f"{threat}.json")


def _check_against_the_records(model: str, n: int) -> tuple[int, int]:
    """Run the combined threat on the board's first ``n`` examples of ``model`` and hold it to the
    committed ``spatial`` and ``pgd_linf`` records; returns (robust under both records, robust under the
    combined threat).

    The subset property is held strictly. The parts are those records' own verdicts (PGD first, with
    pgd_linf's draws, then the grid on what it left), so they must reproduce them under ``robench verify``'s
    contract: bit for bit on the records' machine class, and elsewhere, where float summation order flips
    a borderline verdict now and then, on all but a few examples and with no significant direction.
    """
    combined = evaluate(model, "spatial_pgd_linf", "mnist", n_examples=n, progress=False)
    spatial, linf = (_committed(model, t) for t in ("spatial", "pgd_linf"))
    fate = combined.details["broken_by"]
    assert len(fate) == len(combined.per_example) == n
    assert all((f == "c") == (c == "0") for f, c in zip(fate, combined.clean_per_example, strict=True))
    assert all((f == "r") == (r == "1") for f, r in zip(fate, combined.per_example, strict=True))
    both = [a == b == "1" for a, b in zip(spatial.per_example[:n], linf.per_example[:n], strict=True)]
    outside = [i for i in range(n) if combined.per_example[i] == "1" and not both[i]]
    assert not outside, f"robust under the combined threat but not under both records: {outside}"

    for committed, verdicts, where in (
        (linf, ["0" if f in "cl" else "1" for f in fate], range(n)),  # PGD ran on every example
        (spatial, ["0" if f == "s" else "1" for f in fate], [i for i in range(n) if fate[i] in "srb"]),
    ):
        exact = verify.contract(committed, combined).exact
        old, new = ("".join(v[i] for i in where) for v in (committed.per_example, verdicts))
        text, accepted = verify.verdict_drift(committed.threat, old, new, exact)
        assert accepted, text
    return sum(both), combined.per_example.count("1")


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
