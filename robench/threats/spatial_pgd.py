"""First-order spatial attack: projected sign-gradient ascent on (angle, tx, ty) per example.

``affine_grid`` and bilinear ``grid_sample`` are differentiable in the affine matrix, so the
cross-entropy can be climbed in the three transform parameters directly, as Engstrom et al. (2019) did
for their first-order adversary. Each step moves every parameter by ``step_size`` times its box
half-width in the direction of its gradient's sign (the parameters have different units: degrees and
pixels), then clips to the box. Each restart starts at an independent uniform draw from the box, and an
example counts as broken if *any* iterate of any restart is misclassified (as in :mod:`pgd`).

The board shows this column next to the grid because Engstrom et al. found the first-order attack much
weaker than exhaustive search on this non-concave, low-dimensional landscape; ``details`` separates what
the random starts broke from what the gradient steps added, so the comparison stays honest.

``warp: madrylab`` climbs MadryLab's two-resampling warp instead (differentiable too). Their released code
has no first-order spatial attack; this is the grid's transform with robench's attack, so that every
spatial column can be computed under one convention.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from robench.threats.base import FAMILIES, Threat, omitted_at_default, require
from robench.threats.ops.geometry import (
    Warp,
    box_half_widths,
    check_box,
    check_warp,
    describe_warp,
    draw_transforms,
    warp_transforms,
)


@FAMILIES.register("spatial_pgd")
@dataclasses.dataclass
class SpatialPGD(Threat):
    """Untargeted PGD in the (rotation, translation) box; robust only if correct at every iterate."""

    max_rotation: float  # degrees
    max_translation: float  # pixels
    steps: int
    step_size: float  # fraction of each parameter's half-width per step
    restarts: int
    align_corners: bool
    warp: Warp = omitted_at_default("robench")

    def __post_init__(self):
        self.max_rotation, self.max_translation = check_box(
            self.family, self.max_rotation, self.max_translation
        )
        check_warp(self.family, self.warp, self.align_corners)
        require(self.steps >= 0, f"spatial_pgd: steps must be >= 0, got {self.steps!r}")
        require(self.restarts >= 1, f"spatial_pgd: restarts must be >= 1, got {self.restarts!r}")
        require(
            0 < self.step_size <= 2,
            "spatial_pgd: step_size must be in (0, 2] (a fraction of the box half-width), "
            f"got {self.step_size!r}",
        )
        self.half = box_half_widths(self.max_rotation, self.max_translation)

    def project(self, params: torch.Tensor) -> torch.Tensor:
        """Clip (angle, tx, ty) rows onto the box."""
        return torch.maximum(torch.minimum(params, self.half), -self.half)

    def attack(self, model, x, y, start) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One restart from ``start`` [N, 3]: fooled [N], iterate that first fooled or -1 [N], params [N, 3].

        ``params`` is the fooling transform for fooled examples and the last iterate for the others.
        """
        n = len(x)
        fooled = torch.zeros(n, dtype=torch.bool)
        first = torch.full((n,), -1, dtype=torch.long)
        found = start.clone()
        active = torch.arange(n)
        params = self.project(start)
        for t in range(self.steps + 1):
            with torch.enable_grad():
                p = params.detach().requires_grad_(True)
                xa, ya = x[active.to(x.device)], y[active.to(y.device)]
                logits = model(warp_transforms(xa, p, self.align_corners, self.warp))
                wrong = (logits.argmax(1) != ya).cpu()
                grad = None
                if t < self.steps:
                    (grad,) = torch.autograd.grad(F.cross_entropy(logits, ya, reduction="sum"), p)
            found[active] = params.detach()
            broken = active[wrong]
            fooled[broken], first[broken] = True, t
            keep = ~wrong
            active = active[keep]
            if grad is None or active.numel() == 0:
                break
            params = self.project(params.detach()[keep] + self.step_size * self.half * grad[keep].sign())
        return fooled, first, found

    def run_batch(self, model, x, y, clean_correct, ctx):
        robust = clean_correct.cpu().clone()
        fooled_at = torch.full((len(x),), -1, dtype=torch.long)
        found = torch.zeros(len(x), 3, dtype=torch.float64)
        for restart in range(self.restarts):
            # drawn for every example, so an example's start never depends on its neighbours
            start = draw_transforms((len(x),), self.half, ctx.generator)
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            fooled, it, params = self.attack(model, x[idx.to(x.device)], y[idx.to(y.device)], start[idx])
            robust[idx[fooled]] = False
            fooled_at[idx[fooled]] = it[fooled] + restart * (self.steps + 1)
            found[idx] = params
        return {"robust": robust, "fooled_at": fooled_at, "transform": found}

    def summarize(self, stats):
        fooled_at = stats["fooled_at"][stats["clean_correct"]]
        broken = fooled_at[fooled_at >= 0]
        per_restart = self.steps + 1
        return {
            "broken": int(broken.size),
            "broken_at_a_random_start": int((broken % per_restart == 0).sum()),
            "broken_by_gradient_steps": int((broken % per_restart != 0).sum()),
            "median_iterate_broken": float(np.median(broken)) if broken.size else None,
            "convention": "sign-gradient steps of step_size x half-width on (angle deg, tx px, ty px), "
            "clipped to the box; warp as in spatial_grid: "
            + describe_warp(self.warp, "out(p) = in(R p + t), bilinear, zero fill"),
        }
