"""The affine warp and the uniform (rotation, translation) box draws, below the threats.

These are the primitives of :mod:`robench.threats.ops.geometry` (which re-exports them and documents the
conventions): out(p) = in(R p + t) in centred pixel coordinates, bilinear, zero fill. They live in the
models room because a model may carry a test-time defence that warps its own input (the vote of
:mod:`robench.models.vote`), and a model (L2) cannot import a threat (L3): keeping one copy here, used by
the grid, the random and first-order spatial threats, training and the vote, is what makes "rotation by
30 degrees" mean the same transform in all of them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def box_half_widths(max_rotation: float, max_translation: float) -> torch.Tensor:
    """The box as per-parameter half-widths (angle, tx, ty), float64 on the CPU."""
    return torch.tensor([max_rotation, max_translation, max_translation], dtype=torch.float64)


def draw_transforms(shape: tuple[int, ...], half: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(angle, tx, ty) uniform in the box, shaped ``[*shape, 3]`` (float64, CPU generator).

    Drawn on the CPU so that a seed gives the same transforms on every device.
    """
    return (torch.rand(*shape, 3, generator=generator, dtype=torch.float64) * 2 - 1) * half


def affine_thetas(transforms: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``affine_grid`` matrices [T, 2, 3] for out(p) = in(R p + t) in centred pixel coordinates.

    ``affine_grid`` works in normalised coordinates n = S p with S = diag(2/W, 2/H) (align_corners=False),
    so the matrix is S R S^-1 with translation S t; for square images S R S^-1 = R. Pixels mean pixels
    only with align_corners=False (every shipped threat's setting): with True, ``grid_sample`` spans
    W - 1 pixels instead of W, so t moves the content t (W - 1) / W px.
    """
    rad = transforms[:, 0] * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    sx, sy = 2.0 / width, 2.0 / height
    theta = torch.zeros(len(transforms), 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin * sx / sy
    theta[:, 1, 0] = sin * sy / sx
    theta[:, 1, 1] = cos
    theta[:, 0, 2] = transforms[:, 1] * sx
    theta[:, 1, 2] = transforms[:, 2] * sy
    return theta.float()


def warp(x: torch.Tensor, theta: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    """Apply one affine matrix per image: x [N, C, H, W], theta [N, 2, 3]; bilinear, zero fill."""
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=align_corners)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)
