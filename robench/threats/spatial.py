"""Worst case over a grid of rotations and translations (Engstrom et al. 2019).

Each transform is one affine warp, out(p) = in(R p + t), with p in pixel coordinates centred on the
image centre, R the rotation by the angle (x right, y down), t the translation in pixels, bilinear
interpolation and zero fill (``affine_grid`` + ``grid_sample``, ``align_corners`` recorded; the warp lives
in :mod:`robench.threats.ops.geometry`, shared with the other spatial threats and with training). With
``warp: madrylab`` the same grid points go through MadryLab's warp instead (rotate, then translate, two
resamplings: ``spatial_madrylab``), so a number can be set beside the paper's. An example is robust only
if it is classified correctly under every transform of the grid.

Why the search is shaped the way it is (docs/performance.md):
- everything runs under ``inference_mode`` and images x transforms are warped and classified together,
  about ``batch_size`` warped images per forward;
- an example leaves the search at its first failure, and the transforms are tried most-damaging-first:
  the extremes of the box to begin with, then the angles and shifts that have fooled the most examples so
  far; the number of transforms tried per forward grows as the survivors shrink, so a collapsing model is
  done after a few forwards and a robust one runs in large fused batches;
- with ``axis_curves`` every example is first classified under every one-factor transform (rotation only,
  translation only): that gives accuracy-by-angle and accuracy-by-shift curves in ``details`` for 55 of the
  775 transforms, a cost worth paying for ``spatial_rotation``/``spatial_translation`` (which are exactly
  those transforms) but not for the worst case alone.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from robench.threats.base import FAMILIES, Threat, omitted_at_default, require
from robench.threats.ops.geometry import Warp, check_box, check_warp, describe_warp, warp_every


def grid_transforms(max_rotation, n_rotations, max_translation, n_translations) -> torch.Tensor:
    """All (angle_deg, tx, ty) of the grid, [T, 3], rotations outermost (float64 for exact zeros)."""
    angles = torch.linspace(-max_rotation, max_rotation, n_rotations, dtype=torch.float64)
    shifts = torch.linspace(-max_translation, max_translation, n_translations, dtype=torch.float64)
    a, tx, ty = torch.meshgrid(angles, shifts, shifts, indexing="ij")
    return torch.stack([a.flatten(), tx.flatten(), ty.flatten()], dim=1) + 0.0  # -0.0 -> 0.0


def _correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return logits.argmax(1) == labels


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, reduction="none")


#: The largest grid built: the grid is materialised when the threat is created, and beyond this a run
#: would not end anyway (the published grid has 775).
MAX_TRANSFORMS = 10**6


@FAMILIES.register("spatial_grid")
@dataclasses.dataclass
class SpatialGrid(Threat):
    """Per-example worst case over rotations x translations x translations."""

    argmax_verdicts = True

    max_rotation: float  # degrees
    n_rotations: int
    max_translation: float  # pixels
    n_translations: int
    align_corners: bool
    axis_curves: bool  # also classify every example under every one-factor transform (accuracy curves)
    warp: Warp = omitted_at_default("robench")

    def __post_init__(self):
        self.max_rotation, self.max_translation = check_box(
            self.family, self.max_rotation, self.max_translation
        )
        check_warp(self.family, self.warp, self.align_corners)
        for key in ("n_rotations", "n_translations"):
            require(getattr(self, key) >= 1, f"spatial_grid: {key} must be >= 1, got {getattr(self, key)!r}")
        size = self.n_rotations * self.n_translations**2
        require(
            size <= MAX_TRANSFORMS,
            f"spatial_grid: {self.n_rotations} x {self.n_translations}^2 = {size} "
            f"transforms; at most {MAX_TRANSFORMS:,} (each costs a forward pass)",
        )
        self.transforms = grid_transforms(
            self.max_rotation, self.n_rotations, self.max_translation, self.n_translations
        )
        a, tx, ty = self.transforms.T
        self.on_axis = ((tx == 0) & (ty == 0)) | (a == 0)
        is_identity = (a == 0) & (tx == 0) & (ty == 0)
        self.identity = int(torch.nonzero(is_identity).flatten()[0]) if is_identity.any() else None
        self.angle_values, self.angle_id = torch.unique(a, return_inverse=True)
        self.shift_values, self.shift_id = torch.unique(self.transforms[:, 1:], dim=0, return_inverse=True)
        self.extremity = (
            a.abs() / max(self.max_rotation, 1e-9) + (tx.abs() + ty.abs()) / max(self.max_translation, 1e-9)
        ).tolist()

    # -- evaluation ---------------------------------------------------------------------------------
    def correct_under(self, model, x, y, transforms, batch_size) -> torch.Tensor:
        """Correctness [N, T] of every image under every (angle, tx, ty) row of ``transforms``, about
        batch_size warped images a forward."""
        return self.score_under(model, x, y, transforms, batch_size, _correct, torch.bool)

    def loss_under(self, model, x, y, transforms, batch_size) -> torch.Tensor:
        """Cross-entropy [N, T] of every image under every row of ``transforms``: how close each transform
        comes to fooling, which ranks the transforms an example survives (spatial_and_pgd starts its ℓp
        search from the worst of them)."""
        return self.score_under(model, x, y, transforms, batch_size, _loss, torch.float32)

    def score_under(self, model, x, y, transforms, batch_size, score, dtype) -> torch.Tensor:
        """``score(logits, labels)`` [N, T] of every image under every row of ``transforms``, about
        batch_size warped images a forward (the one batching loop of the grid's verdicts and losses)."""
        n, t = x.shape[0], transforms.shape[0]
        out = torch.empty(n, t, dtype=dtype, device=x.device)
        per_forward = max(1, batch_size // max(t, 1))  # images per forward
        for i in range(0, n, per_forward):
            xb, yb = x[i : i + per_forward], y[i : i + per_forward]
            b = xb.shape[0]
            for j in range(0, t, max(1, batch_size // b)):
                rows = transforms[j : j + max(1, batch_size // b)]
                k = rows.shape[0]
                warped = warp_every(xb, rows, self.align_corners, self.warp)
                out[i : i + b, j : j + k] = score(model(warped), yb.repeat_interleave(k)).view(b, k)
        return out

    def run_batch(self, model, x, y, clean_correct, ctx):
        with torch.inference_mode():
            robust = clean_correct.clone()
            fooled_by = torch.full_like(y, -1)
            tried = torch.zeros_like(y)
            angle_fools = torch.zeros(len(self.angle_values), dtype=torch.float64)
            shift_fools = torch.zeros(len(self.shift_values), dtype=torch.float64)
            out = {}
            remaining = list(range(len(self.transforms)))
            if self.axis_curves:  # every example under every one-factor transform: the curves in details
                axis_idx = torch.nonzero(self.on_axis).flatten()
                axis_correct = self.correct_under(model, x, y, self.transforms[axis_idx], ctx.batch_size)
                failed = ~axis_correct.all(1)
                first = axis_idx.to(x.device)[torch.argmin(axis_correct.to(torch.uint8), dim=1)]
                fooled_by = torch.where(failed, first, fooled_by)
                robust &= ~failed
                tried += len(axis_idx)
                self._count(angle_fools, shift_fools, axis_idx, axis_correct[clean_correct])
                remaining = torch.nonzero(~self.on_axis).flatten().tolist()
                out["axis_correct"] = axis_correct
            active = torch.nonzero(robust).flatten()
            while active.numel() and remaining:
                size = max(1, ctx.batch_size // active.numel())  # groups grow as the survivors shrink
                # most promising first: angles and shifts that fooled most so far, then the box's extremes
                score = (angle_fools[self.angle_id] + shift_fools[self.shift_id]).tolist()
                remaining.sort(key=lambda i: (-score[i], -self.extremity[i], i))
                group, remaining = torch.tensor(remaining[:size]), remaining[size:]
                correct = self.correct_under(
                    model, x[active], y[active], self.transforms[group], ctx.batch_size
                )
                ok = correct.all(1)
                self._count(angle_fools, shift_fools, group, correct)
                broken = active[~ok]
                robust[broken] = False
                fooled_by[broken] = group.to(x.device)[torch.argmin(correct[~ok].to(torch.uint8), dim=1)]
                tried[active] += len(group)
                active = active[ok]
        return {"robust": robust, "fooled_by": fooled_by, "tried": tried, **out}

    def _count(self, angle_fools, shift_fools, transforms, correct) -> None:
        """Add the failures seen under ``transforms`` (columns of ``correct``) to the per-factor counts."""
        fails = (~correct).sum(0).double().cpu()
        angle_fools.index_add_(0, self.angle_id[transforms], fails)
        shift_fools.index_add_(0, self.shift_id[transforms], fails)

    # -- reporting ----------------------------------------------------------------------------------
    def summarize(self, stats):
        a, tx, ty = self.transforms.numpy().T
        fooled_by = stats["fooled_by"][(stats["fooled_by"] >= 0) & stats["clean_correct"]]
        counts = np.bincount(fooled_by, minlength=len(self.transforms))
        top = [i for i in np.argsort(-counts, kind="stable")[:5] if counts[i] > 0]
        details = {
            "n_transforms": len(self.transforms),
            "identity_in_grid": self.identity is not None,
            "convention": describe_warp(
                self.warp,
                "out(p) = in(R p + t), p in pixels about the image centre, x right / y down, bilinear, "
                "zero fill",
            ),
            "most_damaging": [
                {"rotation": float(a[i]), "tx": float(tx[i]), "ty": float(ty[i]), "fooled": int(counts[i])}
                for i in top
            ],
            "mean_transforms_tried": float(stats["tried"].mean()) if stats["tried"].size else 0.0,
        }
        if "axis_correct" in stats:
            axis_idx = np.flatnonzero(self.on_axis.numpy())
            acc = stats["axis_correct"].mean(0) if len(stats["axis_correct"]) else np.zeros(len(axis_idx))
            rot = [c for c, i in enumerate(axis_idx) if tx[i] == 0 and ty[i] == 0]
            shift = [c for c, i in enumerate(axis_idx) if a[i] == 0]
            details["accuracy_by_rotation"] = {  # translation 0
                "rotation_deg": [float(a[axis_idx[c]]) for c in rot],
                "accuracy": [float(acc[c]) for c in rot],
            }
            details["accuracy_by_translation"] = {  # rotation 0
                "tx": [float(tx[axis_idx[c]]) for c in shift],
                "ty": [float(ty[axis_idx[c]]) for c in shift],
                "accuracy": [float(acc[c]) for c in shift],
            }
        return details

    def flags(self, stats):
        if self.identity is None:
            return [
                (
                    "grid_misses_identity: the grid does not contain the identity transform, so spatial "
                    "accuracy is not bounded by clean accuracy"
                )
            ]
        return []
