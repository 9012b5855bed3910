"""Accuracy as a function of translation magnitude: the curve of the augmentation studies.

Shifts are integer and exact (no interpolation): out(p) = in(p + t), zero fill, the same convention as
the grid's translation t, so :func:`robench.threats.ops.geometry.shift` by an integer t equals the grid's warp
at that t. For each magnitude m the per-example worst case is taken over the 8 shifts (±m, 0), (0, ±m),
(±m, ±m); m = 0 is the clean image.

Headline (``robust_acc``): an example counts only if it is correct under every listed shift of magnitude
up to ``headline_magnitude`` (a worst case over that box of shifts). Not the whole sweep: the largest
magnitudes move an MNIST digit partly out of the frame and fool every model, so a worst case over all of
them would read 0 for every entry and rank nothing. The mnist/cifar default of 4 px is the margin around
an MNIST digit and the padding of the usual random-crop augmentation, i.e. the range in which a model
can be expected to hold up; ImageNet's 16 px is the upper end of the shifts the crop-augmentation studies
report robustness to. The whole curve (worst case and mean over the 8 shifts, per magnitude) is in
``details`` and drawn as ``translation_sweep.png`` next to the record.
"""

from __future__ import annotations

import dataclasses
import io

import torch

from robench.threats.base import FAMILIES, Threat, require
from robench.threats.ops.geometry import shift
from robench.threats.ops.predict import predict_under


def sweep_shifts(magnitudes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The shifts of the sweep [S, 2] and the index of the magnitude each belongs to [S].

    m = 0 contributes the identity once (its 8 shifts coincide).
    """
    rows, group = [], []
    for i, m in enumerate(magnitudes):
        offsets = (
            [(0, 0)] if m == 0 else [(m, 0), (-m, 0), (0, m), (0, -m), (m, m), (m, -m), (-m, m), (-m, -m)]
        )
        rows += offsets
        group += [i] * len(offsets)
    return torch.tensor(rows, dtype=torch.long), torch.tensor(group, dtype=torch.long)


def plot_png(magnitudes: list[int], worst: list[float], mean: list[float], title: str) -> bytes:
    """A small accuracy-vs-shift plot; PNG metadata without the matplotlib version, so it is reproducible."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(magnitudes, [100 * v for v in worst], marker="o", label="worst of 8 shifts")
    ax.plot(magnitudes, [100 * v for v in mean], marker=".", linestyle="--", label="mean of 8 shifts")
    ax.set_xlabel("shift magnitude m (px)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-3, 103)
    ax.set_title(title, fontsize=9, parse_math=False)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


@FAMILIES.register("translation_sweep")
@dataclasses.dataclass
class TranslationSweep(Threat):
    """Worst case over 8 integer shifts per magnitude; robust only if correct under all of them."""

    argmax_verdicts = True

    magnitudes: list[int]  # px, non-negative, increasing
    headline_magnitude: int  # px, one of the magnitudes: robust_acc is the worst case over shifts up to it

    def __post_init__(self):
        ok = len(self.magnitudes) > 0 and all(m >= 0 for m in self.magnitudes)
        require(
            ok,
            "translation_sweep: magnitudes must be a non-empty list of integers >= 0, "
            f"got {self.magnitudes!r}",
        )
        require(
            list(self.magnitudes) == sorted(set(self.magnitudes)),
            f"translation_sweep: magnitudes must be increasing without repeats, got {self.magnitudes!r}",
        )
        require(
            self.headline_magnitude in self.magnitudes,
            f"translation_sweep: headline_magnitude must be one of the magnitudes {self.magnitudes}, "
            f"got {self.headline_magnitude!r}",
        )
        self.magnitudes = list(self.magnitudes)
        self.shifts, self.group = sweep_shifts(self.magnitudes)
        self.in_headline = self.group <= self.magnitudes.index(self.headline_magnitude)
        self._curve: dict | None = None

    def run_batch(self, model, x, y, clean_correct, ctx):
        params = self.shifts.to(x.device).expand(len(x), -1, -1)
        correct = predict_under(model, x, params, shift, ctx.batch_size) == y.view(-1, 1)
        headline = correct[:, self.in_headline.to(x.device)].all(1)
        return {"robust": clean_correct & headline, "correct": correct}

    def summarize(self, stats):
        correct = stats["correct"].reshape(len(stats["robust"]), len(self.shifts))
        group = self.group.numpy()
        per_m = [correct[:, group == i] for i in range(len(self.magnitudes))]
        worst = [float(c.all(1).mean()) if len(c) else 0.0 for c in per_m]
        mean = [float(c.mean()) if len(c) else 0.0 for c in per_m]
        self._curve = {"magnitude_px": self.magnitudes, "worst_case_accuracy": worst, "mean_accuracy": mean}
        return {
            "curve": self._curve,
            "headline": f"robust_acc: clean-correct and correct under all {int(self.in_headline.sum())} "
            f"listed shifts of magnitude <= {self.headline_magnitude} px",
            "convention": "integer shifts out(p) = in(p + t), zero fill, no interpolation; per magnitude m "
            "the worst case over (±m, 0), (0, ±m), (±m, ±m)",
        }

    def artifacts(self):
        if self._curve is None:
            return {}
        c = self._curve
        return {
            "png": plot_png(
                c["magnitude_px"],
                c["worst_case_accuracy"],
                c["mean_accuracy"],
                f"{self.name or self.family}: accuracy vs. shift",
            )
        }
