"""``robench verify``: committed records re-run from the shipped code and weights, compared bit for bit.

The sample below is what CI re-runs on every push (issue #14 item 7): four models under cheap threats,
the first 256 examples each (100 rounded up to a whole batch, see :func:`exact_prefix`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from robench import cli
from robench.boards.selection import RUNS_DIR
from robench.submission.verify import exact_prefix, select, verify

REPO = Path(__file__).resolve().parent.parent
SAMPLE = [
    ("mnist_mlp_standard", "clean"),
    ("mnist_cnn_standard", "pgd_linf"),
    ("mnist_cnn_aug30", "spatial_random"),
    ("mnist_vit_standard", "spatial_rotation"),
]


def test_prefixes_end_a_chunk_or_whole_batches():
    assert exact_prefix(100, 1000, 256, 500) == 256
    assert exact_prefix(256, 1000, 256, 500) == 256
    assert exact_prefix(257, 1000, 256, 500) == 500  # the chunk's second batch is cut at the chunk's end
    assert exact_prefix(600, 1000, 256, 500) == 756
    assert exact_prefix(900, 1000, 256, 500) == 1000
    assert exact_prefix(5000, 1000, 256, 500) == 1000


def test_a_cut_batch_would_change_the_draws():
    """Why prefixes are rounded: a normal draw of 100 is not the first 100 of a draw of 256."""
    a = torch.randn(256, 3, generator=torch.Generator().manual_seed(5))
    b = torch.randn(100, 3, generator=torch.Generator().manual_seed(5))
    assert not torch.equal(a[:100], b)


def test_committed_sample_reproduces():
    paths = [REPO / RUNS_DIR / "mnist5k" / model / f"{threat}.json" for model, threat in SAMPLE]
    outcomes = list(verify(paths, n_examples=100))
    assert [(o.n_examples, o.differs) for o in outcomes] == [(256, ())] * len(SAMPLE)


def _copy_record(tmp_path: Path, model: str, threat: str) -> Path:
    src = REPO / RUNS_DIR / "mnist5k" / model / f"{threat}.json"
    dest = tmp_path / RUNS_DIR / "mnist5k" / model / src.name
    dest.parent.mkdir(parents=True)
    shutil.copy(src, dest)
    return dest


def test_an_edited_verdict_is_found_and_fails_the_command(tmp_path, capsys):
    path = _copy_record(tmp_path, "mnist_mlp_standard", "clean")
    data = json.loads(path.read_text())
    data["per_example"] = ("1" if data["per_example"][3] == "0" else "0").join(
        [data["per_example"][:3], data["per_example"][4:]]
    )
    path.write_text(json.dumps(data))
    assert cli.main(["verify", "--root", str(tmp_path), "--all", "--n-examples", "10"]) == 1
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("mnist5k/mnist_mlp_standard/clean: DIFFERS: record damaged (robust_acc or")
    assert "verdicts), per_example (256 examples" in line
    assert cli.main(["verify", "--root", str(tmp_path), "--all", "--n-examples", "10", "--json"]) == 1
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["record"] == "mnist5k/mnist_mlp_standard/clean.json" and record["n_examples"] == 256
    assert record["differs"][-1] == "per_example"


def test_a_full_rerun_compares_details_and_meta(tmp_path):
    path = _copy_record(tmp_path, "mnist_mlp_standard", "clean")
    data = json.loads(path.read_text())
    data["model_meta"]["recipe"]["command"] += " --epochs 3"  # cosmetic: outside the identity
    data["details"]["note"] = "edited"
    path.write_text(json.dumps(data))
    [outcome] = verify([path])
    assert outcome.differs == ("model_meta", "details")
    data["model_meta"]["normalization"] = None  # the identity: the hash no longer matches
    path.write_text(json.dumps(data))
    [outcome] = verify([path])
    assert outcome.differs == (
        "record damaged (config_hash is not the hash of the protocol the record states (edited by hand?))",
        "model_meta",
        "details",
    )


def test_nothing_selected_is_a_usage_error(tmp_path):
    with pytest.raises(ValueError, match="say what to verify"):
        select(tmp_path, None, None, None, False)
    with pytest.raises(ValueError, match="no record"):
        select(REPO, None, ["no_such_model"], None, False)


def test_a_record_that_cannot_be_rerun_is_reported_and_the_rest_go_on(tmp_path, capsys):
    ghost = _copy_record(tmp_path, "mnist_mlp_standard", "clean")
    data = json.loads(ghost.read_text())
    data["model"] = "ghost"  # a model with no card any more
    target = ghost.parent.parent / "ghost" / "clean.json"
    target.parent.mkdir()
    target.write_text(json.dumps(data))
    ghost.unlink()
    _copy_record(tmp_path, "mnist_cnn_standard", "clean")
    assert cli.main(["verify", "--root", str(tmp_path), "--all", "--n-examples", "10"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("mnist5k/ghost/clean: DIFFERS: not re-run: unknown model 'ghost'")
    assert lines[1].startswith("mnist5k/mnist_cnn_standard/clean: OK")


def test_a_bf16_searched_record_is_rerun_on_its_own_path(tmp_path):
    """Its trajectory is bf16's: only the same fast path reproduces it (fp32 has another hash)."""
    from robench.engine import evaluate
    from robench.engine.forward import Speed

    evaluate(
        "mnist_cnn_standard",
        "pgd_linf",
        n_examples=20,
        out_dir=tmp_path / RUNS_DIR,
        progress=False,
        speed=Speed("bf16", True),
    )
    [outcome] = verify([tmp_path / RUNS_DIR / "mnist5k" / "mnist_cnn_standard" / "pgd_linf.json"])
    assert outcome.differs == ()
