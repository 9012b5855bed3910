"""robench's universal perturbation against ART's ``UniversalPerturbation``, in one run.

Both fit an l-inf universal perturbation for the same model, at the same ε (the ``uap_linf`` threat's,
0.3 on MNIST), on the same images (the first ``--fit-examples`` of the dataset's fit split), on the same
device and thread count; both perturbations are then scored the same way on the evaluation split: fooling
rate (prediction under x+δ, clipped to [0,1], differs from the clean prediction) and accuracy under x+δ.
Fit wall times are measured in this one process, so their ratio is comparable.

ART is a peer here, not a robench dependency. Install it into the environment for this script only:

    .venv/bin/pip install adversarial-robustness-toolbox

Pitfall (docs/protocols.md): ART's ``UniversalPerturbation`` defaults to ``eps=10.0``, which on [0,1]
inputs is no constraint at all; this script always passes the threat's ε and prints ‖δ‖∞ of both
perturbations.
ART's default attacker is DeepFool, run one image at a time; ``--art-max-iter`` bounds its passes over the
fit images (its default is 20) so that the comparison runs in minutes on a CPU.

Usage:
    .venv/bin/python scripts/compare_uap_art.py [--model mnist_cnn_standard] [--fit-examples 500] \
        [--art-max-iter 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import numpy as np
import torch

from robench.datasets import dataset_info, load_tensors
from robench.models import create_model, load_card
from robench.runtime.devices import resolve_device
from robench.threats import create_threat


def score(model, x, y, delta, batch_size=500) -> tuple[float, float]:
    """(fooling rate vs. the clean prediction, accuracy) of x+δ clipped to [0,1]."""
    fooled = correct = 0
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            clean = model(xb).argmax(1)
            adv = model((xb + delta).clamp(0, 1)).argmax(1)
            fooled += int((adv != clean).sum())
            correct += int((adv == yb).sum())
    return fooled / len(x), correct / len(x)


def fit_art(model, x, eps, max_iter, seed, info, device) -> np.ndarray:
    try:
        from art.attacks.evasion import UniversalPerturbation
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        sys.exit("ART is not installed: .venv/bin/pip install adversarial-robustness-toolbox")
    classifier = PyTorchClassifier(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=info.num_classes,
        clip_values=(0.0, 1.0),
        device_type="gpu" if device.type == "cuda" else "cpu",
    )
    attack = UniversalPerturbation(
        classifier,
        attacker="deepfool",
        attacker_params={"verbose": False},
        eps=eps,
        norm=np.inf,
        max_iter=max_iter,
        verbose=False,
    )
    random.seed(seed)  # ART shuffles the fit images with Python's random
    np.random.seed(seed)
    attack.generate(x.cpu().numpy())
    return attack.noise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist_cnn_standard")
    parser.add_argument("--threat", default="uap_linf", help="robench l-inf UAP threat giving ε and the fit")
    parser.add_argument("--fit-examples", type=int, default=500, help="first N images of the fit split")
    parser.add_argument("--art-max-iter", type=int, default=1, help="ART passes over the fit images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, the same for both")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    card = load_card(args.model)
    info = dataset_info(card.dataset)
    model = create_model(card, device=device)
    threat = create_threat(args.threat, card.dataset)
    if threat.norm != "linf" or threat.targeted:
        sys.exit(
            f"{args.threat} is not an untargeted l-inf UAP threat; ART's comparison here is l-inf untargeted"
        )
    x_fit, y_fit = load_tensors(card.dataset, info.fit_split, args.fit_examples)
    x_eval, y_eval = (t.to(device) for t in load_tensors(card.dataset, "test"))

    started = time.perf_counter()
    ours, fit = threat.fit(model, x_fit, y_fit, device, torch.Generator().manual_seed(args.seed))
    ours_s = time.perf_counter() - started

    started = time.perf_counter()
    theirs = torch.from_numpy(fit_art(model, x_fit, threat.eps, args.art_max_iter, args.seed, info, device))
    art_s = time.perf_counter() - started
    theirs = theirs.to(device)

    rows = []
    for name, delta, seconds, passes in (
        ("robench uap", ours, ours_s, f"{threat.epochs} epochs x {fit['steps'] // threat.epochs} steps"),
        ("ART UniversalPerturbation (deepfool)", theirs, art_s, f"max_iter={args.art_max_iter}"),
    ):
        fooling, acc = score(model, x_eval, y_eval, delta)
        rows.append(
            (
                name,
                f"{float(delta.abs().max()):.3f}",
                passes,
                f"{seconds:.1f}",
                f"{fooling:.1%}",
                f"{acc:.1%}",
            )
        )

    print(
        f"model {args.model}, eps {threat.eps} (l-inf), fit on the first {len(x_fit)} images of "
        f"{card.dataset} {info.fit_split}, scored on {card.dataset} test ({len(x_eval)} images), "
        f"device {device}, {args.threads} thread(s), seed {args.seed}"
    )
    header = ("method", "|δ|inf", "fit budget", "fit s", "fooling rate", "acc under δ")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for line in (header, tuple("-" * w for w in widths), *rows):
        print(" | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
    print(f"fit time ratio ART / robench: {art_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
