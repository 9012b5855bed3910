"""Worst of k random rotations and translations (Engstrom et al. 2019's "worst-of-10").

Each example gets its own k transforms, drawn independently and uniformly from the continuous box
(|angle| <= max_rotation degrees, |tx|, |ty| <= max_translation px), not from the grid: the point of
this threat is what a cheap random adversary finds, next to the grid's exhaustive search. The first
draw doubles as the "random" column of the paper (accuracy under one random transform).

The warp is the grid's (:func:`robench.threats.spatial.warp`, same convention and interpolation), so the
two threats differ only in which transforms they try. Draws come from the chunk's CPU generator and are
made for every example of the batch, misclassified or not, so the draws an example gets depend only on
the seed and its position, never on what the model did to its neighbours.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import torch

from robench.threats.base import FAMILIES, Threat, require
from robench.threats.spatial import affine_thetas, warp


def check_box(family: str, max_rotation, max_translation) -> tuple[float, float]:
    """Validate the (rotation, translation) box of a spatial threat; returns it as floats."""
    for key, value in (("max_rotation", max_rotation), ("max_translation", max_translation)):
        require(isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0,
                f"{family}: {key} must be a number >= 0, got {value!r}")
    require(max_rotation <= 180, f"{family}: max_rotation {max_rotation} exceeds 180 degrees")
    return float(max_rotation), float(max_translation)


def box_half_widths(max_rotation: float, max_translation: float) -> torch.Tensor:
    """The box as per-parameter half-widths (angle, tx, ty), float64 on the CPU."""
    return torch.tensor([max_rotation, max_translation, max_translation], dtype=torch.float64)


def draw_transforms(shape: tuple[int, ...], half: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(angle, tx, ty) uniform in the box, shaped ``[*shape, 3]`` (float64, CPU generator)."""
    return (torch.rand(*shape, 3, generator=generator, dtype=torch.float64) * 2 - 1) * half


def warp_transforms(images: torch.Tensor, transforms: torch.Tensor, align_corners: bool = False
                    ) -> torch.Tensor:
    """Warp each image by its own (angle, tx, ty) row, with the grid's convention and interpolation."""
    h, w = images.shape[-2:]
    return warp(images, affine_thetas(transforms, h, w), align_corners)


def predict_under(
    model,
    x: torch.Tensor,
    params: torch.Tensor,
    transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int,
) -> torch.Tensor:
    """Top-1 predictions [N, K] of every image under each of its own K transforms.

    ``params[n, k]`` parametrises the k-th transform of image n and ``transform(images, params)`` applies
    one parameter row per image. The N*K (image, transform) pairs are classified ``batch_size`` at a time,
    so memory stays bounded whatever K is.
    """
    n, k = params.shape[:2]
    flat = params.reshape(n * k, *params.shape[2:])
    out = torch.empty(n * k, dtype=torch.long, device=x.device)
    with torch.inference_mode():
        for lo in range(0, n * k, batch_size):
            pairs = torch.arange(lo, min(n * k, lo + batch_size))
            images = transform(x[(pairs // k).to(x.device)], flat[pairs.to(flat.device)])
            out[lo : lo + len(pairs)] = model(images).argmax(1)
    return out.view(n, k)


@FAMILIES.register("spatial_random")
@dataclasses.dataclass
class SpatialRandom(Threat):
    """Robust only if correct under all k random transforms of the box."""

    max_rotation: float  # degrees
    max_translation: float  # pixels
    k: int
    align_corners: bool


    def __post_init__(self):
        self.max_rotation, self.max_translation = check_box(self.family, self.max_rotation,
                                                            self.max_translation)
        require(isinstance(self.k, int) and not isinstance(self.k, bool) and self.k >= 1,
                f"spatial_random: k must be an integer >= 1, got {self.k!r}")
        require(isinstance(self.align_corners, bool), "spatial_random: align_corners must be true or false")

    def run_batch(self, model, x, y, clean_correct, ctx):
        draws = draw_transforms((len(x), self.k), box_half_widths(self.max_rotation, self.max_translation),
                                ctx.generator)
        transform = functools.partial(warp_transforms, align_corners=self.align_corners)
        correct = predict_under(model, x, draws, transform, ctx.batch_size) == y.view(-1, 1)
        return {"robust": clean_correct & correct.all(1), "correct": correct, "draws": draws}

    def summarize(self, stats):
        correct = stats["correct"].reshape(len(stats["robust"]), self.k)
        worst_of = [float(correct[:, :j].all(1).mean()) if len(correct) else 0.0
                    for j in range(1, self.k + 1)]
        return {
            "random_accuracy": worst_of[0],  # k = 1: the first draw, whatever the clean verdict
            "mean_accuracy_over_draws": float(correct.mean()) if correct.size else 0.0,
            "worst_of_j_accuracy": worst_of,  # j = 1..k, over the draws only (robust_acc also needs clean)
            "convention": "draws uniform in the continuous box, per example; warp as in spatial_grid: "
                          "out(p) = in(R p + t), bilinear, zero fill",
        }

