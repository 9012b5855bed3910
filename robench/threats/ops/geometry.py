"""Image geometry shared by the spatial threats and by training: affine warps, integer shifts, box draws.

One module, so that "rotation", "translation" and "shift" mean the same thing in every threat family and
in every training recipe (``robench.training.augmentations``), and so that the sign conventions are written
down once. In pixel coordinates p = (x right, y down), centred on the image centre for the warp:

- the affine warp is out(p) = in(R p + t): R the rotation by ``angle`` degrees, t = (tx, ty) in pixels,
  bilinear interpolation, zero fill (``affine_grid`` + ``grid_sample``);
- the integer shift is out(p) = in(p + t) with zero fill and no interpolation, i.e. the warp with R = I:
  the content moves by -t (t = (1, 0) moves it one pixel *left*). At an integer t the two agree exactly
  (bilinear sampling at whole pixels reads single pixels), which tests/test_geometry.py pins.

A caller that thinks in "move the content by d" passes t = -d (the UAP shift probe does).

The primitives of the warp and the box draws (``affine_thetas``, ``warp``, ``box_half_widths``,
``draw_transforms``) live in :mod:`robench.models.affine`, below the threats: a model's own test-time
defence (the vote of :mod:`robench.models.vote`) warps with them too, and a model cannot import a threat.

The spatial threats may instead name MadryLab's warp (``warp: madrylab``, :func:`madrylab_warp`), the
transform of Engstrom et al.'s released code: the same (angle, tx, ty) grid point then means rotate, then
translate along the image axes, out(p) = in(R (p - t)), each step a bilinear resampling. Both live here so
that a number measured with either can be set beside the paper's (docs/protocols.md, "Grid conventions").
"""

from __future__ import annotations

import math
import typing
from typing import Literal

import torch
import torch.nn.functional as F

from robench.models.affine import affine_thetas, warp
from robench.threats.base import require

#: The warps a spatial threat's ``warp`` parameter may name (robench's own is the default).
Warp = Literal["robench", "madrylab"]
WARPS = typing.get_args(Warp)
#: MadryLab's resnet.py zero-pads its 32 x 32 inputs by 16 px (half a side) before warping and crops back
#: after, so that the translation reads rotated content, not zeros: the result is that of an unbounded
#: canvas for shifts below the pad. Images up to 32 px get their 16; larger ones half their longer side.
MADRYLAB_PAD = 16


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


# -- the affine warp ----------------------------------------------------------------------------------
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


def warp_every(
    images: torch.Tensor, transforms: torch.Tensor, align_corners: bool = False, convention: Warp = "robench"
) -> torch.Tensor:
    """Every image under every (angle, tx, ty) row: [N * K, C, H, W], image-major as :func:`warp_each`.

    robench's warp shares each transform's sampling grid across the images (:func:`warp_each`); MadryLab's
    warps the N * K pairs (:func:`madrylab_warp`, which has its own pixel grid).
    """
    if convention == "madrylab":
        return madrylab_warp(images.repeat_interleave(len(transforms), 0), transforms.repeat(len(images), 1))
    return warp_each(images, affine_thetas(transforms, *images.shape[-2:]), align_corners)


def warp_transforms(
    images: torch.Tensor, transforms: torch.Tensor, align_corners: bool = False, convention: Warp = "robench"
) -> torch.Tensor:
    """Warp each image by its own (angle, tx, ty) row: images [N, C, H, W], transforms [N, 3].

    ``convention`` is a spatial threat's ``warp``: robench's one resampling (``align_corners`` as given)
    or MadryLab's two (:func:`madrylab_warp`, which has its own pixel grid).
    """
    if convention == "madrylab":
        return madrylab_warp(images, transforms)
    h, w = images.shape[-2:]
    return warp(images, affine_thetas(transforms, h, w), align_corners)


def check_warp(family: str, convention: Warp, align_corners: bool) -> None:
    """``align_corners`` reads robench's matrices on another pixel grid; MadryLab's warp has TF's grid
    (pixel centres at integers) built in, so asking for both would record a setting that does nothing."""
    require(
        convention == "robench" or not align_corners,
        f"{family}: align_corners applies to the robench warp only, not to warp {convention!r}",
    )


def describe_warp(convention: Warp, robench_words: str) -> str:
    """The warp as a record's ``details`` states it: the family's own words for robench's warp (as its
    committed records have them), MadryLab's otherwise."""
    if convention == "robench":
        return robench_words
    return (
        "MadryLab's: zero pad, rotate about the centre (bilinear), then translate along the image axes "
        "(bilinear), crop: out(p) = in(R (p - t)), zero fill"
    )


# -- MadryLab's warp ----------------------------------------------------------------------------------
def sample_pixels(x: torch.Tensor, src_x: torch.Tensor, src_y: torch.Tensor) -> torch.Tensor:
    """Bilinear, zero fill, at source coordinates [N, H, W] in pixel indices about the image centre.

    TF's ImageProjectiveTransform puts pixel centres at integer indices and reads a fill of 0 for
    neighbours outside the image; ``grid_sample`` with align_corners=True normalised by (size - 1) / 2 is
    exactly that.
    """
    h, w = x.shape[-2:]
    grid = torch.stack([src_x / ((w - 1) / 2), src_y / ((h - 1) / 2)], dim=-1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)


def madrylab_warp(images: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """MadryLab's transform (Engstrom et al. 2019's code, resnet.py), one (angle, tx, ty) row per image.

    Their input block: ``tf.pad`` by 16 with zeros (:data:`MADRYLAB_PAD`); ``tf.contrib.image.rotate`` by
    the angle (bilinear), which maps output pixel p to input R p about the centre ((W-1)/2, (H-1)/2),
    R = [[cos, -sin], [sin, cos]] as robench's; ``tf.contrib.image.transform`` with
    [1, 0, -tx, 0, 1, -ty] (bilinear), which maps output p to input p - t, so the content moves by +t;
    then a central crop back. Composed:
    out(p) = in(R (p - t)), rotated first and interpolated twice where robench's warp is
    out(p) = in(R p + t) in one resampling: the same grid point is another transform unless t = 0.

    Differentiable in ``transforms`` (both resamplings are ``grid_sample``), so spatial_pgd can climb it.
    Coordinates are computed in float64 and sampled in the images' dtype. The translation is sampled at
    the cropped pixels only (the same values as translating the whole canvas and cropping, at a fraction
    of the cost: the grid search spends about as long warping as classifying).
    """
    h, w = images.shape[-2:]
    pad = max(MADRYLAB_PAD, (max(h, w) + 1) // 2)
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = torch.arange(h + 2 * pad, dtype=torch.float64, device=images.device) - (h + 2 * pad - 1) / 2
    cols = torch.arange(w + 2 * pad, dtype=torch.float64, device=images.device) - (w + 2 * pad - 1) / 2
    yy, xx = torch.meshgrid(rows, cols, indexing="ij")
    t = transforms.to(device=images.device, dtype=torch.float64)[:, :, None, None]
    rad = t[:, 0] * (math.pi / 180.0)
    cos, sin = torch.cos(rad), torch.sin(rad)
    rotated = sample_pixels(padded, cos * xx - sin * yy, sin * xx + cos * yy)
    xx, yy = xx[pad : pad + h, pad : pad + w], yy[pad : pad + h, pad : pad + w]
    return sample_pixels(rotated, xx - t[:, 1], yy - t[:, 2])


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
