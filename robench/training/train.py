"""Reference training recipes that produced the shipped zoo.

A recipe (``configs/recipes/<name>.yaml``) fixes the optimiser, epochs and the training-time
perturbation; ``robench train`` runs it on a dataset's ``train`` split with a seed and writes
safetensors weights plus a model card (sha256, recipe, seed, epochs, measured clean accuracy) that is
ready to commit, so every zoo entry can be retrained with one command.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from robench.core import config, schema
from robench.core.errors import UsageError
from robench.core.record import atomic_write_bytes, check_name
from robench.datasets import dataset_info, load_tensors
from robench.models import Classifier, build_network, card_from_dict, sha256_file
from robench.training.augmentations import create_perturbation

#: Input normalisation the zoo uses, by dataset (mean/std of the MNIST training pixels).
NORMALIZATION = {"mnist5k": {"mean": [0.1307], "std": [0.3081]}, "mnist": {"mean": [0.1307], "std": [0.3081]}}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A training recipe; ``perturbation`` names what is done to each training batch
    (:mod:`robench.training.augmentations`) and ``params`` gives that perturbation's parameters."""

    name: str
    description: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    perturbation: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise UsageError(f"recipe {self.name!r}: {key} must be >= 1, got {getattr(self, key)!r}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise UsageError(
                f"recipe {self.name!r}: lr must be > 0 and weight_decay >= 0, "
                f"got {self.lr!r} and {self.weight_decay!r}"
            )

    @classmethod
    def load(cls, name: str) -> Recipe:
        data = config.load_named("recipe", name, "recipes")
        recipe = schema.load(cls, data, f"recipe {name!r}", name=name)
        recipe.perturber()  # an unknown perturbation or a bad parameter fails here, before any training
        return recipe

    def perturber(self):
        """The configured perturbation: ``f(model, x, y, generator, epoch) -> x'``."""
        try:
            return create_perturbation(self.perturbation, self.params)
        except UsageError as e:
            raise UsageError(f"recipe {self.name!r}: {e}") from None


def accuracy(model, x, y, batch_size: int = 1000) -> float:
    with torch.inference_mode():
        correct = sum(
            int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
            for i in range(0, len(x), batch_size)
        )
    return correct / len(x)


def fit(model, rec: Recipe, x, y, epochs: int, generator: torch.Generator, desc: str, progress=None) -> None:
    """``epochs`` of the recipe's training on (x, y): Adam with a one-cycle learning rate, each minibatch
    perturbed (model in eval mode) before the gradient step; ``generator`` draws the order and the
    perturbations, so a seed fixes the whole run."""
    perturb = rec.perturber()
    opt = torch.optim.Adam(model.parameters(), lr=rec.lr, weight_decay=rec.weight_decay)
    steps_per_epoch = (len(x) + rec.batch_size - 1) // rec.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=rec.lr, total_steps=epochs * steps_per_epoch)
    for epoch in tqdm(
        range(epochs), desc=desc, unit="epoch", disable=None if progress is None else not progress
    ):
        perm = torch.randperm(len(x), generator=generator).to(x.device)
        for i in range(0, len(x), rec.batch_size):
            idx = perm[i : i + rec.batch_size]
            xb, yb = x[idx], y[idx]
            model.eval()
            xb = perturb(model, xb, yb, generator, epoch)
            model.train()
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()


def train(
    recipe: str,
    arch: str,
    dataset: str = "mnist5k",
    *,
    name: str,
    out: str | os.PathLike,
    card_dir: str | os.PathLike | None = None,
    epochs: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    arch_kwargs: dict | None = None,
    progress: bool | None = None,
    command: str | None = None,
) -> Path:
    """Train ``arch`` with ``recipe``; write ``<out>/<name>.safetensors`` and its card (path returned).

    ``command`` is the command line that asked for this training, kept in the card so the model can be
    retrained with it (``robench train`` passes its own; a Python caller may pass its equivalent)."""
    from safetensors.torch import save

    from robench.runtime.devices import describe_device, resolve_device

    check_name("model", name)
    rec = Recipe.load(recipe)
    epochs = rec.epochs if epochs is None else epochs
    if epochs < 1:
        raise UsageError(f"epochs must be >= 1, got {epochs}")
    info = dataset_info(dataset)
    dev = resolve_device(device)
    card_data = {
        "arch": arch,
        "dataset": dataset,
        "num_classes": info.num_classes,
        "arch_kwargs": dict(arch_kwargs or {}),
        "normalization": NORMALIZATION.get(dataset),
        "weights": {"path": "pending", "sha256": "0" * 64},
    }
    card = card_from_dict(name, card_data)
    torch.manual_seed(seed)
    net = build_network(card)
    norm = card.normalization or {}
    model = Classifier(net, norm.get("mean"), norm.get("std")).to(dev)
    x, y = load_tensors(dataset, "train")
    x, y = x.to(dev), y.to(dev)
    xt, yt = load_tensors(dataset, "test")
    xt, yt = xt.to(dev), yt.to(dev)

    started = time.time()
    fit(
        model, rec, x, y, epochs, torch.Generator().manual_seed(seed), desc=f"train {name}", progress=progress
    )
    model.eval()
    clean = accuracy(model, xt, yt)

    out = Path(out)
    weights = out / f"{name}.safetensors"
    atomic_write_bytes(weights, save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}))
    card_dir = Path(card_dir) if card_dir is not None else out
    card_data["weights"] = {"path": os.path.relpath(weights, card_dir), "sha256": sha256_file(weights)}
    card_data["display_name"] = f"{arch} / {recipe}"
    card_data["description"] = rec.description
    card_data["training"] = {
        "recipe": recipe,
        "seed": seed,
        "epochs": epochs,
        "dataset": dataset,
        "split": "train",
        "clean_acc_test": round(clean, 4),
        "duration_s": round(time.time() - started, 1),
        "device": describe_device(dev),
        **({"command": command} if command is not None else {}),
    }
    if not card_data["arch_kwargs"]:
        del card_data["arch_kwargs"]
    card_path = card_dir / f"{name}.yaml"
    atomic_write_bytes(
        card_path, yaml.safe_dump(card_data, sort_keys=False, width=1000).encode()
    )  # command on one line
    return card_path
