"""Board configs: ``configs/boards/<name>.yaml`` says which records make up one leaderboard.

This module holds the schema and its validation (:func:`load_board`); :mod:`robench.boards.selection` picks
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
      - {threat: spatial+pgd_linf, label: "Grid ∩ PGD ℓ∞"}   # a threat set (robench.boards.unions)

``base: other_board`` inherits from another board file (see :mod:`robench.core.config`). Threats in
``require``
and ``x`` must have a config in ``configs/threats/``. A ``y.prefer`` entry or column whose threat has no
config yet is skipped, so a board can list threats that are still being written (``autoattack_linf``)
and pick them up, with no board edit, once they exist; at least one ``y.prefer`` threat must exist.

A column may name a threat *set*, its threats joined by ``+``: an example counts when it is robust under
each of them (:mod:`robench.boards.unions`); the column is skipped while a member has no config. A set is
not an axis of the markdown page (x and ``y.prefer`` name threats, which ``robench submit`` evaluates);
the site offers the board's sets on its axis switch.
"""

from __future__ import annotations

import dataclasses

from robench.boards import unions
from robench.core import config, schema
from robench.core.errors import UsageError
from robench.core.record import check_name
from robench.core.registry import unknown_name


@dataclasses.dataclass(frozen=True)
class Column:
    """One threat shown on a board, with the header it is shown under."""

    threat: str
    label: str


@dataclasses.dataclass(frozen=True)
class XAxis:
    threat: str
    label: str
    note: str = ""


@dataclasses.dataclass(frozen=True)
class YAxis:
    label: str
    prefer: list[Column]
    note: str = ""


@dataclasses.dataclass(frozen=True)
class BoardFile:
    """A board YAML as written (the strict loader checks keys and types; :func:`load_board` the rest)."""

    title: str
    dataset: str
    split: str
    n_examples: int
    seed: int
    require: list[str]
    x: XAxis
    y: YAxis
    columns: list[Column] = dataclasses.field(default_factory=list)


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
    columns: tuple[Column, ...]  # only threats (and sets whose members all have) a config now

    @property
    def sets(self) -> tuple[str, ...]:
        """The threat sets among the columns (:mod:`robench.boards.unions`)."""
        return tuple(c.threat for c in self.columns if unions.is_set(c.threat))


def board_names() -> list[str]:
    return config.names("boards")


def load_board(name: str) -> Board:
    """Read and validate ``configs/boards/<name>.yaml``; every problem is a one-line UsageError."""
    check_name("board", name)
    where = f"board config {name!r}"
    raw = schema.load(BoardFile, config.load_named("board", name, "boards"), where)
    known = set(config.names("threats"))
    config.budget_family(raw.dataset)  # unknown dataset -> UsageError with "did you mean"
    if raw.n_examples <= 0:
        raise UsageError(f"{where}: n_examples must be a positive integer, got {raw.n_examples!r}")
    if raw.seed < 0:
        raise UsageError(f"{where}: seed must be a non-negative integer, got {raw.seed!r}")
    if not raw.require:
        raise UsageError(f"{where}: require must be a non-empty list of threat names")
    for axis, column in [("x", raw.x), *(("y.prefer", c) for c in raw.y.prefer)]:
        if unions.is_set(column.threat):
            raise UsageError(
                f"{where}: {axis} names the threat set {column.threat!r}; list it under columns (the site "
                "offers it as an axis): the axes name threats, which robench submit evaluates"
            )
    for threat in [*raw.require, raw.x.threat]:
        _existing(threat, known, where)
    prefer, columns = _unique(raw.y.prefer, f"{where}: y.prefer"), _unique(raw.columns, f"{where}: columns")
    if not prefer:
        raise UsageError(f"{where}: y.prefer must list at least one threat")
    y_prefer = tuple(c for c in prefer if c.threat in known)
    if not y_prefer:
        raise UsageError(
            f"{where}: none of the y.prefer threats {[c.threat for c in prefer]} "
            "has a config in configs/threats"
        )
    return Board(
        name=name,
        title=raw.title,
        dataset=raw.dataset,
        split=raw.split,
        n_examples=raw.n_examples,
        seed=raw.seed,
        require=tuple(raw.require),
        x=Column(raw.x.threat, raw.x.label),
        x_note=raw.x.note,
        y_label=raw.y.label,
        y_note=raw.y.note,
        y_prefer=y_prefer,
        columns=tuple(c for c in columns if set(unions.members(c.threat)) <= known),
    )


def _existing(threat: str, known: set[str], where: str) -> None:
    check_name("threat", threat)
    if threat not in known:
        raise UsageError(f"{where}: {unknown_name('threat', threat, known)} (no config in configs/threats)")


def _unique(columns: list[Column], where: str) -> list[Column]:
    """Columns with safe threat (or threat set) names, each listed once."""
    for column in columns:
        unions.check(column.threat)
    threats = [c.threat for c in columns]
    duplicates = sorted({t for t in threats if threats.count(t) > 1})
    if duplicates:
        raise UsageError(f"{where} lists {duplicates} more than once")
    return columns
