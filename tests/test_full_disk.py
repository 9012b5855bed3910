"""Full disks and read-only places (issue #14 item 4): a write that fails part-way leaves the previous file
as it was and ends the command with exit status 1 and one line naming the file; the rerun, with space
again, writes what an undisturbed run writes.

The writer is monkeypatched to fail after writing half of its bytes (ENOSPC) or at the start (EROFS), so
the tests run anywhere; where a small tmpfs can be mounted (root on Linux), one test also fills a real one.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from robench import cli
from robench.core import record
from robench.core.errors import WriteError

REPO = Path(__file__).resolve().parent.parent
EVAL = [
    "eval",
    "--model",
    "mnist_mlp_standard",
    "--dataset",
    "mnist5k",
    "--threat",
    "clean",
    "--n-examples",
    "60",
    "--chunk-size",
    "20",
    "--device",
    "cpu",
]


def fail_writes(monkeypatch, when, code=errno.ENOSPC):
    """Make record._fill fail (after writing half its bytes) for files whose path satisfies ``when``."""
    fill = record._fill

    def failing(fd, data):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if not when(path):
            return fill(fd, data)
        os.write(fd, data[: len(data) // 2])
        os.close(fd)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(record, "_fill", failing)


def one_line(capsys) -> str:
    [line] = capsys.readouterr().err.strip().splitlines()
    return line


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*.tmp")]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    path.write_bytes(b"old")
    fail_writes(monkeypatch, lambda p: True)
    with pytest.raises(WriteError, match=f"cannot write {path}: No space left on device") as error:
        record.atomic_write_bytes(path, b"new" * 1000)
    assert isinstance(error.value, OSError) and error.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"old" and no_temp_files(tmp_path)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_chunk_write_failing_stops_the_run_and_the_rerun_completes(tmp_path, monkeypatch, capsys, code):
    reference = tmp_path / "ref"
    assert cli.main([*EVAL, "--runs", str(reference)]) == 0
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        fail_writes(patch, lambda p: p.endswith(".tmp") and "chunk-00001" in p, code)
        capsys.readouterr()
        assert cli.main([*EVAL, "--runs", str(out)]) == 1
    line = one_line(capsys)
    assert line.startswith("robench: error: cannot write ") and "chunk-00001.npz" in line
    assert os.strerror(code) in line
    assert [p.name for p in out.rglob("chunk-*.npz")] == ["chunk-00000.npz"] and no_temp_files(out)
    assert cli.main([*EVAL, "--runs", str(out)]) == 0
    written = [
        json.loads(p.read_text())
        for p in (
            reference / "mnist5k" / "mnist_mlp_standard" / "clean.json",
            out / "mnist5k" / "mnist_mlp_standard" / "clean.json",
        )
    ]
    assert written[0]["per_example"] == written[1]["per_example"]


def test_a_record_write_failing_keeps_the_previous_record_and_the_chunks(tmp_path, monkeypatch, capsys):
    assert cli.main([*EVAL, "--runs", str(tmp_path)]) == 0
    path = tmp_path / "mnist5k" / "mnist_mlp_standard" / "clean.json"
    before = path.read_bytes()
    with monkeypatch.context() as patch:
        fail_writes(patch, lambda p: ".clean.json." in p)
        capsys.readouterr()
        assert cli.main([*EVAL, "--runs", str(tmp_path), "--seed", "1"]) == 1
    assert f"cannot write {path}: No space left on device" in one_line(capsys)
    assert path.read_bytes() == before
    assert len(list(tmp_path.rglob("chunk-*.npz"))) == 3  # the rerun needs no computing
    assert cli.main([*EVAL, "--runs", str(tmp_path), "--seed", "1"]) == 0
    assert json.loads(path.read_text())["seed"] == 1


def test_a_board_write_failing_leaves_every_board_file_as_it_was(tmp_path, monkeypatch, capsys):
    root = tmp_path / "root"
    shutil.copytree(REPO / "leaderboards", root / "leaderboards")
    page, plot = root / "leaderboards" / "mnist5k.md", root / "leaderboards" / "mnist5k.svg"
    page.write_text("hand-edited\n")
    plot.write_text("<svg/>")
    before = {p: p.read_bytes() for p in (page, plot)}
    with monkeypatch.context() as patch:
        fail_writes(patch, lambda p: p.endswith(".tmp") and ".mnist5k.svg." in p)
        capsys.readouterr()
        assert cli.main(["leaderboard", "--root", str(root), "--board", "mnist5k"]) == 1
    assert "mnist5k.svg: No space left on device" in one_line(capsys)
    assert {p: p.read_bytes() for p in (page, plot)} == before  # the page written first was put back
    assert no_temp_files(root)


def test_a_cache_write_failing_costs_a_refit_not_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    fail_writes(monkeypatch, lambda p: "/cache/" in p)
    argv = [
        "eval",
        "--model",
        "mnist_mlp_standard",
        "--dataset",
        "mnist5k",  # a universal perturbation is fitted on the train split: the embedded one
        "--threat",
        "uap_linf",
        "--set",
        "epochs=1",
        "--n-examples",
        "40",
        "--device",
        "cpu",
        "--runs",
        str(tmp_path / "out"),
    ]
    assert cli.main(argv) == 0
    lines = [x for x in capsys.readouterr().err.splitlines() if "fit cache" in x]
    assert len(lines) == 1 and "(No space left on device); the run goes on" in lines[0]
    assert (tmp_path / "out" / "mnist5k" / "mnist_mlp_standard" / "uap_linf.json").exists()
    assert not list((tmp_path / "cache").rglob("*.npy"))


@pytest.fixture
def small_tmpfs(tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)], capture_output=True
        ).returncode
    ):
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_real_full_disk(small_tmpfs, tmp_path, capsys):
    """A real ENOSPC: the 48 KiB tmpfs is filled up first, then a record of 1,000 examples is written."""
    (small_tmpfs / "ballast").write_bytes(b"x" * 40_000)
    assert cli.main([*EVAL, "--runs", str(small_tmpfs)]) == 1
    line = one_line(capsys)
    assert line.startswith("robench: error: cannot write ") and "No space left on device" in line
    assert no_temp_files(small_tmpfs)
    (small_tmpfs / "ballast").unlink()
    assert cli.main([*EVAL, "--runs", str(small_tmpfs)]) == 0
