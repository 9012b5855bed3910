"""Leaderboards: board configs + committed run records -> ``leaderboards/<board>.md`` and ``.svg``, and the
offline site (``robench leaderboard --site DIR``).

The package is torch-free at import time (docs/architecture.md, principle 5): building and checking a
board needs only records and configs, so CI checks boards without the evaluation stack. Only
:mod:`robench.submission.submit`, which re-evaluates a checkpoint, imports the engine, and only when it runs;
it is not imported here.

Modules, in import order: :mod:`~robench.boards.text` (escaping, protocol lines, the table layout,
intervals as text), :mod:`~robench.boards.selection` (which records a board shows, and reading committed
files without following links), :mod:`~robench.boards.unions` (threat sets, from the records' verdicts),
:mod:`~robench.boards.schema` (board configs), :mod:`~robench.boards.pareto`,
:mod:`~robench.boards.layout` (where plot labels go),
:mod:`~robench.boards.plot` (the plot and the data it carries), :mod:`~robench.boards.details` (the detail
tables), :mod:`~robench.boards.render` (the page, the ranking and the front-neighbour tests),
:mod:`~robench.boards.files` (write and check), :mod:`~robench.boards.charts`,
:mod:`~robench.boards.mdhtml` (the markdown page as HTML) and :mod:`~robench.boards.site` (the site),
:mod:`~robench.boards.compare` (``robench compare``). Intervals and paired tests come from
:mod:`robench.core.stats`.
"""

from __future__ import annotations

from robench.boards.files import BOARDS_DIR, check, paths, write
from robench.boards.render import Page, build, standings
from robench.boards.schema import Board, Column, board_names, load_board
from robench.boards.selection import RUNS_DIR, default_root
from robench.boards.site import build_site, check_site, write_site

__all__ = [
    "BOARDS_DIR",
    "RUNS_DIR",
    "Board",
    "Column",
    "Page",
    "board_names",
    "build",
    "build_site",
    "check_site",
    "check",
    "default_root",
    "load_board",
    "paths",
    "standings",
    "write",
    "write_site",
]
