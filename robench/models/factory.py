"""Cards -> ready classifiers taking [0,1] pixels: the network built, its weights loaded, its
normalisation inside.

A model can also be named without a card (``timm:<name>``, ``torchvision:<name>``, a card file...):
:mod:`robench.models.specs` turns such a spec into a card, so the rest of robench sees cards only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import torch
import yaml
from torch import nn

from robench.core.errors import CheckpointError, UsageError
from robench.models import (
    archs,  # noqa: F401  (registers the zoo architectures into timm)
    code,
    specs,
)
from robench.models.card import ModelCard, card_from_dict
from robench.models.vote import Vote
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
    if card.library == "python":
        return _own_network(card, kwargs)
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
                f"model card {card.name!r}: unknown {card.library} architecture {card.arch!r}; for a network "
                "of your own, name it by import path (arch: package.module:Class or path/to/file.py:Class) "
                "or pass the module to robench.evaluate"
            ) from None
        raise UsageError(f"model card {card.name!r}: cannot build {card.arch!r}: {e}") from None


def _own_network(card: ModelCard, kwargs: dict) -> nn.Module:
    """An import-path architecture (:mod:`robench.models.code`), refused when the code found is not the code
    the card pins."""
    base = card.source.parent if card.source else None
    found = code.provenance(card.arch, base)
    pin = card.code
    if pin is not None:
        if pin.sha256 is not None and found.get("file_sha256") != pin.sha256.lower():
            raise CheckpointError(
                f"model card {card.name!r}: the code of {card.arch} is not the code the card pins "
                f"(sha256 {pin.sha256[:12]}..., found {str(found.get('file_sha256'))[:12]}...)"
            )
        if pin.package is not None and (found.get("package"), found.get("version")) != (
            pin.package,
            pin.version,
        ):
            raise CheckpointError(
                f"model card {card.name!r}: pins {pin.package}=={pin.version}, found "
                f"{found.get('package') or 'no installed package'} {found.get('version') or ''}".rstrip()
            )
    return code.build(card.arch, kwargs, base)


def create_model(
    name: str | ModelCard, device: str | torch.device | None = None, allow_pickle: bool = False
) -> Classifier | Vote:
    """Card, card name or spec -> :class:`Classifier` in eval mode, parameters frozen, on ``device``;
    behind its :class:`~robench.models.vote.Vote` when the card has a ``defense`` (the defence is part of
    the model, as its normalisation is: no caller can forget it).

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
    if card.defense is not None:
        model = Vote(model, card.defense)
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


def write_card(
    module: nn.Module,
    path: str | os.PathLike,
    *,
    arch: str,
    dataset: str,
    normalization: str | dict,
    weights_out: str | os.PathLike | None = None,
    arch_kwargs: dict | None = None,
    **fields,
) -> Path:
    """Save ``module``'s weights (safetensors) and a card naming them, so that the model can be evaluated
    and submitted like any other (``robench eval --model CARD``, ``robench.submit(CARD)``).

    ``arch`` names the architecture: a timm name, or an import path (``package.module:Class``,
    ``path/to/file.py:Class``), which the card pins (the file's sha256, or the installed package's name and
    version) so a board can re-run it. ``normalization`` is a preset (``none`` for [0,1] pixels,
    ``imagenet``) or ``{mean, std}``; the weights of a :class:`Classifier` are its network's (its
    normalisation goes into the card). A :class:`~robench.models.vote.Vote` is saved as the network it
    wraps plus the card's ``defense`` block, so the card rebuilds the defended model (its weights alone
    would be the undefended one). ``fields`` are further card keys (``display_name``, ``paper``, ...).
    The card is validated before anything is written; returns its path.
    """
    from safetensors.torch import save

    from robench.core.record import atomic_write_bytes
    from robench.datasets import dataset_info

    path = Path(path)
    weights = Path(weights_out) if weights_out is not None else path.with_suffix(".safetensors")
    if isinstance(module, Vote):
        fields = {"defense": dataclasses.asdict(module.defense), **fields}
        module = module.model
    net = module.net if isinstance(module, Classifier) else module
    blob = save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()})
    data = {
        "arch": arch,
        "dataset": dataset,
        "num_classes": dataset_info(dataset).num_classes,
        "normalization": normalization,
        **({"arch_kwargs": dict(arch_kwargs)} if arch_kwargs else {}),
        "weights": {
            "path": os.path.relpath(weights.resolve(), path.resolve().parent),
            "sha256": hashlib.sha256(blob).hexdigest(),
        },
        **fields,
    }
    if code.is_code_ref(arch):
        found = code.provenance(arch, path.resolve().parent)
        data["code"] = (
            {"package": found["package"], "version": found["version"]}
            if "package" in found
            else {"sha256": found["file_sha256"]}
        )
    card_from_dict(path.stem, data, source=path)  # one line on a bad card, before any file is written
    atomic_write_bytes(weights, blob)
    atomic_write_bytes(path, yaml.safe_dump(data, sort_keys=False, width=1000).encode())
    return path
