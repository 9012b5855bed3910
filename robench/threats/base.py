"""The threat contract: per-example verdicts, not adversarial images.

A threat *family* (pgd, spatial_grid, ...) is a dataclass registered in :data:`FAMILIES`; its fields are
the parameters a named threat's YAML must give. The engine feeds it batches and keeps what it returns:

- :meth:`Threat.run_batch` returns per-example arrays; ``"robust"`` (bool) is required, anything else
  (first fooling step, per-angle correctness, ...) is kept per example and handed to
  :meth:`Threat.summarize`, which turns it into the record's ``details``. Keeping per-example arrays is
  what lets the engine checkpoint chunks, resume, and shard over processes without the threat knowing.
- :meth:`Threat.prepare` runs once before the batches, for threats that fit something global (a
  universal perturbation) on data disjoint from the evaluation split.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from robench.errors import UsageError
from robench.registry import Registry

FAMILIES: Registry[type["Threat"]] = Registry("threat family", name_attr="family")  # sets Threat.family


@dataclasses.dataclass
class BatchContext:
    """What a threat may use besides the batch: a seeded CPU generator and the forward batch size."""

    generator: torch.Generator
    batch_size: int


@dataclasses.dataclass
class PrepareContext:
    """What :meth:`Threat.prepare` may use: which data to fit on, where, and the run's seed.

    ``split`` is the split being evaluated, so that a threat fitting on data can refuse to fit on it.
    """

    dataset: str
    data_dir: str | None
    device: torch.device
    seed: int
    batch_size: int
    split: str = "test"


class Threat(ABC):
    """Base class of all threat families. Subclasses are dataclasses whose fields are their parameters."""

    family: ClassVar[str]  # the registered family name (set by FAMILIES.register)
    #: name of the configured threat (``pgd_linf``), set by :func:`robench.threats.create_threat`.
    name: str = ""

    def config(self) -> dict:
        """The fully resolved parameters, as recorded in every run record."""
        return dataclasses.asdict(self)

    def prepare(self, model: torch.nn.Module, ctx: PrepareContext) -> None:
        """Fit anything global before the batches (default: nothing)."""

    @abstractmethod
    def run_batch(
        self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, clean_correct: torch.Tensor, ctx: BatchContext
    ) -> dict[str, torch.Tensor]:
        """Per-example results for one batch; must contain ``robust`` (bool [N]).

        ``clean_correct`` is given so that threats spend nothing on examples that are already wrong:
        an example misclassified clean is never robust.
        """

    def summarize(self, stats: dict[str, np.ndarray]) -> dict[str, Any]:
        """Turn the per-example arrays of the whole run into the record's ``details`` (default: none)."""
        return {}

    def flags(self, stats: dict[str, np.ndarray]) -> list[str]:
        """Sanity warnings specific to this family (e.g. zero input gradients)."""
        return []

    def artifacts(self) -> dict[str, bytes]:
        """Files to save next to the record (suffix -> bytes), e.g. a fitted perturbation."""
        return {}


def require(condition: bool, message: str) -> None:
    """Parameter validation in ``__post_init__``: a one-line usage error naming the bad value."""
    if not condition:
        raise UsageError(message)
