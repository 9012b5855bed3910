"""The chunk loop: a resolved :class:`~robench.engine.spec.RunSpec` -> per-example results -> one record.

Work is split into fixed-size chunks of the evaluation subset. Each chunk is seeded by (seed, chunk id),
so its result does not depend on which process computes it or on what ran before; each finished chunk's
per-example results are written to disk, so an interrupted run resumes where it stopped and ends with the
same record as an uninterrupted one (docs/reliability.md). The chunk files live in the spec's
``partial_dir`` and are removed once the record is written.

Because chunks are independent, the same loop shards over processes: under ``torchrun`` the ranks take
chunks from a shared queue and rank 0 writes the record from everyone's results
(:mod:`robench.runtime.distributed`);
a cluster job-array task computes only its ``shard`` of the chunks (a :class:`ShardResult`), and the same
call without ``shard`` then finds them all on disk and writes the record.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from robench.core import locks
from robench.core import record as rec
from robench.core.errors import EvaluationError
from robench.datasets import stream_batches
from robench.engine import stop
from robench.engine.chunks import chunk_identity, load_chunk, save_chunk
from robench.engine.forward import Forward
from robench.engine.progress import Progress
from robench.engine.spec import RunSpec
from robench.models.vote import randomised_flags
from robench.runtime.devices import describe_device, versions
from robench.runtime.distributed import ChunkQueue, world
from robench.threats import BatchContext
from robench.threats.base import predicted

Chunks = dict[int, dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class ShardResult:
    """What a job-array task leaves behind: its chunks of one run, on disk, waiting for the record."""

    threat: str
    shard: tuple[int, int]  # (task i, of n tasks)
    chunks: tuple[int, ...]  # chunk ids in ``folder``, computed now or found there
    folder: Path


def chunk_seed(seed: int, chunk: int) -> int:
    """A generator seed per chunk: independent of process count and of the order chunks run in."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1, dtype=np.uint64)[0] >> 1)


def check_logits(logits: torch.Tensor, batch: int, num_classes: int, model_name: str) -> None:
    if logits.dim() != 2 or logits.shape != (batch, num_classes):
        raise EvaluationError(
            f"model {model_name!r} returned logits of shape {tuple(logits.shape)}; "
            f"expected ({batch}, {num_classes})"
        )
    bad = ~torch.isfinite(logits).all(1)
    if bad.any():
        raise EvaluationError(
            f"model {model_name!r} returned non-finite logits for {int(bad.sum())} of {batch} examples"
        )


def run_chunk(
    model, threat, x, y, batch_size, seed, num_classes, model_name, start=0
) -> dict[str, np.ndarray]:
    """Per-example results of one chunk given as tensors (already on the device; ``start`` is the position
    of its first example in the split), with its generator seeded by ``seed``; needs no spec, so
    scripts/gpu_check.py runs the same batch loop on synthetic data."""
    forward = model if isinstance(model, Forward) else Forward(model)
    batches = zip(x.split(batch_size), y.split(batch_size), strict=True)
    return run_batches(forward, threat, batches, batch_size, seed, num_classes, model_name, start)


def run_batches(
    forward: Forward,
    threat,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    batch_size: int,
    seed: int,
    num_classes: int,
    model_name: str,
    start: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Per-example results of one chunk's ``batches`` (streamed, on the device), generator seeded by ``seed``;
    ``start`` is the split position of the chunk's first example (threats that read per-example files use it).
    ``on_batch(n)`` is called after each batch of ``n`` examples (live progress inside a chunk, which can
    take minutes).

    A batch that runs out of device memory is run again from the same generator state with the model's
    forwards halved (:meth:`Forward.halve`), until it fits: the threat sees the same batch, so the same
    verdicts. A SIGINT/SIGTERM ends the run at a batch boundary (:mod:`robench.engine.stop`).
    """
    generator = torch.Generator().manual_seed(seed)
    parts: list[dict[str, np.ndarray]] = []
    for xb, yb in batches:
        ctx = BatchContext(generator=generator, batch_size=batch_size, start=start)
        state = generator.get_state()
        while True:
            try:
                parts.append(_run_batch(forward.model, threat, xb, yb, ctx, num_classes, model_name))
                break
            except torch.OutOfMemoryError:
                forward.halve(len(xb))
                generator.set_state(state)
                if xb.is_cuda:
                    torch.cuda.empty_cache()
        start += len(xb)
        if on_batch is not None:
            on_batch(len(xb))
        stop.check()
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _run_batch(model, threat, xb, yb, ctx, num_classes, model_name) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        logits = model(xb)
    check_logits(logits, len(xb), num_classes, model_name)
    clean_correct = predicted(model, xb, logits, yb) == yb
    out = threat.run_batch(model, xb, yb, clean_correct, ctx)
    out = {k: v.detach().cpu().numpy() for k, v in out.items()}
    out["clean_correct"] = clean_correct.cpu().numpy()
    out["robust_claimed"] = out["robust"].astype(bool)
    out["robust"] = out["robust_claimed"] & out["clean_correct"]
    return out


def _bounds(spec: RunSpec) -> list[tuple[int, int]]:
    n_chunks = (spec.n + spec.chunk_size - 1) // spec.chunk_size
    return [(c * spec.chunk_size, min(spec.n, (c + 1) * spec.chunk_size)) for c in range(n_chunks)]


def _compute(spec: RunSpec, queue: ChunkQueue, partial: Path | None) -> tuple[Chunks, int]:
    """This process's chunks (read back from ``partial`` when already there) and how many examples it
    computed rather than read; progress per batch on rank 0 (:mod:`robench.engine.progress`)."""
    bounds = _bounds(spec)
    mine: Chunks = {}
    computed = 0
    todo = sum(bounds[c][1] - bounds[c][0] for c in queue.chunks)
    identity = chunk_identity(spec.identity, spec.threat.state_fingerprint())
    mode = "none" if queue.rank else spec.options.progress
    with Progress(todo, f"{spec.model_name} | {spec.threat_name}", mode) as progress:
        for c in queue:
            lo, hi = bounds[c]
            path = partial / f"chunk-{c:05d}.npz" if partial else None
            stats = load_chunk(path, hi - lo, identity) if path else None
            if stats is None:
                batches = stream_batches(spec.examples, lo, hi, spec.batch_size, spec.device, spec.workers)
                stats = run_batches(
                    spec.forward,
                    spec.threat,
                    batches,
                    spec.batch_size,
                    chunk_seed(spec.options.seed, c),
                    spec.num_classes,
                    spec.model_name,
                    start=lo,
                    on_batch=progress.advance,
                )
                computed += hi - lo
                if path:
                    save_chunk(path, stats, identity)
            else:
                progress.advance(hi - lo, computed=False)
            mine[c] = stats
            progress.catch_up(queue.finished(hi - lo))
    return mine, computed


def _record(spec: RunSpec, stats: dict[str, np.ndarray], world_size: int, timing: dict) -> rec.RunRecord:
    threat = spec.threat
    flags = list(threat.flags(stats)) + randomised_flags(spec.model.module)
    if (stats["robust_claimed"] & ~stats["clean_correct"]).any():
        flags.append(
            "robust_above_clean: the threat reported misclassified examples as robust (counted as not robust)"
        )
    return rec.RunRecord(
        model=spec.model_name,
        dataset=spec.dataset,
        threat=spec.threat_name,
        family=threat.family,
        threat_config=spec.identity["config"],
        config_hash=spec.config_hash,
        n_examples=spec.n,
        clean_acc=float(stats["clean_correct"].mean()),
        robust_acc=float(stats["robust"].mean()),
        per_example=rec.bits(stats["robust"]),
        clean_per_example=rec.bits(stats["clean_correct"]),
        indices={
            "split": spec.options.split,
            "start": 0,
            "stop": spec.n,
            **({"subset": spec.identity["subset"]} if "subset" in spec.identity else {}),
        },
        details=threat.summarize(stats),
        flags=flags,
        seed=spec.options.seed,
        device=describe_device(spec.device) + (f" x {world_size} ranks" if world_size > 1 else ""),
        batch_size=spec.batch_size,
        chunk_size=spec.chunk_size,
        model_meta=spec.model.meta,
        versions=versions(spec.device),
        execution=spec.forward.record_fields(),
        **timing,
    )


def _write(spec: RunSpec, record: rec.RunRecord, partial: Path) -> None:
    """The record and the threat's artifacts next to it; then the chunks are no longer needed."""
    record_path = spec.record_path()
    for suffix, blob in spec.threat.artifacts().items():
        artifact = record_path.with_name(f"{spec.threat_name}.{suffix}")
        rec.atomic_write_bytes(artifact, blob)
        record.artifacts[suffix] = artifact.name
    rec.save(record, spec.options.out_dir)
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.parent.rmdir()  # the .partial folder, once no other run uses it
    except OSError:
        pass


IDENTITY_FILE = "identity.json"


def _changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The paths of the identity entries that differ, e.g. ``model_identity.normalization``."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changes(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def _start_partial(spec: RunSpec, partial: Path, clean: bool) -> None:
    """Make this run's chunk folder, naming its identity, and deal with folders of the same record whose
    identity differs (the run changed after an interruption: a corrected card, another module, other
    options): one line each saying what changed; they are never resumed (their folder name carries their
    hash), and a run that holds the record's lock (``clean``) removes them."""
    for other in sorted(partial.parent.glob(f"{spec.threat_name}-*")) if partial.parent.is_dir() else []:
        if other == partial or other.name.rpartition("-")[0] != spec.threat_name:
            continue
        try:
            old = json.loads((other / IDENTITY_FILE).read_text())
            what = ", ".join(_changes(old, spec.identity)) or "nothing recorded"
        except (OSError, ValueError):
            what = "its identity is unreadable"
        print(
            f"robench: {spec.model_name} | {spec.threat_name}: the run changed since the chunks in {other} "
            f"were computed ({what}): computing afresh" + ("; removing them" if clean else ""),
            file=sys.stderr,
        )
        if clean:
            shutil.rmtree(other, ignore_errors=True)
    rec.atomic_write_bytes(partial / IDENTITY_FILE, json.dumps(spec.identity, sort_keys=True).encode())


def run(spec: RunSpec, *, started: float, started_at: str) -> rec.RunRecord | ShardResult:
    """Compute (or resume) every chunk of a resolved run and return its record, written to
    ``spec.options.out_dir`` when given; with ``spec.options.shard``, only that task's chunks, kept on disk.

    A run that writes a record holds the record's lock (:mod:`robench.core.locks`) from its first chunk to
    the record, so a second run of the same record is refused instead of racing it; job-array shards take
    no lock, since they compute different chunks of one record on purpose.
    """
    options = spec.options
    if options.out_dir is None or options.shard is not None or world()[0] != 0:
        return _run(spec, started, started_at, owner=False)
    path = spec.record_path()
    with locks.lock(path.with_name(f".{path.name}.lock"), f"record {path}"):
        return _run(spec, started, started_at, owner=True)


def _run(spec: RunSpec, started: float, started_at: str, owner: bool) -> rec.RunRecord | ShardResult:
    """``owner``: this process holds the record's lock (and may clear other runs' stale chunks)."""
    shard = spec.options.shard
    partial = spec.partial_dir() if spec.options.out_dir is not None else None
    if partial is not None and world()[0] == 0:
        _start_partial(spec, partial, clean=owner)
    bounds = _bounds(spec)
    queue = ChunkQueue(c for c in range(len(bounds)) if shard is None or c % shard[1] == shard[0])
    loop_start = time.time()
    mine, computed = _compute(spec, queue, partial)
    if shard is not None:
        return ShardResult(spec.threat_name, shard, tuple(sorted(mine)), partial)
    gathered = queue.gather((mine, computed))  # every rank's chunks, once all are done
    results = {c: chunk for chunks, _ in gathered for c, chunk in chunks.items()}
    computed = sum(count for _, count in gathered)
    if computed < spec.n and queue.rank == 0 and spec.options.progress != "none":
        print(
            f"robench: {spec.model_name} | {spec.threat_name}: "
            f"resumed {spec.n - computed} of {spec.n} examples "
            f"from {partial}",
            file=sys.stderr,
        )
    loop_time = time.time() - loop_start
    stats = {k: np.concatenate([results[c][k] for c in range(len(bounds))]) for k in results[0]}
    record = _record(
        spec,
        stats,
        queue.world_size,
        {
            "started_at": started_at,
            "duration_s": round(time.time() - started, 3),
            "examples_per_s": round(computed / loop_time, 3) if computed and loop_time > 0 else 0.0,
        },
    )
    if spec.options.out_dir is not None and queue.rank == 0:
        _write(spec, record, partial)
    return record
