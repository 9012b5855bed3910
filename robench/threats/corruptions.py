"""Common corruptions (Hendrycks & Dietterich 2019) as a threat: noise, blur, weather and digital.

Every example is classified under each configured (corruption, severity) pair, the corrupted images
computed on the model's device by :mod:`robench.threats.corruption_ops` (published parameters; the CIFAR
table for images of at most 64 px, MNIST included, the ImageNet table above). Two numbers come out, and
they answer different questions:

- ``robust`` (the record's ``robust_acc``, the board column) is the per-example verdict the engine needs:
  correct clean *and* under every configured corruption at every severity <= ``robust_severity``. A worst
  case over corruptions, it is bounded by clean accuracy, like every other threat's.
- ``details["mean_corruption_accuracy"]`` is the paper's headline (mCA): plain accuracy averaged over all
  configured corruptions and severities, counting every example whatever its clean verdict. Details also
  give the accuracy per corruption and severity. The paper's mCE / relative mCE divide these errors by a
  reference model's (AlexNet's); no reference is configured for mnist5k, so they are not computed yet.

For ``mnist5k`` the MNIST-C set (Mu & Gilmer 2019) is not implemented: its grey images get the CIFAR-table
corruptions, applied per channel (README "Common corruptions").

Draws come from the chunk's CPU generator in a fixed order (corruption-major, then severity) for every
example of the batch, so what an example gets depends on the seed and its position only.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import torch

from robench.threats.base import FAMILIES, Threat, require
from robench.threats.corruption_ops import CORRUPTIONS, corrupt, table_for

CorruptionName = Literal[
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
]
assert set(CorruptionName.__args__) == set(CORRUPTIONS)  # one list of names, checked at import


@FAMILIES.register("corruptions")
@dataclasses.dataclass
class Corruptions(Threat):
    """Robust only if correct under every corruption at every severity <= ``robust_severity``."""

    corruptions: list[CorruptionName]
    severities: list[int]
    robust_severity: int

    def __post_init__(self):
        require(len(self.corruptions) > 0, "corruptions: `corruptions` must name at least one corruption")
        require(len(set(self.corruptions)) == len(self.corruptions), "corruptions: a corruption is listed twice")
        require(len(self.severities) > 0 and all(1 <= s <= 5 for s in self.severities),
                f"corruptions: severities must be integers from 1 to 5, got {self.severities!r}")
        require(len(set(self.severities)) == len(self.severities), "corruptions: a severity is listed twice")
        require(any(s <= self.robust_severity for s in self.severities) and self.robust_severity <= 5,
                f"corruptions: robust_severity {self.robust_severity!r} must be <= 5 and >= a listed severity")

    def pairs(self) -> list[tuple[str, int]]:
        return [(c, s) for c in self.corruptions for s in self.severities]

    def run_batch(self, model, x, y, clean_correct, ctx):
        pairs = self.pairs()
        correct = torch.empty(len(x), len(pairs), dtype=torch.bool, device=x.device)
        with torch.inference_mode():
            for k, (name, severity) in enumerate(pairs):
                images = corrupt(x, name, severity, ctx.generator)
                for lo in range(0, len(x), ctx.batch_size):
                    correct[lo : lo + ctx.batch_size, k] = (
                        model(images[lo : lo + ctx.batch_size]).argmax(1) == y[lo : lo + ctx.batch_size])
        counted = torch.tensor([s <= self.robust_severity for _, s in pairs], device=x.device)
        side = torch.full((len(x),), max(x.shape[-2:]), device=x.device)  # which table, kept per example
        return {"robust": clean_correct & correct[:, counted].all(1), "correct": correct, "side": side}

    def summarize(self, stats):
        pairs = self.pairs()
        correct = stats["correct"].reshape(len(stats["robust"]), len(pairs))
        acc = correct.mean(0) if len(correct) else np.zeros(len(pairs))
        by_pair = {c: {} for c in self.corruptions}
        for (c, s), a in zip(pairs, acc):
            by_pair[c][str(s)] = float(a)
        return {
            "mean_corruption_accuracy": float(acc.mean()),
            "accuracy_by_corruption": {c: float(np.mean(list(v.values()))) for c, v in by_pair.items()},
            "accuracy_by_corruption_and_severity": by_pair,
            "parameter_table": table_for(int(stats["side"][0]), int(stats["side"][0])) if len(correct) else None,
            "robust_definition": f"clean-correct and correct under every listed corruption at severities "
                                 f"<= {self.robust_severity}",
            "source": "computed",  # the official -C sets, read from disk, are not supported yet
        }

