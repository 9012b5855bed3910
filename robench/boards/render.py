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

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from robench import config
from robench.boards.pareto import pareto_front
from robench.boards.plot import Plot, Point
from robench.boards.schema import Board, Column, load_board
from robench.boards.selection import RUNS_DIR, collect, default_root
from robench.boards.text import escape, link, pipe_table, protocol_text

MISSING = "—"
FRONT_MARK = "★"
FLAG_MARK = "⚠"


class Page(NamedTuple):
    """A generated board: the markdown, and what the plot it embeds shows (None: nothing to plot)."""

    markdown: str
    plot: Plot | None


# --- the page ----------------------------------------------------------------------------------------------


def _model_cell(model: str, meta: dict, flagged: bool) -> str:
    display = meta.get("display_name") or model
    text = escape(display) if display == model else f"{escape(display)} ({escape(model)})"
    return f"{text} {FLAG_MARK}" if flagged else text


def _paper_cell(meta: dict) -> str:
    paper = meta.get("paper")
    if not isinstance(paper, dict) or not paper.get("title"):
        return MISSING
    title = f"{paper['title']} ({paper['year']})" if paper.get("year") else paper["title"]
    return link(title, paper.get("url"))


def _recipe(meta: dict) -> str | None:
    """The card's training recipe name: model cards keep their ``training`` mapping (recipe, seed,
    epochs, command) under ``recipe``; a plain string is accepted as the name itself."""
    recipe = meta.get("recipe")
    return recipe.get("recipe") if isinstance(recipe, dict) else recipe


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


def _markdown_table(board: Board, frame: pd.DataFrame, ranking: pd.DataFrame, columns: list[Column]) -> str:
    """The ranking as a GitHub pipe table; values in %, flagged records marked in their cell."""
    records = frame.set_index(["model", "threat"])
    y_labels = {c.threat: c.label for c in board.y_prefer}

    def cell(model: str, threat: str) -> str:
        if not threat or (model, threat) not in records.index:
            return MISSING
        row = records.loc[(model, threat)]
        return f"{100 * row['acc']:.1f}" + (f" {FLAG_MARK}" if row["flags"] else "")

    flagged = frame.groupby("model")["flags"].agg(lambda fs: any(fs))
    rows = list(ranking.itertuples(index=False))
    recipes = [_recipe(r.meta) for r in rows]
    spec = [  # (header, alignment, cells)
        ("Front", "center", [FRONT_MARK if r.front else "" for r in rows]),
        ("Model", "left", [_model_cell(r.model, r.meta, flagged[r.model]) for r in rows]),
        (escape(board.x.label), "right", [cell(r.model, board.x.threat) for r in rows]),
        (escape(board.y_label), "right", [cell(r.model, r.y_threat) for r in rows]),
        ("y measured by", "left", [escape(y_labels[r.y_threat]) if r.y_threat else MISSING for r in rows]),
        *((escape(c.label), "right", [cell(r.model, c.threat) for r in rows]) for c in columns),
        *(
            [("Recipe", "left", [escape(name) if name else MISSING for name in recipes])]
            if any(recipes)
            else []
        ),
        ("Paper", "left", [_paper_cell(r.meta) for r in rows]),
    ]
    headers, aligns, columns = zip(*spec)
    return pipe_table(headers, aligns, list(zip(*columns)))


def _intro(board: Board) -> list[str]:
    prefer = ", else ".join(f"{escape(c.label)} (`{c.threat}`)" for c in board.y_prefer)
    if len(board.y_prefer) > 1:
        prefer += ', whichever has a current record first; the column "y measured by" says which'
    return [
        f"# {escape(board.title)}",
        "",
        f"<!-- Generated from {RUNS_DIR.as_posix()}/{board.dataset}/ by `robench leaderboard`; do not edit -->",
        "",
        (
            f"Dataset `{board.dataset}`, split `{escape(board.split)}`, the first {board.n_examples:,} "
            f"examples, seed {board.seed}. Accuracies in %."
        ),
        "",
        f"- **x: {escape(board.x.label)}** (`{board.x.threat}`). {escape(board.x_note)}".rstrip(),
        f"- **y: {escape(board.y_label)}**: {prefer}. {escape(board.y_note)}".rstrip(),
        "",
    ]


def _entries(board: Board, complete: pd.DataFrame) -> tuple[list[str], Plot | None]:
    """The plot, the table, the flags and the protocol of the shown columns, for a non-empty board.

    A listed column that no shown model has a record for is left out, so a board can list every threat
    it will show without a page full of empty columns. Threats with current records that the board does
    not list get a column of their own (labelled by the threat name), so an evaluated threat is never
    hidden by a board that predates it.
    """
    ranking = _ranking(board, complete)
    evaluated = set(complete["threat"])
    listed = {board.x.threat, *(c.threat for c in board.y_prefer), *(c.threat for c in board.columns)}
    columns = [c for c in board.columns if c.threat in evaluated]
    columns += [Column(t, t) for t in sorted(evaluated - listed)]
    out = [
        (
            f"{FRONT_MARK} = on the Pareto front: no other model is at least as good on both x and y and "
            f"strictly better on one. {FLAG_MARK} = flagged record (see Flags)."
        ),
        "",
    ]
    plot = None
    plotted = ranking.dropna(subset=["x", "y"])
    if not plotted.empty:
        xs, ys = (100 * plotted["x"]).tolist(), (100 * plotted["y"]).tolist()
        points = zip(plotted["model"], xs, ys, plotted["front"], strict=True)
        plot = Plot(board.x.label, board.y_label, tuple(Point(m, x, y, bool(f)) for m, x, y, f in points))
        out += [f"![{escape(board.x.label)} vs {escape(board.y_label)}]({board.name}.svg)", ""]
    out += [_markdown_table(board, complete, ranking, columns), ""]
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
        family = config.threat_spec(threat).family
        text = protocol_text(family, config.threat_config(threat, board.dataset))
        out.append(f"- **{escape(label)}** (`{threat}`): {escape(text)}")
    return out + [""], plot


def _left_out(title: str, lines: list[str]) -> list[str]:
    return [f"## {title}", "", *lines, ""] if lines else []


def _complete(board: Board, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The records of models that have every threat the board requires, and what each other model lacks."""
    have = frame.groupby("model")["threat"].agg(set)
    missing = {m: [t for t in board.require if t not in ts] for m, ts in have.items()}
    incomplete = {m: ts for m, ts in missing.items() if ts}
    return frame[~frame["model"].isin(incomplete)], incomplete


def standings(board_name: str, root: Path | None = None) -> pd.DataFrame:
    """The ranked rows the page shows (model, x, y, y_threat, front, meta), best first.

    For callers that report where one model stands, such as ``robench submit``, so that what they print
    is what the page says rather than a second computation of the front.
    """
    root = Path(root) if root is not None else default_root()
    board = load_board(board_name)
    complete, _ = _complete(board, collect(board, root)[0])
    if complete.empty:
        return pd.DataFrame(columns=["model", "x", "y", "y_threat", "front", "meta"])
    return _ranking(board, complete)


def build(board_name: str, root: Path | None = None) -> Page:
    """The page and plot that the records under ``root`` produce for board ``board_name``."""
    root = Path(root) if root is not None else default_root()
    board = load_board(board_name)
    frame, stale, invalid = collect(board, root)
    complete, incomplete = _complete(board, frame)

    out, plot = _intro(board), None
    if complete.empty:
        out += ["No complete, current run records for this board yet.", ""]
    else:
        entries, plot = _entries(board, complete)
        out += entries
    out += _left_out(
        "Incomplete entries (not shown)",
        [f"- {escape(m)}: missing {', '.join(f'`{t}`' for t in ts)}" for m, ts in sorted(incomplete.items())],
    )
    for title, items in [("Stale records (not shown)", stale), ("Invalid records (not shown)", invalid)]:
        lines = [f"- {escape(r.model)} / {escape(r.threat)}: {escape(r.reason)}" for r in sorted(items)]
        out += _left_out(title, lines)
    return Page("\n".join(out).rstrip("\n") + "\n", plot)
