"""``robench verify``: do the committed records still follow from the shipped weights, configs and code?

``robench leaderboard --check`` only compares pages with records; nothing else notices a record that was
made by older code, on other weights, or edited by hand. This module re-runs records with exactly the
protocol each one states (split, example count, seed, batch and chunk size, on the CPU) and compares the
result with the committed file: the per-example verdicts bit for bit, and every other field that the
code determines. Fields that describe the run rather than its result (timing, versions, the device
string, whether a fitted perturbation came from the cache) are not compared.

A prefix of ``n`` examples (``--n-examples``, what CI uses) reproduces the record's first verdicts only
where the generator draws agree. Each chunk's generator is seeded by (seed, chunk id) and consumed batch
by batch, so the first ``m`` examples of a run get the same draws and the same batches exactly when
``m`` ends a chunk, or ends a whole number of batches inside one (:func:`exact_prefix`); ``n`` is rounded
up to the next such ``m``. Aggregates (``details``, the accuracies) describe all examples and are then
not compared.

The engine is imported only when a record is re-run, so the boards package stays torch-free at import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from robench.boards.selection import RUNS_DIR
from robench.core import record
from robench.core.errors import RecordError, RobenchError, UsageError

#: Fields of ``details`` (at any depth) that vary from run to run with the same result.
VOLATILE_DETAILS = frozenset({"fit_time_s", "cached"})
#: Record fields fixed by the code, weights and protocol; compared on a full re-run.
FULL_FIELDS = (
    "clean_acc",
    "robust_acc",
    "threat_config",
    "config_hash",
    "family",
    "flags",
    "model_meta",
    "n_examples",
    "indices",
)
#: Artifacts compared byte for byte; images are left out, as their bytes depend on the plotting library.
EXACT_ARTIFACTS = frozenset({"npy"})


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One record's verdict: the fields that differ (empty: reproduced) over how many examples."""

    path: Path
    n_examples: int
    differs: tuple[str, ...]
    seconds: float

    def line(self, root: Path) -> str:
        name = self.path.relative_to(root / RUNS_DIR).with_suffix("").as_posix()
        status = "OK" if not self.differs else "DIFFERS: " + ", ".join(self.differs)
        return f"{name}: {status} ({self.n_examples} examples, {self.seconds:.0f}s)"


def exact_prefix(n: int, total: int, batch_size: int, chunk_size: int) -> int:
    """The smallest prefix length ``m >= n`` whose verdicts a run of ``m`` examples reproduces exactly:
    ``m`` is the total, ends a chunk, or ends a whole number of batches inside its chunk (module doc)."""
    m = min(n, total)
    while m < total and (m % chunk_size) % batch_size:
        m += 1
    return m


def strip_volatile(value):
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE_DETAILS}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value


def select(
    root: Path,
    boards: list[str] | None,
    models: list[str] | None,
    threats: list[str] | None,
    all_records: bool,
) -> list[Path]:
    """The record files to verify: every record with ``all_records``, else those the filters name
    (records of a board's dataset, of the models, of the threats); at least one filter or ``--all``."""
    if not (all_records or boards or models or threats):
        raise UsageError("say what to verify: --all, or --board/--model/--threat")
    from robench.boards.schema import load_board

    datasets = {load_board(b).dataset for b in boards} if boards else None
    paths = [
        p
        for p in sorted((root / RUNS_DIR).glob("*/*/*.json"))
        if (datasets is None or p.parent.parent.name in datasets)
        and (not models or p.parent.name in models)
        and (not threats or p.stem in threats)
    ]
    if not paths:
        raise UsageError(f"no record under {root / RUNS_DIR} matches the given --board/--model/--threat")
    return paths


@contextlib.contextmanager
def fresh_cache() -> Iterator[None]:
    """A private, empty cache of fitted perturbations: a cached δ may come from older code, and
    re-fitting it is part of what is verified."""
    old = os.environ.get("ROBENCH_CACHE")
    with tempfile.TemporaryDirectory(prefix="robench-verify-") as tmp:
        os.environ["ROBENCH_CACHE"] = tmp
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("ROBENCH_CACHE", None)
            else:
                os.environ["ROBENCH_CACHE"] = old


def compare(
    old: record.RunRecord, new: record.RunRecord, m: int, old_folder: Path, new_folder: Path
) -> list[str]:
    """Fields of ``old`` that ``new`` (a re-run of its first ``m`` examples) does not reproduce."""
    differs = [k for k in ("per_example", "clean_per_example") if getattr(old, k)[:m] != getattr(new, k)]
    if m < old.n_examples:
        return differs
    differs += [k for k in FULL_FIELDS if getattr(old, k) != getattr(new, k)]
    if strip_volatile(old.details) != strip_volatile(new.details):
        differs.append("details")
    for suffix in sorted(EXACT_ARTIFACTS & (set(old.artifacts) | set(new.artifacts))):
        files = [
            folder / r.artifacts[suffix] if suffix in r.artifacts else None
            for folder, r in ((old_folder, old), (new_folder, new))
        ]
        blobs = [f.read_bytes() if f is not None and f.is_file() else None for f in files]
        if blobs[0] is None or blobs[0] != blobs[1]:
            differs.append(f"artifact {suffix}")
    return differs


def verify_one(path: Path, n_examples: int | None, data_dir: str | None) -> Outcome:
    """Re-run the record at ``path`` (its first ``n_examples``, rounded up by :func:`exact_prefix`) on
    the CPU, into a temporary folder, and compare it with the file."""
    import time

    from robench.engine import evaluate

    old = _read(path)
    damaged = record.problem(old)
    m = (
        old.n_examples
        if n_examples is None
        else exact_prefix(n_examples, old.n_examples, old.batch_size, old.chunk_size)
    )
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="robench-verify-") as out:
        new = evaluate(old.model, old.threat, old.dataset, **rerun_options(old, m, data_dir, out))
        new_folder = record.path_for(out, new.dataset, new.model, new.threat).parent
        differs = [f"record damaged ({damaged})"] * bool(damaged)
        differs += compare(old, new, m, path.parent, new_folder)
    return Outcome(path, m, tuple(differs), time.time() - started)


def rerun_options(old: record.RunRecord, n: int, data_dir: str | None, out_dir: str) -> dict:
    """The :class:`~robench.engine.spec.RunOptions` fields that re-run ``old`` on its first ``n`` examples:
    its split, seed, batch and chunk sizes, on the CPU. A record whose gradient search ran on the fast path
    (``execution.search``) is re-run on that path, whose trajectory only it reproduces; other records in
    fp32 (a fast argmax record's verdicts are fp32's)."""
    from robench.engine.forward import Speed

    execution = old.execution if isinstance(old.execution, dict) else {}
    speed = Speed()
    if execution.get("search") is not None:
        speed = Speed(
            execution.get("precision", "fp32"),
            execution.get("memory_format") == "channels_last",
            bool(execution.get("compile")),
        )
    return {
        "split": old.indices.get("split", "test"),
        "n_examples": n,
        "batch_size": old.batch_size,
        "chunk_size": old.chunk_size,
        "seed": old.seed,
        "speed": speed,
        "model_name": old.model,
        "device": "cpu",
        "data_dir": data_dir,
        "out_dir": out_dir,
        "progress": False,
    }


def _read(path: Path) -> record.RunRecord:
    """The record as written: a self-contradicting one is still re-run, so the report says which fields
    the code does not reproduce."""
    try:
        return record.load(path)
    except (OSError, ValueError, TypeError, AttributeError, RecursionError) as e:
        raise RecordError(f"cannot read run record {path}: {type(e).__name__}: {e}") from None


def verify(
    paths: list[Path], n_examples: int | None = None, data_dir: str | None = None
) -> Iterator[Outcome]:
    """Each record's :class:`Outcome`, in order, as soon as it is known (one fresh fit cache for all)."""
    with fresh_cache():
        for path in paths:
            try:
                yield verify_one(path, n_examples, data_dir)
            except RobenchError as e:  # e.g. a record of data this machine lacks: say so, go on
                yield Outcome(path, 0, (f"not re-run: {e}",), 0.0)
