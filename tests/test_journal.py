"""class 4 of issue #24: a submission's commit is all or nothing even when the process is killed in it.

The commit of a staged submission is run in forked children of one fresh interpreter (no torch in it, so
forking is safe), each ``os._exit``-ed - a ``kill -9``: no ``except``, no ``finally`` - just before its
k-th file-system change (rename, unlink, rmdir), for every k until one child gets through. Each checkout
left behind is then touched by a robench command, which must complete or roll back the commit with one
line saying which; afterwards ``leaderboard --check`` passes and the checkout is byte for byte the one
before the commit or the one after it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_submit import BOARD, QUICK, THREATS, checkpoint, snapshot, submit, watch_engine, write_card

from robench.cli import main
from robench.core import config

#: Runs in a fresh interpreter: argv = template checkout, output folder, the intercepted commit's plan.
KILLER = r"""
import json, os, shutil, sys
from pathlib import Path

template, out, plan = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text())
from robench.boards import files
from robench.boards.schema import load_board
from robench.core import config, record
from robench.submission import undo


def commit_killed_before(k, root):
    config.BUILTIN = root / "configs"
    os.chdir(root)
    stage = root / plan["stage"]
    records = [record.load(root / p) for p in plan["records"]]
    boards = [load_board(b) for b in plan["boards"]]
    card = (root / plan["card"], None if plan["card_bytes"] is None else plan["card_bytes"].encode())
    done = [0]

    def killing(real):
        def call(*args, **kwargs):
            done[0] += 1
            if done[0] == k:
                os._exit(137)
            return real(*args, **kwargs)
        return call

    for name in ("replace", "rename", "unlink", "rmdir"):
        setattr(os, name, killing(getattr(os, name)))
    with files.checkout_lock(root):  # as robench submit holds it
        undo.commit(plan["name"], records, stage, card, plan["replace"], boards, root)


k = 1
while True:
    root = out / str(k)
    shutil.copytree(template, root, symlinks=True)
    pid = os.fork()
    if pid == 0:
        try:
            commit_killed_before(k, root)
        finally:
            os._exit(0 if sys.exc_info()[0] is None else 1)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code == 0:
        break
    assert code == 137, code
    k += 1
print(k)
"""


@pytest.fixture
def repo(tmp_path, config_tree):
    """test_submit's tiny board in a checkout of its own."""
    return config_tree(
        tmp_path / "repo", threats=THREATS, boards={"tiny": BOARD}, models={}, recipes={"quick": QUICK}
    )


def _intercept_commit(root: Path, card: Path, monkeypatch, *args) -> dict:
    """Run ``robench submit`` up to its commit and stop there (the staging folder is kept, as after an
    interruption); returns the commit's arguments, paths relative to ``root``."""
    import robench.submission.submit as submission

    plan = {}

    def stop(name, records, stage, card, replace, boards, where):
        rel = lambda p: Path(p).relative_to(where).as_posix()  # noqa: E731
        plan.update(
            name=name,
            records=[
                rel(stage / "leaderboards" / "runs" / r.dataset / name / f"{r.threat}.json") for r in records
            ],
            stage=rel(stage),
            card=rel(card[0]),
            card_bytes=None if card[1] is None else card[1].decode(),
            replace=replace,
            boards=[b.name for b in boards],
        )
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(submission, "commit", stop)
        assert submit(root, card, *args) == 130
    return plan


def _outside_staging(root: Path) -> dict:
    return {p: b for p, b in snapshot(root).items() if ".submit" not in p.parts and p.name != ".lock"}


def _staged(root: Path) -> dict:
    return {p: b for p, b in snapshot(root).items() if ".submit" in p.parts and p.suffix == ".json"}


def _kill_at_every_step(root: Path, tmp_path: Path, plan: dict) -> list[Path]:
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    out = tmp_path / "killed"
    out.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", KILLER, str(root), str(out), str(tmp_path / "plan.json")],
        capture_output=True,
        text=True,
        check=True,
    )
    return [out / str(k) for k in range(1, int(done.stdout) + 1)]


@pytest.mark.parametrize("force", [False, True], ids=["new model", "forced replacement"])
def test_class_4_a_commit_killed_at_any_step_is_completed_or_rolled_back(
    repo, tmp_path, capsys, monkeypatch, force
):
    """class 4: kill -9 at each step of the commit; the next ``robench leaderboard --check`` completes or
    rolls the commit back (one line saying which) and passes, and the checkout is all old or all new."""
    assert submit(repo, write_card(tmp_path / "a.yaml", checkpoint(tmp_path / "a.safetensors", 1))) == 0
    if force:  # the name is taken by other weights: their records and card are replaced
        assert submit(repo, write_card(tmp_path / "m.yaml", checkpoint(tmp_path / "m.safetensors", 2))) == 0
    card = write_card(tmp_path / "m.yaml", checkpoint(tmp_path / "m.safetensors", 3))
    plan = _intercept_commit(repo, card, monkeypatch, *(["--force"] if force else []))
    old, staged = _outside_staging(repo), _staged(repo)
    checkouts = _kill_at_every_step(repo, tmp_path, plan)
    assert len(checkouts) > 10  # every rename, unlink and rmdir of the commit was a kill point
    new = _outside_staging(checkouts[-1])  # the child that got through
    assert new != old
    outcomes = []
    for checkout in checkouts:
        monkeypatch.setattr(config, "BUILTIN", checkout / "configs")
        monkeypatch.chdir(checkout)
        capsys.readouterr()
        assert main(["leaderboard", "--check", "--root", str(checkout)]) == 0, checkout.name
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if "commit of submission 'm'" in line]
        assert len(lines) <= 1, err
        state = _outside_staging(checkout)
        assert state in (old, new), checkout.name
        if state == old:
            assert _staged(checkout) == staged  # the rerun resumes from them
            assert not lines or "rolled back" in lines[0]  # none: killed before the journal was written
        else:
            assert not lines or "completed" in lines[0]  # none: killed after the journal was removed
        assert not (checkout / "leaderboards" / ".submit" / ".journal").exists()
        outcomes.append((state == new, bool(lines)))
    assert [new for new, _ in outcomes] == sorted(new for new, _ in outcomes)  # old until it commits
    assert sum(said for _, said in outcomes) > 5  # most kills left a journal to act on


def test_class_4_a_rolled_back_commit_lets_the_same_submit_run_and_resume(
    repo, tmp_path, capsys, monkeypatch
):
    """class 4: after a kill in the middle of the moves, the same ``robench submit`` used to refuse (the
    name was taken by records without a card); now it rolls back first and resumes every staged record."""
    card = write_card(tmp_path / "m.yaml", checkpoint(tmp_path / "m.safetensors", 4))
    plan = _intercept_commit(repo, card, monkeypatch)
    checkouts = _kill_at_every_step(repo, tmp_path, plan)
    runs, card_file = Path("leaderboards/runs/mnist/m"), Path("configs/models/m.yaml")
    middle = next(  # killed among the moves: records in place, no card (what used to block the rerun)
        c for c in checkouts if any((c / runs).glob("*.json")) and not (c / card_file).exists()
    )
    monkeypatch.setattr(config, "BUILTIN", middle / "configs")
    monkeypatch.chdir(middle)
    capsys.readouterr()
    with monkeypatch.context() as patch:
        calls = watch_engine(patch)
        assert submit(middle, card) == 0
    assert calls == []  # every threat came from the staging folder
    assert "rolled back" in capsys.readouterr().err
    assert main(["leaderboard", "--check", "--root", str(middle)]) == 0
    shutil.rmtree(tmp_path / "killed")
