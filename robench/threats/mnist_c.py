"""MNIST-C (Mu & Gilmer 2019) as a threat: the 15 corruptions of the published set, computed on the device.

Hendrycks' corruptions were made for natural images; Mu & Gilmer chose 15 for MNIST that keep the digit
legible to people (noise, blur, affine warps, lines, stripes, fog, spatter, edges), each at one severity
(:data:`robench.threats.ops.mnist_c_ops.SEVERITY`). The verdicts
and details are those of the ``corruptions`` family (:class:`~robench.threats.corruptions.PairedCorruptions`):
robust = clean-correct and correct under every listed corruption; ``mean_corruption_accuracy`` = accuracy
averaged over them (the paper's headline is its complement, the mean error). The severity key in
``accuracy_by_corruption_and_severity`` is the authors' table row, 0 for corruptions without a table.
``mnist_c_read`` reads the published files instead, for dataset ``mnist``
(``robench.datasets.corruption_sets``).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from robench.core.errors import UsageError
from robench.threats.base import FAMILIES, require
from robench.threats.corruptions import PairedCorruptions, ReadsOfficialSet
from robench.threats.ops.mnist_c_ops import CORRUPTIONS, SEVERITY, SIDE, corrupt

MnistCName = Literal[
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "shear",
    "scale",
    "rotate",
    "brightness",
    "translate",
    "stripe",
    "fog",
    "spatter",
    "dotted_line",
    "zigzag",
    "canny_edges",
]
assert set(MnistCName.__args__) == set(CORRUPTIONS)  # one list of names, checked at import


@FAMILIES.register("mnist_c")
@dataclasses.dataclass
class MnistC(PairedCorruptions):
    """Robust only if correct under every listed MNIST-C corruption."""

    corruptions: list[MnistCName]

    def __post_init__(self):
        require(len(self.corruptions) > 0, "mnist_c: `corruptions` must name at least one corruption")
        require(len(set(self.corruptions)) == len(self.corruptions), "mnist_c: a corruption is listed twice")

    def pairs(self) -> list[tuple[str, int]]:
        return [(c, SEVERITY[c]) for c in self.corruptions]

    def _counted(self, severity: int) -> bool:
        return True

    def _robust_definition(self) -> str:
        return "clean-correct and correct under every listed MNIST-C corruption"

    def _images(self, x, name, severity, ctx):
        if tuple(x.shape[1:]) != (1, SIDE, SIDE):
            raise UsageError(
                f"mnist_c: MNIST-C is defined on grey {SIDE}x{SIDE} images, not "
                f"{tuple(x.shape[1:])}; use the threat 'corruptions' for other datasets"
            )
        return corrupt(x, name, ctx.generator)

    def summarize(self, stats):
        return {**super().summarize(stats), "source": "computed", "suite": "MNIST-C"}


@FAMILIES.register("mnist_c_read")
@dataclasses.dataclass
class MnistCRead(ReadsOfficialSet, MnistC):
    """The published MNIST-C files (of full MNIST's test split), read where the user has them."""

    suite: ClassVar[str] = "mnist_c"
