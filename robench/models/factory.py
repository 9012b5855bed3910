"""Cards -> ready classifiers taking [0,1] pixels: the network built, its weights loaded, its
normalisation inside.

A model can also be named without a card (``timm:<name>``, ``torchvision:<name>``, a card file...):
:mod:`robench.models.specs` turns such a spec into a card, so the rest of robench sees cards only.
"""

from __future__ import annotations

import torch
from torch import nn

from robench.core.errors import UsageError
from robench.models import (
    archs,  # noqa: F401  (registers the zoo architectures into timm)
    specs,
)
from robench.models.card import ModelCard
from robench.models.weights import (
    load_weights,
    pinned,
    read_bytes,
    read_state_dict,
    read_weights_file,
    weights_format,
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


def create_model(
    name: str | ModelCard, device: str | torch.device | None = None, allow_pickle: bool = False
) -> Classifier:
    """Card, card name or spec -> :class:`Classifier` in eval mode, parameters frozen, on ``device``.

    Every weights file is read by robench itself (a library's pretrained file from the library's cache,
    :func:`robench.specs.pretrained_file`), so the returned model's card pins the sha256 of the file read
    and the record shows it. A library's own ``.pth``/``.bin`` downloads load with
    ``torch.load(weights_only=True)``, as the libraries load them; a user's pickle needs ``allow_pickle``.
    """
    card = name if isinstance(name, ModelCard) else specs.load_card(name)
    if card.library == "robustbench":
        net, path = specs.robustbench_network(card)
        card = pinned(card, path, read_bytes(path))
    elif card.weights.pretrained is not None:
        path = specs.pretrained_file(card)
        data = read_bytes(path)
        card = pinned(card, path, data)
        net = build_network(card)
        load_weights(net, read_state_dict(data, weights_format(path), True, path), card)
    else:
        path, data = read_weights_file(card)
        net = build_network(card)
        load_weights(net, read_state_dict(data, card.weights.format, allow_pickle, path), card)
    norm = card.normalization or {}
    model = Classifier(net, norm.get("mean"), norm.get("std"), card=card)
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model
