"""Universal adversarial perturbations: one δ for every image (Shafahi et al. 2020).

Why it is fitted the way it is:
- δ is fitted in :meth:`UAP.prepare`, once per run, on the dataset's ``fit_split`` (disjoint from the
  evaluated split), so the record measures how a perturbation *transfers to unseen images*, not how well
  it memorises the evaluated ones.
- The objective is the β-clipped cross-entropy mean(min(CE(f(x+δ), label), β)), ascended (label = the
  true class) or descended (targeted: label = the target class) by stochastic minibatch steps: sign steps
  in l-inf, normalised steps in l2, each followed by projection onto the ε-ball (l2: projection, not
  rescaling onto the sphere). The clip keeps a few already-fooled examples with huge losses from
  dominating the universal direction; when targeted, it keeps hopeless examples from doing so.
- Scale-out: each rank takes ``xb[rank::world]`` of every minibatch and the gradients of the *summed*
  per-example losses are all-reduced, so sharded fitting sees the same gradient as a single process and
  gives the same δ (up to float summation order).
- A fitted δ is cached under ``$ROBENCH_CACHE/uap/<hash>.npy`` (default ``~/.cache/robench``), keyed by
  the model's weights and buffers, the fit data, every fit parameter and the seed (not the device, which
  the record names instead): evaluating three models under three UAP threats twice fits nine
  perturbations, not eighteen.

Evaluation (per example, all bool): correct under x+δ (robust), prediction changed vs. the clean
prediction (fooled), predicted as the target, the same three under a random-sign control of equal norm,
and fooled when δ is shifted by each of ``shifts`` pixels diagonally (Park et al. 2021's invariance probe).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from robench import record
from robench.datasets import dataset_info, load_tensors
from robench.distributed import all_reduce_sum, world
from robench.errors import UsageError
from robench.threats import geometry
from robench.threats.base import FAMILIES, Threat, require

#: Bump when the fitting algorithm changes, so that cached perturbations from the old one are not reused.
FIT_VERSION = 1
SHIFT_CONVENTION = ("δ translated by (s, s) px, i.e. s px right and s px down, vacated pixels zero "
                    "(no wrap-around), then added to x and clipped to [0,1]")
_PNG_MIN_SIDE = 112  # small images are upscaled (nearest) so the pattern is visible


def cache_dir() -> Path:
    """Where fitted perturbations are kept: ``$ROBENCH_CACHE/uap``, default ``~/.cache/robench/uap``."""
    return Path(os.environ.get("ROBENCH_CACHE", Path.home() / ".cache" / "robench")) / "uap"


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of the class, card identity and every parameter and buffer (normalisation included).

    The card's weights sha256 alone would miss a changed normalisation or an uncarded module; hashing
    the tensors themselves names exactly the function δ was fitted against.
    """
    digest = hashlib.sha256(type(model).__qualname__.encode())
    card = getattr(model, "card", None)
    if card is not None:
        digest.update(json.dumps(card.meta(), sort_keys=True, default=str).encode())
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def data_fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    digest = hashlib.sha256(x.contiguous().numpy().tobytes())
    digest.update(y.contiguous().numpy().tobytes())
    return digest.hexdigest()


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

    norm: Literal["linf", "l2"]
    eps: float
    epochs: int  # passes over the fit split
    step_size: float
    fit_batch_size: int  # images per fitting minibatch (summed over ranks when sharded)
    beta: float  # cap of the per-example cross-entropy
    targeted: bool
    target: int  # the target class when targeted (also reported, as a rate, when not)
    shifts: list[int]  # pixel shifts of δ for the invariance curve

    def __post_init__(self):
        require(self.eps > 0, f"uap: eps must be > 0, got {self.eps!r}")
        if self.norm == "linf":
            require(self.eps <= 1, f"uap: an l-inf eps of {self.eps} exceeds the [0,1] pixel range")
        require(self.epochs >= 1, f"uap: epochs must be >= 1, got {self.epochs!r}")
        require(self.step_size > 0, f"uap: step_size must be > 0, got {self.step_size!r}")
        require(self.fit_batch_size >= 1, f"uap: fit_batch_size must be >= 1, got {self.fit_batch_size!r}")
        require(self.beta > 0, f"uap: beta must be > 0, got {self.beta!r}")
        require(self.target >= 0, f"uap: target must be a class index >= 0, got {self.target!r}")
        require(len(self.shifts) > 0 and all(s >= 0 for s in self.shifts),
                f"uap: shifts must be a non-empty list of integers >= 0 (pixels), got {self.shifts!r}")
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

    def random_control(self, like: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
        """The random-sign universal perturbation ``signs`` (±1) scaled to the norm of ``like``."""
        amplitude = self.size(like) if self.norm == "linf" else self.size(like) / math.sqrt(like.numel())
        return (signs * amplitude).to(like.device)

    # -- fitting ------------------------------------------------------------------------------------
    def fit_key(self, model, dataset: str, split: str, x: torch.Tensor, y: torch.Tensor, seed: int) -> str:
        """The cache key: model function, fit data, every fit parameter and the seed."""
        fit_params = {k: v for k, v in self.config().items() if k != "shifts"}  # shifts only affect evaluation
        return record.config_hash({
            "version": FIT_VERSION, "model": model_fingerprint(model), "dataset": dataset, "split": split,
            "data": data_fingerprint(x, y), "params": fit_params, "seed": seed,
        })

    def fit(self, model, x: torch.Tensor, y: torch.Tensor, device: torch.device, generator: torch.Generator):
        """Fit δ on (x, y) (CPU tensors; minibatches go to ``device``). Returns (δ [1,C,H,W], info)."""
        rank, n_ranks = world()
        delta = torch.zeros((1, *x.shape[1:]), device=device)
        loss_by_epoch, zero_steps, steps = [], 0, 0
        started = time.perf_counter()
        for _ in range(self.epochs):
            order = torch.randperm(len(x), generator=generator)
            loss_sum = torch.zeros((), device=device)
            for i in range(0, len(x), self.fit_batch_size):
                idx = order[i : i + self.fit_batch_size][rank::n_ranks]
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
                all_reduce_sum(grad)
                zero_steps += int(not grad.any())
                steps += 1
                delta = self.step(delta, grad)
            loss_by_epoch.append(float(all_reduce_sum(loss_sum)) / len(x))
        info = {
            "fit_time_s": round(time.perf_counter() - started, 3), "steps": steps, "zero_gradient_steps": zero_steps,
            "clipped_ce_by_epoch": [round(v, 4) for v in loss_by_epoch], "ranks": n_ranks,
            # not part of the cache key (a δ fitted on a GPU serves a CPU run), but it changes the float
            # summation order, which sign steps amplify: the record says where δ was fitted
            "device": device.type,
        }
        return delta.detach(), info

    def prepare(self, model, ctx):
        info = dataset_info(ctx.dataset)
        split = info.fit_split
        if ctx.split == split:
            raise UsageError(f"uap: cannot evaluate on split {split!r} of {ctx.dataset}: δ is fitted on it; "
                             "evaluate on a disjoint split (e.g. --split test)")
        dims = info.channels * info.image_size**2
        if self.norm == "l2" and self.eps > math.sqrt(dims):
            raise UsageError(f"uap: an l2 eps of {self.eps} exceeds the diameter {math.sqrt(dims):.1f} of the "
                             f"[0,1] box of {ctx.dataset} images")
        if self.target >= info.num_classes:
            raise UsageError(f"uap: target {self.target} is not a class of {ctx.dataset} (0..{info.num_classes - 1})")
        card = getattr(model, "card", None)  # #11: fit images preprocessed as the evaluated ones
        x, y = load_tensors(ctx.dataset, split, None, ctx.data_dir, preprocessing=getattr(card, "preprocessing", None))
        generator = torch.Generator().manual_seed(ctx.seed)
        # drawn before fitting, so the control is the same whether δ is fitted or read from the cache
        signs = (torch.randint(0, 2, (1, *x.shape[1:]), generator=generator) * 2 - 1).float()
        key = self.fit_key(model, ctx.dataset, split, x, y, ctx.seed)
        path = cache_dir() / f"{key}.npy"
        cached = self.load_cached(path, tuple(x.shape[1:]))
        hits = all_reduce_sum(torch.tensor(float(cached is not None), device=ctx.device))
        rank, n_ranks = world()
        if int(hits) == n_ranks:  # every rank must agree, or some would wait in an all-reduce forever
            delta, fit = cached
            delta = delta.to(ctx.device)
        else:
            delta, fit = self.fit(model, x, y, ctx.device, generator)
            if rank == 0:
                self.store_cached(path, delta, fit)
            fit = {**fit, "cached": False}
        self.delta = delta
        self.control = self.random_control(delta, signs)
        self.fit_info = {"split": split, "n_examples": len(x), "seed": ctx.seed, "cache_key": key, **fit}

    @staticmethod
    def store_cached(path: Path, delta: torch.Tensor, fit: dict) -> None:
        buffer = io.BytesIO()
        np.save(buffer, delta[0].cpu().numpy())
        try:
            record.atomic_write_bytes(path, buffer.getvalue())
            record.atomic_write_bytes(path.with_suffix(".json"), json.dumps(fit, sort_keys=True).encode())
        except OSError:
            pass  # a read-only cache costs a refit next time, never the run

    def load_cached(self, path: Path, shape: tuple) -> tuple[torch.Tensor, dict] | None:
        """A cached δ that still has the right shape, is finite and lies in the ball; else None (refit)."""
        try:
            delta = np.load(path, allow_pickle=False)
            fit = json.loads(path.with_suffix(".json").read_text())
        except (OSError, ValueError):
            return None
        if delta.shape != shape or delta.dtype != np.float32 or not np.isfinite(delta).all():
            return None
        delta = torch.from_numpy(delta)[None]
        if self.size(delta) > self.eps * (1 + 1e-6):
            return None
        return delta, {**fit, "cached": True}

    # -- evaluation ---------------------------------------------------------------------------------
    def run_batch(self, model, x, y, clean_correct, ctx):
        if self.delta is None:
            raise RuntimeError("uap: run_batch before prepare (the engine calls prepare first)")
        with torch.inference_mode():
            clean_pred = model(x).argmax(1)
            adv_pred = model((x + self.delta).clamp(0, 1)).argmax(1)
            control_pred = model((x + self.control).clamp(0, 1)).argmax(1)
            shifted = []
            for s in self.shifts:  # SHIFT_CONVENTION moves δ by (s, s); geometry.shift moves content by -t
                moved = geometry.shift(self.delta, torch.tensor([[-s, -s]]))
                shifted.append(adv_pred if s == 0 else model((x + moved).clamp(0, 1)).argmax(1))
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
                "fooling_rate": [rate(col) for col in np.asarray(stats["fooled_shifted"]).reshape(-1, len(self.shifts)).T],
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
            return ["uap_zero_delta: fitting never moved δ (every gradient was zero: masked gradients, or every "
                    "loss already above beta)"]
        return []

    def artifacts(self):
        if self.delta is None:
            return {}
        delta = self.delta[0].cpu().numpy()
        buffer = io.BytesIO()
        np.save(buffer, delta)
        return {"npy": buffer.getvalue(), "png": delta_png(delta)}
