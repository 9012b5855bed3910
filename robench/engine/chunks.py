"""Chunk files: a finished chunk's per-example results on disk, written atomically and checked on read.

A resumed run trusts nothing it reads back (docs/reliability.md, "At a glance"). Each chunk file carries
the identity of the run that wrote it (:func:`chunk_identity`) and is accepted only if that identity is
this run's, every array is a plain (non-object) array with one entry per example of the chunk, and the
verdict arrays are boolean. Anything else (a truncated or overwritten file, one copied from another run,
one computed against another fitted perturbation) is recomputed, with one line on stderr saying why: a
chunk can always be recomputed, so a damaged one never ends a run and never reaches a record.
"""

from __future__ import annotations

import io
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

from robench.core import record as rec

#: Bump when what a chunk file holds changes meaning, so chunks of older code are recomputed.
CHUNK_FORMAT = 1
#: Name of the identity entry inside a chunk file (no threat returns a result of that name).
IDENTITY_KEY = "__identity__"
#: Per-example arrays every chunk has (the loop adds them to any threat's results), all boolean.
REQUIRED = ("robust", "robust_claimed", "clean_correct")


def chunk_identity(identity: dict, threat_state: str | None) -> str:
    """The hash a chunk file must carry: the run's identity (what its ``config_hash`` hashes) plus what
    the prepared threat's verdicts depend on beyond its parameters (a UAP's δ), and the file format.

    The record's ``config_hash`` deliberately stays the hash of ``identity`` alone, so committed
    records keep theirs; a chunk made against another δ lands in the same folder but is refused here.
    """
    return rec.config_hash({"run": identity, "threat_state": threat_state, "format": CHUNK_FORMAT})


def save_chunk(path: Path, stats: dict[str, np.ndarray], identity: str) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **stats, **{IDENTITY_KEY: np.array(identity)})
    rec.atomic_write_bytes(path, buffer.getvalue())


def _problem(stats: dict[str, np.ndarray], n: int, identity: str, claimed: np.ndarray | None) -> str | None:
    """Why a chunk file's contents cannot be used for a chunk of ``n`` examples of run ``identity``."""
    if claimed is None or claimed.shape != () or str(claimed) != identity:
        return "written by another run or another fitted perturbation"
    missing = [k for k in REQUIRED if k not in stats]
    if missing:
        return f"lacks {', '.join(missing)}"
    for key, value in stats.items():
        if value.dtype == object or value.ndim == 0 or len(value) != n:
            return f"{key!r} has shape {value.shape}, not {n} entries"
        if key in REQUIRED and value.dtype != np.bool_:
            return f"{key!r} is {value.dtype}, not boolean"
    if (stats["robust"] & ~stats["clean_correct"]).any():
        return "marks an example robust that is not clean-correct"
    return None


def load_chunk(path: Path, n: int, identity: str) -> dict[str, np.ndarray] | None:
    """A finished chunk's results, or None when it must be computed: the file is absent, or damaged or
    foreign (then one line on stderr names it and says why)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            stats = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        problem = f"unreadable ({type(e).__name__})"
    else:
        problem = _problem(stats, n, identity, stats.pop(IDENTITY_KEY, None))
    if problem is None:
        return stats
    print(f"robench: chunk file {path}: {problem}; recomputing it", file=sys.stderr)
    if path.is_dir():  # the folder is robench's own: clear the way for the recomputed file
        shutil.rmtree(path)
    return None
