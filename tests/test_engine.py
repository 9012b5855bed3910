"""Engine: record contents, determinism, resumption after a kill, model sanity checks."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from robench.core.errors import EvaluationError, UsageError
from robench.core.record import load
from robench.engine import evaluate


def test_record_has_the_documented_fields(tmp_path):
    r = evaluate("mnist_cnn_standard", "clean", n_examples=50, out_dir=tmp_path, progress=False)
    data = json.loads((tmp_path / "mnist" / "mnist_cnn_standard" / "clean.json").read_text())
    for key in (
        "schema_version",
        "model",
        "dataset",
        "threat",
        "threat_config",
        "config_hash",
        "n_examples",
        "clean_acc",
        "robust_acc",
        "per_example",
        "details",
        "flags",
        "seed",
        "device",
        "versions",
        "started_at",
        "duration_s",
        "examples_per_s",
    ):
        assert key in data, key
    assert data["n_examples"] == 50 and len(data["per_example"]) == 50
    assert data["robust_acc"] == data["clean_acc"] == r.clean_acc
    assert data["model_meta"]["weights_sha256"] and data["versions"]["torch"] == torch.__version__
    assert list(data) == sorted(data)
    assert not (tmp_path / "mnist" / "mnist_cnn_standard" / ".partial").exists()  # chunks cleaned up


# A PGD weak enough that the random start decides a few of 200 verdicts (as in test_distributed).
WEAK_PGD = {"eps": 0.15, "steps": 10}


def test_same_seed_same_verdicts_and_seed_matters():
    kw = {"n_examples": 200, "chunk_size": 50, "progress": False, "overrides": WEAK_PGD}
    a = evaluate("mnist_cnn_standard", "pgd_linf", seed=1, **kw)
    b = evaluate("mnist_cnn_standard", "pgd_linf", seed=1, **kw)
    c = evaluate("mnist_cnn_standard", "pgd_linf", seed=2, **kw)
    assert (a.per_example, a.details, a.config_hash) == (b.per_example, b.details, b.config_hash)
    assert a.clean_per_example == c.clean_per_example  # the seed changes the attack, not the model
    assert a.per_example != c.per_example  # the random starts come from the seed (per chunk), nowhere else
    assert a.config_hash != c.config_hash and a.threat_config["eps"] == 0.15


def test_public_api_as_the_readme_shows_it():
    """The public API as docs/architecture.md "Python API and CLI" lists it: a model, a record, details."""
    import robench

    model = robench.create_model("mnist_cnn_standard")
    record = robench.evaluate(model, "spatial_rotation", "mnist5k", n_examples=200, seed=0)
    curve = record.details["accuracy_by_rotation"]
    assert record.n_examples == 200 and 0 < record.robust_acc < record.clean_acc
    assert len(curve["rotation_deg"]) == len(curve["accuracy"]) == 31
    assert curve["accuracy"][curve["rotation_deg"].index(0.0)] == pytest.approx(record.clean_acc)
    assert min(curve["accuracy"]) >= record.robust_acc  # the worst case is below every single rotation


@pytest.mark.gpu
def test_cuda_and_cpu_give_the_same_verdicts():
    """Float results differ between devices; verdicts may not, beyond a near-tie (a warp) or a sign step
    that the difference flips (PGD) on one or two of 200 examples."""
    for threat, kw in (("clean", {}), ("spatial_rotation", {}), ("pgd_linf", {"overrides": WEAK_PGD})):
        cpu = evaluate("mnist_cnn_standard", threat, n_examples=200, device="cpu", progress=False, **kw)
        gpu = evaluate("mnist_cnn_standard", threat, n_examples=200, device="cuda", progress=False, **kw)
        assert gpu.device.startswith("cuda") and gpu.config_hash == cpu.config_hash
        assert gpu.clean_per_example == cpu.clean_per_example, threat
        differ = sum(g != c for g, c in zip(gpu.per_example, cpu.per_example, strict=True))
        assert differ <= {"clean": 0, "spatial_rotation": 1, "pgd_linf": 2}[threat], (threat, differ)


def test_robust_never_exceeds_clean_and_misbehaving_threats_are_flagged():
    from robench.threats.clean import Clean

    class Liar(Clean):
        def run_batch(self, model, x, y, clean_correct, ctx):
            return {"robust": torch.ones_like(clean_correct)}

    liar = Liar()
    liar.name = "liar"
    r = evaluate("mnist_cnn_standard", liar, n_examples=200, progress=False)
    assert r.robust_acc == r.clean_acc < 1.0
    assert any(f.startswith("robust_above_clean") for f in r.flags)


@pytest.mark.parametrize(
    "output, message",
    [
        (lambda x: torch.full((len(x), 10), float("nan")), "non-finite"),
        (lambda x: torch.zeros(len(x), 7), "shape"),
    ],
)
def test_misbehaving_models_fail_in_one_line(output, message):
    class Bad(torch.nn.Module):
        def forward(self, x):
            return output(x)

    with pytest.raises(EvaluationError, match=message):
        evaluate(Bad(), "clean", "mnist5k", n_examples=10, progress=False)


def test_bad_counts_and_mismatched_dataset():
    with pytest.raises(UsageError, match="positive"):
        evaluate("mnist_cnn_standard", "clean", n_examples=0, progress=False)
    with pytest.raises(UsageError):
        evaluate("mnist_cnn_standard", "clean", n_examples=10**6, progress=False)
    with pytest.raises(UsageError, match="1x28px"):
        evaluate("mnist_cnn_standard", "clean", dataset="cifar10", progress=False)


def _eval_cmd(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "robench",
        "eval",
        "--model",
        "mnist_cnn_standard",
        "--threat",
        "pgd_linf",
        "--n-examples",
        "300",
        "--chunk-size",
        "50",
        "--set",
        "eps=0.02",
        "--set",
        "steps=60",
        "--set",
        "step_size=0.005",
        "--runs",
        str(out),
        "--json",
    ]


def test_kill_then_rerun_resumes_and_gives_the_same_record(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = subprocess.run(
        _eval_cmd(tmp_path / "ref"), capture_output=True, text=True, env=env, check=True
    )
    ref = json.loads(reference.stdout)

    proc = subprocess.Popen(
        _eval_cmd(tmp_path / "run"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    partial = tmp_path / "run" / "mnist" / "mnist_cnn_standard" / ".partial"
    deadline = time.time() + 120
    while time.time() < deadline and not list(partial.glob("*/chunk-*.npz")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = sorted(p.name for p in partial.glob("*/chunk-*.npz"))
    assert 1 <= len(done_before) < 6, done_before  # killed mid-run, with finished chunks on disk
    assert not (tmp_path / "run" / "mnist" / "mnist_cnn_standard" / "pgd_linf.json").exists()

    resumed = subprocess.run(_eval_cmd(tmp_path / "run"), capture_output=True, text=True, env=env, check=True)
    rec = json.loads(resumed.stdout)
    for key in ("per_example", "clean_per_example", "details", "config_hash", "robust_acc", "threat_config"):
        assert rec[key] == ref[key], key
    assert 0 < rec["robust_acc"] < rec["clean_acc"]
    assert (
        load(tmp_path / "run" / "mnist" / "mnist_cnn_standard" / "pgd_linf.json").per_example
        == ref["per_example"]
    )
