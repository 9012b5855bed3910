"""Sharded evaluation: torchrun ranks and job-array shards give the single-process records, and resume.

The torchrun tests launch real worker processes on the CPU (gloo), each with one thread, and compare
their records with a single-process ``evaluate`` run with one thread, field by field; only timings and
the device description may differ.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robench.core.errors import UsageError
from robench.engine import ShardResult, evaluate
from robench.runtime import distributed

MODEL = "mnist_cnn_standard"
DATASET = "mnist5k"  # the embedded train split: a universal perturbation is fitted offline
TORCHRUN = Path(sys.executable).with_name("torchrun")
#: What describes a run rather than its result: where (device; versions, whose machine class counts the
#: threads, which torchrun sets per rank) and when and how fast.
TIMING = {"device", "versions", "duration_s", "examples_per_s", "started_at"}
FIT_TIMING = {"fit_time_s", "ranks", "cached"}  # how the UAP's δ was obtained, not what it is


@pytest.fixture
def one_thread():
    """The single-process reference runs with one thread, like each torchrun worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _env(cache: Path) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "ROBENCH_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}


def _eval_cmd(threats: str, out: Path, n: int, chunk: int, *extra: str) -> list[str]:
    return [
        "-m",
        "robench",
        "eval",
        "--model",
        MODEL,
        "--dataset",
        DATASET,
        "--threat",
        threats,
        "--n-examples",
        str(n),
        "--chunk-size",
        str(chunk),
        "--device",
        "cpu",
        "--runs",
        str(out),
        *extra,
    ]


def _torchrun(args: list[str], cache: Path) -> subprocess.Popen:
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", *args]
    return subprocess.Popen(cmd, env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def _record(out: Path, threat: str) -> dict:
    return json.loads((out / DATASET / MODEL / f"{threat}.json").read_text())


def _assert_same_record(sharded: dict, single, threat: str) -> None:
    single = json.loads(single.to_json())
    assert "x 2 ranks" in sharded["device"]
    for key in single.keys() - TIMING:
        a, b = sharded[key], single[key]
        if key == "details" and "fit" in a:  # the UAP: δ fitted on two ranks vs one
            a, b = dict(a), dict(b)
            fa, fb = a.pop("fit"), b.pop("fit")
            assert fa["ranks"] == 2 and fb["ranks"] == 1 and not fa["cached"] and not fb["cached"]
            assert {k: v for k, v in fa.items() if k not in FIT_TIMING} == {
                k: v for k, v in fb.items() if k not in FIT_TIMING
            }
        assert a == b, f"{threat}: {key} differs"


# A PGD weak enough that 70% of examples survive and ~7 of 200 verdicts change with the random start:
# a chunk run with the wrong seed, lost or put in the wrong place changes the record.
WEAK_PGD = {"eps": 0.15, "steps": 10}


def _sets(overrides: dict) -> list[str]:
    return [arg for k, v in overrides.items() for arg in ("--set", f"{k}={v}")]


def test_two_ranks_equal_one_process_pgd(tmp_path, one_thread, standard_model):
    proc = _torchrun(_eval_cmd("pgd_linf", tmp_path / "two", 200, 50, *_sets(WEAK_PGD)), tmp_path / "cache")
    single = evaluate(
        standard_model,
        "pgd_linf",
        DATASET,
        n_examples=200,
        chunk_size=50,
        device="cpu",
        progress=False,
        overrides=WEAK_PGD,
        model_name=MODEL,
    )
    out, _ = _finish(proc)
    assert out.count("records:") == 1, out  # one table, from rank 0
    _assert_same_record(_record(tmp_path / "two", "pgd_linf"), single, "pgd_linf")
    assert not (tmp_path / "two" / DATASET / MODEL / ".partial").exists()


@pytest.mark.slow
def test_two_ranks_equal_one_process_clean_spatial_and_uap(tmp_path, one_thread, monkeypatch):
    threats = ("clean", "spatial", "uap_linf")
    proc = _torchrun(_eval_cmd(",".join(threats), tmp_path / "two", 200, 50), tmp_path / "cache-two")
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache-one"))  # both fit δ: no shared cache
    singles = {
        t: evaluate(
            MODEL,
            t,
            DATASET,
            n_examples=200,
            chunk_size=50,
            device="cpu",
            progress=False,
            out_dir=tmp_path / "one",
        )
        for t in threats
    }
    _finish(proc)
    for threat, single in singles.items():
        _assert_same_record(_record(tmp_path / "two", threat), single, threat)
    delta_one = np.load(tmp_path / "one" / DATASET / MODEL / "uap_linf.npy")
    delta_two = np.load(tmp_path / "two" / DATASET / MODEL / "uap_linf.npy")
    assert np.array_equal(delta_one, delta_two)


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc/*/stat: pid (comm) state ppid ...)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _running(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the torchrun workers")
def test_killed_run_resumes_from_finished_chunks(tmp_path, one_thread):
    args = _eval_cmd("pgd_linf", tmp_path / "out", 300, 25, *_sets(WEAK_PGD))
    partial = tmp_path / "out" / DATASET / MODEL / ".partial"
    proc = _torchrun(args, tmp_path / "cache")
    deadline = time.time() + 240
    while not list(partial.glob("*/chunk-*.npz")):
        assert proc.poll() is None and time.time() < deadline, "no chunk file appeared"
        time.sleep(0.05)
    workers = _children(proc.pid)  # torchrun starts each worker in its own session: kill them too
    for pid in [proc.pid, *workers]:
        os.kill(pid, signal.SIGKILL)
    proc.communicate()
    while any(_running(pid) for pid in workers):
        time.sleep(0.05)
    done = {p.name for p in partial.glob("*/chunk-*.npz")}
    assert done and len(done) < 12 and not (tmp_path / "out" / DATASET / MODEL / "pgd_linf.json").exists()

    _, err = _finish(_torchrun(args, tmp_path / "cache"))
    resumed = int(err.split("resumed ")[1].split(" of")[0])
    assert resumed >= 25 * len(done)  # at least the chunks seen before the kill were loaded, not recomputed
    single = evaluate(
        MODEL,
        "pgd_linf",
        DATASET,
        n_examples=300,
        chunk_size=25,
        device="cpu",
        progress=False,
        overrides=WEAK_PGD,
    )
    _assert_same_record(_record(tmp_path / "out", "pgd_linf"), single, "pgd_linf")
    assert not partial.exists()


def test_job_array_shards_then_one_record(tmp_path, standard_model):
    common = dict(
        n_examples=100, chunk_size=25, device="cpu", progress=False, overrides={"steps": 3}, model_name=MODEL
    )
    reference = evaluate(standard_model, "pgd_linf", DATASET, **common)
    partial = tmp_path / DATASET / MODEL / ".partial"
    for i, chunks in enumerate([{0, 3}, {0, 1, 3}, {0, 1, 2, 3}]):  # 4 chunks: task i takes c % 3 == i
        result = evaluate(standard_model, "pgd_linf", DATASET, out_dir=tmp_path, shard=(i, 3), **common)
        assert isinstance(result, ShardResult) and result.shard == (i, 3)
        assert set(result.chunks) == {c for c in range(4) if c % 3 == i} and result.folder.parent == partial
        assert {p.name for p in result.folder.glob("chunk-*.npz")} == {f"chunk-{c:05d}.npz" for c in chunks}
    final = evaluate(standard_model, "pgd_linf", DATASET, out_dir=tmp_path, **common)
    assert final.examples_per_s == 0.0  # nothing left to compute: every chunk came from the shards
    single, merged = json.loads(reference.to_json()), json.loads(final.to_json())
    for key in single.keys() - TIMING:
        assert merged[key] == single[key], key


def test_bad_shards_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="0 <= i < n"):
        evaluate(MODEL, "clean", DATASET, n_examples=10, device="cpu", out_dir=tmp_path, shard=(3, 3))
    with pytest.raises(UsageError, match="output directory"):
        evaluate(MODEL, "clean", DATASET, n_examples=10, device="cpu", shard=(0, 2))
    result = subprocess.run(
        [sys.executable, *_eval_cmd("clean", tmp_path, 10, 5, "--shard", "2/2")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "I/N" in result.stderr


def test_pinned_gpu_under_torchrun_is_refused(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(UsageError, match="--device auto or cuda"):
        distributed.rank_device(torch.device("cuda:0"))
    assert distributed.rank_device(torch.device("cpu")) == torch.device("cpu")
