"""Shift consistency (Zhang 2019, "Making Convolutional Networks Shift-Invariant Again").

Each image is shifted twice by independent integer offsets uniform in [-S, S]² (zero fill, exact, the
:func:`robench.threats.ops.geometry.shift` convention) and the two top-1 labels are compared. Zhang's
number is the agreement rate over all images, correct or not; it is ``details["consistency"]``.

A record's ``robust_acc`` must be a per-example verdict bounded by clean accuracy (the engine enforces
it), so here an example is "robust" when it is classified correctly clean *and* its two shifted labels
agree. That is the board column; the agreement rate itself is in ``details``.

ImageNet: Zhang's protocol compares two random 224 crops of the 256-pixel centre crop, but the dataset
pipeline hands out the 224 centre crop only, so ImageNet uses the same zero-filled shifts of the 224
crop with S = 16 (the pairwise offset then spans ±32 px, the range of two crops of 256).
"""

from __future__ import annotations

import dataclasses

import torch

from robench.threats.base import FAMILIES, Threat, require
from robench.threats.ops.geometry import shift
from robench.threats.ops.predict import predict_under


@FAMILIES.register("consistency")
@dataclasses.dataclass
class Consistency(Threat):
    """Agreement of the top-1 label between two random integer shifts of the same image."""

    argmax_verdicts = True

    max_shift: int  # px: offsets uniform in [-max_shift, max_shift] on each axis

    def __post_init__(self):
        require(self.max_shift >= 0, f"consistency: max_shift must be >= 0, got {self.max_shift!r}")

    def run_batch(self, model, x, y, clean_correct, ctx):
        offsets = torch.randint(-self.max_shift, self.max_shift + 1, (len(x), 2, 2), generator=ctx.generator)
        pred = predict_under(model, x, offsets.to(x.device), shift, ctx.batch_size)
        agree = pred[:, 0] == pred[:, 1]
        return {
            "robust": clean_correct & agree,
            "agree": agree,
            "shifted_correct": pred == y.view(-1, 1),
            "offsets": offsets,
        }

    def summarize(self, stats):
        agree, clean = stats["agree"], stats["clean_correct"]
        shifted = stats["shifted_correct"].reshape(len(agree), 2)
        return {
            "consistency": float(agree.mean()) if agree.size else 0.0,
            "consistency_of_clean_correct": float(agree[clean].mean()) if clean.any() else None,
            "accuracy_under_a_shift": float(shifted.mean()) if shifted.size else 0.0,
            "headline": "robust_acc: clean-correct and both shifted labels agree; Zhang's agreement rate "
            "over all examples is 'consistency'",
            "convention": "two integer shifts per image, offsets uniform in [-S, S]^2, out(p) = in(p + t), "
            "zero fill",
        }
