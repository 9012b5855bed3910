"""Worst of k random rotations and translations (Engstrom et al. 2019's "worst-of-10").

Each example gets its own k transforms, drawn independently and uniformly from the continuous box
(|angle| <= max_rotation degrees, |tx|, |ty| <= max_translation px), not from the grid: the point of
this threat is what a cheap random adversary finds, next to the grid's exhaustive search. The first
draw doubles as the "random" column of the paper (accuracy under one random transform).

The warp is the grid's (:mod:`robench.threats.ops.geometry`, same convention and interpolation, and the same
``warp`` parameter: robench's or MadryLab's), so the two threats differ only in which transforms they
try. Draws come from the chunk's CPU generator and are made for every example of the batch, misclassified
or not, so the draws an example gets depend only on the seed and its position, never on what the model
did to its neighbours.
"""

from __future__ import annotations

import dataclasses
import functools

from robench.models.affine import box_half_widths, draw_transforms
from robench.threats.base import FAMILIES, Threat, omitted_at_default, require
from robench.threats.ops.geometry import Warp, check_box, check_warp, describe_warp, warp_transforms
from robench.threats.ops.predict import predict_under


@FAMILIES.register("spatial_random")
@dataclasses.dataclass
class SpatialRandom(Threat):
    """Robust only if correct under all k random transforms of the box."""

    argmax_verdicts = True

    max_rotation: float  # degrees
    max_translation: float  # pixels
    k: int
    align_corners: bool
    warp: Warp = omitted_at_default("robench")

    def __post_init__(self):
        self.max_rotation, self.max_translation = check_box(
            self.family, self.max_rotation, self.max_translation
        )
        check_warp(self.family, self.warp, self.align_corners)
        require(self.k >= 1, f"spatial_random: k must be >= 1, got {self.k!r}")

    def run_batch(self, model, x, y, clean_correct, ctx):
        draws = draw_transforms(
            (len(x), self.k), box_half_widths(self.max_rotation, self.max_translation), ctx.generator
        )
        transform = functools.partial(warp_transforms, align_corners=self.align_corners, convention=self.warp)
        correct = predict_under(model, x, draws, transform, ctx.batch_size) == y.view(-1, 1)
        return {"robust": clean_correct & correct.all(1), "correct": correct, "draws": draws}

    def summarize(self, stats):
        correct = stats["correct"].reshape(len(stats["robust"]), self.k)
        worst_of = [
            float(correct[:, :j].all(1).mean()) if len(correct) else 0.0 for j in range(1, self.k + 1)
        ]
        return {
            "random_accuracy": worst_of[0],  # k = 1: the first draw, whatever the clean verdict
            "mean_accuracy_over_draws": float(correct.mean()) if correct.size else 0.0,
            "worst_of_j_accuracy": worst_of,  # j = 1..k, over the draws only (robust_acc also needs clean)
            "convention": "draws uniform in the continuous box, per example; warp as in spatial_grid: "
            + describe_warp(self.warp, "out(p) = in(R p + t), bilinear, zero fill"),
        }
