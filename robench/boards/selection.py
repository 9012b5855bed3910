"""Which committed records a board shows, and why each other record is left out.

Only comparable numbers are mixed on a page. A record is shown only if its resolved ``threat_config``
equals the current ``config.threat_config(threat, dataset)`` and its split, example count, seed and
model weights match the board, and it was searched in fp32 (no ``execution.search``: a bf16 PGD search
may reach another number); every other record is returned as :class:`Rejected`, with the reason, so
the page can list it below the table instead of dropping it silently.

Records and their artifacts are committed by strangers, and git stores symbolic links: a record or an
image that is a link to ``/proc/self/environ`` would publish whatever the build can read. So every file a
board or the site reads from the records (or the committed plot) goes through :func:`read_checkout_file`,
which follows no link and reads only regular files inside the checkout's ``leaderboards/runs`` (or
``leaderboards/``), up to a size limit.
"""

from __future__ import annotations

import functools
import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pandas as pd

from robench.boards.text import format_value
from robench.core import config, record, stats
from robench.core.errors import RobenchError, UsageError
from robench.core.record import check_name

if TYPE_CHECKING:  # only annotations: the schema imports robench.boards.unions, which imports this module
    from robench.boards.schema import Board

#: Where committed run records live, relative to the repository root: ``<dataset>/<model>/<threat>.json``.
RUNS_DIR = Path("leaderboards") / "runs"


def default_root() -> Path:
    """The repository root: the checkout holding ``leaderboards/``, from the working directory upward."""
    return config.repo_root()


class Rejected(NamedTuple):
    """A record left off the page, and why (shown below the table, never silently dropped)."""

    model: str
    threat: str
    reason: str


#: The largest record file read; the largest committed one is a few kB (an ImageNet record's verdicts are
#: 100 kB), so a bigger file is not a record, and reading it whole could exhaust the build's memory.
MAX_RECORD_BYTES = 64 << 20


class Refused(RobenchError):
    """A file under ``leaderboards/runs`` that is not read: a link, not a regular file, or too large."""


def read_checkout_file(root: Path, path: Path, limit: int, within: Path = RUNS_DIR) -> bytes:
    """The bytes of ``path``, a file under ``root/within`` (default: the records), or :class:`Refused`.

    No symbolic link is followed, neither the file nor any folder from ``root`` down to it, and the file
    must resolve inside ``root/within``, be a regular file and hold at most ``limit`` bytes. The final
    open uses ``O_NOFOLLOW`` (and ``O_NONBLOCK``, so a FIFO cannot hang the build). Refusals are one line.
    """
    runs = root / within
    rel = path.relative_to(root)
    here = root
    for part in rel.parts:
        here = here / part
        if here.is_symlink():
            raise Refused(f"{here.relative_to(root).as_posix()} is a symbolic link (not followed)")
    if not path.resolve().is_relative_to(runs.resolve()):
        raise Refused(f"{rel.as_posix()} resolves outside {within.as_posix()}")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    with os.fdopen(os.open(path, flags), "rb") as f:
        mode, size = os.fstat(f.fileno()).st_mode, os.fstat(f.fileno()).st_size
        if not stat.S_ISREG(mode):
            raise Refused(f"{rel.as_posix()} is not a regular file")
        data = f.read(limit + 1)
    if max(size, len(data)) > limit:
        raise Refused(f"{rel.as_posix()} is larger than {limit:,} bytes")
    return data


def read_record(path: Path, root: Path) -> record.RunRecord:
    """The record at ``path`` (under ``root/leaderboards/runs``), read by :func:`read_checkout_file`.

    :class:`Refused` for a link, a non-file or an oversized file (boards list those as invalid); any
    other unreadable file is a one-line :class:`RobenchError`."""
    try:
        return record.RunRecord.from_dict(json.loads(read_checkout_file(root, path, MAX_RECORD_BYTES)))
    except (OSError, ValueError, TypeError, AttributeError, RecursionError) as e:  # unreadable, not a record
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
    if not isinstance(rec.per_example, str) or set(rec.per_example) - {"0", "1"}:
        return "per_example is not a string of 0s and 1s"
    shapes = [(rec.flags, list), (rec.model_meta, dict), (rec.indices, dict), (rec.threat_config, dict)]
    if not all(isinstance(value, kind) for value, kind in shapes):
        return "flags, model_meta, indices or threat_config malformed"
    return record.problem(rec)


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
    elif "subset" in rec.indices:  # #11: images listed by a file, not the board's split rule
        subset = rec.indices["subset"]
        name = subset.get("file") if isinstance(subset, dict) else format_value(subset)
        reasons.append(f"images from subset file {name}, not the board's split rule")
    search = rec.execution.get("search") if isinstance(rec.execution, dict) else None
    if search is not None:  # a bf16 PGD search: fp32-checked verdicts, but not the fp32 trajectory
        reasons.append(f"searched in {format_value(search)}, not the fp32 protocol (verdicts fp32-checked)")
    return "; ".join(reasons) or None


#: The frame :func:`collect` returns: ``hits`` is how many of the ``n`` examples count as correct (from the
#: verdicts, see :func:`robench.core.stats.successes`), ``verdicts`` the record's per-example string and
#: ``indices`` which examples they are about (:mod:`robench.boards.unions` checks that before intersecting).
COLUMNS = [
    "model",
    "threat",
    "acc",
    "flags",
    "meta",
    "weights",
    "n",
    "hits",
    "verdicts",
    "indices",
    "details",
    "artifacts",
]


def collect(board: Board, root: Path) -> tuple[pd.DataFrame, list[Rejected], list[Rejected]]:
    """The board's current records as a frame (one row per record), plus the stale and invalid ones.

    Reads ``<root>/leaderboards/runs/<dataset>/*/*.json``. An unreadable file is an error rather than a
    listed record: it is not a record at all, and CI should stop on it. A file :func:`read_checkout_file`
    refuses (a symbolic link, one that resolves outside the runs folder, an oversized one) is never read
    and is listed as invalid, with the reason. When a model's current records
    disagree on the weights' sha256, some were run on other weights; none of them can be trusted to
    describe one model, so all of them move to the stale list.
    """
    known = set(config.names("threats"))

    @functools.cache
    def current(threat: str) -> tuple[str, dict] | None:
        if threat not in known:
            return None
        return config.threat_spec(threat).family, config.threat_config(threat, board.dataset)

    rows, stale, invalid = [], [], []
    for path in sorted((root / RUNS_DIR / board.dataset).glob("*/*.json")):
        try:
            rec = read_record(path, root)
        except Refused as e:
            invalid.append(Rejected(path.parent.name, path.stem, str(e)))
            continue
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
                    "n": rec.n_examples,
                    "hits": stats.successes(rec.per_example, rec.n_examples, rec.robust_acc),
                    "verdicts": rec.per_example,
                    "indices": rec.indices,
                    "details": rec.details if isinstance(rec.details, dict) else {},
                    "artifacts": rec.artifacts if isinstance(rec.artifacts, dict) else {},
                }
            )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    n_weights = frame.groupby("model")["weights"].nunique()
    mixed = frame["model"].isin(n_weights[n_weights > 1].index)
    for row in frame[mixed].itertuples():
        stale.append(Rejected(row.model, row.threat, "this model's records were run on different weights"))
    return frame[~mixed].reset_index(drop=True), stale, invalid
