"""Board files: ``leaderboards/<board>.md`` and ``.svg`` written from the records, or checked against them.

Boards are generated, never hand-edited. ``check`` is what CI runs: it fails when a page was edited by hand
or not regenerated after a record or config changed. It compares the markdown byte for byte, and for the
plot compares the data the SVG carries rather than its bytes (see :mod:`robench.boards.plot` for why), so
it passes for a contributor with another matplotlib and fails on a stale, deleted or data-edited plot.
"""

from __future__ import annotations

from pathlib import Path

from robench.boards import plot as plots
from robench.boards.render import build
from robench.boards.schema import board_names
from robench.boards.selection import RUNS_DIR, default_root
from robench.core import locks, record
from robench.core.errors import UsageError

#: Where the generated pages and plots live, relative to the repository root.
BOARDS_DIR = RUNS_DIR.parent


def paths(name: str, root: Path) -> tuple[Path, Path]:
    """The page and the plot of board ``name`` under ``root``."""
    base = root / BOARDS_DIR / record.check_name("board", name)
    return base.with_suffix(".md"), base.with_suffix(".svg")


def checkout_lock(root: Path):
    """The lock of a checkout's boards, held while they are rewritten (and by ``robench submit`` for its
    whole run), so a regeneration never interleaves with a submission (:mod:`robench.core.locks`)."""
    return locks.lock(root / BOARDS_DIR / ".lock", f"the boards of {root} (robench submit or leaderboard)")


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def _plot_current(path: Path, plot: plots.Plot | None) -> bool:
    """Whether the SVG at ``path`` shows ``plot`` (for None: whether there is no SVG)."""
    svg = _read(path)
    return svg is None if plot is None else svg is not None and plots.shows(svg, plot)


def _targets(names: list[str] | None, root: Path | None) -> tuple[list[str], Path]:
    """The named boards (default: every board config) and the root (default: the repository)."""
    root = Path(root) if root is not None else default_root()
    if not (root / BOARDS_DIR).is_dir():  # a mistyped --root would otherwise get a fresh, empty board
        raise UsageError(
            f"{root} holds no {BOARDS_DIR.as_posix()}/ folder: give the folder that holds "
            "configs/ and leaderboards/"
        )
    return (board_names() if names is None else list(names)), root


def write(boards: list[str] | None = None, root: Path | None = None) -> list[Path]:
    """Regenerate the boards (default: all); returns the files that changed.

    Every page is built and every plot drawn before any file is written, so a failure writes nothing.
    Unchanged files are not rewritten, so their timestamps stay; an SVG that already carries the plot's
    data is unchanged by that definition, whatever bytes this matplotlib would draw; a plot the page no
    longer needs is removed.
    """
    names, root = _targets(boards, root)
    with checkout_lock(root):
        return _write(names, root)


def _write(names: list[str], root: Path) -> list[Path]:
    todo: dict[Path, bytes | None] = {}  # path -> new bytes (None: remove)
    for name in names:
        page = build(name, root)
        md, svg = paths(name, root)
        if _read(md) != page.markdown.encode():
            todo[md] = page.markdown.encode()
        if not _plot_current(svg, page.plot):
            todo[svg] = plots.to_svg(page.plot) if page.plot is not None else None
    _put(todo)
    return list(todo)


def _put(todo: dict[Path, bytes | None]) -> None:
    """Write (or, for None, remove) every file, or none: if one fails (a full disk, a read-only place), the
    ones already written get their old bytes back, so a page never goes out with another page's plot."""
    done: list[tuple[Path, bytes | None]] = []
    try:
        for path, data in todo.items():
            old = _read(path)
            if data is None:
                path.unlink()
            else:
                record.atomic_write_bytes(path, data)
            done.append((path, old))
    except BaseException:
        for path, old in reversed(done):
            if old is None:
                path.unlink()
            else:
                record.atomic_write_bytes(path, old)
        raise


def check(boards: list[str] | None = None, root: Path | None = None) -> list[str]:
    """Paths (relative to ``root``) of board files that differ from what the records produce."""
    names, root = _targets(boards, root)
    stale = []
    for name in names:
        page = build(name, root)
        md, svg = paths(name, root)
        if _read(md) != page.markdown.encode():
            stale.append(md)
        if not _plot_current(svg, page.plot):
            stale.append(svg)
    return [path.relative_to(root).as_posix() for path in stale]
