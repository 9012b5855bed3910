"""Board configs: ``configs/boards/<name>.yaml`` says which records make up one leaderboard.

This module holds the schema and its validation (:func:`load_board`); :mod:`robench.boards.select` picks
the records a board shows and :mod:`robench.boards.render` turns them into a page.

A board fixes what makes numbers comparable (dataset, evaluation split, number of examples, seed) and
what a page shows (the two Pareto axes, the extra columns, the threats every entry must have). It is
validated strictly, with one-line errors, because a typo in a board would otherwise silently drop a
column or admit records from a different protocol.

Schema (every key below is known; any other key is an error)::

    title: "mnist5k: spatial vs. ℓ∞ robustness"   # page heading
    dataset: mnist5k                               # records of this dataset only
    split: test                                    # records must have indices.split == this,
    n_examples: 1000                               #   indices.start == 0, n_examples == this
    seed: 0                                        #   and seed == this
    require: [clean, pgd_linf, spatial]            # a model lacking one is listed as incomplete
    x: {threat: spatial, label: "...", note: "..."}       # note: optional sentence under the axis
    y:
      label: "ℓ∞ robust accuracy"
      note: "..."                                  # optional
      prefer:                                      # per model, the first with a current record
        - {threat: autoattack_linf, label: AutoAttack}
        - {threat: pgd_linf, label: PGD}
    columns:                                       # shown after the axes, in this order
      - {threat: clean, label: Clean}

``base: other_board`` inherits from another board file (see :mod:`robench.config`). Threats in ``require``
and ``x`` must have a config in ``configs/threats/``. A ``y.prefer`` entry or column whose threat has no
config yet is skipped, so a board can list threats that are still being written (``autoattack_linf``)
and pick them up, with no board edit, once they exist; at least one ``y.prefer`` threat must exist.
"""

from __future__ import annotations

import dataclasses

from robench import config
from robench.errors import UsageError
from robench.record import check_name
from robench.registry import unknown_name

_TOP_KEYS = {"title", "dataset", "split", "n_examples", "seed", "require", "x", "y", "columns"}
_REQUIRED_TOP = _TOP_KEYS - {"columns"}


@dataclasses.dataclass(frozen=True)
class Column:
    """One threat shown on a board, with the header it is shown under."""

    threat: str
    label: str


@dataclasses.dataclass(frozen=True)
class Board:
    """A validated board config; see the module docstring for what each field means."""

    name: str
    title: str
    dataset: str
    split: str
    n_examples: int
    seed: int
    require: tuple[str, ...]
    x: Column
    x_note: str
    y_label: str
    y_note: str
    y_prefer: tuple[Column, ...]  # only threats that have a config now
    columns: tuple[Column, ...]  # only threats that have a config now


def board_names() -> list[str]:
    return config.names("boards")


def load_board(name: str) -> Board:
    """Read and validate ``configs/boards/<name>.yaml``; every problem is a one-line UsageError."""
    check_name("board", name)
    raw = config.load_named("board", name, "boards")
    where = f"board config {name!r}"
    _keys(raw, _TOP_KEYS, _REQUIRED_TOP, where)
    known_threats = set(config.names("threats"))

    dataset = _str(raw["dataset"], f"{where}: dataset")
    config.budget_family(dataset)  # unknown dataset -> UsageError with "did you mean"
    n_examples, seed = raw["n_examples"], raw["seed"]
    if not isinstance(n_examples, int) or isinstance(n_examples, bool) or n_examples <= 0:
        raise UsageError(f"{where}: n_examples must be a positive integer, got {n_examples!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise UsageError(f"{where}: seed must be a non-negative integer, got {seed!r}")

    require = raw["require"]
    if not isinstance(require, list) or not require:
        raise UsageError(f"{where}: require must be a non-empty list of threat names")
    for threat in require:
        _existing(threat, known_threats, f"{where}: require")

    x_raw = _mapping(raw["x"], f"{where}: x")
    _keys(x_raw, {"threat", "label", "note"}, {"threat", "label"}, f"{where}: x")
    x = _column(x_raw, f"{where}: x")
    _existing(x.threat, known_threats, f"{where}: x")

    y_raw = _mapping(raw["y"], f"{where}: y")
    _keys(y_raw, {"label", "note", "prefer"}, {"label", "prefer"}, f"{where}: y")
    prefer = _columns(y_raw["prefer"], f"{where}: y.prefer")
    if not prefer:
        raise UsageError(f"{where}: y.prefer must list at least one threat")
    y_prefer = tuple(c for c in prefer if c.threat in known_threats)
    if not y_prefer:
        raise UsageError(
            f"{where}: none of the y.prefer threats {[c.threat for c in prefer]} "
            "has a config in configs/threats"
        )

    columns = _columns(raw.get("columns") or [], f"{where}: columns")
    return Board(
        name=name,
        title=_str(raw["title"], f"{where}: title"),
        dataset=dataset,
        split=_str(raw["split"], f"{where}: split"),
        n_examples=n_examples,
        seed=seed,
        require=tuple(require),
        x=x,
        x_note=_str(x_raw.get("note", ""), f"{where}: x.note"),
        y_label=_str(y_raw["label"], f"{where}: y.label"),
        y_note=_str(y_raw.get("note", ""), f"{where}: y.note"),
        y_prefer=y_prefer,
        columns=tuple(c for c in columns if c.threat in known_threats),
    )


def _keys(raw: dict, allowed: set[str], required: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise UsageError(f"{where} has unknown keys {unknown}; allowed: {sorted(allowed)}")
    missing = sorted(required - set(raw))
    if missing:
        raise UsageError(f"{where} is missing keys {missing}")


def _mapping(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a mapping")
    return value


def _str(value, where: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{where} must be a string, got {value!r}")
    return value


def _existing(threat, known: set[str], where: str) -> None:
    check_name("threat", threat)
    if threat not in known:
        raise UsageError(f"{where}: {unknown_name('threat', threat, known)} (no config in configs/threats)")


def _column(raw: dict, where: str) -> Column:
    return Column(threat=check_name("threat", raw["threat"]), label=_str(raw["label"], f"{where}: label"))


def _columns(raw, where: str) -> list[Column]:
    if not isinstance(raw, list):
        raise UsageError(f"{where} must be a list of {{threat, label}} mappings")
    out = []
    for i, item in enumerate(raw):
        item_where = f"{where}[{i}]"
        _keys(_mapping(item, item_where), {"threat", "label"}, {"threat", "label"}, item_where)
        out.append(_column(item, item_where))
    threats = [c.threat for c in out]
    duplicates = sorted({t for t in threats if threats.count(t) > 1})
    if duplicates:
        raise UsageError(f"{where} lists {duplicates} more than once")
    return out
