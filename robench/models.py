"""Model cards -> ready classifiers taking [0,1] pixels.

A card (``configs/models/<name>.yaml``) names an architecture (timm by default, or torchvision), the
dataset it was trained for, its input normalisation and preprocessing, and its weights. A model can also be
named without a card (``timm:<name>``, ``torchvision:<name>``, a card file...): :mod:`robench.specs` turns
such a spec into a card, so the rest of robench sees cards only. Weights are untrusted input
(docs/reliability.md): they load from safetensors after their sha256 is checked, a pickle loads only when the
caller explicitly allows it and then with ``torch.load(weights_only=True)``, and library pretrained tags
go through the library's own hash-checked download.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import urllib.error
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from robench import (
    archs,  # noqa: F401  (registers the zoo architectures into timm)
    schema,
    specs,
)
from robench.config import find, names, read_yaml
from robench.datasets import Preprocessing, dataset_info
from robench.errors import CheckpointError, UsageError
from robench.imagenet import DEFAULT_PREPROCESSING
from robench.record import check_name
from robench.registry import unknown_name

NORMALIZATION_PRESETS = {
    "imagenet": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "none": None,
}


@dataclasses.dataclass(frozen=True)
class WeightsSpec:
    """Where a card's weights come from: exactly one of a local ``path``, a ``url`` (both pinned by
    ``sha256``; robench never loads an unpinned file) or a library's ``pretrained`` tag (the library's
    own hash-checked download; ``true`` means timm's default tag)."""

    path: str | None = None
    url: str | None = None
    sha256: str | None = None
    format: Literal["safetensors", "pickle"] = "safetensors"
    pretrained: str | bool | None = None

    def __post_init__(self):
        given = [k for k in ("path", "url", "pretrained") if getattr(self, k) is not None]
        if len(given) != 1:
            raise UsageError("weights need exactly one of path, url, pretrained")
        if given[0] != "pretrained" and not self.sha256:
            raise UsageError(f"weights.{given[0]} needs its sha256 (robench never loads unpinned files)")


@dataclasses.dataclass(frozen=True)
class Normalization:
    """Per-channel input mean and std, applied inside :class:`Classifier`."""

    mean: list[float]
    std: list[float]

    def __post_init__(self):
        if not self.mean or len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise UsageError("normalization needs one mean and one positive std per channel")


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """A validated model card. ``source`` is the YAML file it came from (relative paths resolve there).

    ``normalization`` in the YAML is a preset name (:data:`NORMALIZATION_PRESETS`) or ``{mean, std}``;
    :func:`card_from_dict` resolves a preset, so here it is always ``{mean, std}`` or None.
    ``preprocessing`` (how ImageNet files are resized and cropped) is part of the model: an ImageNet card
    without one gets :data:`~robench.imagenet.DEFAULT_PREPROCESSING`; other datasets have one native size.
    """

    name: str
    arch: str
    dataset: str
    num_classes: int
    weights: WeightsSpec
    library: Literal["timm", "torchvision", "robustbench"] = "timm"
    arch_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    normalization: str | Normalization | None = None
    display_name: str | None = None
    description: str | None = None
    paper: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    claimed: dict[str, Any] | None = None  # numbers claimed by the submitter: shown, never trusted
    preprocessing: Preprocessing | None = None  # ImageNet only; card_from_dict fills in the default
    source: Path | None = None
    spec: str | None = None  # the --model string, when the card was made from one (robench.specs)

    def meta(self) -> dict:
        """What a run record keeps of the card (identity of the weights, provenance)."""
        out = {
            "arch": self.arch,
            "library": self.library,
            "weights_sha256": self.weights.sha256,
            "weights_pretrained": self.weights.pretrained,
        }
        for key in ("display_name", "description", "paper", "training"):
            if getattr(self, key) is not None:
                out[key if key != "training" else "recipe"] = getattr(self, key)
        if self.arch_kwargs:
            out["arch_kwargs"] = self.arch_kwargs
        if self.preprocessing is not None:
            out["preprocessing"] = dataclasses.asdict(self.preprocessing)
        if self.spec is not None:
            out["spec"] = self.spec
        return out


def list_models() -> list[str]:
    return names("models")


def card_from_dict(name: str, data: dict, source: Path | None = None) -> ModelCard:
    """Validate a card mapping: unknown keys, missing fields, weights spec, normalisation."""
    check_name("model", name)
    where = f"model card {name!r}"
    try:
        card = schema.load(ModelCard, data, where, name=name, source=source, spec=None)
        dataset_info(card.dataset)  # unknown dataset -> UsageError with a suggestion
        preprocessing = card.preprocessing
        if card.dataset == "imagenet":
            preprocessing = preprocessing or DEFAULT_PREPROCESSING
        elif preprocessing is not None:
            raise UsageError(f"preprocessing is for ImageNet cards; {card.dataset!r} images have one size")
        norm = card.normalization
        if isinstance(norm, str):
            if norm not in NORMALIZATION_PRESETS:
                raise unknown_name("normalization preset", norm, NORMALIZATION_PRESETS)
            norm = NORMALIZATION_PRESETS[norm]
        elif isinstance(norm, Normalization):
            norm = dataclasses.asdict(norm)
    except UsageError as e:  # every message names the card, however deep the problem was found
        message = str(e)
        raise UsageError(message if message.startswith(where) else f"{where}: {message}") from None
    return dataclasses.replace(card, normalization=norm, preprocessing=preprocessing)


def load_card(name: str, weights: str | os.PathLike | None = None) -> ModelCard:
    """The card of a ``--model`` value: a card name on the config search path, or any other form of
    :data:`robench.specs.SPEC_FORMS`; ``weights`` (a local file) goes with a timm/torchvision spec."""
    if specs.is_spec(name) or weights is not None:
        return specs.card_for(name, weights)
    known = list_models()
    if name not in known:
        raise unknown_name("model", name, known)
    path = find("models", name)
    return card_from_dict(name, read_yaml(path), source=path)


def load_card_file(path: str | os.PathLike) -> ModelCard:
    path = Path(path)
    return card_from_dict(path.stem, read_yaml(path), source=path)


def check_dataset(card: ModelCard, dataset: str) -> None:
    """Refuse to evaluate a model on images of another shape or label set than it was built for."""
    trained, target = dataset_info(card.dataset), dataset_info(dataset)
    if (card.num_classes, trained.channels, trained.image_size) != (
        target.num_classes,
        target.channels,
        target.image_size,
    ):
        raise UsageError(
            f"model {card.name!r} takes {trained.channels}x{trained.image_size}px images with {card.num_classes} "
            f"classes ({card.dataset}); {dataset!r} has {target.channels}x{target.image_size}px and {target.num_classes}"
        )


class Classifier(nn.Module):
    """A network with its input normalisation inside: takes [0,1] NCHW pixels, returns logits.

    Keeping the normalisation in the module means every threat sees the same input space, and there is
    no global switch to forget (the torchattacks ``set_normalization_used`` trap).
    """

    def __init__(self, net: nn.Module, mean=None, std=None, card: ModelCard | None = None):
        super().__init__()
        self.net = net
        self.card = card
        if mean is None:
            self.register_buffer("mean", None)
            self.register_buffer("std", None)
        else:
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return self.net(x)


def build_network(card: ModelCard) -> nn.Module:
    """The bare architecture with random weights; :func:`create_model` then loads the weights file."""
    kwargs = dict(card.arch_kwargs)
    try:
        if card.library == "torchvision":
            import torchvision

            return torchvision.models.get_model(
                card.arch, weights=None, num_classes=card.num_classes, **kwargs
            )
        import timm

        return timm.create_model(card.arch, pretrained=False, num_classes=card.num_classes, **kwargs)
    except (RuntimeError, ValueError, TypeError) as e:
        if "Unknown" in str(e):
            raise UsageError(
                f"model card {card.name!r}: unknown {card.library} architecture {card.arch!r}"
            ) from None
        raise UsageError(f"model card {card.name!r}: cannot build {card.arch!r}: {e}") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_weights_file(card: ModelCard) -> Path:
    """The local weights file of a path/URL card, downloaded to the cache if needed, hash-verified."""
    spec = card.weights
    if spec.path:
        path = Path(os.path.expanduser(spec.path))
        if not path.is_absolute() and card.source is not None:
            path = card.source.parent / path
        if not path.is_file():
            raise CheckpointError(f"weights of {card.name!r} not found at {path}")
    else:
        cache = Path(os.environ.get("ROBENCH_CACHE", Path.home() / ".cache" / "robench")) / "weights"
        path = cache / f"{spec.sha256}.{'safetensors' if spec.format == 'safetensors' else 'pt'}"
        if not path.is_file():
            cache.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(spec.url, str(path), progress=False)
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise CheckpointError(
                    f"could not download the weights of {card.name!r} from {spec.url}: "
                    f"{getattr(e, 'reason', e)} - download it elsewhere and set weights.path"
                ) from None
    actual = sha256_file(path)
    if actual != spec.sha256.lower():
        raise CheckpointError(
            f"sha256 mismatch for the weights of {card.name!r} ({path}): card pins {spec.sha256[:12]}..., "
            f"file is {actual[:12]}... - refusing to load a file that is not the one the card names"
        )
    return path


def read_state_dict(path: Path, fmt: str, allow_pickle: bool) -> dict:
    if fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(
                f"{path} is not a readable safetensors file (truncated or corrupt?): {e}"
            ) from None
    if not allow_pickle:
        raise CheckpointError(
            f"{path} is a pickle checkpoint; pickles can run code when loaded. Convert it to safetensors, "
            "or pass --allow-pickle to load it with torch.load(weights_only=True)"
        )
    import pickle

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"refused to load {path} with weights_only=True: {first}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict")
    return state


def load_weights(net: nn.Module, state: dict, card: ModelCard) -> None:
    """Strict load with a one-line diagnosis of what does not match."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(
                f"shape of {k} is {tuple(state[k].shape)}, the architecture wants {tuple(own[k].shape)}"
                " (wrong num_classes or arch_kwargs?)"
            )
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise CheckpointError(f"weights of {card.name!r} do not match {card.arch}: " + "; ".join(parts))
    net.load_state_dict(state, strict=True)


def create_model(
    name: str | ModelCard, device: str | torch.device | None = None, allow_pickle: bool = False
) -> Classifier:
    """Card, card name or spec -> :class:`Classifier` in eval mode, parameters frozen, on ``device``.

    Every weights file is read by robench itself (a library's pretrained file from the library's cache,
    :func:`robench.specs.pretrained_file`), so the returned model's card pins the sha256 of the file read
    and the record shows it. A library's own ``.pth``/``.bin`` downloads load with
    ``torch.load(weights_only=True)``, as the libraries load them; a user's pickle needs ``allow_pickle``.
    """
    card = name if isinstance(name, ModelCard) else load_card(name)
    if card.library == "robustbench":
        net, path = specs.robustbench_network(card)
        card = _pinned(card, path)
    elif card.weights.pretrained is not None:
        path = specs.pretrained_file(card)
        card = _pinned(card, path)
        net = build_network(card)
        load_weights(net, read_state_dict(path, weights_format(path), allow_pickle=True), card)
    else:
        path = resolve_weights_file(card)
        net = build_network(card)
        load_weights(net, read_state_dict(path, card.weights.format, allow_pickle), card)
    norm = card.normalization or {}
    model = Classifier(net, norm.get("mean"), norm.get("std"), card=card)
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


def _pinned(card: ModelCard, path: Path) -> ModelCard:
    """The card with the sha256 of the library file actually read, for the record. A card that pins one
    already (``robench submit --list`` writes such cards) must get that very file."""
    actual = sha256_file(path)
    pinned = card.weights.sha256
    if pinned and pinned.lower() != actual:
        raise CheckpointError(
            f"sha256 mismatch for the pretrained weights of {card.name!r} ({path}): card pins "
            f"{pinned[:12]}..., file is {actual[:12]}... - the library's file changed since the card was written"
        )
    return dataclasses.replace(card, weights=dataclasses.replace(card.weights, sha256=actual))


def weights_format(path: Path) -> str:
    """A file's format by its name: ``.safetensors``, else a pickle (which loads only when allowed)."""
    return "safetensors" if path.suffix == ".safetensors" else "pickle"
