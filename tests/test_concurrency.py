"""Concurrency (issue #14 item 2): two writers of one record or one checkout end in one complete outcome;
the loser is refused in one line naming the holder, and changes nothing on disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robench import cli
from robench.core import locks
from robench.core.errors import RobenchError

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _holder(path: Path, what="x", seconds=60) -> subprocess.Popen:
    """Another process holding the lock ``path`` until killed; returns once it holds it."""
    code = (
        f"import time; from robench.core import locks\nwith locks.lock({str(path)!r}, {what!r}):\n"
        f"    print('held', flush=True); time.sleep({seconds})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_held_lock_refuses_in_one_line_naming_the_holder(tmp_path):
    path = tmp_path / ".x.lock"
    holder = _holder(path)
    try:
        with pytest.raises(locks.LockedError) as error, locks.lock(path, "record r"):
            pass
        message = str(error.value)
        assert f"pid {holder.pid} on " in message and str(path) in message and "\n" not in message
        assert message.startswith("record r is in use by")
    finally:
        holder.kill()
        holder.wait()
    with locks.lock(path, "record r"):  # the kernel released the dead holder's lock
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()  # removed by its holder when done


def test_a_stale_lock_file_is_taken_over_with_one_line(tmp_path, capsys):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    path = tmp_path / ".x.lock"
    import socket

    path.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": "then"}))
    with locks.lock(path, "record r"):
        pass
    err = capsys.readouterr().err.strip()
    assert (
        err == f"robench: record r: stale lock of pid {int(dead.stdout)} on {socket.gethostname()} since "
        "then (no such process) taken over"
    )


def test_locks_nest_within_a_process(tmp_path):
    path = tmp_path / ".x.lock"
    with locks.lock(path, "a"), locks.lock(path, "a"):
        assert path.exists()
    assert not path.exists()


def test_a_second_eval_of_the_same_record_is_refused_and_the_first_completes(tmp_path, capsys):
    """The first run is a real `robench eval` in another process (a robust model: it takes seconds); the
    second starts while it computes."""
    out = tmp_path / "runs"
    args = [
        "eval",
        "--model",
        "mnist_cnn_pgd_linf",
        "--threat",
        "pgd_linf",
        "--n-examples",
        "300",
        "--chunk-size",
        "20",
        "--batch-size",
        "20",
        "--device",
        "cpu",
        "--runs",
        str(out),
        "--json",
    ]
    first = subprocess.Popen(
        [sys.executable, "-m", "robench", *args],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = out / "mnist" / "mnist_cnn_pgd_linf" / ".pgd_linf.json.lock"
    deadline = time.time() + 120
    while not lock.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert lock.exists(), "the first run never took the record's lock"
    assert cli.main(args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.strip().splitlines()
    assert line.startswith(
        f"robench: error: record {out}/mnist/mnist_cnn_pgd_linf/pgd_linf.json is in use by "
        f"pid {first.pid} on "
    )
    stdout, _ = first.communicate(timeout=600)
    assert first.returncode == 0
    written = json.loads((out / "mnist" / "mnist_cnn_pgd_linf" / "pgd_linf.json").read_text())
    assert written["per_example"] == json.loads(stdout)["per_example"]
    assert not lock.exists()


@pytest.fixture
def board_root(tmp_path, monkeypatch):
    """A copy of the checkout's configs and leaderboards, used as --root."""
    root = tmp_path / "root"
    shutil.copytree(REPO / "configs", root / "configs")
    shutil.copytree(REPO / "leaderboards", root / "leaderboards")
    monkeypatch.setenv("ROBENCH_CONFIGS", str(root / "configs"))
    return root


def _snapshot(root: Path) -> dict:
    return {
        p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")
    }


@pytest.mark.parametrize("command", [["leaderboard"], ["submit", "configs/models/mnist_mlp_standard.yaml"]])
def test_a_board_change_during_a_submission_is_refused(board_root, capsys, command):
    (board_root / "leaderboards" / "mnist5k.md").write_text("edited: regeneration would rewrite this\n")
    before = _snapshot(board_root)
    holder = _holder(board_root / "leaderboards" / ".lock", "a submission")
    try:
        argv = [*command[:1], *(str(board_root / c) for c in command[1:]), "--root", str(board_root)]
        assert cli.main(argv) == 1
    finally:
        holder.kill()
        holder.wait()
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        f"robench: error: the boards of {board_root} (robench submit or leaderboard) is in use "
        f"by pid {holder.pid}"
    )
    assert _snapshot(board_root) == before


def test_the_lock_error_is_a_robench_error():
    assert issubclass(locks.LockedError, RobenchError) and locks.LockedError.exit_code == 1
