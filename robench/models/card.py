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
from robench.core.config import names, parse_number, read_yaml
from robench.core.errors import UsageError
from robench.core.record import check_name
from robench.core.registry import unknown_name
from robench.datasets import Preprocessing, dataset_info
from robench.datasets.imagenet import DEFAULT_PREPROCESSING
from robench.models import code

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
class CodePin:
    """What pins the code of an import-path architecture (:mod:`robench.models.code`), so anyone can re-run
    it: the sha256 of the file that defines it, or an installed distribution's name and version. A card
    that pins its code is refused when the code found differs; a board takes only pinned code."""

    sha256: str | None = None
    package: str | None = None
    version: str | None = None

    def __post_init__(self):
        if (self.package is None) != (self.version is None):
            raise UsageError("code pins a package with its version: give both package and version")
        if self.sha256 is None and self.package is None:
            raise UsageError(
                "code needs sha256 (of the file that defines the architecture) or package+version"
            )


@dataclasses.dataclass(frozen=True)
class Defense:
    """Test-time aggregation (Engstrom et al. 2019): classify by a majority vote of the network over
    ``vote`` random transforms of the input, each a rotation of at most ``rotation`` degrees and a
    translation of at most ``translation`` px per axis, drawn uniformly per image
    (:class:`robench.models.vote.Vote`). ``seed`` fixes the draws: the same image under the same card gets
    the same transforms, so the defended model is a deterministic function and its records re-run.

    A different vote is a different model: the block is part of ``model_meta`` and so of every record's
    identity."""

    vote: int
    rotation: float  # degrees
    translation: float  # pixels
    seed: int = 0

    def __post_init__(self):
        if self.vote < 1:
            raise UsageError(f"defense: vote must be a number of transforms >= 1, got {self.vote}")
        if not 0 <= self.rotation <= 180:
            raise UsageError(f"defense: rotation must be in [0, 180] degrees, got {self.rotation}")
        if self.translation < 0:
            raise UsageError(f"defense: translation must be >= 0 px, got {self.translation}")
        if self.seed < 0:
            raise UsageError(f"defense: seed must be >= 0, got {self.seed}")


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
    library: Literal["timm", "torchvision", "robustbench", "python"] = (
        "timm"  # python: arch is an import path
    )
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
    code: CodePin | None = None  # an import-path architecture's pin (required on a board)
    defense: Defense | None = None  # test-time aggregation wrapped around the network (models.vote)

    def meta(self) -> dict:
        """What a run record keeps of the card (its ``model_meta``): the model's identity, every field
        that can change a verdict (the weights' sha256 or library tag, architecture, library, its kwargs,
        normalisation, preprocessing, class count, the input size and the dataset it was built for, a
        test-time ``defense`` with ``randomised: true`` beside it), then the cosmetic fields that describe
        it (:data:`robench.core.record.COSMETIC_META`: display name, description, paper, the training
        recipe as ``recipe``, the spec as typed). ``claimed`` numbers stay in
        the card, shown to its reader and used nowhere else.

        The card's ``name`` is the record's ``model`` field, and ``source``, ``weights.path``/``url``/
        ``format`` only say where the pinned bytes are found, so none of them is repeated here.
        """
        trained = dataset_info(self.dataset)
        out = {
            "arch": self.arch,
            "library": self.library,
            "arch_kwargs": dict(self.arch_kwargs),
            "weights_sha256": self.weights.sha256,
            "weights_pretrained": self.weights.pretrained,
            "normalization": self.normalization,
            "num_classes": self.num_classes,
            "input_size": [trained.channels, trained.image_size, trained.image_size],
            "trained_on": self.dataset,
        }
        if self.preprocessing is not None:
            out["preprocessing"] = dataclasses.asdict(self.preprocessing)
        if self.library == "python":  # the code decides verdicts as much as the weights
            out["code"] = code.provenance(self.arch, self.source.parent if self.source else None)
        if self.defense is not None:  # the vote decides verdicts; "randomised" is what readers look for
            out["defense"] = dataclasses.asdict(self.defense)
            out["randomised"] = True
        cosmetic = {
            "display_name": self.display_name,
            "description": self.description,
            "paper": self.paper,
            "recipe": self.training,
            "spec": self.spec,
        }
        return out | {k: v for k, v in cosmetic.items() if v is not None}


#: The one line for a model spec given without its normalisation (``option`` names the flag it came with).
NORMALIZATION_NEEDED = (
    "{option} needs --normalization: 'none' for a network that takes [0,1] pixels, a preset "
    "(imagenet) or the means then the stds, comma-separated (robench normalises inside the model, so a "
    "wrong one would be silent)"
)


def parse_normalization(text: str, dataset: str):
    """A preset name (``imagenet``, ``none``; kept by name in the card) or ``m1,...,mC,s1,...,sC``:
    the means, then the stds, of the dataset's C channels."""
    if text in NORMALIZATION_PRESETS:
        return text
    channels = dataset_info(dataset).channels
    try:
        values = [float(parse_number(v.strip())) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2 * channels or any(v <= 0 for v in values[channels:]):
        raise UsageError(
            f"--normalization {text!r}: give a preset ({', '.join(NORMALIZATION_PRESETS)}) "
            f"or {channels} means "
            f"then {channels} positive stds, comma-separated, e.g. {','.join(['0.5'] * 2 * channels)}"
        )
    return {"mean": values[:channels], "std": values[channels:]}


def list_models() -> list[str]:
    return names("models")


def card_from_dict(name: str, data: dict, source: Path | None = None) -> ModelCard:
    """Validate a card mapping: unknown keys, missing fields, weights spec, normalisation."""
    check_name("model", name)
    where = f"model card {name!r}"
    try:
        if "normalization" not in data:
            raise UsageError(
                "states no normalization: write 'normalization: none' for a network that takes [0,1] "
                f"pixels, a preset ({', '.join(p for p in NORMALIZATION_PRESETS if p != 'none')}) or "
                "{mean: [...], std: [...]} (robench normalises inside the model, so a wrong one is silent)"
            )
        if code.is_code_ref(str(data.get("arch", ""))) and "library" not in data:
            data = {**data, "library": "python"}
        card = schema.load(ModelCard, data, where, name=name, source=source, spec=None)
        if (card.library == "python") != code.is_code_ref(card.arch):
            raise UsageError(
                f"arch {card.arch!r} with library {card.library!r}: an import path "
                "(package.module:Callable, file.py:Callable) goes with library python, a name with timm, "
                "torchvision or robustbench"
            )
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
