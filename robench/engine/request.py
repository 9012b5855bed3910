"""One model under several threats, as the ``robench eval`` command asks for it.

The CLI only turns its options into an :class:`EvalRequest`; this module checks the whole request
before any heavy work (every threat's parameters, the data, the output folder), so that a bad option
fails in one line and changes nothing on disk, then joins the ``torchrun`` process group when there is
one and evaluates the threats in order with the model loaded once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

from robench.core.errors import UsageError
from robench.core.record import RunRecord
from robench.datasets import create_dataset
from robench.engine import evaluate
from robench.engine.forward import Speed
from robench.engine.loop import ShardResult
from robench.engine.plan import check_workers
from robench.models import check_dataset, create_model, load_card
from robench.runtime import distributed
from robench.runtime.devices import resolve_device
from robench.threats import create_threat


@dataclasses.dataclass(frozen=True)
class EvalRequest:
    """A model (a card name or any spec of :mod:`robench.models.specs`) and threat names, with
    :func:`robench.engine.evaluate`'s options."""

    model: str
    threats: tuple[str, ...]
    out_dir: Path
    dataset: str | None = None  # default: the card's
    split: str = "test"
    n_examples: int | None = None
    batch_size: int | None = None
    chunk_size: int | None = None
    device: str = "auto"
    seed: int = 0
    overrides: dict = dataclasses.field(default_factory=dict)
    data_dir: str | None = None
    allow_pickle: bool = False
    shard: tuple[int, int] | None = None
    weights: str | None = None  # a local file for a timm:/torchvision: spec (#11)
    subset_file: str | None = None  # ImageNet images to evaluate, one per line (#11)
    workers: int | None = None
    speed: Speed = Speed()


def writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create output directory {path}: {e.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {path} is not writable: choose another")
    return path


def run_request(request: EvalRequest) -> Iterator[RunRecord | ShardResult]:
    """Each threat's record (or, for a job-array task, its :class:`ShardResult`), in order, as soon as it is
    done; under ``torchrun`` every rank computes, and only rank 0 yields."""
    card = load_card(request.model, weights=request.weights)
    dataset = request.dataset or card.dataset
    check_dataset(card, dataset)
    check_workers(request.workers)
    for name in request.threats:  # validate every threat before any work
        create_threat(name, dataset, **request.overrides)
    device = resolve_device(request.device)
    out = writable_dir(request.out_dir)
    # missing data fails here, before any heavy work
    create_dataset(
        dataset,
        request.split,
        request.data_dir,
        preprocessing=card.preprocessing,
        subset_file=request.subset_file,
    )
    with distributed.process_group(device) as device:  # under torchrun: join the group, one GPU per rank
        lead = distributed.world()[0] == 0
        model = create_model(card, device=device, allow_pickle=request.allow_pickle)
        for name in request.threats:
            result = evaluate(
                model,
                name,
                dataset,
                n_examples=request.n_examples,
                batch_size=request.batch_size,
                device=device,
                seed=request.seed,
                split=request.split,
                data_dir=request.data_dir,
                out_dir=out,
                chunk_size=request.chunk_size,
                overrides=request.overrides,
                model_name=card.name,
                shard=request.shard,
                subset_file=request.subset_file,
                workers=request.workers,
                precision=request.speed.precision,
                channels_last=request.speed.channels_last,
                compile=request.speed.compile,
            )
            if lead:
                yield result
