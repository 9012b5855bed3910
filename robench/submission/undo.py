"""File changes that can be taken back: ``robench submit`` puts records, card and board in place together,
or, on any failure, leaves all of them as they were.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from robench.core.record import atomic_write_bytes


class Undo:
    """Changes files while remembering how to put each one back, so a failed commit leaves no trace.

    Replaced files and folders are moved aside into ``backup`` (same file system, so every move is an
    atomic rename), and folders the commit had to create are removed again.
    """

    def __init__(self, backup: Path):
        self.backup = backup
        self.steps = []

    def _make_parents(self, path: Path) -> None:
        missing = [d for d in path.parents if not d.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        self.steps += [lambda d=d: rmdir_if_empty(d) for d in reversed(missing)]

    def _set_aside(self, path: Path) -> None:
        """Move ``path`` out of the way; undo removes whatever is there then and moves it back."""
        if path.exists():
            kept = self.backup / str(len(self.steps))
            kept.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, kept)
            self.steps.append(lambda: (remove_path(path), os.replace(kept, path)))
        else:
            self.steps.append(lambda: remove_path(path))

    def move(self, src: Path, dest: Path) -> None:
        self._make_parents(dest)
        self._set_aside(dest)
        os.replace(src, dest)

    def remove(self, path: Path) -> None:
        self._set_aside(path)

    def write(self, path: Path, data: bytes) -> None:
        self._make_parents(path)
        self._set_aside(path)
        atomic_write_bytes(path, data)

    def remember(self, path: Path) -> None:
        """Restore ``path``'s current content (or absence) on undo, whoever rewrites it in between."""
        old = path.read_bytes() if path.exists() else None
        self.steps.append(lambda: atomic_write_bytes(path, old) if old is not None else remove_path(path))

    def rollback(self) -> None:
        for step in reversed(self.steps):
            step()


def remove_path(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (or already gone): leave it
        pass
