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
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from robench.core import locks
from robench.core.errors import RecordError, UsageError, WriteError

#: 2: the model's identity covers normalisation, class count, input size and the architecture's kwargs
#: (issue #20); records of version 1 are migrated by ``scripts/migrate_identity.py``.
SCHEMA_VERSION = 2

#: ``model_meta`` keys that describe a model without deciding any verdict: the one list of cosmetic
#: fields. Everything else in ``model_meta`` is the model's identity and enters ``config_hash``
#: (``tests/test_identity.py`` holds this list and checks that every other card field changes the hash).
COSMETIC_META = ("display_name", "description", "paper", "recipe", "spec")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


#: The longest name: a path component (at most 255 bytes) must hold it with what robench adds around it,
#: up to ``.<threat>.json.<host>-<pid>.<random>.tmp`` for a record being written (a host name has <= 64).
MAX_NAME = 150


def check_name(kind: str, name: str) -> str:
    """Refuse names that would escape the records directory when used as a path component, and names too
    long to be one (the file system's refusal would come only when the record is written, after the run)."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise UsageError(
            f"invalid {kind} name {name!r}: use letters, digits, '_', '-' and '.', not starting with '.'"
        )
    if len(name) > MAX_NAME:
        raise UsageError(
            f"invalid {kind} name {name[:20]}... ({len(name)} characters): use at most {MAX_NAME}"
        )
    return name


def config_hash(obj: Any) -> str:
    """A short, stable hash of a JSON-able object (sorted keys), naming what a result depends on."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def model_identity(meta: dict) -> dict:
    """The part of a record's ``model_meta`` that decides verdicts: all of it but :data:`COSMETIC_META`."""
    return {k: v for k, v in meta.items() if k not in COSMETIC_META}


def run_identity(
    *,
    model: str,
    model_identity: dict,
    dataset: str,
    split: str,
    n: int,
    threat: str,
    family: str,
    config: dict,
    seed: int,
    batch_size: int,
    chunk_size: int,
    subset: dict | None = None,
    search: str | None = None,
) -> dict:
    """Every input that can change a verdict, plus the chunk size (it sets the chunks' seeds) and the
    batch size: what a record's ``config_hash`` hashes. ``model_identity`` is :func:`model_identity` of the
    record's ``model_meta`` (docs/architecture.md, "One run, one spec, one identity"). Everything in it is
    also a field of the record, so a reader can recompute the hash and catch a record edited without it
    (:func:`problem`).
    ``subset`` (an ImageNet subset file's name and sha256, kept in the record's ``indices``) enters only
    when given, so every run without one keeps the identity it always had. ``search`` likewise: what a
    gradient attack searched in when not fp32 (``execution.search``, e.g. ``"bf16+channels_last"``), whose
    trajectory and so verdicts may differ from the fp32 run's, which must not resume from its chunks."""
    identity = {
        "model": model,
        "model_identity": model_identity,
        "dataset": dataset,
        "split": split,
        "n": n,
        "threat": threat,
        "family": family,
        "config": config,
        "seed": seed,
        "batch_size": batch_size,
        "chunk_size": chunk_size,
    }
    if subset is not None:
        identity["subset"] = subset
    if search is not None:
        identity["search"] = search
    return identity


def bits(flags) -> str:
    """Per-example booleans as a compact '0'/'1' string in dataset-index order."""
    return "".join("1" if f else "0" for f in flags)


@dataclasses.dataclass
class RunRecord:
    """The result of one (dataset, model, threat) evaluation; see docs/architecture.md for the fields."""

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
    model_meta: dict  # the model's identity (weights sha256, arch, normalisation, ...) and cosmetic fields
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
    def from_dict(cls, data: dict) -> RunRecord:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


#: A record's ``device`` names the CPU thread count or the GPU (:func:`machine_class` reads older records).
_CPU_DEVICE = re.compile(r"cpu \((\d+) threads\)")
_CUDA_DEVICE = re.compile(r"cuda(?::\d+)? \((.+?)\)(?: x \d+ ranks)?$")


def machine_class(rec: RunRecord) -> dict:
    """The machine class ``rec`` was made on (``versions["machine"]``, docs/reliability.md). Records written
    before it was stored keep what their ``device`` and ``versions`` say (the thread count or the GPU, and
    the torch build) and None for the rest: their CPU is unknown, so no machine is of their class."""
    versions = rec.versions if isinstance(rec.versions, dict) else {}
    stored = versions.get("machine")
    if isinstance(stored, dict) and all(isinstance(v, (str, int, type(None))) for v in stored.values()):
        return stored
    device = rec.device if isinstance(rec.device, str) else ""
    cpu, gpu = _CPU_DEVICE.match(device), _CUDA_DEVICE.match(device)
    chip = {"gpu": gpu.group(1)} if gpu else {"cpu": None, "isa": None}
    return {**chip, "torch": versions.get("torch"), "threads": int(cpu.group(1)) if cpu else None}


def machine_known(machine: dict) -> bool:
    """Whether every part of a machine class is known (records before the class was stored lack some)."""
    return None not in machine.values()


def describe_machine(machine: dict) -> str:
    """A machine class in words: ``Intel(R) Xeon(R) Processor [AVX512 amx_bf16], torch 2.14.1, 1 thread``."""
    isa = f" [{machine['isa']}]" if machine.get("isa") else ""
    chip = f"{machine['gpu']}" if "gpu" in machine else f"{machine.get('cpu') or 'unknown CPU'}{isa}"
    threads = machine.get("threads")
    counted = f"{threads} thread{'s' * (threads != 1)}" if threads is not None else "unknown threads"
    return f"{chip}, torch {machine.get('torch') or 'unknown'}, {counted}"


_TYPES = {
    str: (
        "model",
        "dataset",
        "threat",
        "family",
        "config_hash",
        "per_example",
        "clean_per_example",
        "device",
        "started_at",
    ),
    int: ("n_examples", "seed", "batch_size", "chunk_size", "schema_version"),
    float: ("clean_acc", "robust_acc", "duration_s", "examples_per_s"),
    dict: ("threat_config", "indices", "details", "model_meta", "versions", "artifacts"),
    list: ("flags",),
}


def _accuracy_of(flags: str, n: int, value) -> bool:
    return abs(flags.count("1") / n - value) <= 1e-9


def problem(rec: RunRecord) -> str | None:
    """Why ``rec`` cannot be what it claims to be, or None: wrong field types, verdict strings that are
    not one '0'/'1' per example, accuracies that are not the verdicts' means, a robust example that is
    not clean-correct, or a ``config_hash`` that is not the hash of the protocol the record states."""
    for kind, names in _TYPES.items():
        for name in names:
            value = getattr(rec, name)
            ok = isinstance(value, (int, float) if kind is float else kind) and not isinstance(value, bool)
            if not ok:
                return f"{name} is not a{'n' if kind is int else ''} {kind.__name__}"
    n = rec.n_examples
    if n < 1 or rec.schema_version != SCHEMA_VERSION:
        return f"n_examples {n} or schema_version {rec.schema_version} unusable"
    for name in ("per_example", "clean_per_example"):
        flags = getattr(rec, name)
        if len(flags) != n or flags.strip("01"):
            return f"{name} is not {n} characters of '0'/'1'"
    if not (
        _accuracy_of(rec.per_example, n, rec.robust_acc)
        and _accuracy_of(rec.clean_per_example, n, rec.clean_acc)
    ):
        return "robust_acc or clean_acc is not the mean of its per-example verdicts"
    if any(r == "1" and c == "0" for r, c in zip(rec.per_example, rec.clean_per_example, strict=True)):
        return "an example is robust but not clean-correct"
    start, stop = rec.indices.get("start"), rec.indices.get("stop")
    if not (isinstance(start, int) and isinstance(stop, int) and stop - start == n):
        return f"indices {rec.indices} do not span n_examples {n}"
    identity = stated_identity(rec)
    if config_hash(identity) != rec.config_hash:
        return "config_hash is not the hash of the protocol the record states (edited by hand?)"
    return None


def stated_identity(rec: RunRecord) -> dict:
    """The identity the record's own fields state (what its ``config_hash`` must be the hash of)."""
    return run_identity(
        model=rec.model,
        model_identity=model_identity(rec.model_meta),
        dataset=rec.dataset,
        split=rec.indices.get("split"),
        n=rec.n_examples,
        threat=rec.threat,
        family=rec.family,
        config=rec.threat_config,
        seed=rec.seed,
        batch_size=rec.batch_size,
        chunk_size=rec.chunk_size,
        subset=rec.indices.get("subset"),
        search=rec.execution.get("search") if isinstance(rec.execution, dict) else None,
    )


def path_for(out_dir: str | os.PathLike, dataset: str, model: str, threat: str) -> Path:
    """``<out>/<dataset>/<model>/<threat>.json``, with every component validated as a safe name."""
    return (
        Path(out_dir)
        / check_name("dataset", dataset)
        / check_name("model", model)
        / f"{check_name('threat', threat)}.json"
    )


def _fill(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the new file and flush it to the disk (the step a full disk fails)."""
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _tmp_prefix(path: Path) -> str:
    """How a temporary file for ``path`` starts: ``.<name>.<host>-<pid>.``, so that whoever finds it after
    a kill can tell whether its writer is still running (:func:`sweep_stale_tmp`)."""
    return f".{path.name}.{socket.gethostname()}-{os.getpid()}."


def sweep_stale_tmp(path: Path) -> None:
    """Remove the half-written temporary files of ``path`` that killed writers left beside it, with one
    line on stderr. Only writers on this host whose process is gone count as dead: a live writer's file,
    or one of another host's (a shared file system), is left alone."""
    host = f".{path.name}.{socket.gethostname()}-"
    try:
        leftovers = [p for p in path.parent.iterdir() if p.name.startswith(host) and p.name.endswith(".tmp")]
    except OSError:  # no folder yet: nothing left in it
        return
    for tmp in leftovers:
        pid = tmp.name[len(host) :].split(".", 1)[0]
        if not pid.isdigit() or locks.alive(int(pid)):
            continue
        try:
            tmp.unlink()
        except OSError:  # another sweeper was first, or it is not ours to remove: the write goes on
            continue
        print(f"robench: removed {tmp}, half-written by process {pid}, which is gone", file=sys.stderr)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the new one, never half.

    A failure (a full disk, a read-only place) leaves the old file as it was, removes the temporary
    file, and raises :class:`WriteError`: one line naming the file, which is also an ``OSError``. A kill
    leaves its temporary file behind; the next write of ``path`` removes it (:func:`sweep_stale_tmp`).
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale_tmp(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path), suffix=".tmp")
        _fill(fd, data)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(path, e.strerror or str(e), e.errno) from None
        raise


def save(record: RunRecord, out_dir: str | os.PathLike) -> Path:
    path = path_for(out_dir, record.dataset, record.model, record.threat)
    atomic_write_bytes(path, record.to_json().encode())
    return path


def load(path: str | os.PathLike) -> RunRecord:
    """The record at ``path``, as written (unchecked: see :func:`load_checked`)."""
    with open(path) as f:
        return RunRecord.from_dict(json.load(f))


def load_checked(path: str | os.PathLike) -> RunRecord:
    """The record at ``path`` if it is readable and passes :func:`problem`; else a one-line
    :class:`RecordError` naming the file and what is wrong with it."""
    try:
        rec = load(path)
    except (OSError, ValueError, TypeError, AttributeError, RecursionError) as e:
        raise RecordError(f"cannot read run record {path}: {type(e).__name__}: {e}") from None
    reason = problem(rec)
    if reason is not None:
        raise RecordError(f"run record {path} is damaged: {reason}")
    return rec
