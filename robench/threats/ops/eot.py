"""Expectation over transformation (EOT, Athalye et al. 2018, "Obfuscated Gradients Give a False Sense of
Security") for the gradient attacks, when the model is randomised (a test-time vote, robench.models.vote).

A vote's output is piecewise constant: its input gradient is zero almost everywhere, and a gradient
attack that differentiates it would report robustness that only masks gradients. EOT attacks the
randomised classifier behind the vote instead: each step's gradient is that of the mean loss of the
wrapped network over ``samples`` fresh transforms, drawn from the vote's own box by the chunk's generator
(the attack's randomness, seeded like every other draw of a threat). Each verdict is still the vote's,
taken from the model's forward: an example is broken only when the defended classifier is fooled.

For a deterministic model :func:`eot_for` returns None and the attacks run exactly as before.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from robench.models.affine import draw_transforms
from robench.models.vote import Vote, randomised_part


@dataclasses.dataclass(frozen=True)
class EOT:
    """The vote of a randomised model and how many transforms each gradient averages over."""

    vote: Vote
    samples: int

    def draws(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``samples`` transforms for each of ``n`` examples [n, samples, 3], from the attack's generator.
        Drawn each step for every example the attack started on, so an example's samples never depend on
        which of its neighbours were broken already."""
        return draw_transforms((n, self.samples), self.vote.half, generator)

    def loss(self, x: torch.Tensor, y: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """The summed over examples, mean over samples cross-entropy of the wrapped network on ``x`` under
        ``draws`` [N, samples, 3]: its gradient is the EOT gradient."""
        logits = self.vote.logits_under(x, draws)
        per_sample = F.cross_entropy(logits.flatten(0, 1), y.repeat_interleave(self.samples), reduction="sum")
        return per_sample / self.samples


def eot_for(model: nn.Module, samples: int) -> EOT | None:
    """EOT with ``samples`` draws per step for a randomised ``model``, None for a deterministic one."""
    vote = randomised_part(model)
    return None if vote is None else EOT(vote, samples)


def eot_details(stats: dict) -> dict:
    """What a record's ``details`` say of EOT: the samples each gradient averaged over, for a randomised
    model only (a deterministic model's records keep their details unchanged)."""
    if "eot_samples" not in stats:
        return {}
    return {"eot_samples_per_step": int(stats["eot_samples"].max()) if stats["eot_samples"].size else 0}


class Sampled(nn.Module):
    """The randomised classifier a vote aggregates, as a module: each call classifies every image under one
    fresh transform from ``generator``. AutoAttack's ``rand`` version expects such a model (it averages the
    gradients of ``eot_iter`` calls); its verdicts are re-checked with the vote."""

    def __init__(self, vote: Vote, generator: torch.Generator):
        super().__init__()
        self.vote, self.generator = vote, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vote.logits_under(x, draw_transforms((len(x), 1), self.vote.half, self.generator))[:, 0]
