"""Signals (issue #14 item 3): SIGINT/SIGTERM stop `robench eval` after the current batch with every finished
chunk kept and exit 128+signal with one line; the rerun writes the record an uninterrupted run writes. A
second signal ends the process at once, leaving only whole chunk files."""

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

from robench.engine.chunks import IDENTITY_KEY, load_chunk

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
MODEL = "mnist_cnn_pgd_linf"  # robust: each batch of PGD takes a noticeable time


def _cmd(out: Path, batch: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "robench",
        "eval",
        "--model",
        MODEL,
        "--dataset",
        "mnist5k",
        "--threat",
        "pgd_linf",
        "--n-examples",
        "120",
        "--chunk-size",
        "20",
        "--batch-size",
        str(batch),
        "--set",
        "steps=20",
        "--device",
        "cpu",
        "--runs",
        str(out),
        "--json",
    ]


def _partial(out: Path) -> Path:
    return out / "mnist5k" / MODEL / ".partial"


def _start_and_wait_for_a_chunk(out: Path, batch: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        _cmd(out, batch), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and not list(_partial(out).glob("*/chunk-*.npz")):
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    return proc


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    done = subprocess.run(
        _cmd(tmp_path_factory.mktemp("ref"), 10), env=ENV, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_batch_and_the_rerun_resumes(tmp_path, reference, signum):
    proc = _start_and_wait_for_a_chunk(tmp_path, 10)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum
    assert stdout == ""
    assert stderr.strip().splitlines()[-1] == (
        f"robench: interrupted by {signal.Signals(signum).name} (finished chunks are kept; rerun the same "
        "command to resume)"
    )
    kept = sorted(_partial(tmp_path).glob("*/chunk-*.npz"))
    assert 1 <= len(kept) < 6
    assert not (tmp_path / "mnist5k" / MODEL / "pgd_linf.json").exists()

    rerun = subprocess.run(_cmd(tmp_path, 10), env=ENV, capture_output=True, text=True, check=True)
    record = json.loads(rerun.stdout)
    for key in ("per_example", "clean_per_example", "details", "config_hash", "robust_acc"):
        assert record[key] == reference[key], key


def test_a_second_signal_ends_the_process_now(tmp_path):
    proc = _start_and_wait_for_a_chunk(tmp_path, 20)  # one batch per chunk: the stop would come late
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    started = time.time()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM  # ended by the signal itself, not by the loop
    assert time.time() - started < 5
    kept = list(_partial(tmp_path).glob("*/chunk-*.npz"))
    assert kept
    for path in kept:  # whatever is there is a whole chunk file
        with np.load(path) as data:
            identity = str(data[IDENTITY_KEY])
        assert load_chunk(path, 20, identity) is not None
