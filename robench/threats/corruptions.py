"""Common corruptions (Hendrycks & Dietterich 2019) as threats: noise, blur, weather and digital.

Every example is classified under each configured (corruption, severity) pair. Two families differ only
in where the corrupted images come from:

- ``corruptions`` computes them on the model's device (:mod:`robench.threats.ops.corruption_ops`, published
  parameters; the CIFAR table for images of at most 64 px, MNIST included, the ImageNet table above);
- ``corruptions_read`` reads them from the official CIFAR-10-C / CIFAR-100-C / ImageNet-C files, which the
  engine opens aligned with the evaluated examples and hands in (:mod:`robench.datasets.corruption_sets`):
  this is RobustBench's corruption protocol, to the image. ``details["source"]`` says which (computed / read).

Two numbers come out, and they answer different questions:

- ``robust`` (the record's ``robust_acc``, the board column) is the per-example verdict the engine needs:
  correct clean *and* under every configured corruption at every severity <= ``robust_severity``. A worst
  case over corruptions, it is bounded by clean accuracy, like every other threat's.
- ``details["mean_corruption_accuracy"]`` is the paper's headline (mCA): plain accuracy averaged over all
  configured corruptions and severities, counting every example whatever its clean verdict. Details also
  give the accuracy per corruption and severity, from which :mod:`robench.core.corruption_report` computes the
  paper's mCE / relative mCE against a reference model's record.

Draws (computed family) come from the chunk's CPU generator in a fixed order (corruption-major, then
severity) for every example of the batch, so what an example gets depends on the seed and its position only.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from typing import ClassVar, Literal

import numpy as np
import torch

from robench.core.errors import EvaluationError
from robench.threats.base import FAMILIES, Threat, require
from robench.threats.ops.corruption_ops import CORRUPTIONS, corrupt, table_for

CorruptionName = Literal[
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
]
assert set(CorruptionName.__args__) == set(CORRUPTIONS)  # one list of names, checked at import


class PairedCorruptions(Threat):
    """Every example classified under each of :meth:`pairs` (corruption, severity); the images come from
    :meth:`_images`, which subclasses define. Shared by the Hendrycks families and ``mnist_c``."""

    corruptions: list[str]

    @abstractmethod
    def pairs(self) -> list[tuple[str, int]]:
        """The (corruption, severity) pairs, in the order the draws are made."""

    @abstractmethod
    def _counted(self, severity: int) -> bool:
        """Whether the robust verdict needs the pairs at ``severity``."""

    @abstractmethod
    def _robust_definition(self) -> str:
        """The robust verdict in words, for the record."""

    @abstractmethod
    def _images(self, x: torch.Tensor, name: str, severity: int, ctx) -> torch.Tensor:
        """The batch ``x`` under ``name`` at ``severity``."""

    def run_batch(self, model, x, y, clean_correct, ctx):
        pairs = self.pairs()
        correct = torch.empty(len(x), len(pairs), dtype=torch.bool, device=x.device)
        with torch.inference_mode():
            for k, (name, severity) in enumerate(pairs):
                images = self._images(x, name, severity, ctx)
                for lo in range(0, len(x), ctx.batch_size):
                    correct[lo : lo + ctx.batch_size, k] = (
                        model(images[lo : lo + ctx.batch_size]).argmax(1) == y[lo : lo + ctx.batch_size]
                    )
        counted = torch.tensor([self._counted(s) for _, s in pairs], device=x.device)
        return {"robust": clean_correct & correct[:, counted].all(1), "correct": correct}

    def summarize(self, stats):
        pairs = self.pairs()
        correct = stats["correct"].reshape(len(stats["robust"]), len(pairs))
        acc = correct.mean(0) if len(correct) else np.zeros(len(pairs))
        by_pair = {c: {} for c in self.corruptions}
        for (c, s), a in zip(pairs, acc, strict=True):
            by_pair[c][str(s)] = float(a)
        return {
            "mean_corruption_accuracy": float(acc.mean()),
            "accuracy_by_corruption": {c: float(np.mean(list(v.values()))) for c, v in by_pair.items()},
            "accuracy_by_corruption_and_severity": by_pair,
            "robust_definition": self._robust_definition(),
        }


@dataclasses.dataclass
class _CorruptionGrid(PairedCorruptions):
    """The Hendrycks grid: each listed corruption at each listed severity."""

    corruptions: list[CorruptionName]
    severities: list[int]
    robust_severity: int

    def __post_init__(self):
        family = self.family
        require(len(self.corruptions) > 0, f"{family}: `corruptions` must name at least one corruption")
        require(
            len(set(self.corruptions)) == len(self.corruptions), f"{family}: a corruption is listed twice"
        )
        require(
            len(self.severities) > 0 and all(1 <= s <= 5 for s in self.severities),
            f"{family}: severities must be integers from 1 to 5, got {self.severities!r}",
        )
        require(len(set(self.severities)) == len(self.severities), f"{family}: a severity is listed twice")
        require(
            any(s <= self.robust_severity for s in self.severities) and self.robust_severity <= 5,
            f"{family}: robust_severity {self.robust_severity!r} must be <= 5 and >= a listed severity",
        )

    def pairs(self) -> list[tuple[str, int]]:
        return [(c, s) for c in self.corruptions for s in self.severities]

    def _counted(self, severity: int) -> bool:
        return severity <= self.robust_severity

    def _robust_definition(self) -> str:
        return (
            f"clean-correct and correct under every listed corruption at severities <= {self.robust_severity}"
        )


@FAMILIES.register("corruptions")
@dataclasses.dataclass
class Corruptions(_CorruptionGrid):
    """Corruptions computed on the device; robust only if correct under every corruption at every
    severity <= ``robust_severity``."""

    def _images(self, x, name, severity, ctx):
        return corrupt(x, name, severity, ctx.generator)

    def run_batch(self, model, x, y, clean_correct, ctx):
        side = torch.full((len(x),), max(x.shape[-2:]), device=x.device)  # which table, kept per example
        return {**super().run_batch(model, x, y, clean_correct, ctx), "side": side}

    def summarize(self, stats):
        side = int(stats["side"][0]) if len(stats["side"]) else None
        return {
            **super().summarize(stats),
            "parameter_table": table_for(side, side) if side else None,
            "source": "computed",
        }


class ReadsOfficialSet:
    """Mixin for a :class:`PairedCorruptions` family whose images are the official corrupted set's copies
    of each example, which the engine opens for the family's ``suite`` and hands in
    (``PrepareContext.corrupted``, docs/protocols.md): the computed family's verdicts and details, with
    ``source: read``."""

    reads_corrupted_set: ClassVar[bool] = True
    suite: ClassVar[str]  # a key of robench.datasets.corruption_sets.SUITES

    def prepare(self, model, ctx):
        require(
            ctx.corrupted is not None,
            f"{self.family}: no corrupted set was handed in (run it through robench.engine.evaluate)",
        )
        self._set = ctx.corrupted

    def _images(self, x, name, severity, ctx):
        images = self._set.images(name, severity, ctx.start, ctx.start + len(x))
        if images.shape != x.shape:
            raise EvaluationError(
                f"{self._set.name} {name} severity {severity}: images of shape "
                f"{tuple(images.shape)} for a batch of {tuple(x.shape)}"
            )
        return images.to(x.device)

    def summarize(self, stats):
        return {**super().summarize(stats), "source": "read", "corrupted_set": self._set.name}


@FAMILIES.register("corruptions_read")
@dataclasses.dataclass
class ReadCorruptions(ReadsOfficialSet, _CorruptionGrid):
    """The official CIFAR-10-C, CIFAR-100-C or ImageNet-C copies of each example, read where the user has
    them: RobustBench's corruption protocol, with the verdicts and details of ``corruptions``."""

    suite: ClassVar[str] = "hendrycks"
