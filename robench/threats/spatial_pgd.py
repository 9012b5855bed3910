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

On a randomised model (a test-time vote) each step's gradient is the expectation over ``eot_samples`` of
the vote's transforms applied after the attack's (EOT, :mod:`robench.threats.ops.eot`), each verdict the
vote's; a deterministic model's runs are unchanged.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from robench.models.affine import box_half_widths, draw_transforms
from robench.threats.base import FAMILIES, Threat, omitted_at_default, require
from robench.threats.ops.eot import EOT, eot_details, eot_for
from robench.threats.ops.geometry import Warp, check_box, check_warp, describe_warp, warp_transforms


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
    eot_samples: int = omitted_at_default(10)  # transforms per gradient on a randomised model

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
        require(self.eot_samples >= 1, f"spatial_pgd: eot_samples must be >= 1, got {self.eot_samples!r}")
        self.half = box_half_widths(self.max_rotation, self.max_translation)

    def project(self, params: torch.Tensor) -> torch.Tensor:
        """Clip (angle, tx, ty) rows onto the box."""
        return torch.maximum(torch.minimum(params, self.half), -self.half)

    def attack(
        self, model, x, y, start, generator: torch.Generator | None = None, eot: EOT | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One restart from ``start`` [N, 3]: fooled [N], iterate that first fooled or -1 [N], params [N, 3].

        ``params`` is the fooling transform for fooled examples and the last iterate for the others. With
        ``eot`` (a randomised model) each gradient is the EOT one, its samples drawn from ``generator``.
        """
        n = len(x)
        fooled = torch.zeros(n, dtype=torch.bool)
        first = torch.full((n,), -1, dtype=torch.long)
        found = start.clone()
        active = torch.arange(n)
        params = self.project(start)
        for t in range(self.steps + 1):
            draws = eot.draws(n, generator) if eot is not None and t < self.steps else None
            with torch.enable_grad():
                p = params.detach().requires_grad_(True)
                xa, ya = x[active.to(x.device)], y[active.to(y.device)]
                warped = warp_transforms(xa, p, self.align_corners, self.warp)
                logits = model(warped)
                wrong = (logits.argmax(1) != ya).cpu()
                grad = None
                if t < self.steps:
                    if draws is None:
                        loss = F.cross_entropy(logits, ya, reduction="sum")
                    else:
                        loss = eot.loss(warped, ya, draws[active])
                    (grad,) = torch.autograd.grad(loss, p)
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
        eot = eot_for(model, self.eot_samples)
        for restart in range(self.restarts):
            # drawn for every example, so an example's start never depends on its neighbours
            start = draw_transforms((len(x),), self.half, ctx.generator)
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            xs, ys = x[idx.to(x.device)], y[idx.to(y.device)]
            fooled, it, params = self.attack(model, xs, ys, start[idx], ctx.generator, eot)
            robust[idx[fooled]] = False
            fooled_at[idx[fooled]] = it[fooled] + restart * (self.steps + 1)
            found[idx] = params
        out = {"robust": robust, "fooled_at": fooled_at, "transform": found}
        if eot is not None:
            out["eot_samples"] = torch.full_like(fooled_at, eot.samples)
        return out

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
            **eot_details(stats),
        }
