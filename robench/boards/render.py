"""A board's page: the selected records -> pandas -> Pareto front -> markdown, and the data of its plot.

Everything here is deterministic (sorted inputs, no timestamps), because ``robench leaderboard --check``
compares the committed markdown byte for byte (:mod:`robench.boards.files`). The records come from
:func:`robench.boards.selection.collect`, which sets aside stale and invalid ones; a model missing a
threat the board requires is listed as incomplete rather than ranked on partial evidence.

Card-derived text (model and display names, recipes, paper titles and urls, flags) comes from strangers
through submissions, so every such string is escaped before it reaches the markdown, and only http(s)
urls become links.

This module imports no torch (docs/architecture.md, principle 5): it needs only records and configs, and
must run in CI without the evaluation stack.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from robench.boards import unions
from robench.boards.details import FLAG_MARK, MISSING, acc_cell, detail_sections
from robench.boards.pareto import pareto_front
from robench.boards.plot import Plot, Point
from robench.boards.schema import Board, Column, load_board
from robench.boards.selection import RUNS_DIR, collect, default_root
from robench.boards.text import escape, p_text, pipe_table
from robench.core import stats

FRONT_MARK = "★"
TIE_MARK = "≈"


class Page(NamedTuple):
    """A generated board: the markdown, and what the plot it embeds shows (None: nothing to plot)."""

    markdown: str
    plot: Plot | None


# --- the page ----------------------------------------------------------------------------------------------


def model_cell(model: str, meta: dict) -> str:
    """The model as the main table names it: the card's display name, then the model name if different."""
    display = meta.get("display_name") or model
    return escape(display) if display == model else f"{escape(display)} ({escape(model)})"


def _ranking(board: Board, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per model, sorted by y (then x, then name): axis values, the y threat, the front."""
    acc = frame.pivot(index="model", columns="threat", values="acc")
    nan = pd.Series(float("nan"), index=acc.index)
    table = pd.DataFrame({"x": acc.get(board.x.threat, nan), "y": nan, "y_threat": ""})
    for col in reversed(board.y_prefer):  # the first preference with a value wins
        if col.threat in acc:
            has = acc[col.threat].notna()
            table.loc[has, "y"] = acc.loc[has, col.threat]
            table.loc[has, "y_threat"] = col.threat
    table["front"] = pareto_front(table["x"].tolist(), table["y"].tolist())
    table["meta"] = frame.groupby("model")["meta"].first()
    table = table.rename_axis("model").reset_index()
    return table.sort_values(
        ["y", "x", "model"], ascending=[False, False, True], na_position="last", kind="mergesort"
    ).reset_index(drop=True)


class Neighbours(NamedTuple):
    """Two members next to each other on the front (left has the lower x) and their paired tests."""

    left: str
    right: str
    x: stats.Paired | None  # None: a record without per-example verdicts, so no paired test
    y: stats.Paired | None

    @property
    def distinguishable(self) -> bool | None:
        """Whether the pair is shown to trade off; None when untested. See :func:`front_neighbours`."""
        if self.x is None or self.y is None:
            return None
        return self.x.distinguishable and self.y.distinguishable


def front_neighbours(board: Board, frame: pd.DataFrame, ranking: pd.DataFrame) -> list[Neighbours]:
    """Paired tests between neighbouring front members, on both axes.

    Front members sorted by x (then by y, descending) form a staircase: each is better than its right
    neighbour on y and worse on x. The pair is *distinguishable at 95%* when the exact McNemar test
    separates them on both axes (p < 0.05 on x and on y, each on the two models' verdicts for that
    axis's threat on the same examples). Otherwise the data cannot rule out that one of them is no better
    than the other on an axis, that is, that one dominates the other after all: both are then marked on
    the page. Untested (None) when a record lacks per-example verdicts.
    """
    records = frame.set_index(["model", "threat"])["verdicts"]
    front = ranking[ranking["front"]].sort_values(["x", "y", "model"], ascending=[True, False, True])

    def test(a: str, threat_a: str, b: str, threat_b: str) -> stats.Paired | None:
        va, vb = records[(a, threat_a)], records[(b, threat_b)]
        return stats.compare(va, vb) if va and len(va) == len(vb) else None

    rows = list(front.itertuples())
    return [
        Neighbours(
            p.model,
            q.model,
            test(p.model, board.x.threat, q.model, board.x.threat),
            test(p.model, p.y_threat, q.model, q.y_threat),
        )
        for p, q in itertools.pairwise(rows)
    ]


def tied(pairs: list[Neighbours]) -> set[str]:
    """Front members that some neighbour is not distinguishable from (marked TIE_MARK)."""
    return {m for p in pairs if p.distinguishable is False for m in (p.left, p.right)}


def _markdown_table(board: Board, frame: pd.DataFrame, ranking: pd.DataFrame, pairs: list[Neighbours]) -> str:
    """The ranking as a GitHub pipe table: the axes and clean accuracy in % with 95% intervals, the flags.

    The Flags column names only the flagged records the row shows (x, the row's y, clean): a flag on a
    threat shown elsewhere (the detail tables mark it there) must not make an unflagged row look flagged.
    """
    records = frame.set_index(["model", "threat"])
    y_labels = {c.threat: c.label for c in board.y_prefer}
    flagged = frame[frame["flags"].map(bool)].groupby("model")["threat"].agg(set)
    rows, ties = list(ranking.itertuples(index=False)), tied(pairs)

    def shown_flags(r) -> list[str] | None:
        return sorted(flagged.get(r.model, set()) & {board.x.threat, r.y_threat, "clean"})

    spec = [  # (header, alignment, cells)
        (
            "Front",
            "center",
            [(FRONT_MARK + (TIE_MARK if r.model in ties else "")) if r.front else "" for r in rows],
        ),
        ("Model", "left", [model_cell(r.model, r.meta) for r in rows]),
        (
            f"{escape(board.x.label)} [95% CI]",
            "right",
            [acc_cell(records, r.model, board.x.threat) for r in rows],
        ),
        (
            f"{escape(board.y_label)} [95% CI]",
            "right",
            [acc_cell(records, r.model, r.y_threat) for r in rows],
        ),
        ("y measured by", "left", [escape(y_labels[r.y_threat]) if r.y_threat else MISSING for r in rows]),
        ("Clean [95% CI]", "right", [acc_cell(records, r.model, "clean") for r in rows]),
        ("Flags", "left", [_flags_cell(shown_flags(r)) for r in rows]),
    ]
    headers, aligns, columns = zip(*spec, strict=True)
    return pipe_table(headers, aligns, list(zip(*columns, strict=True)))


def _flags_cell(threats: list[str] | None) -> str:
    return f"{FLAG_MARK} " + ", ".join(escape(t) for t in threats) if threats else ""


def _intro(board: Board) -> list[str]:
    prefer = ", else ".join(f"{escape(c.label)} (`{c.threat}`)" for c in board.y_prefer)
    if len(board.y_prefer) > 1:
        prefer += ', whichever has a current record first; the column "y measured by" says which'
    return [
        f"# {escape(board.title)}",
        "",
        f"<!-- Generated from {RUNS_DIR.as_posix()}/{board.dataset}/ by `robench leaderboard`; "
        "do not edit -->",
        "",
        (
            f"Dataset `{board.dataset}`, split `{escape(board.split)}`, the first {board.n_examples:,} "
            f"examples, seed {board.seed}. Accuracies in %, with 95% Wilson score intervals in brackets."
        ),
        "",
        f"- **x: {escape(board.x.label)}** (`{board.x.threat}`). {escape(board.x_note)}".rstrip(),
        f"- **y: {escape(board.y_label)}**: {prefer}. {escape(board.y_note)}".rstrip(),
        "",
    ]


def pair_text(p: Neighbours) -> str:
    """Both paired differences of a pair (left minus right, in points), as the page and site print them."""

    def axis(name: str, r: stats.Paired | None) -> str:
        if r is None:
            return f"{name}: not tested (no per-example verdicts)"
        diff = f"{100 * r.diff:+.1f} [{100 * r.low:+.1f}, {100 * r.high:+.1f}]"
        return f"{name} {diff}, McNemar p {p_text(r.p)}"

    return f"{axis('x', p.x)}; {axis('y', p.y)}"


def _neighbour_lines(board: Board, pairs: list[Neighbours]) -> list[str]:
    """One line per pair of neighbouring front members: both paired differences and the verdict."""
    if not pairs:
        return []
    verdicts = {True: "distinguishable", False: f"**not distinguishable** ({TIE_MARK})", None: "not tested"}
    out = [
        "## Front neighbours",
        "",
        (
            "Each pair of neighbouring front members, left minus right (in points, with Newcombe's paired "
            "95% interval; exact McNemar test on the examples only one of the two gets right). A pair is "
            "distinguishable when both differences are significant at 5%; otherwise the data do not show "
            f"that the two trade off, and both are marked {TIE_MARK} in the table."
        ),
        "",
    ]
    for p in pairs:
        out.append(f"- {escape(p.left)} vs {escape(p.right)}: {pair_text(p)}: {verdicts[p.distinguishable]}")
    return out + [""]


def _entries(board: Board, complete: pd.DataFrame) -> tuple[list[str], Plot | None]:
    """The plot, the tables, the flags and the protocol of the shown threats, for a non-empty board.

    A listed column that no shown model has a record for is left out, so a board can list every threat
    it will show without a page full of empty columns. Threats with current records that the board does
    not list get a column of their own (labelled by the threat name), so an evaluated threat is never
    hidden by a board that predates it.
    """
    ranking = _ranking(board, complete)
    pairs = front_neighbours(board, complete, ranking)
    evaluated = set(complete["threat"])
    listed = {board.x.threat, *(c.threat for c in board.y_prefer), *(c.threat for c in board.columns)}
    columns = [c for c in board.columns if c.threat in evaluated]
    columns += [Column(t, t) for t in sorted(evaluated - listed)]
    out = [
        (
            f"{FRONT_MARK} = on the Pareto front: no other model is at least as good on both x and y and "
            f"strictly better on one. {TIE_MARK} = not distinguishable at 95% from a neighbour on the front "
            f"(see Front neighbours). {FLAG_MARK} = flagged record (see Flags)."
        ),
        "",
    ]
    plot = _plot(board, complete, ranking)
    if plot is not None:
        out += [f"![{escape(board.x.label)} vs {escape(board.y_label)}]({board.name}.svg)", ""]
    out += [_markdown_table(board, complete, ranking, pairs), ""]
    out += _neighbour_lines(board, pairs)
    out += detail_sections(board, complete, ranking, columns)
    flagged = complete[complete["flags"].map(bool)].sort_values(["model", "threat"])
    if not flagged.empty:
        out += ["## Flags", ""]
        for r in flagged.itertuples():
            flags = "; ".join(map(escape, r.flags))
            out.append(f"- {FLAG_MARK} {escape(r.model)} / {escape(r.threat)}: {flags}")
        out.append("")
    out += ["## Evaluation protocol", ""]
    labels = {}  # threat -> the first label it is shown under; one protocol line per threat
    for c in [board.x, *board.y_prefer, *columns]:
        labels.setdefault(c.threat, c.label)
    for threat, label in labels.items():
        text = unions.protocol(threat, board.dataset)
        out.append(f"- **{escape(label)}** (`{threat}`): {escape(text)}")
    return out + [""], plot


def _plot(board: Board, frame: pd.DataFrame, ranking: pd.DataFrame) -> Plot | None:
    """The plot's points (in %, with their 95% intervals), or None when no model has both axes."""
    plotted = ranking.dropna(subset=["x", "y"])
    if plotted.empty:
        return None
    records = frame.set_index(["model", "threat"])

    def interval(model: str, threat: str) -> tuple[float, float]:
        row = records.loc[(model, threat)]
        low, high = stats.wilson(row["hits"], row["n"])
        return 100 * low, 100 * high

    points = tuple(
        Point(
            r.model,
            100 * r.x,
            100 * r.y,
            bool(r.front),
            interval(r.model, board.x.threat),
            interval(r.model, r.y_threat),
        )
        for r in plotted.itertuples()
    )
    return Plot(board.x.label, board.y_label, points)


EMPTY = "No complete, current run records for this board yet."


def fill_commands(board: Board) -> list[str]:
    """The commands that put a first model on an empty board: a model card, or a bare checkpoint."""
    return [
        f"robench submit CARD.yaml --board {board.name}",
        f"robench submit --checkpoint WEIGHTS.safetensors --arch ARCH --dataset {board.dataset} --name NAME "
        f"--board {board.name}",
    ]


def _left_out(title: str, lines: list[str]) -> list[str]:
    return [f"## {title}", "", *lines, ""] if lines else []


def _complete(board: Board, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The records of models that have every threat the board requires, and what each other model lacks."""
    have = frame.groupby("model")["threat"].agg(set)
    missing = {m: [t for t in board.require if t not in ts] for m, ts in have.items()}
    incomplete = {m: ts for m, ts in missing.items() if ts}
    return frame[~frame["model"].isin(incomplete)], incomplete


def _shown(board: Board, root: Path):
    """What the page shows: the complete models' records with a row per threat set they have every member
    of (:func:`robench.boards.unions.add`), the incomplete models, and the stale, invalid and refused
    records (a set whose members are not verdicts on the same examples)."""
    frame, stale, invalid = collect(board, root)
    complete, incomplete = _complete(board, frame)
    complete, refused = unions.add(board.sets, complete, board.dataset)
    return complete, incomplete, stale, invalid, refused


class Ranked(NamedTuple):
    """What a board shows, for views other than the markdown page (the site, ``robench submit``)."""

    board: Board
    records: pd.DataFrame  # the complete models' current records (see selection.COLUMNS) and set rows
    ranking: pd.DataFrame  # one row per model, best first (model, x, y, y_threat, front, meta)
    pairs: list[Neighbours]  # neighbouring front members and their paired tests


def ranked(board_name: str, root: Path | None = None) -> Ranked:
    """The board's records, ranking and front tests, computed as the page computes them."""
    root = Path(root) if root is not None else default_root()
    board = load_board(board_name)
    complete = _shown(board, root)[0]
    if complete.empty:
        empty = pd.DataFrame(columns=["model", "x", "y", "y_threat", "front", "meta"])
        return Ranked(board, complete, empty, [])
    ranking = _ranking(board, complete)
    return Ranked(board, complete, ranking, front_neighbours(board, complete, ranking))


def standings(board_name: str, root: Path | None = None) -> pd.DataFrame:
    """The ranked rows the page shows (model, x, y, y_threat, front, meta), best first.

    For callers that report where one model stands, such as ``robench submit``, so that what they print
    is what the page says rather than a second computation of the front.
    """
    return ranked(board_name, root).ranking


def build(board_name: str, root: Path | None = None) -> Page:
    """The page and plot that the records under ``root`` produce for board ``board_name``."""
    root = Path(root) if root is not None else default_root()
    board = load_board(board_name)
    complete, incomplete, stale, invalid, refused = _shown(board, root)

    out, plot = _intro(board), None
    if complete.empty:
        out += [EMPTY, "", "Fill it by submitting a model (evaluated on every threat the board needs):", ""]
        out += [f"- `{command}`" for command in fill_commands(board)] + [""]
    else:
        entries, plot = _entries(board, complete)
        out += entries
    out += _left_out(
        "Incomplete entries (not shown)",
        [f"- {escape(m)}: missing {', '.join(f'`{t}`' for t in ts)}" for m, ts in sorted(incomplete.items())],
    )
    left_out = [
        ("Stale records (not shown)", stale),
        ("Invalid records (not shown)", invalid),
        ("Threat sets refused (not shown)", refused),
    ]
    for title, items in left_out:
        lines = [f"- {escape(r.model)} / {escape(r.threat)}: {escape(r.reason)}" for r in sorted(items)]
        out += _left_out(title, lines)
    return Page("\n".join(out).rstrip("\n") + "\n", plot)
