"""How a threat's forwards run: the plain fp32 model, or a fast path that never changes a verdict.

The fast path (docs/performance.md, "Fast path") is opt-in: ``precision="bf16"`` (autocast), channels_last
memory format, ``torch.compile``. Each changes the logits' rounding, so none may decide a verdict on its own.
Verdicts are argmaxes, and an argmax can only differ from the fp32 one where the top-2 margin is within
the two logits' errors: :class:`Checked` runs the fast model, and every row whose fast margin is at most a
calibrated bound is classified again by the untouched fp32 model, whose logits replace the fast ones. The
bound is 8x the largest logit error seen so far (2 logits x a 4x margin of safety); it is calibrated on the
first batch (every row both ways) and kept up to date on every re-checked row and on every 32nd batch,
which is classified both ways in full.

Only families whose verdicts are argmaxes of forwards (``Threat.argmax_verdicts``) get the fast path. A
gradient attack's trajectory depends on every rounding of its gradients, so its verdicts cannot be kept
equal to the fp32 ones by re-checking; those families run the plain model whatever is asked, and their
records say nothing about precision (they are fp32 records).

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

from robench.errors import EvaluationError, UsageError

PRECISIONS = ("fp32", "bf16")
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


class Checked(nn.Module):
    """``fast``'s logits, except on rows whose top-2 margin is within the calibrated bound: ``exact``'s there.

    Counts ``rows`` seen and ``rechecked`` (classified again in fp32), for the benchmark.
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.run_fast(x)
        self.calls += 1
        self.rows += len(x)
        if self.error is None or self.calls % _FULL_CHECK_EVERY == 0:
            exact = self.exact(x)
            self._observe(logits, exact)
            self.rechecked += len(x)
            return exact
        top = logits.topk(2, dim=1).values if logits.shape[1] > 1 else logits
        close = (top[:, 0] - top[:, -1]) <= self.bound  # ties (margin 0) always go back to fp32
        if close.any():
            exact = self.exact(x[close])
            self._observe(logits[close], exact)
            self.rechecked += int(close.sum())
            logits[close] = exact
        return logits


class _Microbatched(nn.Module):
    """The model called on at most ``size`` rows at a time (results concatenated, gradients flow through)."""

    def __init__(self, model: nn.Module, size: int):
        super().__init__()
        self.model, self.size = model, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) <= self.size:
            return self.model(x)
        return torch.cat([self.model(part) for part in x.split(self.size)])


class Forward:
    """The module a threat's batches run through, and what the record says about it."""

    def __init__(self, plain: nn.Module, checked: Checked | None = None, speed: Speed = Speed()):
        self.plain, self.checked, self.speed = plain, checked, speed
        self.limit: int | None = None  # rows per model call after an out-of-memory; None: unlimited

    @classmethod
    def make(cls, model: nn.Module, threat, speed: Speed, device: torch.device, examples: Dataset) -> Forward:
        """The plain model, or the checked fast path where ``speed`` asks for one and ``threat`` allows it."""
        if not speed.fast or not threat.argmax_verdicts:
            return cls(model)
        fast = copy.deepcopy(model).to(memory_format=torch.channels_last) if speed.channels_last else model
        checked = Checked(model, torch.compile(fast) if speed.compile else fast, speed)
        if speed.compile:
            _try_compiled(checked, examples[0][0].unsqueeze(0).to(device))
        return cls(model, checked, speed)

    @property
    def model(self) -> nn.Module:
        model = self.checked or self.plain
        return model if self.limit is None else _Microbatched(model, self.limit)

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
        if self.checked is not None:
            out.update(
                precision=self.speed.precision,
                compile=self.speed.compile,
                verdicts="fp32-checked",
                memory_format="channels_last" if self.speed.channels_last else "contiguous",
            )
        if self.limit is not None:
            out["forward_batch"] = self.limit
        return out


def _try_compiled(checked: Checked, sample: torch.Tensor) -> None:
    """Compile now, on one example, so that a torch that cannot compile here fails in one line up front."""
    try:
        with torch.inference_mode():
            checked.run_fast(sample)
    except Exception as e:  # inductor raises many types (missing compiler, unsupported Python, ...)
        first = " ".join(str(e).split())[:200]
        raise UsageError(
            f"--compile: torch cannot compile this model here ({type(e).__name__}: {first}); "
            "run without --compile"
        ) from None
