"""The combined adversary: a rotation/translation of the grid, then an ℓp perturbation of the warped image.

Engstrom et al. (2019, "Exploring the Landscape of Spatial Robustness", ICML) attack with a spatial
transform followed by ℓ∞ PGD on the transformed image: the adversary picks x' = warp(x, T) + δ with T in
the rotation/translation box and ‖δ‖ ≤ ε. robench's version is built so that it is at least as strong as
the two threats it combines run separately (``spatial`` and ``pgd_linf``), per example and by
construction: an example is broken when

1. ``linf``: PGD on the untransformed image fools it. This is the ``pgd`` family with the same settings,
   run first, on the whole batch, from the batch's own generator, so it draws the same random starts as a
   ``pgd_linf`` run of the same seed, batch and chunk sizes and reaches the same verdicts;
2. ``spatial``: a transform of the grid alone fools it (the ``spatial_grid`` family's search, on the
   examples PGD left standing; its verdicts do not depend on the order it tries transforms in);
3. ``both``: PGD started on one of its ``top_k`` grid transforms fools it. An example that reaches this
   step survives every transform of the grid, so its transforms are ranked by cross-entropy (the grid's
   worst for the loss first) and PGD runs in the ℓp ball around each warped image in turn, until one
   fools it.

An example robust here is therefore robust under both separate threats (its robust set is a subset of
their intersection); what the third step breaks is where the combination is strictly stronger.
docs/protocols.md says what the record holds and how it differs from the union of two records.

The third step draws its PGD starts from a generator derived from the batch generator's state without
advancing it: the next batch's first step must draw what ``pgd_linf`` drew there.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Literal

import torch

from robench.threats.base import FAMILIES, Threat, require
from robench.threats.ops.geometry import warp_transforms
from robench.threats.pgd import PGD
from robench.threats.spatial import SpatialGrid

#: What broke each example, one character per example in the record's ``details.broken_by``.
FATES = {
    "c": "misclassified clean (not attacked)",
    "l": "linf: PGD on the untransformed image",
    "s": "spatial: a grid transform alone",
    "b": "both: PGD on the image under one of its top_k grid transforms (see details.both)",
    "r": "robust: none of the three",
}
#: The per-example code of each part in ``run_batch``'s ``part`` array (0: not broken), and its character.
PARTS = {1: "linf", 2: "spatial", 3: "both"}
CHARS = "rlsb"


def side_generator(generator: torch.Generator) -> torch.Generator:
    """A generator seeded from ``generator``'s state, which it leaves where it was: draws that a threat
    adds after a step whose draws must match another threat's run."""
    digest = hashlib.sha256(generator.get_state().numpy().tobytes()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


@FAMILIES.register("spatial_and_pgd")
@dataclasses.dataclass
class SpatialAndPGD(Threat):
    """Broken by PGD alone, by a grid transform alone, or by PGD from one of the top_k grid transforms."""

    # the grid (spatial_grid's parameters; robench's warp)
    max_rotation: float  # degrees
    n_rotations: int
    max_translation: float  # pixels
    n_translations: int
    align_corners: bool
    # the ℓp search (pgd's parameters)
    norm: Literal["linf", "l2"]
    eps: float
    steps: int
    step_size: float
    restarts: int
    # the combination
    top_k: int  # grid transforms, worst for the loss first, that PGD starts from

    def __post_init__(self):
        self.grid = SpatialGrid(
            max_rotation=self.max_rotation,
            n_rotations=self.n_rotations,
            max_translation=self.max_translation,
            n_translations=self.n_translations,
            align_corners=self.align_corners,
            axis_curves=False,
        )
        self.pgd = PGD(
            norm=self.norm, eps=self.eps, steps=self.steps, step_size=self.step_size, restarts=self.restarts
        )
        self.max_rotation, self.max_translation = self.grid.max_rotation, self.grid.max_translation
        n = len(self.grid.transforms)
        require(
            1 <= self.top_k <= n,
            f"spatial_and_pgd: top_k must be in [1, {n}] (the grid's transforms), got {self.top_k!r}",
        )

    def run_batch(self, model, x, y, clean_correct, ctx):
        n = len(x)
        part = torch.zeros(n, dtype=torch.long)
        transform = torch.full((n, 3), float("nan"), dtype=torch.float64)
        rank = torch.full((n,), -1, dtype=torch.long)

        linf = self.pgd.run_batch(model, x, y, clean_correct, ctx)  # first: pgd_linf's draws
        part[(clean_correct & ~linf["robust"]).cpu()] = 1
        spatial = self.grid.run_batch(model, x, y, linf["robust"], ctx)  # the grid draws nothing
        fooled_by = spatial["fooled_by"].cpu()
        by_grid = (linf["robust"] & ~spatial["robust"]).cpu()
        part[by_grid] = 2
        transform[by_grid] = self.grid.transforms[fooled_by[by_grid]]

        robust = spatial["robust"].clone()
        alive = robust.nonzero().squeeze(1)
        if alive.numel():
            with torch.inference_mode():
                loss = self.grid.loss_under(model, x[alive], y[alive], self.grid.transforms, ctx.batch_size)
            worst = loss.topk(self.top_k, dim=1).indices.cpu()  # [alive, top_k], worst first
            side = dataclasses.replace(ctx, generator=side_generator(ctx.generator))
            for j in range(self.top_k):
                still = robust[alive].cpu()
                idx, chosen = alive[still.to(alive.device)], worst[still, j]
                if idx.numel() == 0:
                    break
                params = self.grid.transforms[chosen]
                warped = warp_transforms(x[idx], params, self.align_corners)
                ok = torch.ones(len(idx), dtype=torch.bool, device=x.device)
                out = self.pgd.run_batch(model, warped, y[idx], ok, side)
                broken = ~out["robust"]
                robust[idx[broken]] = False
                cpu = idx[broken].cpu()
                part[cpu], transform[cpu], rank[cpu] = 3, params[broken.cpu()], j
        return {
            "robust": robust,
            "part": part,
            "transform": transform,
            "rank": rank,
            "zero_grad": linf["zero_grad"],
        }

    def summarize(self, stats):
        part, clean = stats["part"], stats["clean_correct"]
        fate = [CHARS[p] if c else "c" for p, c in zip(part.tolist(), clean.tolist(), strict=True)]
        both = [int(i) for i in (part == 3).nonzero()[0]]
        return {
            "order": "linf (PGD on the image, pgd's draws), then spatial (the grid on what PGD left), then "
            "both (PGD on the image under each of its top_k grid transforms, highest loss first)",
            "broken": {name: int((part[clean] == code).sum()) for code, name in PARTS.items()},
            "broken_by": "".join(fate),
            "broken_by_legend": FATES,
            "both": [
                {
                    "example": i,
                    "rotation": float(stats["transform"][i][0]),
                    "tx": float(stats["transform"][i][1]),
                    "ty": float(stats["transform"][i][2]),
                    "rank": int(stats["rank"][i]),
                }
                for i in both
            ],
            "both_by_rank": [int((stats["rank"][part == 3] == j).sum()) for j in range(self.top_k)],
            "convention": "the grid's warp: out(p) = in(R p + t), p in pixels about the image centre, "
            "x right / y down, bilinear, zero fill; then the lp ball around the warped image, clipped to "
            "[0,1]",
        }

    def flags(self, stats):
        return self.grid.flags(stats) + self.pgd.flags(stats)
