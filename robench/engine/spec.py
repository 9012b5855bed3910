"""A run, specified once: (model, threat, options) resolved into one frozen :class:`RunSpec` whose identity
covers everything that decides a verdict.

Every way robench starts a run goes through this module: ``robench eval`` and :func:`robench.evaluate`,
``robench submit`` and ``submit --list``, ``robench verify``, every ``torchrun`` rank and every ``--shard``
task. :class:`RunOptions` holds what the caller asks for and is validated when it is made;
:func:`check_run` checks a model and its threats against the options before any heavy work (one line, nothing
written); :func:`load_model` loads a model once for several threats; :func:`resolve` makes the
:class:`RunSpec` of one threat.

The identity (``RunSpec.identity``, hashed into the record's ``config_hash``, naming the folder of resumable
chunks) holds:

- the model's content (:func:`model_meta`): for a card, the weights' sha256 (or the library file's), the
  architecture and its kwargs, the library, normalisation, preprocessing, class count, input size,
  trained-on dataset and a test-time defense (robench.models.vote); for an in-memory module without a
  card, its class's qualified name and a fingerprint of every parameter and buffer. A card's cosmetic
  fields (:data:`robench.core.record.COSMETIC_META`) stay out, so renaming a display name never
  invalidates a result;
- the resolved threat configuration and family;
- the data: dataset, split, how many examples, a subset file's name and sha256;
- the seed, the batch and chunk sizes (they set the chunks' draws), and a gradient search on the fast path
  (``execution.search``), whose trajectory is not fp32's.

Everything else in :class:`RunOptions` (device, decode workers, data folder, output folder, shard, progress,
``allow_pickle``, and the fast path for argmax families, whose verdicts are fp32's) never changes a verdict:
:data:`OUTSIDE_IDENTITY` lists those fields, and ``tests/test_identity.py`` checks that every other field
changes the identity and these do not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from robench.core import record as rec
from robench.core.errors import UsageError
from robench.datasets import (
    create_dataset,
    dataset_info,
    default_eval_dataset,
    default_workers,
    first_examples,
)
from robench.datasets.imagenet import subset_identity
from robench.engine.forward import Forward, Speed
from robench.engine.progress import progress_mode
from robench.models import ModelCard, check_dataset, create_model, exported, load_card
from robench.models.specs import SpecFlags
from robench.runtime.devices import resolve_device
from robench.threats import Threat, create_threat

DEFAULT_BATCH_SIZE = 256
DEFAULT_CHUNK_SIZE = 500

#: Fields of :class:`RunOptions` that never decide a verdict, so they stay out of the identity (see the
#: module docstring; ``speed`` enters only as ``execution.search``, for a gradient search on the fast path).
OUTSIDE_IDENTITY = (
    "device",
    "data_dir",
    "workers",
    "allow_pickle",
    # how a spec's card is made (a library spec's local weights file, an import-path spec's normalisation
    # and kwargs): they reach the identity through that card's model_meta, and a module ignores them
    "weights",
    "normalization",
    "arch_kwargs",
    "out_dir",
    "shard",
    "progress",
)


def _positive(label: str, value) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise UsageError(f"{label} must be a positive integer, got {value!r}")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What a caller asks of a run besides the model and the threat; validated when made.

    ``dataset`` None means the one the card's dataset is judged on (mnist for mnist5k); ``n_examples``
    None the whole split; ``batch_size`` and ``chunk_size`` None the defaults. ``overrides`` are threat
    parameters (``--set``) and apply to threat names. ``weights`` is a local file for a ``timm:``/
    ``torchvision:`` spec or an import-path spec (``package.module:Class``, ``file.py:Class``), which also
    takes ``normalization`` and ``arch_kwargs``. ``model_name`` names the records of an in-memory module
    (default: its class name and a short fingerprint). With ``out_dir``, finished chunks are kept until the
    record is written there, so the same call after an interruption resumes;
    ``shard=(i, n)`` computes only chunks c with c % n == i into ``out_dir`` and writes no record.
    ``progress`` is "auto" (a bar when stderr is a terminal, else a log line at least every 30 s), "bar",
    "log" or "none"; ``False`` means "none" and ``None``/``True`` "auto" (it is stored as the mode).
    """

    dataset: str | None = None
    split: str = "test"
    n_examples: int | None = None
    batch_size: int | None = None
    chunk_size: int | None = None
    seed: int = 0
    overrides: Mapping = dataclasses.field(default_factory=dict)
    subset_file: str | os.PathLike | None = None
    speed: Speed = Speed()
    model_name: str | None = None
    device: str | torch.device | None = None
    data_dir: str | os.PathLike | None = None
    workers: int | None = None
    allow_pickle: bool = False
    weights: str | os.PathLike | None = None
    normalization: str | None = None
    arch_kwargs: Mapping = dataclasses.field(default_factory=dict)
    out_dir: str | os.PathLike | None = None
    shard: tuple[int, int] | None = None
    progress: str | bool | None = None

    def __post_init__(self):
        object.__setattr__(self, "progress", progress_mode(self.progress))
        for label in ("n_examples", "batch_size", "chunk_size"):
            _positive(label, getattr(self, label))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise UsageError(f"seed must be an integer, got {self.seed!r}")
        workers = self.workers
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 0):
            raise UsageError(
                f"workers must be an integer >= 0 (decode processes; 0: decode in this one), got {workers!r}"
            )
        if not isinstance(self.speed, Speed):
            raise UsageError(f"speed must be a robench.engine.forward.Speed, got {self.speed!r}")
        if self.shard is not None:
            i, n = self.shard
            if not (isinstance(i, int) and isinstance(n, int) and 0 <= i < n):
                raise UsageError(f"shard must be (i, n) with 0 <= i < n, got {self.shard!r}")
            if self.out_dir is None:
                raise UsageError("a shard's chunks are only useful on disk: give an output directory (--out)")
        if self.model_name is not None:
            rec.check_name("model", self.model_name)


# --- the model ----------------------------------------------------------------------------------------------


def module_fingerprint(module: nn.Module) -> str:
    """sha256 of the module's class (qualified name) and every parameter and buffer, by name, dtype, shape
    and bytes: the function itself, whatever describes it."""
    cls = type(module)
    digest = hashlib.sha256(f"{cls.__module__}.{cls.__qualname__}".encode())
    for key, tensor in module.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _module_normalization(module: nn.Module) -> dict | None:
    """The mean/std a :class:`~robench.models.Classifier` applies inside, else None (any other module
    takes [0,1] pixels as they are, or normalises in ways its fingerprint covers)."""
    mean, std = getattr(module, "mean", None), getattr(module, "std", None)
    if isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor):
        return {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    return None


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model ready to run: the module (eval mode, frozen, on its device), the name its records carry,
    its card (None for an in-memory module without one) and ``meta``, what the record keeps of it
    (``model_meta``; its non-cosmetic part is the model's identity)."""

    module: nn.Module
    name: str
    card: ModelCard | None
    meta: dict

    @property
    def identity(self) -> dict:
        return rec.model_identity(self.meta)


def model_meta(module: nn.Module) -> dict:
    """``model_meta`` of a module: its card's (:meth:`ModelCard.meta`), or for a module without a card its
    class, the fingerprint of its tensors and the normalisation it applies."""
    card = getattr(module, "card", None)
    if card is not None:
        return card.meta()
    cls = type(module)
    return {
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "fingerprint": module_fingerprint(module),
        "normalization": _module_normalization(module),
    }


def _card(model: str | ModelCard | nn.Module, options: RunOptions) -> ModelCard | None:
    """The card of a name, spec or card (its weights not read yet); a module's own card, if any."""
    if isinstance(model, str) and exported.is_exported(model):
        return None
    if isinstance(model, str):
        flags = SpecFlags(options.dataset, options.normalization, dict(options.arch_kwargs))
        return load_card(model, weights=options.weights, flags=flags)
    return model if isinstance(model, ModelCard) else getattr(model, "card", None)


def load_model(
    model: str | ModelCard | nn.Module | LoadedModel, options: RunOptions, device: torch.device
) -> LoadedModel:
    """A card name, spec or card file (loaded, sha256-checked) or an in-memory module, ready on ``device``.

    Two modules of one class get different default names (the class name and 8 hex digits of the
    fingerprint), so they never share an output folder or resume each other's chunks.
    """
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, str) and exported.is_exported(model):
        module, meta = exported.load(model, options.allow_pickle, options.dataset)
        module = module.to(device)
        return LoadedModel(
            module, rec.check_name("model", options.model_name or exported.name_of(model)), None, meta
        )
    if isinstance(model, nn.Module):
        module = model.to(device).eval().requires_grad_(False)
    else:
        module = create_model(_card(model, options), device=device, allow_pickle=options.allow_pickle)
    card = getattr(module, "card", None)
    meta = model_meta(module)
    default = card.name if card is not None else f"{type(module).__name__}-{meta['fingerprint'][:8]}"
    return LoadedModel(module, rec.check_name("model", options.model_name or default), card, meta)


# --- checking before any work -------------------------------------------------------------------------


def writable_dir(path: str | os.PathLike) -> Path:
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create output directory {path}: {e.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {path} is not writable: choose another")
    return path


def check_run(
    model: str | ModelCard | nn.Module, threats: list[str | Threat], options: RunOptions
) -> RunOptions:
    """Everything that can be checked before the weights load: the card (when ``model`` names one), the
    dataset it runs on, every threat's parameters, the device, the output folder and the data. Returns the
    options with the dataset filled in (when none was asked for, the one the card's dataset is judged on:
    :func:`~robench.datasets.default_eval_dataset`). One line, nothing written, on the first problem."""
    card = _card(model, options)
    dataset = options.dataset or (default_eval_dataset(card.dataset) if card is not None else None)
    if dataset is None:
        raise UsageError("a model without a card (a module, an exported program) needs a dataset (--dataset)")
    if isinstance(model, str) and exported.is_exported(model):
        exported.check(model, options.allow_pickle)
    if card is not None:
        check_dataset(card, dataset)
    for threat in threats:
        _threat(threat, dataset, options.overrides)
    resolve_device(options.device)
    if options.out_dir is not None:
        writable_dir(options.out_dir)
    create_dataset(
        dataset,
        options.split,
        options.data_dir,
        preprocessing=card.preprocessing if card is not None else None,
        subset_file=options.subset_file,
    )
    return dataclasses.replace(options, dataset=dataset)


def _threat(threat: str | Threat, dataset: str, overrides: Mapping) -> tuple[Threat, str]:
    if isinstance(threat, str):
        threat = create_threat(threat, dataset, **dict(overrides))
    elif overrides:
        raise UsageError("overrides apply to threat names, not to threat objects")
    return threat, rec.check_name("threat", threat.name or threat.family)


# --- the resolved run ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One (model, threat, dataset) evaluation, resolved.

    ``examples`` are the evaluated examples (the first ``n`` of the split), not decoded: the loop streams
    each chunk's batches to ``device`` through ``workers`` decode processes, so memory does not grow with
    ``n``. ``forward`` is how the threat's forwards run (:mod:`robench.engine.forward`). ``identity`` is
    everything that decides a verdict (module docstring); ``config_hash`` its hash, recorded and naming the
    folder of resumable chunks.
    """

    model: LoadedModel
    threat: Threat
    threat_name: str
    options: RunOptions  # dataset filled in
    num_classes: int
    examples: Dataset
    workers: int
    forward: Forward
    device: torch.device
    batch_size: int
    chunk_size: int
    identity: dict
    config_hash: str

    @property
    def n(self) -> int:
        return len(self.examples)

    @property
    def dataset(self) -> str:
        return self.options.dataset

    @property
    def model_name(self) -> str:
        return self.model.name

    def record_path(self) -> Path:
        return rec.path_for(self.options.out_dir, self.dataset, self.model_name, self.threat_name)

    def partial_dir(self) -> Path:
        """Where finished chunks wait for the record: one folder per identity, so a changed run never
        resumes from another's chunks."""
        return self.record_path().parent / ".partial" / f"{self.threat_name}-{self.config_hash}"


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


def resolve(
    model: str | ModelCard | nn.Module | LoadedModel, threat: str | Threat, options: RunOptions
) -> RunSpec:
    """The :class:`RunSpec` of ``threat`` on ``model`` (a name or spec, a module, or a model loaded once by
    :func:`load_model`) under ``options``."""
    device = resolve_device(options.device)
    if options.dataset is None:
        options = check_run(model.module if isinstance(model, LoadedModel) else model, [threat], options)
    loaded = load_model(model, options, device)
    if loaded.card is not None:
        check_dataset(loaded.card, options.dataset)
    threat, threat_name = _threat(threat, options.dataset, options.overrides)
    examples = first_examples(
        options.dataset,
        options.split,
        options.n_examples,
        options.data_dir,
        preprocessing=loaded.card.preprocessing if loaded.card is not None else None,
        subset_file=options.subset_file,
    )
    check_input(loaded.module, examples[0][0][None].to(device), options.dataset, loaded.name)
    forward = Forward.make(loaded.module, threat, options.speed, device, examples)
    batch_size = options.batch_size or DEFAULT_BATCH_SIZE
    chunk_size = options.chunk_size or DEFAULT_CHUNK_SIZE
    identity = rec.run_identity(
        model=loaded.name,
        model_identity=loaded.identity,
        dataset=options.dataset,
        split=options.split,
        n=len(examples),
        threat=threat_name,
        family=threat.family,
        config=threat.config(),
        seed=options.seed,
        batch_size=batch_size,
        chunk_size=chunk_size,
        subset=subset_identity(options.subset_file) if options.subset_file is not None else None,
        search=forward.search,
    )
    return RunSpec(
        model=loaded,
        threat=threat,
        threat_name=threat_name,
        options=options,
        num_classes=dataset_info(options.dataset).num_classes,
        examples=examples,
        workers=default_workers(examples) if options.workers is None else options.workers,
        forward=forward,
        device=device,
        batch_size=batch_size,
        chunk_size=chunk_size,
        identity=identity,
        config_hash=rec.config_hash(identity),
    )
