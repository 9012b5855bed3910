"""Image geometry shared by the spatial threats and by training: affine warps, integer shifts, box draws.

One module, so that "rotation", "translation" and "shift" mean the same thing in every threat family and
in every training recipe (``robench.perturbations``), and so that the sign conventions are written down
once. In pixel coordinates p = (x right, y down), centred on the image centre for the warp:

- the affine warp is out(p) = in(R p + t): R the rotation by ``angle`` degrees, t = (tx, ty) in pixels,
  bilinear interpolation, zero fill (``affine_grid`` + ``grid_sample``);
- the integer shift is out(p) = in(p + t) with zero fill and no interpolation, i.e. the warp with R = I:
  the content moves by -t (t = (1, 0) moves it one pixel *left*). At an integer t the two agree exactly
  (bilinear sampling at whole pixels reads single pixels), which tests/test_geometry.py pins.

A caller that thinks in "move the content by d" passes t = -d (the UAP shift probe does).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from robench.threats.base import require


# -- the rotation/translation box ---------------------------------------------------------------------
def check_box(family: str, max_rotation, max_translation) -> tuple[float, float]:
    """Validate the (rotation, translation) box of a spatial threat; returns it as floats."""
    for key, value in (("max_rotation", max_rotation), ("max_translation", max_translation)):
        require(
            isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0,
            f"{family}: {key} must be a number >= 0, got {value!r}",
        )
    require(max_rotation <= 180, f"{family}: max_rotation {max_rotation} exceeds 180 degrees")
    return float(max_rotation), float(max_translation)


def box_half_widths(max_rotation: float, max_translation: float) -> torch.Tensor:
    """The box as per-parameter half-widths (angle, tx, ty), float64 on the CPU."""
    return torch.tensor([max_rotation, max_translation, max_translation], dtype=torch.float64)


def draw_transforms(shape: tuple[int, ...], half: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(angle, tx, ty) uniform in the box, shaped ``[*shape, 3]`` (float64, CPU generator).

    Drawn on the CPU so that a seed gives the same transforms on every device.
    """
    return (torch.rand(*shape, 3, generator=generator, dtype=torch.float64) * 2 - 1) * half


# -- the affine warp ----------------------------------------------------------------------------------
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


def warp_each(x: torch.Tensor, theta: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    """Every image under every matrix: x [N, C, H, W], theta [K, 2, 3] -> [N * K, C, H, W], image-major
    (row i * K + j is image i under matrix j); equal, bit for bit, to :func:`warp` on the repeated pairs.

    Why not :func:`warp` on repeated inputs: ``affine_grid`` costs about 4x ``grid_sample`` on MNIST-sized
    images, and a matrix's sampling grid does not depend on the image, so each of the K grids is computed
    once and shared by the N images (the grid search's warp time falls by about that factor).
    """
    n, k = x.shape[0], theta.shape[0]
    grid = F.affine_grid(theta.to(x.device, x.dtype), [k, *x.shape[1:]], align_corners=align_corners)
    return F.grid_sample(
        x.repeat_interleave(k, 0),
        grid.repeat(n, 1, 1, 1),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=align_corners,
    )


def warp_transforms(
    images: torch.Tensor, transforms: torch.Tensor, align_corners: bool = False
) -> torch.Tensor:
    """Warp each image by its own (angle, tx, ty) row: images [N, C, H, W], transforms [N, 3]."""
    h, w = images.shape[-2:]
    return warp(images, affine_thetas(transforms, h, w), align_corners)


# -- the exact integer shift --------------------------------------------------------------------------
def shift(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Integer shift per image, zero fill: out[n, :, i, j] = x[n, :, i + ty, j + tx] (0 outside).

    ``t`` is [N, 2] integer (tx, ty), one row per image. This is out(p) = in(p + t), the warp's
    convention: content moves by -t. Exact: it only moves pixels.
    """
    n, _, h, w = x.shape
    t = t.to(device=x.device, dtype=torch.long)
    pad = int(t.abs().max()) if t.numel() else 0
    if pad == 0:
        return x.clone()
    padded = F.pad(x, (pad, pad, pad, pad)).permute(0, 2, 3, 1)  # [N, H+2p, W+2p, C]
    rows = torch.arange(h, device=x.device).view(1, h) + pad + t[:, 1:2]
    cols = torch.arange(w, device=x.device).view(1, w) + pad + t[:, 0:1]
    images = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded[images, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2).contiguous()
