"""``robench verify``: committed records re-run from the shipped code and weights, compared bit for bit on
the record's machine class and by agreement across classes (issue #24).

The sample below is what CI re-runs on every push (issue #14 item 7): four models under cheap threats,
the first 256 examples each (100 rounded up to a whole batch, see :func:`exact_prefix`).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from robench import cli
from robench.boards.selection import RUNS_DIR
from robench.core import record
from robench.runtime import devices
from robench.submission.verify import compare, exact_prefix, select, verify

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
    """Bit for bit (no accepted drift either): these records predate the stored machine class, so verify
    holds them to the equivalent contract, but CI wants to see any change the code makes to them."""
    paths = [REPO / RUNS_DIR / "mnist5k" / model / f"{threat}.json" for model, threat in SAMPLE]
    outcomes = list(verify(paths, n_examples=100))
    assert [(o.n_examples, o.differs, o.drift) for o in outcomes] == [(256, (), ())] * len(SAMPLE)


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
    assert "verdicts); accepted: per_example: 1 of 256 differ, p = 1 (256 examples" in line
    assert cli.main(["verify", "--root", str(tmp_path), "--all", "--n-examples", "10", "--json"]) == 1
    [record] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert record["record"] == "mnist5k/mnist_mlp_standard/clean.json" and record["n_examples"] == 256
    assert record["differs"][0].startswith("record damaged")


def test_a_full_rerun_compares_details_and_meta(tmp_path):
    """On the record's machine class (the exact contract), ``details`` too."""
    path = _copy_record(tmp_path, "mnist_mlp_standard", "clean")
    data = json.loads(path.read_text())
    data["versions"]["machine"] = devices.machine(torch.device("cpu"))
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
    [outcome] = verify([tmp_path / RUNS_DIR / "mnist" / "mnist_cnn_standard" / "pgd_linf.json"])
    assert outcome.differs == ()


#: What the tests make "this machine" (devices.machine, which the re-run's record stores) and another class.
HERE = {"cpu": "Test CPU", "isa": "AVX2", "torch": "0.0", "threads": 1}
OTHER = {**HERE, "cpu": "Other CPU"}
HERE_TEXT = "Test CPU [AVX2], torch 0.0, 1 thread"


@pytest.mark.parametrize(
    "flips, stamp, n_examples, code, expected",
    [
        (0, HERE, "50", 0, f"OK (256 examples, Ns; exact contract, same machine class: {HERE_TEXT})"),
        (1, HERE, "50", 1, "DIFFERS: per_example: 1 of 256 differ (256 examples, Ns; exact contract"),
        (
            2,
            OTHER,
            "50",
            0,
            "EQUIVALENT (per_example: 2 of 256 differ, p = 0.5) (256 examples, Ns; equivalent contract, "
            f"other machine class: Other CPU [AVX2], torch 0.0, 1 thread vs {HERE_TEXT})",
        ),
        (
            2,
            None,
            "50",
            0,
            "EQUIVALENT (per_example: 2 of 256 differ, p = 0.5) (256 examples, Ns; equivalent contract, "
            f"machine class of the record unknown: unknown CPU, torch 2.14.1+cu130, 1 thread vs {HERE_TEXT})",
        ),
        (3, OTHER, "50", 1, "DIFFERS: per_example: 3 of 256 differ, p = 0.25 (more than 1%) (256 examples"),
        (
            4,
            OTHER,
            None,
            0,
            "EQUIVALENT (per_example: 4 of 1,000 differ, p = 0.12) (1,000 examples, Ns; equivalent contract, "
            f"other machine class: Other CPU [AVX2], torch 0.0, 1 thread vs {HERE_TEXT}; "
            "not compared: details)",
        ),
        (6, OTHER, None, 1, "DIFFERS: per_example: 6 of 1,000 differ, p = 0.031 (one-sided: p < 0.05)"),
    ],
    ids=["same-equal", "same-1", "other-2", "unknown-2", "other-3-many", "other-4-full", "other-6-one-sided"],
)
def test_the_contract_follows_the_machine_class(
    tmp_path, capsys, monkeypatch, flips, stamp, n_examples, code, expected
):
    """The record's first ``flips`` robust verdicts turned to 0 (its accuracy with them, so it is not
    damaged), as a re-run on another machine class might give. The same class allows no difference; another
    or an unknown one allows at most 1% of the examples, not leaning one way (exact McNemar)."""
    monkeypatch.setattr(devices, "machine", lambda dev: dict(HERE))
    path = _copy_record(tmp_path, "mnist_mlp_standard", "clean")
    data = json.loads(path.read_text())
    flipped = data["per_example"].replace("1", "0", flips)
    data.update(per_example=flipped, robust_acc=flipped.count("1") / data["n_examples"])
    if stamp is not None:
        data["versions"]["machine"] = stamp
    path.write_text(json.dumps(data))
    assert record.problem(record.load(path)) is None
    args = ["verify", "--root", str(tmp_path), "--all"] + ["--n-examples", n_examples] * bool(n_examples)
    assert cli.main(args) == code
    [line] = capsys.readouterr().out.splitlines()
    assert re.sub(r", \d+s;", ", Ns;", line).startswith(f"mnist5k/mnist_mlp_standard/clean: {expected}"), line


def test_the_machine_class_names_this_cpu_and_old_records_keep_what_they_said():
    here = devices.machine(torch.device("cpu"))
    assert (
        here["cpu"]
        and here["isa"]
        and (here["torch"], here["threads"])
        == (
            torch.__version__,
            torch.get_num_threads(),
        )
    )
    old = record.load(REPO / RUNS_DIR / "mnist5k" / "mnist_cnn_cusp" / "autoattack_linf.json")
    assert "machine" not in old.versions  # made before the class was stored
    recorded = record.machine_class(old)
    assert recorded == {"cpu": None, "isa": None, "torch": "2.14.1+cu130", "threads": 2}
    assert not record.machine_known(recorded)
    old.device = "cuda:0 (NVIDIA H200) x 2 ranks"
    assert (
        record.describe_machine(record.machine_class(old))
        == "NVIDIA H200, torch 2.14.1+cu130, unknown threads"
    )


def test_flags_are_compared_by_name_across_classes(tmp_path):
    """A flag's text counts examples, which another class moves; which flags are raised must agree."""
    path = REPO / RUNS_DIR / "mnist5k" / "mnist_cnn_cusp" / "autoattack_l2.json"
    old = record.load(path)
    new = record.load(path)
    new.flags = [old.flags[0].replace("100.0%", "99.6%")]
    assert compare(old, new, old.n_examples, path.parent, path.parent, exact=True).differs == ("flags",)
    assert compare(old, new, old.n_examples, path.parent, path.parent, exact=False).differs == ()
    new.flags = []
    assert compare(old, new, old.n_examples, path.parent, path.parent, exact=False).differs == ("flags",)
