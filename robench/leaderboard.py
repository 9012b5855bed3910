"""Boards are generated, never hand-edited: run records -> pandas -> Pareto front -> markdown + SVG.

``robench leaderboard`` rebuilds ``leaderboards/<board>.md`` and ``leaderboards/<board>.svg`` from the board
configs and the committed records in ``leaderboards/runs/<dataset>/<model>/<threat>.json``; ``--check``
compares the committed files byte for byte, so CI fails when a board was edited by hand or not
regenerated after a record changed. Everything here is deterministic (sorted inputs, no timestamps).

Only comparable numbers are mixed on a page. A record is shown only if its resolved ``threat_config``
equals the current ``config.threat_config(threat, dataset)`` and its split, example count, seed and
model weights match the board; every other record is listed, with the reason, below the table. A model
missing a threat the board requires is listed as incomplete rather than ranked on partial evidence.

Card-derived text (model and display names, recipes, paper titles and urls, flags) comes from strangers
through submissions, so every such string is escaped before it reaches the markdown, and only http(s)
urls become links.

This module imports no torch (architecture principle 5): it needs only records and configs, and must
run in CI without the evaluation stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from robench import config, record
from robench.boards import RUNS_DIR, Board, Column, board_names, collect, load_board
from robench.pagetext import escape, link, protocol_text
from robench.pareto import pareto_front, plot_svg

BOARDS_DIR = RUNS_DIR.parent
MISSING = "—"
FRONT_MARK = "★"
FLAG_MARK = "⚠"


class Page(NamedTuple):
    """A generated board: the markdown, and the SVG plot it embeds (None when there is nothing to plot)."""

    markdown: str
    svg: bytes | None


def default_root() -> Path:
    """The repository root: the folder holding ``configs/`` (and ``leaderboards/``)."""
    return config.config_root().parent


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
    spec = [  # (header, alignment, cells); headers may repeat, so the frame is built by position
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
    shown = pd.DataFrame({i: cells for i, (_, _, cells) in enumerate(spec)})
    shown.columns = [header for header, _, _ in spec]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=[a for _, a, _ in spec])


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


def _entries(board: Board, complete: pd.DataFrame) -> tuple[list[str], bytes | None]:
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
    svg = None
    plotted = ranking.dropna(subset=["x", "y"])
    if not plotted.empty:
        svg = plot_svg(
            plotted["model"].tolist(),
            (100 * plotted["x"]).tolist(),
            (100 * plotted["y"]).tolist(),
            plotted["front"].tolist(),
            board.x.label,
            board.y_label,
        )
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
        family = config.threat_spec(threat)["family"]
        text = protocol_text(family, config.threat_config(threat, board.dataset))
        out.append(f"- **{escape(label)}** (`{threat}`): {escape(text)}")
    return out + [""], svg


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

    out, svg = _intro(board), None
    if complete.empty:
        out += ["No complete, current run records for this board yet.", ""]
    else:
        entries, svg = _entries(board, complete)
        out += entries
    out += _left_out(
        "Incomplete entries (not shown)",
        [f"- {escape(m)}: missing {', '.join(f'`{t}`' for t in ts)}" for m, ts in sorted(incomplete.items())],
    )
    for title, items in [("Stale records (not shown)", stale), ("Invalid records (not shown)", invalid)]:
        lines = [f"- {escape(r.model)} / {escape(r.threat)}: {escape(r.reason)}" for r in sorted(items)]
        out += _left_out(title, lines)
    return Page("\n".join(out).rstrip("\n") + "\n", svg)


# --- files and command line --------------------------------------------------------------------------------


def _outputs(name: str, page: Page, root: Path) -> dict[Path, bytes | None]:
    """Each output path and the bytes it must hold (None: the file must not exist)."""
    base = root / BOARDS_DIR / record.check_name("board", name)
    return {base.with_suffix(".md"): page.markdown.encode(), base.with_suffix(".svg"): page.svg}


def _targets(names: list[str] | None, root: Path | None) -> tuple[list[str], Path]:
    """The named boards (default: every board config) and the root (default: the repository)."""
    root = Path(root) if root is not None else default_root()
    return (board_names() if names is None else list(names)), root


def write(boards: list[str] | None = None, root: Path | None = None) -> list[Path]:
    """Regenerate the boards (default: all); returns the files that changed. Unchanged files are not
    rewritten, so their timestamps stay; a plot the page no longer needs is removed."""
    names, root = _targets(boards, root)
    pages = {name: build(name, root) for name in names}  # build all before writing any
    changed = []
    for name, page in pages.items():
        for path, data in _outputs(name, page, root).items():
            old = path.read_bytes() if path.exists() else None
            if old == data:
                continue
            if data is None:
                path.unlink()
            else:
                record.atomic_write_bytes(path, data)
            changed.append(path)
    return changed


def check(boards: list[str] | None = None, root: Path | None = None) -> list[str]:
    """Paths (relative to ``root``) of board files that differ from what the records produce."""
    names, root = _targets(boards, root)
    stale = []
    for name in names:
        for path, data in _outputs(name, build(name, root), root).items():
            if (path.read_bytes() if path.exists() else None) != data:
                stale.append(path.relative_to(root).as_posix())
    return stale


def main(args) -> int:
    """``robench leaderboard [--board NAME ...] [--check]``; ``args`` has ``boards``, ``check``, ``root``."""
    root = getattr(args, "root", None)
    if args.check:
        stale = check(args.boards, root)
        for path in stale:
            print(f"{path}: stale; run 'robench leaderboard' and commit the result")
        return 1 if stale else 0
    root = Path(root) if root is not None else default_root()
    for path in write(args.boards, root):
        print(f"wrote {path.relative_to(root).as_posix()}")
    return 0
