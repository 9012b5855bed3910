"""How a threat's forwards run: the plain fp32 model, or a fast path that never changes a verdict.

The fast path (docs/performance.md, "Fast path") is ``precision="bf16"`` (autocast), channels_last
memory format, ``torch.compile``; ``precision="auto"`` (the CLI's default) takes bf16 only where it is exact
and pays: an argmax family on CUDA (:meth:`Speed.resolve`). Each changes the logits' rounding, so none
may decide a verdict on its own.
Verdicts are argmaxes, and an argmax can only differ from the fp32 one where the top-2 margin is within
the two logits' errors: :class:`Checked` runs the fast model, and every row whose fast margin is at most a
calibrated bound is classified again by the untouched fp32 model, whose logits replace the fast ones. The
bound is 8x the largest logit error seen so far (2 logits x a 4x margin of safety); it is calibrated on the
first batch (every row both ways) and kept up to date on every re-checked row and on every 32nd batch,
which is classified both ways in full.

Families whose verdicts are argmaxes of forwards (``Threat.argmax_verdicts``) get :class:`Checked`: their
records equal fp32's. A gradient attack's trajectory depends on every rounding of its gradients, so no
re-checking can make a bf16 search give the fp32 record. Families that decide every verdict through
``threats.base.predicted`` (``Threat.fast_search``: PGD) get :class:`Search` instead: gradients from the
fast model for every row, every iterate's verdict the fp32 one (the same bound, and every row the fast
model calls fooled re-classified in fp32, so no fooling is claimed that fp32 does not confirm). The
number may differ from the fp32 protocol's, so the record says ``execution.search`` and the run has its
own identity (``record.run_identity``), which the boards do not place in a column. Other gradient
families (AutoAttack, spatial_pgd) run the plain model whatever is asked, and their records say nothing
about precision (they are fp32 records).

Memory faults: a batch that does not fit (``torch.OutOfMemoryError``) is retried with the model's forwards
split into halves (:meth:`Forward.halve`), again until it fits. The threat sees the same batch, the same
generator state and the same ``batch_size``, so only how many rows each model call holds changes, never a
verdict; the smaller forward size is kept for the rest of the run and recorded.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn
from torch.utils.data import Dataset

from robench.core.errors import EvaluationError, UsageError
from robench.threats.base import SearchModel, predicted

PRECISIONS = ("auto", "fp32", "bf16")
_FULL_CHECK_EVERY = 32
_SAFETY = 8.0  # bound = _SAFETY x the largest logit error seen: 2 logits x 4


@dataclasses.dataclass(frozen=True)
class Speed:
    """What the caller asks for; :meth:`Forward.make` decides what applies to a threat."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise UsageError(
                f"precision {self.precision!r} is not supported: use one of {', '.join(PRECISIONS)} "
                "(verdicts must be re-checkable in fp32)"
            )

    @property
    def fast(self) -> bool:
        return self != Speed()

    def resolve(self, device: torch.device, threat) -> Speed:
        """What runs for ``threat`` on ``device``: ``"auto"`` becomes bf16 for argmax families on CUDA, whose
        records equal fp32's (every close verdict re-checked in fp32), and fp32 everywhere else. A gradient
        search in bf16 (PGD) is another protocol, so it is never chosen for the caller; on the CPU bf16 is
        slower without native bf16 units and was 0.78x-2.7x fp32 with them (docs/performance.md), so
        ``"auto"`` does not take it there."""
        if self.precision != "auto":
            return self
        exact_and_fast = device.type == "cuda" and threat.argmax_verdicts
        return dataclasses.replace(self, precision="bf16" if exact_and_fast else "fp32")

    @property
    def label(self) -> str:
        """``"bf16+channels_last+compile"``: what the options ask for, as records and tables name it."""
        return "+".join(
            [self.precision] + ["channels_last"] * self.channels_last + ["compile"] * self.compile
        )


class _Fast(nn.Module):
    """The fast model beside the exact one, and the calibrated bound that says when their argmaxes may differ.

    Shared by :class:`Checked` (argmax families) and :class:`Search` (gradient families), so both decide
    "close enough to re-check" the same way. Counts ``rows`` seen and ``rechecked`` (classified again in
    fp32), for the benchmark.
    """

    def __init__(self, exact: nn.Module, fast: nn.Module, speed: Speed):
        super().__init__()
        self.exact, self.fast = exact, fast
        self.dtype = torch.bfloat16 if speed.precision == "bf16" else None
        self.channels_last = speed.channels_last
        self.error = None  # the largest |fast - exact| logit difference seen; None until calibrated
        self.calls = self.rows = self.rechecked = 0

    @property
    def bound(self) -> float:
        return _SAFETY * self.error

    def run_fast(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            return self.fast(x).float()

    def _observe(self, fast: torch.Tensor, exact: torch.Tensor) -> None:
        seen = float((fast - exact).abs().max()) if len(fast) else 0.0
        self.error = max(self.error or 0.0, seen)

    def settle(
        self, x: torch.Tensor, logits: torch.Tensor, suspect: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``logits`` (the fast model's on ``x``) with the exact model's rows wherever the argmax could
        differ: every row of the first call (calibration) and of every 32nd, else rows whose top-2 margin is
        at most the bound, and the rows of ``suspect`` (a bool mask) whatever their margin."""
        self.calls += 1
        self.rows += len(x)
        if self.error is None or self.calls % _FULL_CHECK_EVERY == 0:
            exact = self.exact(x)
            self._observe(logits, exact)
            self.rechecked += len(x)
            return exact
        top = logits.topk(2, dim=1).values if logits.shape[1] > 1 else logits
        close = (top[:, 0] - top[:, -1]) <= self.bound  # ties (margin 0) always go back to fp32
        if suspect is not None:
            close = close | suspect
        if close.any():
            exact = self.exact(x[close])
            self._observe(logits[close], exact)
            self.rechecked += int(close.sum())
            logits[close] = exact
        return logits


class Checked(_Fast):
    """``fast``'s logits, except on rows whose top-2 margin is within the calibrated bound: ``exact``'s."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.settle(x, self.run_fast(x))


class Search(_Fast, SearchModel):
    """A gradient attack's model on the fast path: forwards (and so gradients) from the fast model for
    every row, labels decided like :class:`Checked`'s argmaxes, plus every row the fast model calls
    misclassified. So no fooling is ever claimed that the fp32 model does not make, and an example's
    gradients never depend on whether a neighbour in its batch was re-checked."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_fast(x)

    def labels(self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = logits.detach().clone()
            return self.settle(x.detach(), logits, suspect=logits.argmax(1) != y).argmax(1)


class _Microbatched(SearchModel):
    """The model called on at most ``size`` rows at a time (results concatenated, gradients flow through);
    its labels are the wrapped model's, asked part by part (a plain argmax unless it is a :class:`Search`)."""

    def __init__(self, model: nn.Module, size: int):
        super().__init__()
        self.model, self.max_rows = model, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) <= self.max_rows:
            return self.model(x)
        return torch.cat([self.model(part) for part in x.split(self.max_rows)])

    def labels(self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        parts = zip(x.split(self.max_rows), logits.split(self.max_rows), y.split(self.max_rows), strict=True)
        return torch.cat([predicted(self.model, *part) for part in parts])


class Forward:
    """The module a threat's batches run through, and what the record says about it.

    ``fast`` is None on the plain path, a :class:`Checked` for argmax families and a :class:`Search` for
    gradient families with ``fast_search`` (whose trajectory, unlike the others' verdicts, is not fp32's:
    :attr:`search` names it, and it enters the run's identity).
    """

    def __init__(self, plain: nn.Module, fast: _Fast | None = None, speed: Speed = Speed()):
        self.plain, self.fast, self.speed = plain, fast, speed
        self.limit: int | None = None  # rows per model call after an out-of-memory; None: unlimited

    @classmethod
    def make(cls, model: nn.Module, threat, speed: Speed, device: torch.device, examples: Dataset) -> Forward:
        """The plain model, or the fast path where ``speed`` asks for one and ``threat`` allows it."""
        speed = speed.resolve(device, threat)
        if not speed.fast or not (threat.argmax_verdicts or threat.fast_search):
            return cls(model)
        fast = copy.deepcopy(model).to(memory_format=torch.channels_last) if speed.channels_last else model
        kind = Checked if threat.argmax_verdicts else Search
        wrapped = kind(model, torch.compile(fast) if speed.compile else fast, speed)
        if speed.compile:
            _try_compiled(wrapped, examples[0][0].unsqueeze(0).to(device))
        return cls(model, wrapped, speed)

    @property
    def model(self) -> nn.Module:
        model = self.fast or self.plain
        return model if self.limit is None else _Microbatched(model, self.limit)

    @property
    def search(self) -> str | None:
        """What a gradient search ran in when not fp32 (``"bf16+channels_last"``), else None."""
        return self.speed.label if isinstance(self.fast, Search) else None

    def halve(self, rows: int) -> None:
        """After an out-of-memory on a batch of ``rows``: at most half as many rows per model call."""
        limit = (self.limit or rows) // 2
        if limit < 1:
            raise EvaluationError(
                "out of device memory with one example per forward: use a smaller model or "
                "input size, or a device with more memory"
            )
        self.limit = limit

    def record_fields(self) -> dict:
        """The record's ``execution``: empty for the plain path, so plain records are unchanged."""
        out = {}
        if self.fast is not None:
            out.update(
                precision=self.speed.precision,
                compile=self.speed.compile,
                verdicts="fp32-checked",
                memory_format="channels_last" if self.speed.channels_last else "contiguous",
            )
        if self.search is not None:
            out["search"] = self.search
        if self.limit is not None:
            out["forward_batch"] = self.limit
        return out


def _try_compiled(fast: _Fast, sample: torch.Tensor) -> None:
    """Compile now, on one example, so that a torch that cannot compile here fails in one line up front."""
    try:
        with torch.inference_mode():
            fast.run_fast(sample)
    except Exception as e:  # inductor raises many types (missing compiler, unsupported Python, ...)
        first = " ".join(str(e).split())[:200]
        raise UsageError(
            f"--compile: torch cannot compile this model here ({type(e).__name__}: {first}); "
            "run without --compile"
        ) from None
