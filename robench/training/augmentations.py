"""Training-time perturbations: what a recipe does to each training batch before the gradient step.

A recipe names one perturbation kind and gives its parameters (``configs/recipes/*.yaml``: ``perturbation``
and ``params``); each kind is a dataclass registered in :data:`PERTURBATIONS` whose fields are exactly
those parameters, like the threat families. They reuse the evaluation code, so that training and
evaluation mean the same thing by "rotation", "translation" and "PGD step": spatial ones draw and warp
as the ``spatial_random`` threat does (the grid's out(p) = in(R p + t), bilinear, zero fill), shifts are
the translation sweep's exact integer shifts, adversarial ones run :class:`robench.threats.pgd.PGD`'s
random start and steps.

Every kind maps [0,1] images to [0,1] images within its budget, draws its randomness from the CPU
generator it is handed (so its draws for a seed are the same on every device), and is called with
the model in eval mode and the 0-based ``epoch``, so that a curriculum can grow its budget.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from robench.core import schema
from robench.core.registry import Registry
from robench.models.affine import box_half_widths, draw_transforms
from robench.threats.base import require
from robench.threats.ops.geometry import check_box, shift, warp_transforms
from robench.threats.pgd import PGD

PERTURBATIONS: Registry[type] = Registry("training perturbation", name_attr="kind")  # sets cls.kind


def create_perturbation(kind: str, params: dict):
    """``kind`` + ``params`` -> a configured perturbation; unknown or missing parameters -> UsageError."""
    return schema.load(PERTURBATIONS.get(kind), params, f"perturbation {kind!r}: params")


@PERTURBATIONS.register("none")
@dataclasses.dataclass
class NoPerturbation:
    """Standard training: the clean batch."""

    def __call__(self, model, x, y, generator, epoch=0):
        return x


@PERTURBATIONS.register("shift")
@dataclasses.dataclass
class RandomShift:
    """Pad-and-crop: an integer shift per example, uniform in [-max_shift, max_shift]^2, zero fill.

    Integer shifts move pixels exactly (no interpolation blur), which is what the "4-pixel random crop"
    of the augmentation literature does; the shift is the translation sweep's
    (:func:`robench.threats.ops.geometry.shift`).
    """

    max_shift: int

    def __post_init__(self):
        require(self.max_shift >= 0, f"shift: max_shift must be >= 0, got {self.max_shift!r}")

    def offsets(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Per-example (tx, ty) in pixels, [N, 2] int64."""
        return torch.randint(-self.max_shift, self.max_shift + 1, (n, 2), generator=generator)

    def __call__(self, model, x, y, generator, epoch=0):
        return shift(x, self.offsets(len(x), generator))


@PERTURBATIONS.register("random_affine")
@dataclasses.dataclass
class RandomAffine:
    """One rotation and translation per example, uniform in the box (Engstrom et al.'s data augmentation);
    drawn and warped exactly as the ``spatial_random`` threat does."""

    max_rotation: float  # degrees
    max_translation: float  # pixels
    kind: ClassVar[str]  # the registered name (set by PERTURBATIONS.register)

    def __post_init__(self):
        check_box(self.kind, self.max_rotation, self.max_translation)

    def draw(self, n: int, generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
        """``n`` transforms (angle_deg, tx, ty) [n, 3] uniform in the box shrunk by ``scale``."""
        return draw_transforms(
            (n,), box_half_widths(self.max_rotation, self.max_translation) * scale, generator
        )

    def __call__(self, model, x, y, generator, epoch=0):
        return warp_transforms(x, self.draw(len(x), generator))


@PERTURBATIONS.register("worst_of_k")
@dataclasses.dataclass
class WorstOfK(RandomAffine):
    """Per example, the highest-loss of ``k`` random transforms from the box (Engstrom et al.'s worst-of-10).

    The k candidates are scored under ``no_grad`` in one forward; only the chosen ones are trained on.
    """

    k: int

    def __post_init__(self):
        super().__post_init__()
        require(self.k >= 1, f"worst_of_k: k must be >= 1, got {self.k!r}")

    def worst(self, model, x, y, generator, scale: float = 1.0) -> torch.Tensor:
        n = len(x)
        candidates = warp_transforms(x.repeat_interleave(self.k, 0), self.draw(n * self.k, generator, scale))
        with torch.no_grad():
            loss = F.cross_entropy(model(candidates), y.repeat_interleave(self.k), reduction="none")
        pick = loss.view(n, self.k).argmax(1) + torch.arange(n, device=x.device) * self.k
        return candidates[pick]

    def __call__(self, model, x, y, generator, epoch=0):
        return self.worst(model, x, y, generator)


def ramp(epoch: int, ramp_epochs: int) -> float:
    """The fraction of a final budget used in ``epoch`` (0-based): linear from 1/ramp_epochs, then 1.

    Starting adversarial training at the full budget can collapse a small network to a constant
    prediction (it did here for the width-16 CNN at eps 0.3: 10% clean accuracy); a short ramp lets it
    learn the digits first.
    """
    return min(1.0, (epoch + 1) / ramp_epochs)


def _check_ramp(kind: str, ramp_epochs: int) -> None:
    require(
        ramp_epochs >= 1,
        f"{kind}: ramp_epochs must be >= 1 (1 = full budget from the start), got {ramp_epochs!r}",
    )


@PERTURBATIONS.register("pgd")
@dataclasses.dataclass
class PGDTraining:
    """Madry et al.'s adversarial training: train on PGD's last iterate from a random start in the ball.

    eps and the step size grow together over the first ``ramp_epochs`` epochs (see :func:`ramp`).
    """

    norm: Literal["linf", "l2"]
    eps: float
    steps: int
    step_size: float  # at the full eps
    ramp_epochs: int

    def __post_init__(self):
        PGD(norm=self.norm, eps=self.eps, steps=self.steps, step_size=self.step_size, restarts=1)  # validates
        _check_ramp("pgd", self.ramp_epochs)

    def attack(self, epoch: int) -> PGD:
        s = ramp(epoch, self.ramp_epochs)
        return PGD(
            norm=self.norm, eps=self.eps * s, steps=self.steps, step_size=self.step_size * s, restarts=1
        )

    def __call__(self, model, x, y, generator, epoch=0):
        return self.attack(epoch).last_iterate(model, x, y, generator)


@PERTURBATIONS.register("cusp")
@dataclasses.dataclass
class CuSP(PGDTraining):
    """Curriculum spatial + adversarial training (after Kamath et al. 2021's CuSP, scaled to MNIST).

    Each batch gets the worst of ``k`` random rotations/translations, then PGD in the ball around that
    transformed image. Both budgets (the spatial box, eps and step size) grow together over the first
    ``ramp_epochs`` epochs, so the network is asked for invariance and robustness a little at a time.
    """

    max_rotation: float
    max_translation: float
    k: int

    def __post_init__(self):
        super().__post_init__()
        self.spatial = WorstOfK(self.max_rotation, self.max_translation, self.k)

    def __call__(self, model, x, y, generator, epoch=0):
        warped = self.spatial.worst(model, x, y, generator, scale=ramp(epoch, self.ramp_epochs))
        return self.attack(epoch).last_iterate(model, warped, y, generator)
