"""A submission's commit as a journal: records, card and boards in place together, or none of them, even
across a ``kill -9``.

``robench submit`` ends by moving its records into ``leaderboards/runs/``, writing the card and
regenerating the boards. Rolling back in an ``except`` block covers exceptions, not a killed process: a kill
between two moves used to leave records without a card and a stale board, and then the same command
refused to run (the name was taken by "records with no card"). So the commit is planned first and written
down, atomically, before anything moves (:class:`Journal`): every move, with where the file it replaces
is set aside, and a copy of every board file. Whichever command next touches the checkout
(``robench submit``, ``robench leaderboard``) calls :func:`recover` under the checkout lock: a journal
not marked committed is rolled back (records back into the staging folder, so a rerun resumes from them;
old records, card and board files back in place), a committed one only has its leftovers removed. Every
step of the rollback is idempotent, so a kill during a recovery is recovered by the next command.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from robench.boards import files
from robench.boards.schema import Board
from robench.boards.selection import RUNS_DIR
from robench.core import record
from robench.core.record import atomic_write_bytes

#: Where the journal of the commit in progress and its set-aside files live, relative to the checkout.
JOURNAL_DIR = RUNS_DIR.parent / ".submit" / ".journal"
_FILE = "journal.json"


class Journal:
    """The planned steps of one commit, written to ``<root>/JOURNAL_DIR`` before the first is taken.

    Steps (paths relative to the checkout, so a moved checkout recovers too):
    ``keep`` (a file another step rewrites: its bytes are copied aside, ``copy`` None if it was absent),
    ``move`` (``src`` to ``dest``; a file already at ``dest`` goes to ``aside``) and ``remove`` (``path``
    goes to ``aside``). Plan with :meth:`keep`, :meth:`move`, :meth:`write`, :meth:`remove`, then
    :meth:`begin`, :meth:`apply`, and :meth:`finish` once everything else (the boards) is written.
    """

    def __init__(self, root: Path, name: str, stage: Path):
        self.root, self.folder = root, root / JOURNAL_DIR
        remove_path(self.folder)  # recover() has run: anything here is a leftover without a journal
        self.folder.mkdir(parents=True)
        self.data = {"name": name, "stage": self._rel(stage), "steps": [], "made": []}

    def _rel(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()

    def _aside(self) -> str:
        return self._rel(self.folder / str(len(self.data["steps"])))

    def keep(self, path: Path) -> None:
        """Put ``path``'s current content (or absence) back on rollback, whoever rewrites it in between."""
        copy = None
        if path.exists():
            copy = self._aside()
            atomic_write_bytes(self.root / copy, path.read_bytes())
        self.data["steps"].append({"op": "keep", "path": self._rel(path), "copy": copy})

    def move(self, src: Path, dest: Path) -> None:
        self.data["made"] += [self._rel(d) for d in dest.parents if not d.exists()]
        self.data["steps"].append(
            {"op": "move", "src": self._rel(src), "dest": self._rel(dest), "aside": self._aside()}
        )

    def write(self, path: Path, data: bytes) -> None:
        """Write ``data`` at ``path``: written into the journal's folder now, moved into place by apply."""
        new = self.folder / f"{len(self.data['steps'])}.new"
        atomic_write_bytes(new, data)
        self.move(new, path)

    def remove(self, path: Path) -> None:
        self.data["steps"].append({"op": "remove", "path": self._rel(path), "aside": self._aside()})

    def _save(self, state: str) -> None:
        self.data["state"] = state
        atomic_write_bytes(self.folder / _FILE, json.dumps(self.data, indent=1).encode())

    def begin(self) -> None:
        """Write the journal: from here on, a killed commit is rolled back by the next command."""
        self._save("applying")

    def apply(self) -> None:
        for step in self.data["steps"]:
            _apply(self.root, step)

    def finish(self) -> None:
        """Mark the commit done (the one atomic write that decides it), then remove the set-aside files."""
        self._save("committed")
        _close(self.folder)

    def rollback(self) -> None:
        _rollback(self.root, self.data)
        _close(self.folder)


def _apply(root: Path, step: dict) -> None:
    if step["op"] == "move":
        src, dest = root / step["src"], root / step["dest"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            os.replace(dest, root / step["aside"])
        os.replace(src, dest)
    elif step["op"] == "remove" and (root / step["path"]).exists():
        os.replace(root / step["path"], root / step["aside"])


def _rollback(root: Path, data: dict) -> None:
    """Undo every step, last first; each undo checks where the files are, so it can be run again."""
    for step in reversed(data["steps"]):
        if step["op"] == "keep":
            path = root / step["path"]
            record.sweep_stale_tmp(path)  # the half-written page of a board write the kill interrupted
            if step["copy"] is None:
                path.unlink(missing_ok=True)
            elif (root / step["copy"]).exists():
                atomic_write_bytes(path, (root / step["copy"]).read_bytes())
            continue
        aside = root / step["aside"]
        if step["op"] == "move":
            src, dest = root / step["src"], root / step["dest"]
            if not src.exists() and dest.exists():  # it moved: take it back to where it came from
                src.parent.mkdir(parents=True, exist_ok=True)
                os.replace(dest, src)
            if aside.exists():
                os.replace(aside, dest)
        elif aside.exists():  # remove
            remove_path(root / step["path"])  # a folder the later moves created again, emptied by now
            os.replace(aside, root / step["path"])
    for made in sorted(data["made"], key=len, reverse=True):
        rmdir_if_empty(root / made)


def _close(folder: Path) -> None:
    """Remove the journal, then its folder: a kill in between leaves a folder without a journal, which
    :func:`recover` removes as the leftover it is."""
    (folder / _FILE).unlink(missing_ok=True)
    discard(folder)


def commit(
    name: str,
    records: list[record.RunRecord],
    stage: Path,
    card: tuple[Path, bytes | None],
    replace: bool,
    boards: list[Board],
    root: Path,
) -> None:
    """Records, card and boards of submission ``name`` in place together; on any failure or a kill, all
    three as they were.

    Only the files of this submission's records move (each record and its artifacts), so anything an
    earlier, interrupted submission left in the staging folder cannot slip in. ``card`` is the card's path
    and its bytes (None: the card is registered already and stays).
    """
    runs = root / RUNS_DIR
    journal = Journal(root, name, stage)
    try:
        for b in boards:
            for path in files.paths(b.name, root):
                journal.keep(path)
        if replace:  # the old card's records describe other weights: they go with it
            for old in sorted(runs.glob(f"*/{name}")):
                journal.remove(old)
        for r in records:
            for file in (f"{r.threat}.json", *r.artifacts.values()):
                journal.move(
                    record.path_for(stage / RUNS_DIR, r.dataset, name, r.threat).with_name(file),
                    record.path_for(runs, r.dataset, name, r.threat).with_name(file),
                )
        if card[1] is not None:
            journal.write(*card)
        journal.begin()
        journal.apply()
        files.write([b.name for b in boards], root)
    except BaseException:
        journal.rollback()
        raise
    journal.finish()


def recover(root: Path) -> None:
    """Complete or roll back a commit that a killed ``robench submit`` left in ``root``, with one line on
    stderr saying which, under the checkout lock (:func:`robench.boards.files.checkout_lock`), so never
    while another submission is committing."""
    folder = root / JOURNAL_DIR
    if not folder.exists():  # the common case, without taking the lock (nor creating a folder for it)
        return
    with files.checkout_lock(root):
        _recover(root, folder)


def _recover(root: Path, folder: Path) -> None:
    try:
        data = json.loads((folder / _FILE).read_text())
    except FileNotFoundError:  # killed while planning (nothing moved yet) or while closing (all settled)
        discard(folder)
        return
    what = f"robench: the commit of submission {data['name']!r} was interrupted"
    if data["state"] == "committed":
        _close(folder)
        discard(root / data["stage"])
        print(f"{what} after it completed: its leftovers are removed", file=sys.stderr)
        return
    _rollback(root, data)
    _close(folder)
    print(
        f"{what} before it completed: rolled back (records, card and boards as they were; its records wait "
        "in the staging folder, so rerunning the submission resumes from them)",
        file=sys.stderr,
    )


def remove_path(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def discard(folder: Path) -> None:
    """Remove ``folder`` and its parent if that is left empty (the staging folder ``.submit/``)."""
    shutil.rmtree(folder, ignore_errors=True)
    rmdir_if_empty(folder.parent)


def rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (or already gone): leave it
        pass
