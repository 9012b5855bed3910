"""Throughput of robench's spatial grid and PGD against the raw model and against peers' strategies.

Run on a quiet machine (numbers are ratios measured side by side in one run; absolute numbers move with the
machine's load):

    python scripts/benchmark.py                                   # mnist5k CNNs on the CPU
    python scripts/benchmark.py --models mnist_cnn_standard --n 200 --device cuda

For each model it reports, at the same batch size:
- raw forward and forward+backward throughput (images/s), the ceiling any harness can reach;
- the spatial grid: robench's search vs. a Foolbox-style loop (one transform for the whole batch per step,
  stop when all are fooled), a MadryLab-style loop (one image at a time, transforms in chunks of 200, stop at
  the first fooling chunk) and exhaustive search; all four must agree on every verdict;
- PGD-linf: robench vs. torchattacks' PGD at the same budget.
"achieved/raw" is the number of images the method pushed through the model per second divided by the raw
throughput: how close the harness runs to the model's own speed (1.0 = no overhead).
"""

from __future__ import annotations

import argparse
import time

import torch
import torchattacks

from robench.datasets import load_tensors
from robench.models import create_model
from robench.threats import BatchContext, create_threat
from robench.threats.geometry import affine_thetas, warp


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def raw_throughput(model, x, batch_size, backward=False, repeats=3):
    xb = x[:batch_size]
    if backward:

        def step():
            xg = xb.clone().requires_grad_(True)
            torch.autograd.grad(model(xg).sum(), xg)
    else:

        def step():
            with torch.inference_mode():
                model(xb)

    step()
    _, seconds = timed(lambda: [step() for _ in range(repeats)])
    return repeats * len(xb) / seconds


def foolbox_style(model, x, y, thetas, batch_size):
    """One transform for the whole batch per step; stop when every example is fooled."""
    robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
    images = 0
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb, yb, rb = x[i : i + batch_size], y[i : i + batch_size], robust[i : i + batch_size]
            for theta in thetas:
                if not rb.any():
                    break
                rb &= model(warp(xb, theta.expand(len(xb), 2, 3))).argmax(1) == yb
                images += len(xb)
    return robust, images


def madrylab_style(model, x, y, thetas, chunk=200):
    """One image at a time, its transforms in chunks of 200; the first fooling chunk ends the search."""
    robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
    images = 0
    with torch.inference_mode():
        for i in range(len(x)):
            for j in range(0, len(thetas), chunk):
                th = thetas[j : j + chunk]
                pred = model(warp(x[i : i + 1].expand(len(th), -1, -1, -1), th)).argmax(1)
                images += len(th)
                if (pred != y[i]).any():
                    robust[i] = False
                    break
    return robust, images


def exhaustive(model, x, y, thetas, batch_size):
    robust = torch.ones(len(x), dtype=torch.bool, device=x.device)
    per = max(1, batch_size // len(thetas)) if len(thetas) <= batch_size else 1
    images = 0
    with torch.inference_mode():
        for i in range(0, len(x), per):
            xb, yb = x[i : i + per], y[i : i + per]
            for j in range(0, len(thetas), batch_size // len(xb)):
                th = thetas[j : j + batch_size // len(xb)]
                pred = model(warp(xb.repeat_interleave(len(th), 0), th.repeat(len(xb), 1, 1))).argmax(1)
                robust[i : i + per] &= (pred.view(len(xb), len(th)) == yb.view(-1, 1)).all(1)
                images += len(xb) * len(th)
    return robust, images


def bench_model(name, n, batch_size, device, rows):
    model = create_model(name, device=device)
    x, y = load_tensors("mnist5k", "test", n)
    x, y = x.to(device), y.to(device)
    fwd = raw_throughput(model, x, batch_size)
    fwd_bwd = raw_throughput(model, x, batch_size, backward=True)
    with torch.inference_mode():
        clean = model(x).argmax(1) == y
    x_c, y_c = x[clean], y[clean]  # peers attack only clean-correct examples, as robench does
    print(f"\n## {name}: {n} examples ({int(clean.sum())} clean-correct), batch {batch_size}, {device}")
    print(f"raw forward {fwd:,.0f} img/s, raw forward+backward {fwd_bwd:,.0f} img/s")

    grid = create_threat("spatial", "mnist5k")
    thetas = affine_thetas(grid.transforms, 28, 28).to(device)
    ctx = BatchContext(torch.Generator(), batch_size)
    ours, t_ours = timed(lambda: grid.run_batch(model, x_c, y_c, torch.ones_like(y_c, dtype=torch.bool), ctx))
    images_ours = int(ours["tried"].sum())
    (fb, img_fb), t_fb = timed(lambda: foolbox_style(model, x_c, y_c, thetas, batch_size))
    (ml, img_ml), t_ml = timed(lambda: madrylab_style(model, x_c, y_c, thetas))
    (ex, img_ex), t_ex = timed(lambda: exhaustive(model, x_c, y_c, thetas, batch_size))
    assert torch.equal(ours["robust"], fb) and torch.equal(fb, ml) and torch.equal(ml, ex), "verdicts differ"
    acc = float(ours["robust"].float().mean())
    for method, seconds, images in (
        ("robench spatial", t_ours, images_ours),
        ("foolbox-style", t_fb, img_fb),
        ("madrylab-style", t_ml, img_ml),
        ("exhaustive", t_ex, img_ex),
    ):
        rows.append((name, method, len(x_c) / seconds, images / seconds / fwd, t_fb / seconds, acc))

    pgd = create_threat("pgd_linf", "mnist5k")
    robust, t_pgd = timed(
        lambda: pgd.run_batch(
            model,
            x_c,
            y_c,
            torch.ones_like(y_c, dtype=torch.bool),
            BatchContext(torch.Generator().manual_seed(0), batch_size),
        )
    )
    fooled_at = robust["fooled_at"]
    passes = int(torch.where(fooled_at >= 0, fooled_at + 1, torch.full_like(fooled_at, pgd.steps + 1)).sum())
    attack = torchattacks.PGD(model, eps=pgd.eps, alpha=pgd.step_size, steps=pgd.steps, random_start=True)
    torch.manual_seed(0)

    def run_ta():
        return torch.cat(
            [attack(x_c[i : i + batch_size], y_c[i : i + batch_size]) for i in range(0, len(x_c), batch_size)]
        )

    x_adv, t_ta = timed(run_ta)
    with torch.inference_mode():
        ta_acc = float((model(x_adv).argmax(1) == y_c).float().mean())
    rows.append(
        (
            name,
            "robench pgd_linf",
            len(x_c) / t_pgd,
            passes / t_pgd / fwd_bwd,
            t_ta / t_pgd,
            float(robust["robust"].float().mean()),
        )
    )
    rows.append(
        (name, "torchattacks PGD", len(x_c) / t_ta, len(x_c) * (pgd.steps + 1) / t_ta / fwd_bwd, 1.0, ta_acc)
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default="mnist_cnn_standard,mnist_cnn_worst_of_10",
        help="comma-separated model cards (a collapsing and a robust one show both regimes)",
    )
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows: list[tuple] = []
    for name in args.models.split(","):
        bench_model(name, args.n, args.batch_size, torch.device(args.device), rows)
    print(
        "\n| model | method | examples/s | achieved/raw | speed-up vs peer | robust acc (of clean-correct) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for name, method, eps, ratio, speedup, acc in rows:
        print(f"| {name} | {method} | {eps:,.1f} | {ratio:.2f} | {speedup:.2f}x | {acc:.1%} |")
    print(
        "\nspeed-up: the grid rows against foolbox-style, the PGD rows against torchattacks (same examples)."
    )


if __name__ == "__main__":
    main()
