"""The one evaluation loop: (model, threat, options) -> one run record.

A run is three steps, each in its own module:

- :mod:`robench.engine.spec` resolves the model, the threat and the :class:`RunOptions` once (names to
  objects, defaults, checks) into a frozen :class:`RunSpec` whose identity hash names the run;
- :mod:`robench.engine.fitting` prepares the threat: a threat that fits on data gets the dataset's fit
  split, the process group's operations and the cache of fitted results from here, never by itself;
- :mod:`robench.engine.loop` runs the seeded, resumable chunks (sharded over ``torchrun`` ranks or
  job-array tasks) and writes the record.

:func:`evaluate` is that, for one threat; :func:`robench.engine.request.run_threats` is it for several
threats on a model loaded once (``robench eval``, ``robench submit``).
"""

from __future__ import annotations

import datetime as _dt
import time

from torch import nn

from robench.core import record as rec
from robench.engine import fitting, loop
from robench.engine.loop import ShardResult, chunk_seed, run_chunk
from robench.engine.spec import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_SIZE,
    LoadedModel,
    RunOptions,
    RunSpec,
    resolve,
)
from robench.runtime.devices import describe_device, resolve_device, versions
from robench.threats import Threat

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "RunOptions",
    "RunSpec",
    "ShardResult",
    "chunk_seed",
    "describe_device",
    "evaluate",
    "execute",
    "resolve",
    "resolve_device",
    "run_chunk",
    "versions",
]


def execute(spec: RunSpec, started: float | None = None) -> rec.RunRecord | ShardResult:
    """Prepare the threat (fit data, corrupted sets) and run the chunks of ``spec``; ``started`` is when
    the caller began (loading counts in the record's ``duration_s``)."""
    started = time.time() if started is None else started
    started_at = _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds")
    fitting.prepare(spec)
    return loop.run(spec, started=started, started_at=started_at)


def evaluate(
    model: str | nn.Module | LoadedModel,
    threat: str | Threat,
    dataset: str | None = None,
    **options,
) -> rec.RunRecord | ShardResult:
    """Evaluate ``model`` (a card name or any model spec, or an ``nn.Module`` taking [0,1] pixels) under
    ``threat`` (a name or a :class:`~robench.threats.Threat`) on ``dataset``: by default, as on the command
    line, the dataset the card's is judged on (``mnist``'s official test images for a zoo model, which was
    trained on ``mnist5k``); a module without a card must name one.

    ``options`` are the fields of :class:`~robench.engine.spec.RunOptions` (``n_examples``, ``seed``,
    ``out_dir``, ``shard``, ``speed``, ...), checked when they are made. Returns the record, or for a
    ``shard=(i, n)`` call the :class:`ShardResult` naming the chunks it left on disk. Under ``torchrun``
    every rank makes the same call and gets the same record; rank 0 writes it.
    """
    started = time.time()
    return execute(resolve(model, threat, RunOptions(dataset=dataset, **options)), started)
