"""Board configs: ``configs/boards/<name>.yaml`` says which records make up one leaderboard.

This module holds the schema and the selection of records (:func:`collect`); :mod:`robench.leaderboard`
turns the selection into a page.

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
import functools
import json
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from robench import config, record
from robench.errors import RobenchError, UsageError
from robench.pagetext import format_value
from robench.record import check_name
from robench.registry import unknown_name

#: Where committed run records live, relative to the repository root: ``<dataset>/<model>/<threat>.json``.
RUNS_DIR = Path("leaderboards") / "runs"

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


# --- which records a board shows ---------------------------------------------------------------------------


class Rejected(NamedTuple):
    """A record left off the page, and why (shown below the table, never silently dropped)."""

    model: str
    threat: str
    reason: str


def _read(path: Path) -> record.RunRecord:
    try:
        return record.load(path)
    except (OSError, ValueError, TypeError, AttributeError) as e:  # unreadable, not JSON, not a record
        raise RobenchError(f"cannot read run record {path}: {e}") from None


def _malformed(rec: record.RunRecord, path: Path, dataset: str) -> str | None:
    """Why a record cannot be trusted to describe what its path says, or None."""
    try:
        check_name("model", rec.model)
        check_name("threat", rec.threat)
    except UsageError:
        return "invalid model or threat name"
    if (rec.dataset, rec.model, rec.threat) != (dataset, path.parent.name, path.stem):
        return "file path does not match the record's dataset/model/threat"
    acc = rec.robust_acc
    if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0 <= acc <= 1:
        return "robust_acc is not a number in [0, 1]"
    shapes = [(rec.flags, list), (rec.model_meta, dict), (rec.indices, dict), (rec.threat_config, dict)]
    if not all(isinstance(value, kind) for value, kind in shapes):
        return "flags, model_meta, indices or threat_config malformed"
    return None


def _config_diff(old: dict, new: dict) -> str:
    changed = [k for k in sorted(set(old) | set(new), key=str) if old.get(k) != new.get(k)]
    return ", ".join(
        f"{k}: {format_value(old.get(k, 'absent'))} → {format_value(new.get(k, 'absent'))}" for k in changed
    )


def _stale(rec: record.RunRecord, board: Board, current) -> str | None:
    """Why a well-formed record is not comparable with the board now, or None.

    ``current(threat)`` is the threat's (family, resolved parameters) now, or None without a config.
    """
    now = current(rec.threat)
    if now is None:
        return "no threat config in configs/threats"
    family, params = now
    reasons = []
    if rec.family != family:
        reasons.append(f"family {rec.family} ≠ {family}")
    if rec.threat_config != params:
        reasons.append(f"threat config changed ({_config_diff(rec.threat_config, params)})")
    if rec.n_examples != board.n_examples:
        reasons.append(f"n_examples {rec.n_examples} ≠ {board.n_examples}")
    if rec.seed != board.seed:
        reasons.append(f"seed {rec.seed} ≠ {board.seed}")
    if rec.indices.get("split") != board.split or rec.indices.get("start", 0) != 0:
        reasons.append(f"examples {format_value(rec.indices)} are not split {board.split} from index 0")
    return "; ".join(reasons) or None


def collect(board: Board, root: Path) -> tuple[pd.DataFrame, list[Rejected], list[Rejected]]:
    """The board's current records as a frame (one row per record), plus the stale and invalid ones.

    Reads ``<root>/leaderboards/runs/<dataset>/*/*.json``. An unreadable file is an error rather than a
    listed record: it is not a record at all, and CI should stop on it. When a model's current records
    disagree on the weights' sha256, some were run on other weights; none of them can be trusted to
    describe one model, so all of them move to the stale list.
    """
    known = set(config.names("threats"))

    @functools.cache
    def current(threat: str) -> tuple[str, dict] | None:
        if threat not in known:
            return None
        return config.threat_spec(threat)["family"], config.threat_config(threat, board.dataset)

    rows, stale, invalid = [], [], []
    for path in sorted((root / RUNS_DIR / board.dataset).glob("*/*.json")):
        rec = _read(path)
        problem = _malformed(rec, path, board.dataset)
        reason = None if problem else _stale(rec, board, current)
        if problem:
            invalid.append(Rejected(path.parent.name, path.stem, problem))
        elif reason:
            stale.append(Rejected(rec.model, rec.threat, reason))
        else:
            rows.append(
                {
                    "model": rec.model,
                    "threat": rec.threat,
                    "acc": float(rec.robust_acc),
                    "flags": [str(f) for f in rec.flags],
                    "meta": rec.model_meta,
                    "weights": json.dumps(rec.model_meta.get("weights_sha256"), sort_keys=True),
                }
            )
    frame = pd.DataFrame(rows, columns=["model", "threat", "acc", "flags", "meta", "weights"])
    n_weights = frame.groupby("model")["weights"].nunique()
    mixed = frame["model"].isin(n_weights[n_weights > 1].index)
    for row in frame[mixed].itertuples():
        stale.append(Rejected(row.model, row.threat, "this model's records were run on different weights"))
    return frame[~mixed].reset_index(drop=True), stale, invalid
