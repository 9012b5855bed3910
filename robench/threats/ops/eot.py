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
    max_rows: int | None = None  # examples per call of the network, after the engine's out-of-memory halving

    def draws(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``samples`` transforms for each of ``n`` examples [n, samples, 3], from the attack's generator.
        Drawn each step for every example the attack started on, so an example's samples never depend on
        which of its neighbours were broken already."""
        return draw_transforms((n, self.samples), self.vote.half, generator)

    def loss(self, x: torch.Tensor, y: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """The summed over examples, mean over samples cross-entropy of the wrapped network on ``x`` under
        ``draws`` [N, samples, 3]: its gradient is the EOT gradient. At most ``max_rows`` examples (each
        with its samples) per call of the network, as the engine asks of every forward after an
        out-of-memory; the split changes no value, only the memory a call holds."""
        logits = _logits_under(self.vote, x, draws, self.max_rows)
        per_sample = F.cross_entropy(logits.flatten(0, 1), y.repeat_interleave(self.samples), reduction="sum")
        return per_sample / self.samples


def _logits_under(vote: Vote, x: torch.Tensor, draws: torch.Tensor, max_rows: int | None) -> torch.Tensor:
    """``vote.logits_under(x, draws)``, at most ``max_rows`` examples per call when the engine set a limit."""
    if not max_rows or len(x) <= max_rows:
        return vote.logits_under(x, draws)
    parts = zip(x.split(max_rows), draws.split(max_rows), strict=True)
    return torch.cat([vote.logits_under(xp, dp) for xp, dp in parts])


def eot_for(model: nn.Module, samples: int) -> EOT | None:
    """EOT with ``samples`` draws per step for a randomised ``model``, None for a deterministic one; it keeps
    to the rows per call the engine set on ``model`` (:attr:`~robench.threats.base.SearchModel.max_rows`)."""
    vote = randomised_part(model)
    return None if vote is None else EOT(vote, samples, getattr(model, "max_rows", None))


def eot_details(stats: dict) -> dict:
    """What a record's ``details`` say of EOT: the samples each gradient averaged over, for a randomised
    model only (a deterministic model's records keep their details unchanged)."""
    if "eot_samples" not in stats:
        return {}
    return {"eot_samples_per_step": int(stats["eot_samples"].max()) if stats["eot_samples"].size else 0}


class Sampled(nn.Module):
    """The randomised classifier a vote aggregates, as a module: each call classifies every image under one
    fresh transform from ``generator``. AutoAttack's ``rand`` version expects such a model (it averages the
    gradients of ``eot_iter`` calls); its verdicts are re-checked with the vote. Keeps to the engine's rows
    per call, like :meth:`EOT.loss`."""

    def __init__(self, eot: EOT, generator: torch.Generator):
        super().__init__()
        self.vote, self.max_rows, self.generator = eot.vote, eot.max_rows, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        draws = draw_transforms((len(x), 1), self.vote.half, self.generator)
        return _logits_under(self.vote, x, draws, self.max_rows)[:, 0]
