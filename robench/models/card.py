"""Model cards: what a model is (architecture, dataset, classes, normalisation, preprocessing, weights).

A card (``configs/models/<name>.yaml``) names an architecture (timm by default, or torchvision), the
dataset it was trained for, its input normalisation and preprocessing, and its weights. Parsing and checking a
card needs no weights and builds no network, so listing, submitting and identity hashing read cards cheaply;
:mod:`robench.models.factory` turns a card into a network.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

from robench.core import schema
from robench.core.config import names, read_yaml
from robench.core.errors import UsageError
from robench.core.record import check_name
from robench.core.registry import unknown_name
from robench.datasets import Preprocessing, dataset_info
from robench.datasets.imagenet import DEFAULT_PREPROCESSING

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
            f"model {card.name!r} takes {trained.channels}x{trained.image_size}px images with "
            f"{card.num_classes} classes ({card.dataset}); {dataset!r} has "
            f"{target.channels}x{target.image_size}px and {target.num_classes}"
        )
