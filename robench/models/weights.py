"""Weights files: found, pinned by sha256, read without running code, loaded strictly.

Weights are untrusted input (docs/reliability.md): they load from safetensors after their sha256 is checked,
a pickle loads only when the caller explicitly allows it and then with ``torch.load(weights_only=True)``, and
library pretrained tags go through the library's own hash-checked download.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import urllib.error
import warnings
from pathlib import Path

import torch
from torch import nn

from robench.core.errors import CheckpointError
from robench.core.paths import cache_dir
from robench.models.card import ModelCard


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_bytes(path: Path) -> bytes:
    """The whole weights file, read once: the bytes that are hashed are the bytes that are loaded, so a file
    swapped after the hash cannot give a record pinning one file's sha256 but computed with another's."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read the weights file {path}: {e.strerror or e}") from None


def read_weights_file(card: ModelCard) -> tuple[Path, bytes]:
    """(the local weights file of a path/URL card, its bytes): downloaded to the cache if needed, read once
    and checked against the card's sha256."""
    spec = card.weights
    if spec.path:
        path = Path(os.path.expanduser(spec.path))
        if not path.is_absolute() and card.source is not None:
            path = card.source.parent / path
        if not path.is_file():
            raise CheckpointError(f"weights of {card.name!r} not found at {path}")
    else:
        cache = cache_dir("weights")
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
    data = read_bytes(path)
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256.lower():
        raise CheckpointError(
            f"sha256 mismatch for the weights of {card.name!r} ({path}): card pins {spec.sha256[:12]}..., "
            f"file is {actual[:12]}... - refusing to load a file that is not the one the card names"
        )
    return path, data


def read_state_dict(data: bytes, fmt: str, allow_pickle: bool, path: Path) -> dict:
    """The state dict in ``data`` (the bytes of the weights file ``path``, named in errors), loaded from
    memory without running code from it."""
    if fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            return load(data)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(
                f"{path} is not a readable safetensors file (truncated or corrupt?): {e}"
            ) from None
    if not allow_pickle:
        raise CheckpointError(
            f"{path} is a pickle checkpoint; pickles can run code when loaded. Convert it to safetensors, "
            "or pass --allow-pickle to load it with torch.load(weights_only=True)"
        )
    try:
        with warnings.catch_warnings():  # torch's advice on pickle protocols: the outcome is our one line
            warnings.simplefilter("ignore")
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling arbitrary bytes fails in many ways (KeyError for text)
        raise CheckpointError(
            f"{path} is not a checkpoint robench can load: torch.load(weights_only=True) refused it "
            f"({_refusal(e)})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict (tensors by parameter name)")
    return state


def _refusal(error: Exception) -> str:
    """The reason in torch's refusal, in one line: its ``WeightsUnpickler error`` when it gives one (the
    rest of that message advises loading with ``weights_only=False``, which robench never does)."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    text = " ".join(text.split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


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


def pinned(card: ModelCard, path: Path, data: bytes) -> ModelCard:
    """The card with the sha256 of ``data``, the library file ``path`` as read (once) for loading, for the
    record. A card that pins one already (``robench submit --list`` writes such cards) must get that very
    file."""
    actual = hashlib.sha256(data).hexdigest()
    pinned = card.weights.sha256
    if pinned and pinned.lower() != actual:
        raise CheckpointError(
            f"sha256 mismatch for the pretrained weights of {card.name!r} ({path}): card pins "
            f"{pinned[:12]}..., file is {actual[:12]}... - "
            "the library's file changed since the card was written"
        )
    return dataclasses.replace(card, weights=dataclasses.replace(card.weights, sha256=actual))


def weights_format(path: Path) -> str:
    """A file's format by its name: ``.safetensors``, else a pickle (which loads only when allowed)."""
    return "safetensors" if path.suffix == ".safetensors" else "pickle"
