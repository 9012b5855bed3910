"""A run resolved once, before any work: names to objects, defaults filled, inputs checked, identity hashed.

Everything the chunk loop (:mod:`robench.engine.loop`) and the record need is decided here, so that a bad
argument fails in one line before anything is computed, and the run's identity (what its
``config_hash`` hashes, and so where its resumable chunks live) is computed in exactly one place.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from robench.core import record as rec
from robench.core.errors import UsageError
from robench.datasets import dataset_info, default_workers, first_examples
from robench.datasets.imagenet import subset_identity
from robench.engine.forward import Forward, Speed
from robench.models import ModelCard, check_dataset, create_model
from robench.runtime.devices import resolve_device
from robench.threats import Threat, create_threat

DEFAULT_BATCH_SIZE = 256
DEFAULT_CHUNK_SIZE = 500


@dataclasses.dataclass(frozen=True)
class Plan:
    """One (model, threat, dataset) evaluation, resolved.

    ``examples`` are the evaluated examples (the first ``n`` of ``split``), not decoded: the loop streams
    each chunk's batches to ``device`` through ``workers`` decode processes, so memory does not grow with
    ``n``. ``forward`` is how the threat's forwards run (precision, memory format, compile; see
    :mod:`robench.engine.forward`): it never changes a verdict, so it is not part of the identity, except
    a gradient search on the fast model (``forward.search``), whose trajectory is not fp32's.
    ``identity`` holds every input that can change a verdict, plus the chunk size (it sets the chunks'
    seeds) and the batch size; ``config_hash`` is its hash, recorded and used to name the chunk folder.
    """

    model: nn.Module
    model_name: str
    card: ModelCard | None
    threat: Threat
    threat_name: str
    dataset: str
    num_classes: int
    split: str
    data_dir: str | None
    subset_file: Path | None  # ImageNet images named by a file instead of the split's rule (#11)
    examples: Dataset
    workers: int
    forward: Forward
    device: torch.device
    seed: int
    batch_size: int
    chunk_size: int
    identity: dict
    config_hash: str

    @property
    def n(self) -> int:
        return len(self.examples)

    def record_path(self, out_dir: str | Path) -> Path:
        return rec.path_for(out_dir, self.dataset, self.model_name, self.threat_name)

    def partial_dir(self, out_dir: str | Path) -> Path:
        """Where finished chunks wait for the record: one folder per identity, so a changed run never
        resumes from another's chunks."""
        return self.record_path(out_dir).parent / ".partial" / f"{self.threat_name}-{self.config_hash}"


def _positive(label: str, value) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise UsageError(f"{label} must be a positive integer, got {value!r}")


def check_workers(workers) -> None:
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 0):
        raise UsageError(
            f"workers must be an integer >= 0 (decode processes; 0: decode in this one), got {workers!r}"
        )


def _model(model: str | nn.Module, device: torch.device, allow_pickle: bool, model_name: str | None):
    """(module on ``device`` in eval mode, its card or None, its validated name)."""
    if isinstance(model, str):
        model_name = model
        model = create_model(model, device=device, allow_pickle=allow_pickle)
    else:
        model = model.to(device).eval().requires_grad_(False)
    card = getattr(model, "card", None)
    return model, card, rec.check_name("model", model_name or (card.name if card else type(model).__name__))


def _threat(threat: str | Threat, dataset: str, overrides: dict | None) -> tuple[Threat, str]:
    if isinstance(threat, str):
        threat = create_threat(threat, dataset, **(overrides or {}))
    elif overrides:
        raise UsageError("overrides apply to threat names, not to threat objects")
    return threat, rec.check_name("threat", threat.name or threat.family)


def make_plan(
    model: str | nn.Module,
    threat: str | Threat,
    dataset: str,
    n_examples: int | None,
    batch_size: int | None,
    device: str | torch.device | None,
    seed: int,
    *,
    split: str,
    data_dir: str | None,
    chunk_size: int | None,
    overrides: dict | None,
    allow_pickle: bool,
    model_name: str | None,
    subset_file: str | Path | None = None,
    workers: int | None = None,
    speed: Speed | None = None,
) -> Plan:
    """Resolve :func:`robench.engine.evaluate`'s arguments (see there) into a :class:`Plan`."""
    for label, value in (("n_examples", n_examples), ("batch_size", batch_size), ("chunk_size", chunk_size)):
        _positive(label, value)
    dev = resolve_device(device)
    info = dataset_info(dataset)
    model, card, model_name = _model(model, dev, allow_pickle, model_name)
    if card is not None:
        check_dataset(card, dataset)
    threat, threat_name = _threat(threat, dataset, overrides)
    check_workers(workers)
    # ImageNet files are resized and cropped as the model's card says; a subset file picks the images
    preprocessing = card.preprocessing if card is not None else None
    examples = first_examples(
        dataset, split, n_examples, data_dir, preprocessing=preprocessing, subset_file=subset_file
    )
    check_input(model, examples[0][0][None].to(dev), dataset, model_name)
    forward = Forward.make(model, threat, speed or Speed(), dev, examples)
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    chunk_size = chunk_size or DEFAULT_CHUNK_SIZE
    identity = rec.run_identity(
        model=model_name,
        weights=card.meta() if card else None,
        dataset=dataset,
        split=split,
        n=len(examples),
        threat=threat_name,
        family=threat.family,
        config=threat.config(),
        seed=seed,
        batch_size=batch_size,
        chunk_size=chunk_size,
        subset=subset_identity(subset_file) if subset_file is not None else None,
        search=forward.search,
    )
    return Plan(
        model=model,
        model_name=model_name,
        card=card,
        threat=threat,
        threat_name=threat_name,
        dataset=dataset,
        num_classes=info.num_classes,
        split=split,
        data_dir=data_dir,
        subset_file=Path(subset_file) if subset_file is not None else None,
        examples=examples,
        workers=default_workers(examples) if workers is None else workers,
        forward=forward,
        device=dev,
        seed=seed,
        batch_size=batch_size,
        chunk_size=chunk_size,
        identity=identity,
        config_hash=rec.config_hash(identity),
    )


def check_input(model: nn.Module, x: torch.Tensor, dataset: str, model_name: str) -> None:
    """One forward of one example before any work, so a network built for other images (a 3-channel
    architecture on 1-channel MNIST, which a card can pair) is refused in one line naming the model and
    the image shape, rather than as torch's error at the first batch or deep inside a threat's fit."""
    try:
        with torch.inference_mode():
            model(x)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(
            f"model {model_name!r} cannot take {dataset} images of shape {tuple(x.shape[1:])} "
            f"(channels, height, width): {first}"
        ) from None
