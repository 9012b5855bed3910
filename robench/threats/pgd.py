"""Projected gradient descent in an l-inf or l2 ball (Madry et al. 2018).

Stronger-or-equal to torchattacks' ``PGD``/``PGDL2`` at the same budget by construction: the same
ascent on the cross-entropy from a random start, but an example counts as broken if *any* iterate
(the random start, every step, the last point) is misclassified, not only the last one. Examples are
dropped from the batch as soon as they are broken, so fooled examples cost nothing further, and only
input gradients are computed (``torch.autograd.grad``; model parameters are frozen).

Every iterate's verdict goes through :func:`~robench.threats.base.predicted`, so the family can search on
the engine's bf16 fast model (``fast_search``): gradients from bf16, each verdict the fp32 one.

On a randomised model (a test-time vote) each step's gradient is the expectation over ``eot_samples``
transforms (EOT, :mod:`robench.threats.ops.eot`), each verdict the vote's; ``details`` then say how many
samples each step drew. ``eot_samples`` does nothing to a deterministic model, so its records (which do not
name the parameter at its default) are unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from robench.threats.base import FAMILIES, Threat, omitted_at_default, predicted, require, require_budget
from robench.threats.ops.eot import EOT, eot_details, eot_for

_TINY = 1e-12


def _norms(t: torch.Tensor) -> torch.Tensor:
    """Per-example l2 norms, shaped to broadcast against ``t``."""
    return t.flatten(1).norm(dim=1).clamp_min(_TINY).view(-1, *([1] * (t.dim() - 1)))


@FAMILIES.register("pgd")
@dataclasses.dataclass
class PGD(Threat):
    """Untargeted PGD; robust only if correct at every iterate of every restart."""

    norm: Literal["linf", "l2"]
    eps: float
    steps: int
    step_size: float
    restarts: int
    eot_samples: int = omitted_at_default(10)  # transforms per gradient on a randomised model

    fast_search = True

    def __post_init__(self):
        require_budget(self.family, self.norm, self.eps)
        require(self.steps >= 1, f"pgd: steps must be >= 1, got {self.steps!r}")
        require(self.step_size > 0, f"pgd: step_size must be > 0, got {self.step_size!r}")
        require(self.restarts >= 1, f"pgd: restarts must be >= 1, got {self.restarts!r}")
        require(self.eot_samples >= 1, f"pgd: eot_samples must be >= 1, got {self.eot_samples!r}")

    # -- geometry -----------------------------------------------------------------------------------
    def random_start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A point uniform in the ball (drawn on the CPU generator, so every device draws the same)."""
        if self.norm == "linf":
            delta = (torch.rand(x.shape, generator=generator) * 2 - 1) * self.eps
        else:
            direction = torch.randn(x.shape, generator=generator)
            direction = direction / _norms(direction)
            dims = x[0].numel()
            radius = torch.rand(x.shape[0], generator=generator).pow(1.0 / dims) * self.eps
            delta = direction * radius.view(-1, *([1] * (x.dim() - 1)))
        return (x + delta.to(x.device)).clamp(0, 1)

    def step(self, x_adv: torch.Tensor, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """One ascent step, then projection onto the eps-ball around ``x`` and onto [0,1]."""
        if self.norm == "linf":
            x_adv = x_adv + self.step_size * grad.sign()
            delta = (x_adv - x).clamp(-self.eps, self.eps)
        else:
            x_adv = x_adv + self.step_size * grad / _norms(grad)
            delta = x_adv - x
            delta = delta * (self.eps / _norms(delta)).clamp(max=1.0)
        return (x + delta).clamp(0, 1)

    def last_iterate(self, model, x, y, generator) -> torch.Tensor:
        """The point adversarial training trains on: every example's last iterate (no early stop)."""
        x_adv = self.random_start(x, generator)
        for _ in range(self.steps):
            with torch.enable_grad():
                xa = x_adv.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(F.cross_entropy(model(xa), y, reduction="sum"), xa)
            x_adv = self.step(xa.detach(), x, grad)
        return x_adv.detach()

    # -- attack -------------------------------------------------------------------------------------
    def attack(
        self, model, x, y, generator, eot: EOT | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One restart on (x, y): fooled [N] bool, the iterate that first fooled [N] (int, -1 if none) and
        whether the start's input gradient was all zero [N]. With ``eot`` (a randomised model) each
        gradient is the EOT one."""
        n = x.shape[0]
        fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
        first = torch.full((n,), -1, dtype=torch.long, device=x.device)
        zero_grad = torch.zeros(n, dtype=torch.bool, device=x.device)
        active = torch.arange(n, device=x.device)
        x_adv = self.random_start(x, generator)
        for t in range(self.steps + 1):
            draws = eot.draws(n, generator) if eot is not None and t < self.steps else None
            with torch.enable_grad():
                xa = x_adv.detach().requires_grad_(True)
                logits = model(xa)
                wrong = predicted(model, xa, logits, y[active]) != y[active]
                if t == self.steps:  # the last iterate only needs its verdict
                    grad = None
                else:
                    if draws is None:
                        loss = F.cross_entropy(logits, y[active], reduction="sum")
                    else:
                        loss = eot.loss(xa, y[active], draws[active.cpu()])
                    (grad,) = torch.autograd.grad(loss, xa)
            broken = active[wrong]
            fooled[broken] = True
            first[broken] = t
            if grad is None:
                break
            if t == 0:
                zero_grad[active] = grad.flatten(1).abs().amax(1) == 0
            keep = ~wrong
            active = active[keep]
            if active.numel() == 0:
                break
            x_adv = self.step(xa.detach()[keep], x[active], grad[keep])
        return fooled, first, zero_grad

    def run_batch(self, model, x, y, clean_correct, ctx):
        robust = clean_correct.clone()
        first = torch.full_like(y, -1)
        zero_grad = torch.zeros_like(robust)
        eot = eot_for(model, self.eot_samples)
        for restart in range(self.restarts):
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            fooled, it, zg = self.attack(model, x[idx], y[idx], ctx.generator, eot)
            robust[idx[fooled]] = False
            first[idx[fooled]] = it[fooled] + restart * (self.steps + 1)
            if restart == 0:
                zero_grad[idx] = zg
        out = {"robust": robust, "fooled_at": first, "zero_grad": zero_grad}
        if eot is not None:
            out["eot_samples"] = torch.full_like(first, eot.samples)
        return out

    def summarize(self, stats):
        fooled_at = stats["fooled_at"]
        broken = fooled_at[fooled_at >= 0]
        return {
            "median_iterate_broken": float(np.median(broken)) if broken.size else None,
            "broken_at_random_start": int((broken == 0).sum()),
            "zero_gradient_fraction": float(stats["zero_grad"].mean()) if stats["zero_grad"].size else 0.0,
            **eot_details(stats),
        }

    def flags(self, stats):
        frac = float(stats["zero_grad"].mean()) if stats["zero_grad"].size else 0.0
        if frac > 0.01:
            return [
                f"zero_input_gradients: {frac:.1%} of examples have an all-zero input gradient at the "
                "start point (possible gradient masking; try a gradient-free attack)"
            ]
        return []
