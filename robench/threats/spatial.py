"""Worst case over a grid of rotations and translations (Engstrom et al. 2019).

Each transform is one affine warp, out(p) = in(R p + t), with p in pixel coordinates centred on the
image centre, R the rotation by the angle (x right, y down), t the translation in pixels, bilinear
interpolation and zero fill (``affine_grid`` + ``grid_sample``, ``align_corners`` recorded). An example is
robust only if it is classified correctly under every transform of the grid.

Why the search is shaped the way it is (performance.md):
- everything runs under ``inference_mode`` and images x transforms are warped and classified together,
  about ``batch_size`` warped images per forward;
- the "axis" transforms (rotation only, translation only) are evaluated for every example, which gives
  the per-angle and per-translation accuracy curves for ~7% of the full grid's cost;
- the rest of the grid is searched most-damaging-first (ordered by how many examples each angle and
  each translation fooled on the axes) and an example leaves the search at its first failure; the number
  of transforms tried per forward grows as the survivors shrink, so collapsing models finish after a
  few forwards and robust models run in large fused batches.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F

from robench.threats.base import FAMILIES, Threat, require


def grid_transforms(max_rotation, n_rotations, max_translation, n_translations) -> torch.Tensor:
    """All (angle_deg, tx, ty) of the grid, [T, 3], rotations outermost (float64 for exact zeros)."""
    angles = torch.linspace(-max_rotation, max_rotation, n_rotations, dtype=torch.float64)
    shifts = torch.linspace(-max_translation, max_translation, n_translations, dtype=torch.float64)
    a, tx, ty = torch.meshgrid(angles, shifts, shifts, indexing="ij")
    return torch.stack([a.flatten(), tx.flatten(), ty.flatten()], dim=1) + 0.0  # -0.0 -> 0.0


def affine_thetas(transforms: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``affine_grid`` matrices [T, 2, 3] for out(p) = in(R p + t) in centred pixel coordinates.

    ``affine_grid`` works in normalised coordinates n = S p with S = diag(2/W, 2/H) (align_corners=False),
    so the matrix is S R S^-1 with translation S t; for square images S R S^-1 = R.
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
    """Apply one affine matrix per image: x [N, C, H, W], theta [N, 2, 3]."""
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=align_corners)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)


@FAMILIES.register("spatial_grid")
@dataclasses.dataclass
class SpatialGrid(Threat):
    """Per-example worst case over rotations x translations x translations."""

    max_rotation: float  # degrees
    n_rotations: int
    max_translation: float  # pixels
    n_translations: int
    align_corners: bool

    family = "spatial_grid"

    def __post_init__(self):
        for key in ("max_rotation", "max_translation"):
            value = getattr(self, key)
            require(isinstance(value, (int, float)) and 0 <= value, f"spatial_grid: {key} must be >= 0, got {value!r}")
        require(self.max_rotation <= 180, f"spatial_grid: max_rotation {self.max_rotation} exceeds 180 degrees")
        for key in ("n_rotations", "n_translations"):
            value = getattr(self, key)
            require(isinstance(value, int) and value >= 1, f"spatial_grid: {key} must be an integer >= 1, got {value!r}")
        require(isinstance(self.align_corners, bool), "spatial_grid: align_corners must be true or false")
        self.max_rotation = float(self.max_rotation)
        self.max_translation = float(self.max_translation)
        self.transforms = grid_transforms(self.max_rotation, self.n_rotations, self.max_translation, self.n_translations)
        a, tx, ty = self.transforms.T
        self.on_axis = ((tx == 0) & (ty == 0)) | (a == 0)
        self.identity = int(torch.nonzero((a == 0) & (tx == 0) & (ty == 0)).flatten()[0]) if (
            (a == 0) & (tx == 0) & (ty == 0)).any() else None

    # -- evaluation ---------------------------------------------------------------------------------
    def correct_under(self, model, x, y, thetas, batch_size) -> torch.Tensor:
        """Correctness [N, T] of every image under every transform, ~batch_size warped images a forward."""
        n, t = x.shape[0], thetas.shape[0]
        out = torch.empty(n, t, dtype=torch.bool, device=x.device)
        per_forward = max(1, batch_size // max(t, 1))  # images per forward
        for i in range(0, n, per_forward):
            xb, yb = x[i : i + per_forward], y[i : i + per_forward]
            b = xb.shape[0]
            for j in range(0, t, max(1, batch_size // b)):
                th = thetas[j : j + max(1, batch_size // b)]
                k = th.shape[0]
                warped = warp(xb.repeat_interleave(k, 0), th.repeat(b, 1, 1), self.align_corners)
                pred = model(warped).argmax(1).view(b, k)
                out[i : i + b, j : j + k] = pred == yb.view(-1, 1)
        return out

    def search_order(self, axis_correct: torch.Tensor) -> torch.Tensor:
        """Off-axis transforms, most damaging first: by the axis failures of their angle and shift."""
        a, tx, ty = self.transforms.T
        axis_idx = torch.nonzero(self.on_axis).flatten()
        fail = (~axis_correct).float().mean(0).cpu().double() if axis_correct.numel() else torch.zeros(len(axis_idx), dtype=torch.float64)
        score = torch.zeros(len(self.transforms), dtype=torch.float64)
        for col, i in enumerate(axis_idx.tolist()):
            if tx[i] == 0 and ty[i] == 0:
                score += (a == a[i]).double() * fail[col]
            if a[i] == 0:
                score += ((tx == tx[i]) & (ty == ty[i])).double() * fail[col]
        # tie-break towards the extremes of the box, which fool most often on undefended models
        extremity = a.abs() / max(self.max_rotation, 1e-9) + (tx.abs() + ty.abs()) / max(self.max_translation, 1e-9)
        off = torch.nonzero(~self.on_axis).flatten()
        order = sorted(off.tolist(), key=lambda i: (-float(score[i]), -float(extremity[i]), i))
        return torch.tensor(order, dtype=torch.long)

    def run_batch(self, model, x, y, clean_correct, ctx):
        with torch.inference_mode():
            h, w = x.shape[-2:]
            thetas = affine_thetas(self.transforms, h, w).to(x.device)
            axis_idx = torch.nonzero(self.on_axis).flatten()
            axis_correct = self.correct_under(model, x, y, thetas[axis_idx], ctx.batch_size)
            robust = clean_correct & axis_correct.all(1)
            axis_fail = ~axis_correct.all(1)
            first_fail = axis_idx.to(x.device)[torch.argmin(axis_correct.to(torch.uint8), dim=1)]
            fooled_by = torch.where(axis_fail, first_fail, torch.full_like(first_fail, -1))
            tried = torch.full_like(y, len(axis_idx))
            active = torch.nonzero(robust).flatten()
            order = self.search_order(axis_correct).to(x.device)
            pos = 0
            while active.numel() and pos < len(order):
                k = max(1, ctx.batch_size // active.numel())
                group = order[pos : pos + k]
                correct = self.correct_under(model, x[active], y[active], thetas[group], ctx.batch_size)
                ok = correct.all(1)
                failed = active[~ok]
                robust[failed] = False
                fooled_by[failed] = group[torch.argmin(correct[~ok].to(torch.uint8), dim=1)]
                tried[active] += len(group)
                active = active[ok]
                pos += len(group)
        return {"robust": robust, "axis_correct": axis_correct, "fooled_by": fooled_by, "tried": tried}

    # -- reporting ----------------------------------------------------------------------------------
    def summarize(self, stats):
        a, tx, ty = self.transforms.numpy().T
        axis_idx = np.flatnonzero(self.on_axis.numpy())
        acc = stats["axis_correct"].mean(0) if len(stats["axis_correct"]) else np.zeros(len(axis_idx))
        rot = [c for c, i in enumerate(axis_idx) if tx[i] == 0 and ty[i] == 0]
        shift = [c for c, i in enumerate(axis_idx) if a[i] == 0]
        fooled_by = stats["fooled_by"][(stats["fooled_by"] >= 0) & stats["clean_correct"]]
        counts = np.bincount(fooled_by, minlength=len(self.transforms)) if fooled_by.size else np.zeros(0, int)
        top = np.argsort(-counts, kind="stable")[:5] if counts.size else []
        return {
            "n_transforms": len(self.transforms),
            "identity_in_grid": self.identity is not None,
            "convention": "out(p) = in(R p + t), p in pixels about the image centre, x right / y down, "
                          "bilinear, zero fill",
            "accuracy_by_rotation": {  # translation 0
                "rotation_deg": [float(a[axis_idx[c]]) for c in rot], "accuracy": [float(acc[c]) for c in rot],
            },
            "accuracy_by_translation": {  # rotation 0
                "tx": [float(tx[axis_idx[c]]) for c in shift], "ty": [float(ty[axis_idx[c]]) for c in shift],
                "accuracy": [float(acc[c]) for c in shift],
            },
            "most_damaging": [
                {"rotation": float(a[i]), "tx": float(tx[i]), "ty": float(ty[i]), "fooled": int(counts[i])}
                for i in top if counts[i] > 0
            ],
            "mean_transforms_tried": float(stats["tried"].mean()) if stats["tried"].size else 0.0,
        }

    def flags(self, stats):
        if self.identity is None:
            return ["grid_misses_identity: the grid does not contain the identity transform, so spatial "
                    "accuracy is not bounded by clean accuracy"]
        return []
