"""The threat contract: per-example verdicts, not adversarial images.

A threat *family* (pgd, spatial_grid, ...) is a dataclass registered in :data:`FAMILIES`; its fields are
the parameters a named threat's YAML must give. The engine feeds it batches and keeps what it returns:

- :meth:`Threat.run_batch` returns per-example arrays; ``"robust"`` (bool) is required, anything else
  (first fooling step, per-angle correctness, ...) is kept per example and handed to
  :meth:`Threat.summarize`, which turns it into the record's ``details``. Keeping per-example arrays is
  what lets the engine checkpoint chunks, resume, and shard over processes without the threat knowing.
- :meth:`Threat.prepare` runs once before the batches, for threats that fit something global (a
  universal perturbation) on data disjoint from the evaluation split. The engine hands that data in,
  with the process group's operations and its cache of fitted results (:class:`PrepareContext`), so
  threats never load datasets, touch torch.distributed or own files.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from robench.core.errors import UsageError
from robench.core.registry import Registry

FAMILIES: Registry[type[Threat]] = Registry("threat family", name_attr="family")  # sets Threat.family


@dataclasses.dataclass
class BatchContext:
    """What a threat may use besides the batch: a seeded CPU generator, the forward batch size, and
    ``start``, the position of the batch's first example in the evaluated split (a threat that reads
    per-example data handed in by the engine, such as an official corrupted set, finds its rows by it)."""

    generator: torch.Generator
    batch_size: int
    start: int = 0


class SearchModel(torch.nn.Module):
    """A model whose logits steer a gradient search but do not decide its verdicts on their own.

    The engine's fast path for gradient attacks (``robench.engine.forward.Search``) hands one to families
    with ``fast_search``: its forward gives bf16 logits, good for gradients, and :meth:`labels` the labels
    the verdicts use, decided by the fp32 model wherever the bf16 ones could differ. A threat never asks
    which it got: it calls :func:`predicted`, which is a plain argmax for any other module.

    ``max_rows`` is set when the engine has halved the forwards after an out-of-memory
    (``robench.engine.forward``): at most that many examples go through one call. A threat that calls a part
    of the model itself (EOT's samples, :mod:`robench.threats.ops.eot`) keeps to it too.
    """

    max_rows: int | None = None

    def labels(self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The predicted labels [N] of ``x``, whose forward gave ``logits``; ``y`` are the true labels."""
        raise NotImplementedError


def predicted(model: torch.nn.Module, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The labels a verdict on ``x`` uses, given ``logits = model(x)``: their argmax, or, for a
    :class:`SearchModel`, its fp32-decided :meth:`~SearchModel.labels`."""
    return model.labels(x, logits, y) if isinstance(model, SearchModel) else logits.argmax(1)


def _alone(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@dataclasses.dataclass(frozen=True)
class Ranks:
    """The processes that fit together (``torchrun`` ranks) and how they sum a tensor across themselves.

    Handed in by the engine, so that a threat shards its fitting without importing torch.distributed;
    the default is one process, for which the sum is the tensor itself.
    """

    rank: int = 0
    size: int = 1
    all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] = _alone


@dataclasses.dataclass(frozen=True)
class FitData:
    """The examples a threat fits on: the dataset's ``fit_split``, disjoint from the evaluated split.

    ``x`` float32 [N,C,H,W] in [0,1] and ``y`` int64 [N] stay on the CPU; ``fingerprint`` (sha256 of
    both) names them in the key of a cached fit.
    """

    split: str
    x: torch.Tensor
    y: torch.Tensor
    fingerprint: str


class FitCache(Protocol):
    """The engine's store of fitted results (``robench.engine.fitting``), as a threat sees it."""

    def fetch_or_fit(
        self,
        key: str,
        shape: tuple,
        fit: Callable[[], tuple[torch.Tensor, dict]],
        accept: Callable[[torch.Tensor], bool],
    ) -> tuple[torch.Tensor, dict]:
        """The cached tensor of ``shape`` under ``key`` if every rank has one that ``accept`` passes,
        else ``fit()``'s, stored; the info says which (``cached``)."""


class CorruptedSet(Protocol):
    """An official corrupted test set (CIFAR-10-C, ImageNet-C, ...) aligned with the evaluated examples,
    opened by the engine (``robench.datasets.corruption_sets``) for a threat with ``reads_corrupted_set``."""

    name: str

    def images(self, corruption: str, severity: int, start: int, stop: int) -> torch.Tensor:
        """Evaluated examples ``start..stop-1`` under ``corruption`` at ``severity``: float32 [N,C,H,W]
        in [0,1], on the CPU."""


@dataclasses.dataclass(frozen=True)
class PrepareContext:
    """What :meth:`Threat.prepare` may use, all handed in by the engine.

    A threat with ``fits_on_data`` gets the fit split (``fit``), a fingerprint of the model it fits
    against, and the cache of fitted results; the others get ``fit=None`` and ``cache=None``.
    """

    dataset: str
    num_classes: int
    device: torch.device
    seed: int
    ranks: Ranks = dataclasses.field(default_factory=Ranks)
    fit: FitData | None = None
    model_fingerprint: str = ""
    cache: FitCache | None = None
    corrupted: CorruptedSet | None = None
    #: Called between the steps of a long fit: raises the engine's interruption (the one the chunk loop
    #: raises between batches) once SIGINT/SIGTERM asked the run to stop, so a fit is not a window of
    #: minutes in which a signal goes unheard. A threat cannot import the engine, so the engine hands it in.
    check_stop: Callable[[], None] = lambda: None


class Threat(ABC):
    """Base class of all threat families. Subclasses are dataclasses whose fields are their parameters."""

    family: ClassVar[str]  # the registered family name (set by FAMILIES.register)
    #: name of the configured threat (``pgd_linf``), set by :func:`robench.threats.create_threat`.
    name: str = ""
    #: True for families that fit something on the dataset's fit split in :meth:`prepare`; the engine
    #: then loads that split, refuses to evaluate on it, and hands it in.
    fits_on_data: ClassVar[bool] = False
    #: True for families that classify an official corrupted set's copies of the evaluated examples; the
    #: engine then opens the set of the family's ``suite`` for its ``pairs()`` and hands it in
    #: (``PrepareContext.corrupted``).
    reads_corrupted_set: ClassVar[bool] = False
    #: True for families whose verdicts are argmaxes of forwards only (no gradients in ``run_batch``): only
    #: those may run on the engine's fast path, which keeps every argmax equal to fp32's by re-checking
    #: close margins (robench.engine.forward); a gradient attack's path depends on every rounding.
    argmax_verdicts: ClassVar[bool] = False
    #: True for gradient families whose every verdict goes through :func:`predicted`: those may search on
    #: the engine's fast model (a :class:`SearchModel`: bf16 gradients, fp32-decided verdicts). Their
    #: trajectory then differs from fp32's, so such a run has its own identity and is not the fp32
    #: protocol (docs/performance.md, "Fast path").
    fast_search: ClassVar[bool] = False

    def config(self) -> dict:
        """The fully resolved parameters, as recorded in every run record, less any parameter declared
        with :func:`omitted_at_default` that holds its default."""
        out = dataclasses.asdict(self)
        for field in dataclasses.fields(self):
            if field.metadata.get("omitted_at_default") and out[field.name] == field.default:
                del out[field.name]
        return out

    def prepare(self, model: torch.nn.Module, ctx: PrepareContext) -> None:  # noqa: B027 (an optional hook)
        """Fit anything global before the batches (default: nothing)."""

    def state_fingerprint(self) -> str | None:
        """A hash of what the prepared threat's verdicts depend on beyond :meth:`config` (a fitted
        perturbation), or None when nothing is fitted. The engine puts it in the identity of resumable
        chunk files, so a chunk computed against another fit is never mixed into a record."""
        return None

    @abstractmethod
    def run_batch(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        clean_correct: torch.Tensor,
        ctx: BatchContext,
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


def omitted_at_default(default: Any) -> Any:
    """A threat parameter added after records of its family were committed (``warp``).

    Its default is the behaviour those records measured, and :meth:`Threat.config` leaves it out while it
    holds that default: the recorded config, its hash and the boards' match against the threat's YAML
    (which does not name it) stay what they were. Another value is recorded like any parameter.
    """
    return dataclasses.field(default=default, metadata={"omitted_at_default": True})


def require(condition: bool, message: str) -> None:
    """Parameter validation in ``__post_init__``: a one-line usage error naming the bad value."""
    if not condition:
        raise UsageError(message)


def require_budget(family: str, norm: str, eps: float) -> None:
    """An ℓp budget must be positive, and an ℓ∞ one cannot exceed the [0,1] pixel range (every ℓp family)."""
    require(eps > 0, f"{family}: eps must be > 0, got {eps!r}")
    if norm == "linf":
        require(eps <= 1, f"{family}: an l-inf eps of {eps} exceeds the [0,1] pixel range")
