"""Models: cards (:mod:`~robench.models.card`), specs that make cards on the fly
(:mod:`~robench.models.specs`), weights files (:mod:`~robench.models.weights`), the zoo's architectures
(:mod:`~robench.models.archs`) and the factory that builds a classifier from a card
(:mod:`~robench.models.factory`). Imports run one way: card <- weights <- specs <- factory.

The names below are the package's public API, re-exported so that callers need not know which module
keeps them.
"""

from __future__ import annotations

from robench.models.card import (
    NORMALIZATION_PRESETS,
    ModelCard,
    Normalization,
    WeightsSpec,
    card_from_dict,
    check_dataset,
    list_models,
    load_card_file,
)
from robench.models.factory import Classifier, build_network, create_model, write_card
from robench.models.specs import load_card
from robench.models.weights import read_state_dict, sha256_file, weights_format

__all__ = [
    "NORMALIZATION_PRESETS",
    "Classifier",
    "ModelCard",
    "Normalization",
    "WeightsSpec",
    "build_network",
    "card_from_dict",
    "check_dataset",
    "create_model",
    "list_models",
    "load_card",
    "load_card_file",
    "read_state_dict",
    "sha256_file",
    "weights_format",
    "write_card",
]
