"""Test-time aggregation: a classifier that votes over random rotations and translations of its input.

Engstrom et al. (2019, "Exploring the Landscape of Spatial Robustness") defend against spatial attacks by
classifying an input by the majority of the network's predictions on k random transforms of it. A card
asks for it with ``defense: {vote: k, rotation: deg, translation: px}``
(:class:`~robench.models.card.Defense`) and :func:`robench.models.create_model` wraps the network in
:class:`Vote`, so every threat attacks the aggregated classifier (the grid warps the input, the vote then
warps each warped image k times).

Randomness seeded per example, and why by the pixels: the k transforms of an image are drawn from a
generator seeded by a hash of the image (its pixels rounded to 8-bit grey levels) and the card's seed.
They therefore depend on nothing but the image: not on the batch it arrives in, its position there, the
chunk, a resumed run, a shard or the engine's halving of batches after an out-of-memory, all of which
re-batch the same images. Seeding by the example's index instead would need the index inside the model,
which sees only pixels (and an attacked or warped copy of example 7 is not example 7's clean image);
seeding one generator per batch would make a verdict depend on the neighbours. The hash makes the
defended model a deterministic function of its input, so ``robench verify`` re-runs its records, while
different inputs (another iterate of an attack, another grid point) get independent draws, which is the
randomness the defence relies on. The 8-bit rounding keeps a transform from depending on float noise far
below a grey level (a warp computed on another device).

The vote: each of the k copies votes for its argmax; the class with most votes wins, ties going to the
larger summed softmax. :meth:`Vote.forward` returns (votes + mean softmax) / (k + 1): its argmax is that
decision (the mean softmax is below 1, so it only separates equal counts), and it is a finite [N, C] array
like logits, so the argmax threats (clean, grid, random transforms, translations) need no change.
Gradients through a vote are zero almost everywhere, so gradient attacks do not differentiate it: they
use expectation over transformation (:mod:`robench.threats.ops.eot`) on :meth:`Vote.logits_under` and take
each verdict from this forward.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robench.models.affine import affine_thetas, box_half_widths, draw_transforms, warp
from robench.models.card import Defense


class Vote(nn.Module):
    """``model`` (a classifier of [0,1] pixels) behind a majority vote over ``defense.vote`` random
    transforms per image (module docstring). Keeps the wrapped model's ``card``, so records name it."""

    def __init__(self, model: nn.Module, defense: Defense):
        super().__init__()
        self.model = model
        self.defense = defense
        self.card = getattr(model, "card", None)
        self.half = box_half_widths(defense.rotation, defense.translation)
        self._key = defense.seed.to_bytes(8, "little")
        # as buffers, so an in-memory Vote without a card has the defence in its fingerprint (the identity
        # of its records): another vote, another model
        self.register_buffer("vote_counts", torch.tensor([defense.vote, defense.seed], dtype=torch.int64))
        self.register_buffer(
            "vote_box", torch.tensor([defense.rotation, defense.translation], dtype=torch.float64)
        )

    @property
    def k(self) -> int:
        return self.defense.vote

    def transforms_for(self, x: torch.Tensor) -> torch.Tensor:
        """The k (angle, tx, ty) of each image [N, k, 3] (float64, CPU): uniform in the box, from a
        generator seeded by the image's 8-bit pixels and the card's seed (module docstring)."""
        pixels = (x.detach().float() * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        rows = [self._draws(np.ascontiguousarray(image)) for image in pixels]
        return torch.stack(rows) if rows else torch.empty(0, self.k, 3, dtype=torch.float64)

    def _draws(self, image: np.ndarray) -> torch.Tensor:
        digest = hashlib.blake2b(image.tobytes(), digest_size=8, key=self._key).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
        return draw_transforms((self.k,), self.half, generator)

    def logits_under(self, x: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
        """The wrapped model's logits [N, T, C] of each image under each of its own T transforms
        (``transforms`` [N, T, 3]); differentiable in ``x``. The vote's copies, or an attack's EOT samples."""
        n, t = transforms.shape[:2]
        thetas = affine_thetas(transforms.reshape(n * t, 3), *x.shape[-2:])
        return self.model(warp(x.repeat_interleave(t, 0), thetas)).view(n, t, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Vote shares with the tie-break, (votes + mean softmax) / (k + 1), [N, C]; argmax = the vote.

        Computed in fp32 even under the engine's bf16 autocast: a vote's count jumps when one copy's
        argmax flips, so its verdict must not depend on a rounding the fast path's margin check (made for
        continuous logits) would not see.
        """
        with torch.autocast(x.device.type, enabled=False):
            logits = self.logits_under(x.float(), self.transforms_for(x))
        votes = F.one_hot(logits.argmax(2), logits.shape[2]).sum(1)
        return (votes + logits.softmax(2).mean(1)) / (self.k + 1)


def randomised_part(model: nn.Module) -> Vote | None:
    """The :class:`Vote` inside ``model`` (itself, or under the engine's wrappers: the fast path, the
    halved forwards after an out-of-memory), else None for a deterministic model."""
    return next((m for m in model.modules() if isinstance(m, Vote)), None)


def randomised_flags(model: nn.Module) -> list[str]:
    """The record flag of a randomised model (none for a deterministic one): a board reader must see
    that the verdicts are a vote's and that gradient attacks on it drew samples (EOT)."""
    vote = randomised_part(model)
    if vote is None:
        return []
    d = vote.defense
    return [
        f"randomised_model: classifies by the majority of {d.vote} random transforms (rotation <= "
        f"{d.rotation:g} deg, translation <= {d.translation:g} px, seed {d.seed}), drawn per image from a "
        "hash of its pixels, so deterministic and re-runnable; gradient attacks on it use expectation "
        "over transformation (details: eot_samples_per_step)"
    ]
