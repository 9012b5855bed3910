"""Universal adversarial perturbations: one δ for every image (Shafahi et al. 2020).

Why it is fitted the way it is:
- δ is fitted in :meth:`UAP.prepare`, once per run, on the dataset's ``fit_split`` (disjoint from the
  evaluated split; the engine loads it and hands it in), so the record measures how a perturbation
  *transfers to unseen images*, not how well it memorises the evaluated ones.
- The objective is the β-clipped cross-entropy mean(min(CE(f(x+δ), label), β)), ascended (label = the
  true class) or descended (targeted: label = the target class) by stochastic minibatch steps: sign steps
  in l-inf, normalised steps in l2, each followed by projection onto the ε-ball (l2: projection, not
  rescaling onto the sphere). The clip keeps a few already-fooled examples with huge losses from
  dominating the universal direction; when targeted, it keeps hopeless examples from doing so.
- Scale-out: each rank takes ``xb[rank::world]`` of every minibatch and the gradients of the *summed*
  per-example losses are all-reduced, so sharded fitting sees the same gradient as a single process and
  gives the same δ (up to float summation order).
- A fitted δ is kept in the engine's cache (:mod:`robench.engine.fitting`, ``$ROBENCH_CACHE/uap/``),
  keyed by the model's weights and buffers, the fit data, every fit parameter and the seed (not the
  device, which the record names instead): evaluating three models under three UAP threats twice fits
  nine perturbations, not eighteen.

Evaluation (per example, all bool): correct under x+δ (robust), prediction changed vs. the clean
prediction (fooled), predicted as the target, the same three under a random-sign control of equal norm,
and fooled when δ is shifted by each of ``shifts`` pixels diagonally (Park et al. 2021's invariance probe).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from robench.core import record
from robench.core.errors import UsageError
from robench.threats.base import FAMILIES, Ranks, Threat, require, require_budget
from robench.threats.ops import geometry

#: Bump when the fitting algorithm changes, so that cached perturbations from the old one are not reused.
FIT_VERSION = 1
SHIFT_CONVENTION = (
    "δ translated by (s, s) px, i.e. s px right and s px down, vacated pixels zero "
    "(no wrap-around), then added to x and clipped to [0,1]"
)
_PNG_MIN_SIDE = 112  # small images are upscaled (nearest) so the pattern is visible


def delta_png(delta: np.ndarray) -> bytes:
    """δ [C, H, W] as a PNG amplified to the full range: 0 is mid-grey, ±max|δ| are black/white."""
    peak = float(np.abs(delta).max())
    image = 0.5 + delta / (2 * peak) if peak > 0 else np.full_like(delta, 0.5)
    pixels = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    pixels = pixels[0] if pixels.shape[0] == 1 else np.transpose(pixels, (1, 2, 0))
    scale = max(1, math.ceil(_PNG_MIN_SIDE / max(pixels.shape[:2])))
    pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@FAMILIES.register("uap")
@dataclasses.dataclass
class UAP(Threat):
    """One perturbation δ, fitted on the fit split, added to every evaluated image."""

    argmax_verdicts = True

    norm: Literal["linf", "l2"]
    eps: float
    epochs: int  # passes over the fit split
    step_size: float
    fit_batch_size: int  # images per fitting minibatch (summed over ranks when sharded)
    beta: float  # cap of the per-example cross-entropy
    targeted: bool
    target: int  # the target class when targeted (also reported, as a rate, when not)
    shifts: list[int]  # pixel shifts of δ for the invariance curve
    fits_on_data = True

    def __post_init__(self):
        require_budget(self.family, self.norm, self.eps)
        require(self.epochs >= 1, f"uap: epochs must be >= 1, got {self.epochs!r}")
        require(self.step_size > 0, f"uap: step_size must be > 0, got {self.step_size!r}")
        require(self.fit_batch_size >= 1, f"uap: fit_batch_size must be >= 1, got {self.fit_batch_size!r}")
        require(self.beta > 0, f"uap: beta must be > 0, got {self.beta!r}")
        require(self.target >= 0, f"uap: target must be a class index >= 0, got {self.target!r}")
        require(
            len(self.shifts) > 0 and all(s >= 0 for s in self.shifts),
            f"uap: shifts must be a non-empty list of integers >= 0 (pixels), got {self.shifts!r}",
        )
        self.delta: torch.Tensor | None = None  # [1, C, H, W] once prepared
        self.control: torch.Tensor | None = None
        self.fit_info: dict = {}

    # -- geometry -----------------------------------------------------------------------------------
    def size(self, delta: torch.Tensor) -> float:
        """‖δ‖ in this threat's norm."""
        return float(delta.abs().max()) if self.norm == "linf" else float(delta.norm())

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return delta.clamp(-self.eps, self.eps)
        return delta * (self.eps / delta.norm().clamp_min(1e-12)).clamp(max=1.0)

    def step(self, delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """One ascent step on the (already sign-adjusted) objective, then projection onto the ball."""
        if self.norm == "linf":
            return self.project(delta + self.step_size * grad.sign())
        norm = grad.norm()
        if norm == 0:
            return delta
        return self.project(delta + self.step_size * grad / norm)

    def shifted_delta(self, s: int) -> torch.Tensor:
        """δ moved s px right and down, zero fill (:data:`SHIFT_CONVENTION`); geometry.shift's t moves
        content by -t, hence t = (-s, -s)."""
        return geometry.shift(self.delta, torch.tensor([[-s, -s]]))

    def random_control(self, like: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
        """The random-sign universal perturbation ``signs`` (±1) scaled to the norm of ``like``."""
        amplitude = self.size(like) if self.norm == "linf" else self.size(like) / math.sqrt(like.numel())
        return (signs * amplitude).to(like.device)

    # -- fitting ------------------------------------------------------------------------------------
    def fit_key(
        self, model_fingerprint: str, dataset: str, split: str, data_fingerprint: str, seed: int
    ) -> str:
        """The cache key: model function, fit data, every fit parameter and the seed."""
        fit_params = {
            k: v for k, v in self.config().items() if k != "shifts"
        }  # shifts only affect evaluation
        return record.config_hash(
            {
                "version": FIT_VERSION,
                "model": model_fingerprint,
                "dataset": dataset,
                "split": split,
                "data": data_fingerprint,
                "params": fit_params,
                "seed": seed,
            }
        )

    def fit(
        self,
        model,
        x: torch.Tensor,
        y: torch.Tensor,
        device: torch.device,
        generator: torch.Generator,
        ranks: Ranks | None = None,
        check_stop: Callable[[], None] = lambda: None,
    ):
        """Fit δ on (x, y) (CPU tensors; minibatches go to ``device``), sharing every minibatch among
        ``ranks`` (default: this process alone), calling ``check_stop`` after every step (the engine's
        :attr:`PrepareContext.check_stop`). Returns (δ [1,C,H,W], info)."""
        ranks = ranks or Ranks()
        delta = torch.zeros((1, *x.shape[1:]), device=device)
        loss_by_epoch, zero_steps, steps = [], 0, 0
        started = time.perf_counter()
        for _ in range(self.epochs):
            order = torch.randperm(len(x), generator=generator)
            loss_sum = torch.zeros((), device=device)
            for i in range(0, len(x), self.fit_batch_size):
                idx = order[i : i + self.fit_batch_size][ranks.rank :: ranks.size]
                grad = torch.zeros_like(delta)
                if idx.numel():
                    xb, yb = x[idx].to(device), y[idx].to(device)
                    label = torch.full_like(yb, self.target) if self.targeted else yb
                    with torch.enable_grad():
                        d = delta.detach().requires_grad_(True)
                        ce = F.cross_entropy(model((xb + d).clamp(0, 1)), label, reduction="none")
                        loss = ce.clamp(max=self.beta).sum()
                        (grad,) = torch.autograd.grad(-loss if self.targeted else loss, d)
                    loss_sum += loss.detach()
                ranks.all_reduce_sum(grad)
                zero_steps += int(not grad.any())
                steps += 1
                delta = self.step(delta, grad)
                check_stop()
            loss_by_epoch.append(float(ranks.all_reduce_sum(loss_sum)) / len(x))
        info = {
            "fit_time_s": round(time.perf_counter() - started, 3),
            "steps": steps,
            "zero_gradient_steps": zero_steps,
            "clipped_ce_by_epoch": [round(v, 4) for v in loss_by_epoch],
            "ranks": ranks.size,
            # not part of the cache key (a δ fitted on a GPU serves a CPU run), but it changes the float
            # summation order, which sign steps amplify: the record says where δ was fitted
            "device": device.type,
        }
        return delta.detach(), info

    def prepare(self, model, ctx):
        data = ctx.fit  # the fit split, handed in by the engine (fits_on_data)
        dims = data.x[0].numel()
        if self.norm == "l2" and self.eps > math.sqrt(dims):
            raise UsageError(
                f"uap: an l2 eps of {self.eps} exceeds the diameter {math.sqrt(dims):.1f} of the "
                f"[0,1] box of {ctx.dataset} images"
            )
        if self.target >= ctx.num_classes:
            raise UsageError(
                f"uap: target {self.target} is not a class of {ctx.dataset} (0..{ctx.num_classes - 1})"
            )
        generator = torch.Generator().manual_seed(ctx.seed)
        # drawn before fitting, so the control is the same whether δ is fitted or read from the cache
        signs = (torch.randint(0, 2, (1, *data.x.shape[1:]), generator=generator) * 2 - 1).float()
        key = self.fit_key(ctx.model_fingerprint, ctx.dataset, data.split, data.fingerprint, ctx.seed)
        delta, fit = ctx.cache.fetch_or_fit(
            key,
            tuple(data.x.shape[1:]),
            fit=lambda: self.fit(model, data.x, data.y, ctx.device, generator, ctx.ranks, ctx.check_stop),
            accept=lambda cached: (
                self.size(cached) <= self.eps * (1 + 1e-6)
            ),  # a cached δ must lie in the ball
        )
        self.delta = delta
        self.control = self.random_control(delta, signs)
        self.fit_info = {
            "split": data.split,
            "n_examples": len(data.x),
            "seed": ctx.seed,
            "cache_key": key,
            **fit,
        }

    # -- evaluation ---------------------------------------------------------------------------------
    def run_batch(self, model, x, y, clean_correct, ctx):
        if self.delta is None:
            raise RuntimeError("uap: run_batch before prepare (the engine calls prepare first)")
        with torch.inference_mode():
            clean_pred = model(x).argmax(1)
            adv_pred = model((x + self.delta).clamp(0, 1)).argmax(1)
            control_pred = model((x + self.control).clamp(0, 1)).argmax(1)
            shifted = [
                adv_pred if s == 0 else model((x + self.shifted_delta(s)).clamp(0, 1)).argmax(1)
                for s in self.shifts
            ]
        return {
            "robust": clean_correct & (adv_pred == y),
            "fooled": adv_pred != clean_pred,
            "target_hit": adv_pred == self.target,
            "off_target": y != self.target,
            "control_robust": clean_correct & (control_pred == y),
            "control_fooled": control_pred != clean_pred,
            "control_target_hit": control_pred == self.target,
            "fooled_shifted": torch.stack([p != clean_pred for p in shifted], dim=1),
        }

    # -- reporting ----------------------------------------------------------------------------------
    def summarize(self, stats):
        def rate(flags) -> float | None:
            return float(np.mean(flags)) if len(flags) else None

        off = stats["off_target"]
        delta = self.delta if self.delta is not None else torch.zeros(1)
        return {
            "fooling_rate": rate(stats["fooled"]),
            "targeted_success_rate": rate(stats["target_hit"][off]),
            "control": {
                "kind": f"random signs, one pattern for all images, same {self.norm} norm as δ",
                "robust_acc": rate(stats["control_robust"]),
                "fooling_rate": rate(stats["control_fooled"]),
                "targeted_success_rate": rate(stats["control_target_hit"][off]),
            },
            "fooling_rate_by_shift": {
                "shift_px": list(self.shifts),
                "fooling_rate": [
                    rate(col) for col in np.asarray(stats["fooled_shifted"]).reshape(-1, len(self.shifts)).T
                ],
                "convention": SHIFT_CONVENTION,
            },
            "definitions": "fooling rate: prediction under x+δ differs from the clean prediction, over all "
            "evaluated examples; targeted success: predicted as the target, over examples whose "
            "label is not the target",
            "delta_norm": {"linf": float(delta.abs().max()), "l2": float(delta.norm())},
            "fit": dict(self.fit_info),
        }

    def flags(self, stats):
        if self.delta is not None and not self.delta.any():
            return [
                "uap_zero_delta: fitting never moved δ (every gradient was zero: masked gradients, or every "
                "loss already above beta)"
            ]
        return []

    def state_fingerprint(self):
        """δ and the random-sign control, byte for byte: every verdict of a run depends on both."""
        if self.delta is None:
            return None
        digest = hashlib.sha256(self.delta.detach().cpu().numpy().tobytes())
        digest.update(self.control.detach().cpu().numpy().tobytes())
        return digest.hexdigest()

    def artifacts(self):
        if self.delta is None:
            return {}
        delta = self.delta[0].cpu().numpy()
        buffer = io.BytesIO()
        np.save(buffer, delta)
        return {"npy": buffer.getvalue(), "png": delta_png(delta)}
