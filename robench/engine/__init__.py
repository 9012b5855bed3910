"""The one evaluation loop: (model, threat, dataset) -> one run record.

:func:`evaluate` is three steps, each in its own module:

- :mod:`robench.engine.plan` resolves the arguments once (names to objects, defaults, checks) into a
  frozen :class:`Plan` whose identity hash names the run;
- :mod:`robench.engine.fitting` prepares the threat: a threat that fits on data gets the dataset's fit
  split, the process group's operations and the cache of fitted results from here, never by itself;
- :mod:`robench.engine.loop` runs the seeded, resumable chunks (sharded over ``torchrun`` ranks or
  job-array tasks) and writes the record.
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path

import torch
from torch import nn

from robench.core import record as rec
from robench.datasets import example_labels
from robench.engine import fitting, loop
from robench.engine.forward import Speed
from robench.engine.loop import ShardResult, chunk_seed, run_chunk
from robench.engine.plan import DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_SIZE, Plan, make_plan
from robench.runtime.devices import describe_device, resolve_device, versions
from robench.threats import Threat

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "Plan",
    "ShardResult",
    "chunk_seed",
    "describe_device",
    "evaluate",
    "make_plan",
    "resolve_device",
    "run_chunk",
    "versions",
]


def evaluate(
    model: str | nn.Module,
    threat: str | Threat,
    dataset: str = "mnist5k",
    n_examples: int | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    *,
    split: str = "test",
    data_dir: str | None = None,
    out_dir: str | Path | None = None,
    chunk_size: int | None = None,
    overrides: dict | None = None,
    allow_pickle: bool = False,
    progress: bool | None = None,
    model_name: str | None = None,
    shard: tuple[int, int] | None = None,
    subset_file: str | Path | None = None,
    workers: int | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
) -> rec.RunRecord | ShardResult:
    """Evaluate ``model`` under ``threat`` on the first ``n_examples`` of ``dataset``/``split``.

    With ``out_dir``, finished chunks are kept on disk until the record is written there, so the same
    call after an interruption resumes. With ``shard=(i, n)`` (task i of a job array of n), only chunks
    c with c % n == i are computed and kept in ``out_dir``, and a :class:`ShardResult` naming them is
    returned instead of a record. Under ``torchrun`` every rank makes the same call and gets the same
    record; rank 0 writes it. ``subset_file`` lists the ImageNet images to evaluate instead of the split's
    rule (:mod:`robench.datasets.imagenet`); the record's ``indices`` then name it.

    ``workers`` decode processes feed each chunk's batches (default: none for in-memory datasets, else one
    per core up to 8). ``precision="bf16"``, ``channels_last`` and ``compile`` ask for the fast path, which
    families with argmax verdicts take with every close verdict re-checked in fp32 (records equal to fp32's;
    docs/performance.md); the others run in fp32.
    """
    started = time.time()
    started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    loop.check_shard(shard, out_dir)
    plan = make_plan(
        model,
        threat,
        dataset,
        n_examples,
        batch_size,
        device,
        seed,
        split=split,
        data_dir=data_dir,
        chunk_size=chunk_size,
        overrides=overrides,
        allow_pickle=allow_pickle,
        model_name=model_name,
        subset_file=subset_file,
        workers=workers,
        speed=Speed(precision, channels_last, compile),
    )
    fitting.prepare(
        plan.threat,
        plan.model,
        plan.dataset,
        plan.split,
        plan.data_dir,
        plan.device,
        plan.seed,
        labels=example_labels(plan.examples) if plan.threat.reads_corrupted_set else None,
        subset_file=plan.subset_file,
    )
    return loop.run(
        plan, out_dir=out_dir, shard=shard, progress=progress, started=started, started_at=started_at
    )
