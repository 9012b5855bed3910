"""One run, one record: the JSON file every result and every leaderboard is built from.

A record is written atomically (temp file in the same directory + ``os.replace``), so a crash never
leaves a half-written record and never damages the previous one. This module imports no torch: the
leaderboard code reads records without it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from robench.errors import UsageError

SCHEMA_VERSION = 1
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(kind: str, name: str) -> str:
    """Refuse names that would escape the records directory when used as a path component."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise UsageError(
            f"invalid {kind} name {name!r}: use letters, digits, '_', '-' and '.', not starting with '.'"
        )
    return name


def config_hash(obj: Any) -> str:
    """A short, stable hash of a JSON-able object (sorted keys), naming what a result depends on."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def bits(flags) -> str:
    """Per-example booleans as a compact '0'/'1' string in dataset-index order."""
    return "".join("1" if f else "0" for f in flags)


@dataclasses.dataclass
class RunRecord:
    """The result of one (dataset, model, threat) evaluation; see architecture.md for the fields."""

    model: str
    dataset: str
    threat: str
    family: str
    threat_config: dict
    config_hash: str
    n_examples: int
    clean_acc: float
    robust_acc: float
    per_example: str  # robust flags, '0'/'1', in evaluation order
    clean_per_example: str  # clean-correct flags, same order
    indices: dict  # which dataset examples were evaluated: {"split", "start", "stop"}
    details: dict
    flags: list
    seed: int
    device: str
    batch_size: int
    chunk_size: int
    model_meta: dict  # arch, weights sha256, recipe and paper metadata from the card
    versions: dict
    started_at: str
    duration_s: float
    examples_per_s: float
    artifacts: dict = dataclasses.field(default_factory=dict)  # name -> file next to the record
    schema_version: int = SCHEMA_VERSION
    #: how the forwards ran when not the plain fp32 path (precision, memory format, compile, a forward batch
    #: halved after an out-of-memory); written only when non-empty, so plain records are unchanged and a
    #: record without it is an fp32 one (docs/performance.md)
    execution: dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        if not data["execution"]:
            del data["execution"]
        return json.dumps(data, sort_keys=True, indent=1) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


def path_for(out_dir: str | os.PathLike, dataset: str, model: str, threat: str) -> Path:
    """``<out>/<dataset>/<model>/<threat>.json``, with every component validated as a safe name."""
    return (
        Path(out_dir)
        / check_name("dataset", dataset)
        / check_name("model", model)
        / f"{check_name('threat', threat)}.json"
    )


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(record: RunRecord, out_dir: str | os.PathLike) -> Path:
    path = path_for(out_dir, record.dataset, record.model, record.threat)
    atomic_write_bytes(path, record.to_json().encode())
    return path


def load(path: str | os.PathLike) -> RunRecord:
    with open(path) as f:
        return RunRecord.from_dict(json.load(f))
