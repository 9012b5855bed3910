"""The chunk loop: a resolved :class:`~robench.engine.plan.Plan` -> per-example results -> one record.

Work is split into fixed-size chunks of the evaluation subset. Each chunk is seeded by (seed, chunk id),
so its result does not depend on which process computes it or on what ran before; each finished chunk's
per-example results are written to disk, so an interrupted run resumes where it stopped and ends with the
same record as an uninterrupted one (docs/reliability.md). The chunk files live in the plan's
``partial_dir`` and are removed once the record is written.

Because chunks are independent, the same loop shards over processes: under ``torchrun`` the ranks take
chunks from a shared queue and rank 0 writes the record from everyone's results
(:mod:`robench.runtime.distributed`);
a cluster job-array task computes only its ``shard`` of the chunks (a :class:`ShardResult`), and the same
call without ``shard`` then finds them all on disk and writes the record.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from robench.core import locks
from robench.core import record as rec
from robench.core.errors import EvaluationError, UsageError
from robench.datasets import stream_batches
from robench.engine import stop
from robench.engine.chunks import chunk_identity, load_chunk, save_chunk
from robench.engine.forward import Forward
from robench.engine.plan import Plan
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


def check_shard(shard: tuple[int, int] | None, out_dir) -> None:
    if shard is None:
        return
    if not (len(shard) == 2 and 0 <= shard[0] < shard[1]):
        raise UsageError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
    if out_dir is None:
        raise UsageError("a shard's chunks are only useful on disk: give an output directory")


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
    of its first example in the split), with its generator seeded by ``seed``; needs no plan, so
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
) -> dict[str, np.ndarray]:
    """Per-example results of one chunk's ``batches`` (streamed, on the device), generator seeded by ``seed``;
    ``start`` is the split position of the chunk's first example (threats that read per-example files use it).

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


def _bounds(plan: Plan) -> list[tuple[int, int]]:
    n_chunks = (plan.n + plan.chunk_size - 1) // plan.chunk_size
    return [(c * plan.chunk_size, min(plan.n, (c + 1) * plan.chunk_size)) for c in range(n_chunks)]


def _compute(
    plan: Plan, queue: ChunkQueue, partial: Path | None, progress: bool | None
) -> tuple[Chunks, int]:
    """This process's chunks (read back from ``partial`` when already there) and how many examples it
    computed rather than read."""
    bounds = _bounds(plan)
    mine: Chunks = {}
    computed = 0
    todo = sum(bounds[c][1] - bounds[c][0] for c in queue.chunks)
    identity = chunk_identity(plan.identity, plan.threat.state_fingerprint())
    with tqdm(
        total=todo,
        desc=f"{plan.model_name} | {plan.threat_name}",
        unit="ex",
        file=sys.stderr,
        leave=False,
        disable=True if queue.rank else (None if progress is None else not progress),
    ) as bar:
        for c in queue:
            lo, hi = bounds[c]
            path = partial / f"chunk-{c:05d}.npz" if partial else None
            stats = load_chunk(path, hi - lo, identity) if path else None
            if stats is None:
                batches = stream_batches(plan.examples, lo, hi, plan.batch_size, plan.device, plan.workers)
                stats = run_batches(
                    plan.forward,
                    plan.threat,
                    batches,
                    plan.batch_size,
                    chunk_seed(plan.seed, c),
                    plan.num_classes,
                    plan.model_name,
                    start=lo,
                )
                computed += hi - lo
                if path:
                    save_chunk(path, stats, identity)
            mine[c] = stats
            bar.update(queue.finished(hi - lo) - bar.n)
    return mine, computed


def _record(plan: Plan, stats: dict[str, np.ndarray], world_size: int, timing: dict) -> rec.RunRecord:
    threat = plan.threat
    flags = list(threat.flags(stats))
    if (stats["robust_claimed"] & ~stats["clean_correct"]).any():
        flags.append(
            "robust_above_clean: the threat reported misclassified examples as robust (counted as not robust)"
        )
    return rec.RunRecord(
        model=plan.model_name,
        dataset=plan.dataset,
        threat=plan.threat_name,
        family=threat.family,
        threat_config=plan.identity["config"],
        config_hash=plan.config_hash,
        n_examples=plan.n,
        clean_acc=float(stats["clean_correct"].mean()),
        robust_acc=float(stats["robust"].mean()),
        per_example=rec.bits(stats["robust"]),
        clean_per_example=rec.bits(stats["clean_correct"]),
        indices={
            "split": plan.split,
            "start": 0,
            "stop": plan.n,
            **({"subset": plan.identity["subset"]} if "subset" in plan.identity else {}),
        },
        details=threat.summarize(stats),
        flags=flags,
        seed=plan.seed,
        device=describe_device(plan.device) + (f" x {world_size} ranks" if world_size > 1 else ""),
        batch_size=plan.batch_size,
        chunk_size=plan.chunk_size,
        model_meta=plan.card.meta() if plan.card else {},
        versions=versions(plan.device),
        execution=plan.forward.record_fields(),
        **timing,
    )


def _write(plan: Plan, record: rec.RunRecord, out_dir, partial: Path) -> None:
    """The record and the threat's artifacts next to it; then the chunks are no longer needed."""
    record_path = plan.record_path(out_dir)
    for suffix, blob in plan.threat.artifacts().items():
        artifact = record_path.with_name(f"{plan.threat_name}.{suffix}")
        rec.atomic_write_bytes(artifact, blob)
        record.artifacts[suffix] = artifact.name
    rec.save(record, out_dir)
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.parent.rmdir()  # the .partial folder, once no other run uses it
    except OSError:
        pass


def run(
    plan: Plan,
    *,
    out_dir,
    shard: tuple[int, int] | None,
    progress: bool | None,
    started: float,
    started_at: str,
) -> rec.RunRecord | ShardResult:
    """Compute (or resume) every chunk of a prepared plan and return its record, written to ``out_dir``
    when given; with ``shard``, only that task's chunks, kept on disk.

    A run that writes a record holds the record's lock (:mod:`robench.core.locks`) from its first chunk to the
    record, so a second run of the same record is refused instead of racing it; job-array shards take no
    lock, since they compute different chunks of one record on purpose.
    """
    kwargs = dict(out_dir=out_dir, shard=shard, progress=progress, started=started, started_at=started_at)
    if out_dir is None or shard is not None or world()[0] != 0:
        return _run(plan, **kwargs)
    path = plan.record_path(out_dir)
    with locks.lock(path.with_name(f".{path.name}.lock"), f"record {path}"):
        return _run(plan, **kwargs)


def _run(
    plan: Plan,
    *,
    out_dir,
    shard: tuple[int, int] | None,
    progress: bool | None,
    started: float,
    started_at: str,
) -> rec.RunRecord | ShardResult:
    partial = plan.partial_dir(out_dir) if out_dir is not None else None
    bounds = _bounds(plan)
    queue = ChunkQueue(c for c in range(len(bounds)) if shard is None or c % shard[1] == shard[0])
    loop_start = time.time()
    mine, computed = _compute(plan, queue, partial, progress)
    if shard is not None:
        return ShardResult(plan.threat_name, shard, tuple(sorted(mine)), partial)
    gathered = queue.gather((mine, computed))  # every rank's chunks, once all are done
    results = {c: chunk for chunks, _ in gathered for c, chunk in chunks.items()}
    computed = sum(count for _, count in gathered)
    if computed < plan.n and queue.rank == 0 and progress is not False:
        print(
            f"robench: {plan.model_name} | {plan.threat_name}: "
            f"resumed {plan.n - computed} of {plan.n} examples "
            f"from {partial}",
            file=sys.stderr,
        )
    loop_time = time.time() - loop_start
    stats = {k: np.concatenate([results[c][k] for c in range(len(bounds))]) for k in results[0]}
    record = _record(
        plan,
        stats,
        queue.world_size,
        {
            "started_at": started_at,
            "duration_s": round(time.time() - started, 3),
            "examples_per_s": round(computed / loop_time, 3) if computed and loop_time > 0 else 0.0,
        },
    )
    if out_dir is not None and queue.rank == 0:
        _write(plan, record, out_dir, partial)
    return record
