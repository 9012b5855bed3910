"""A board page's detail tables: every shown threat, grouped, below the main table's two axes.

The main table keeps to what ranks a model (the two axes, clean accuracy, flags) so that it fits a screen;
everything else a board evaluates is shown here, one table per group of threat families, with the same
intervals. Universal perturbations get one table per threat, because what they measure beyond robust
accuracy (the fooling rate, a random-sign control of the same norm, and for targeted ones the targeted
success rate) is read from the record's ``details``, not from its robust accuracy. Card fields that do not
rank anything (architecture, recipe, paper, weights) go to a Models table.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import pandas as pd

from robench.boards import unions
from robench.boards.schema import Board, Column
from robench.boards.text import escape, link, percent, pipe_table, with_interval
from robench.core import config

MISSING = "—"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
FLAG_MARK = "⚠"


class Group(NamedTuple):
    title: str
    families: tuple[str, ...]


#: Detail groups in page order; a threat whose family is in none of them goes to "Other threats".
GROUPS = (
    Group("Spatial breakdown", ("spatial_grid", "spatial_random", "spatial_pgd")),
    Group("ℓp threats", ("autoattack", "pgd")),
    Group("Translation and consistency", ("translation_sweep", "consistency")),
    Group("Common corruptions", ("corruptions",)),
    Group("Union over threats", (unions.UNION,)),
)
UAP = "uap"
#: Said above the threat sets' table: what a set's number is, and what it is not.
UNION_TEXT = (
    "An example counts under a set when it is robust under each of the set's threats, read from their "
    "records' per-example verdicts (no re-run); each set follows its members. No model can score more "
    "under a set than under any of its members; a value below the smallest says that the threats "
    "break different examples. It bounds from above the accuracy under an adversary that combines "
    "them on one image."
)
#: Rates from a record's details shown after its accuracy column: family -> [(header, details key)].
EXTRAS = {
    "consistency": [("agreement of two shifts (Zhang)", "consistency")],
    "corruptions": [("mean corruption accuracy (all 75)", "mean_corruption_accuracy")],
}


def acc_cell(records: pd.DataFrame, model: str, threat: str) -> str:
    """A record's accuracy with its 95% interval, flagged records marked; MISSING without a record.

    ``records`` is the board frame indexed by (model, threat)."""
    if not threat or (model, threat) not in records.index:
        return MISSING
    row = records.loc[(model, threat)]
    return with_interval(row["acc"], row["hits"], row["n"]) + (f" {FLAG_MARK}" if row["flags"] else "")


def _detail(records: pd.DataFrame, model: str, threat: str, *keys: str) -> str:
    """A rate from a record's details (``keys`` is its path), in %; MISSING where absent."""
    if (model, threat) not in records.index:
        return MISSING
    value = records.loc[(model, threat)]["details"]
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return percent(value) if ok else MISSING


def _uap_table(board: Board, records: pd.DataFrame, models: list[str], threat: str) -> str:
    targeted = bool(config.threat_config(threat, board.dataset).get("targeted"))
    spec = [
        ("Robust accuracy [95% CI]", lambda m: acc_cell(records, m, threat)),
        ("Fooling rate", lambda m: _detail(records, m, threat, "fooling_rate")),
        ("Control: fooling rate", lambda m: _detail(records, m, threat, "control", "fooling_rate")),
    ]
    if targeted:
        spec += [
            ("Targeted success", lambda m: _detail(records, m, threat, "targeted_success_rate")),
            (
                "Control: targeted success",
                lambda m: _detail(records, m, threat, "control", "targeted_success_rate"),
            ),
        ]
    headers = ["Model", *(h for h, _ in spec)]
    rows = [[escape(m), *(cell(m) for _, cell in spec)] for m in models]
    return pipe_table(headers, ["left", *["right"] * len(spec)], rows)


def _accuracy_table(records: pd.DataFrame, models: list[str], columns: list[Column], family: dict) -> str:
    """Each threat's accuracy with its interval, then (right after it) the rates EXTRAS names for its family
    (``family``: by threat; a threat not in it gets none), an extra column being left out where no model's
    record has that rate."""
    spec = []  # (header, cell(model), whether the column may be left out)
    for c in columns:
        spec.append((f"{escape(c.label)} [95% CI]", lambda m, t=c.threat: acc_cell(records, m, t), False))
        for header, key in EXTRAS.get(family.get(c.threat), []):
            spec.append((header, lambda m, t=c.threat, k=key: _detail(records, m, t, k), True))
    shown = [(h, [cell(m) for m in models], optional) for h, cell, optional in spec]
    shown = [(h, cells) for h, cells, optional in shown if not optional or set(cells) != {MISSING}]
    rows = [[escape(m), *cells] for m, *cells in zip(models, *(c for _, c in shown), strict=True)]
    return pipe_table(["Model", *(h for h, _ in shown)], ["left", *["right"] * len(shown)], rows)


def _models_table(ranking: pd.DataFrame) -> str:
    rows = []
    for r in ranking.itertuples(index=False):
        sha = r.meta.get("weights_sha256")
        rows.append(
            [
                escape(r.model),
                escape(r.meta.get("arch") or MISSING),
                escape(recipe_name(r.meta) or MISSING),
                paper_cell(r.meta),
                f"`{sha[:12]}…`" if isinstance(sha, str) and _SHA256.match(sha) else MISSING,
            ]
        )
    return pipe_table(["Model", "Architecture", "Recipe", "Paper", "Weights sha256"], ["left"] * 5, rows)


def detail_sections(
    board: Board, frame: pd.DataFrame, ranking: pd.DataFrame, columns: list[Column]
) -> list[str]:
    """The detail tables of every shown threat but clean (which the main table shows), in ranking order.

    ``columns`` are the shown extra threats; with the axes' threats they make up what is grouped here.
    Each threat is labelled as the board's columns name it, else as its axis does. A threat set's table
    shows each set after its members, so that the union reads against its marginals.
    """
    records = frame.set_index(["model", "threat"])
    models = list(ranking["model"])
    labels: dict[str, str] = {}
    for c in [*columns, board.x, *board.y_prefer]:  # a column's label names the norm; y's may not
        if c.threat != "clean" and c.threat in set(frame["threat"]):
            labels.setdefault(c.threat, c.label)
    family = {t: unions.family(t) for t in labels}
    known = {f for g in GROUPS for f in g.families} | {UAP}
    groups = [*GROUPS, Group("Other threats", tuple(sorted({f for f in family.values() if f not in known})))]
    out = ["## Details", ""]
    for group in groups:
        shown = [Column(t, label) for t, label in labels.items() if family[t] in group.families]
        extras, intro = family, []
        if group.families == (unions.UNION,):  # the members' rates are in their own tables already
            shown, extras, intro = _with_members(shown, labels), {}, [UNION_TEXT, ""]
        if shown:
            table = _accuracy_table(records, models, shown, extras)
            out += [f"### {escape(group.title)}", "", *intro, table, ""]
        if group is GROUPS[1]:  # universal perturbations right after the ℓp threats they are bounded like
            for t, label in labels.items():
                if family[t] == UAP:
                    out += [
                        f"### Universal perturbation: {escape(label)} (`{t}`)",
                        "",
                        _uap_table(board, records, models, t),
                        "",
                    ]
    return out + ["### Models", "", _models_table(ranking), ""]


def _with_members(sets: list[Column], labels: dict[str, str]) -> list[Column]:
    """Each set's member threats (once each, labelled as elsewhere on the page) before the set."""
    out: dict[str, Column] = {}
    for c in sets:
        for threat in unions.members(c.threat):
            out.setdefault(threat, Column(threat, labels.get(threat, threat)))
        out[c.threat] = c
    return list(out.values())


def paper_cell(meta: dict) -> str:
    paper = meta.get("paper")
    if not isinstance(paper, dict) or not paper.get("title"):
        return MISSING
    title = f"{paper['title']} ({paper['year']})" if paper.get("year") else paper["title"]
    return link(title, paper.get("url"))


def recipe_name(meta: dict) -> str | None:
    """The card's training recipe name: model cards keep their ``training`` mapping (recipe, seed,
    epochs, command) under ``recipe``; a plain string is accepted as the name itself."""
    recipe = meta.get("recipe")
    return recipe.get("recipe") if isinstance(recipe, dict) else recipe
