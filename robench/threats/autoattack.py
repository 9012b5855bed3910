"""The reference AutoAttack (Croce & Hein 2020) through its authors' package ``pyautoattack``.

Version "standard": APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000 queries), each run only
on the points the previous ones left standing. It is the reference ℓp evaluation, and torchattacks'
``AutoAttack`` is not (fewer iterations, clock seed), so this family wraps the authors' code unchanged:

- it runs per batch on the clean-correct examples only, with a seed drawn from the chunk's generator,
  so a record does not depend on the clock, on the process count, or on what ran before;
- the global torch RNG that AutoAttack reseeds is restored afterwards (``fork_rng``);
- its own sanity checks (randomised or dynamic defence, probability outputs, zero gradients, Square
  beating the gradient attacks) are captured, from its logger and from ``warnings``, and become the
  record's ``flags``; anything it prints goes to stderr, so ``robench eval --json`` keeps stdout clean;
- its verdict is re-checked: an example counts as broken only if the returned point is misclassified,
  inside [0,1] and inside the ε-ball (AutoAttack itself only reports the largest perturbation).

A randomised model (a test-time vote, robench.models.vote) is attacked with AutoAttack's own version for
randomised defences, ``rand`` (APGD-CE and APGD-DLR, each step averaging the gradients of ``eot_samples``
calls: EOT), whatever ``version`` says: AutoAttack is handed the classifier the vote aggregates, one fresh
transform per call (:class:`robench.threats.ops.eot.Sampled`, its draws seeded from the chunk's generator),
and every returned point is re-checked with the vote. ``details`` then name the attacks and the samples.
AutoAttack skips a point its first (random) call already misclassifies; the vote may still classify it
correctly, and it then counts as robust unattacked (``details: unperturbed_robust`` counts them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import sys
import warnings
from typing import Literal

import numpy as np
import torch

from robench.core.errors import RobenchError
from robench.threats.base import FAMILIES, Threat, omitted_at_default, require, require_budget
from robench.threats.ops.eot import Sampled, eot_details, eot_for

#: AutoAttack's checks, by a phrase of their message -> (flag name, what it means). Order fixes the bits.
CHECKS = [
    (
        "randomized defense",
        "randomized",
        "the model's outputs change between identical calls (use version='rand')",
    ),
    ("probability distribution", "probability_output", "the model seems to output probabilities, not logits"),
    ("dynamic defense", "dynamic", "the forward pass computes gradients (a dynamic defence)"),
    ("zero gradient", "zero_gradients", "some points have an all-zero input gradient"),
    (
        "Square Attack has decreased",
        "square_stronger",
        "the black-box Square attack broke points the gradient attacks missed",
    ),
    ("target classes|DLR loss", "n_classes", "too few classes for the targeted attacks"),
]
_OTHER = ("other", "another AutoAttack warning (see stderr)")
_SLACK = 1e-5  # float rounding allowed on the ε-ball and the [0,1] box


class _Collect(logging.Handler):
    """Keeps AutoAttack's warnings for the record and echoes them to stderr."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())
        print(f"autoattack: {record.getMessage()}", file=sys.stderr)


def warning_bits(messages: list[str]) -> int:
    """AutoAttack messages -> a bitmask over :data:`CHECKS` (last bit: an unrecognised warning)."""
    bits = 0
    for message in messages:
        hits = [i for i, (pattern, _, _) in enumerate(CHECKS) if re.search(pattern, message)]
        for i in hits or [len(CHECKS)]:
            bits |= 1 << i
    return bits


@contextlib.contextmanager
def captured_warnings():
    """Collect what AutoAttack logs or warns at WARNING level; route its stdout to stderr."""
    logger = logging.getLogger("auto-attack")
    handler = _Collect()
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("always")
            yield handler.messages
        handler.messages.extend(str(w.message) for w in caught)
    finally:
        logger.removeHandler(handler)


@FAMILIES.register("autoattack")
@dataclasses.dataclass
class AutoAttackThreat(Threat):
    """Robust only if the example survives every attack of the AutoAttack version."""

    norm: Literal["linf", "l2"]
    eps: float
    version: Literal["standard", "plus"]  # the versions for deterministic models
    eot_samples: int = omitted_at_default(20)  # a randomised model: version rand's EOT (its default, 20)

    def __post_init__(self):
        require_budget(self.family, self.norm, self.eps)
        require(self.eot_samples >= 1, f"autoattack: eot_samples must be >= 1, got {self.eot_samples!r}")

    def perturbation_norms(self, delta: torch.Tensor) -> torch.Tensor:
        flat = delta.flatten(1)
        return flat.abs().amax(1) if self.norm == "linf" else flat.norm(dim=1)

    def run_batch(self, model, x, y, clean_correct, ctx):
        try:
            from pyautoattack import AutoAttack
        except ImportError:
            raise RobenchError("autoattack needs the authors' package: pip install pyautoattack") from None
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator))
        n = len(x)
        robust = torch.zeros(n, dtype=torch.bool)
        norm = torch.full((n,), float("nan"), dtype=torch.float64)
        out_of_budget = torch.zeros(n, dtype=torch.bool)
        warned = torch.zeros(n, dtype=torch.int64)
        idx = clean_correct.nonzero().squeeze(1)
        eot = eot_for(model, self.eot_samples)
        if idx.numel():
            xs, ys = x[idx].clone(), y[idx].clone()
            devices = [x.device] if x.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), captured_warnings() as messages:
                attacked = model if eot is None else Sampled(eot, torch.Generator().manual_seed(seed))
                attack = AutoAttack(
                    attacked,
                    norm={"linf": "Linf", "l2": "L2"}[self.norm],
                    eps=self.eps,
                    version=self.version if eot is None else "rand",
                    seed=seed,
                    device=x.device,
                )
                if eot is not None:
                    attack.apgd.eot_iter = eot.samples
                x_adv, _ = attack.run_standard_evaluation(xs, ys, batch_size=ctx.batch_size)
            with torch.inference_mode():
                wrong = model(x_adv).argmax(1) != ys
            size = self.perturbation_norms(x_adv - xs)
            valid = (
                (size <= self.eps * (1 + _SLACK) + _SLACK)
                & (x_adv.flatten(1).amin(1) >= -_SLACK)
                & (x_adv.flatten(1).amax(1) <= 1 + _SLACK)
            )
            cpu = idx.cpu()
            robust[cpu] = (~(wrong & valid)).cpu()
            out_of_budget[cpu] = (wrong & ~valid).cpu()
            norm[cpu] = torch.where(wrong & valid, size, torch.full_like(size, float("nan"))).double().cpu()
            warned[:] = warning_bits(messages)  # a check speaks for the batch it ran on
        out = {"robust": robust, "adversarial_norm": norm, "out_of_budget": out_of_budget, "warned": warned}
        if eot is not None:
            unperturbed = torch.zeros(n, dtype=torch.bool)
            if idx.numel():
                unperturbed[idx.cpu()] = (x_adv == xs).flatten(1).all(1).cpu()
            out["eot_samples"] = torch.full((n,), eot.samples, dtype=torch.int64)
            out["unperturbed"] = unperturbed & robust
        return out

    def summarize(self, stats):
        norms = stats["adversarial_norm"]
        found = norms[~np.isnan(norms)]
        out = {
            "attacks": "apgd-ce, apgd-t, fab-t, square"
            if self.version == "standard"
            else "apgd-ce, apgd-dlr, fab, square, apgd-t, fab-t",
            "broken": int(found.size),
            "median_adversarial_norm": float(np.median(found)) if found.size else None,
            "rejected_out_of_budget": int(stats["out_of_budget"].sum()),
        }
        if "eot_samples" in stats:  # a randomised model: version rand ran, whatever version says
            out["attacks"] = "apgd-ce, apgd-dlr (version rand: EOT over the vote's transforms)"
            out["unperturbed_robust"] = int(stats["unperturbed"].sum())
        return out | eot_details(stats)

    def flags(self, stats):
        out = []
        attacked = stats["clean_correct"]
        warned = stats["warned"]
        for bit, (name, meaning) in enumerate([(c[1], c[2]) for c in CHECKS] + [_OTHER]):
            hit = (warned >> bit) & 1 == 1
            if hit.any():
                share = float(hit[attacked].mean()) if attacked.any() else 0.0
                out.append(
                    f"autoattack_{name}: AutoAttack warned that {meaning}, on batches holding "
                    f"{share:.1%} of the attacked examples (see its flags_doc.md)"
                )
        rejected = int(stats["out_of_budget"].sum())
        if rejected:
            out.append(
                f"autoattack_out_of_budget: {rejected} adversarial points AutoAttack returned lie "
                "outside the ε-ball or [0,1] and were not counted as breaks"
            )
        return out
