"""robench's throughput against the model's own limit and against peers, in one run (issue #12).

Run on a quiet machine; the numbers that matter are ratios measured side by side in the same process
(absolute numbers move with the machine's load):

    python scripts/benchmark.py                                    # mnist5k zoo models, CPU
    python scripts/make_synthetic_imagenet.py /tmp/synth --n 20000
    python scripts/benchmark.py --synthetic /tmp/synth --memory-sizes 5000,20000   # + data path and memory

Three tables:
1. every threat family (one named threat each) through the engine, fp32 and on the fast path, against the
   model's raw forward and forward+backward throughput at the same batch size. "fwd-equiv/ex" is how many
   raw forwards' time one example costs (raw forward img/s / examples/s);
2. peers on the same clean-correct examples: robench's spatial grid vs Foolbox's SpatialAttack (same grid)
   and vs the fp32 raw-forward floor (775 plain forwards per example that survives the grid); robench's
   PGD-linf, fp32 and on the fast path (bf16 search, every verdict fp32's), vs torchattacks' PGD at equal
   strength (same eps, step, steps, random start), each with its robust accuracy;
3. with ``--synthetic``: decode throughput (the engine's streamed batches, default workers) vs a random
   resnet18's CPU forward at 224 px, and the peak RSS of ``clean`` (random mobilenet_v3_small) at each of
   ``--memory-sizes`` images, each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from robench import datasets
from robench.datasets import imagenet, load_tensors
from robench.engine import evaluate
from robench.engine.forward import Forward, Speed
from robench.models import create_model
from robench.threats import BatchContext, create_threat

FAMILIES = (
    "clean",
    "spatial",
    "spatial_random",
    "spatial_pgd",
    "translation_sweep",
    "consistency",
    "pgd_linf",
    "autoattack_linf",
    "uap_linf",
)  # one named threat per registered family


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def raw_throughput(model, x, batch_size, backward=False, repeats=3):
    """Images/s of the bare model on one batch: the ceiling any harness can reach."""
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


def families_table(name, n, batch_size, fast, fwd, fwd_bwd):
    print(f"\n### {name}: every family through the engine, {n} examples, batch {batch_size}")
    print(f"raw forward {fwd:,.0f} img/s, raw forward+backward {fwd_bwd:,.0f} img/s; fast path: {fast}")
    print(
        "\n| threat | family | robust acc | fp32 ex/s | fwd-equiv/ex | fast ex/s | fast/fp32 "
        "| verdicts equal |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    model = create_model(name, device="cpu")
    for threat in FAMILIES:
        kw = dict(n_examples=n, batch_size=batch_size, progress=False, model_name=name)
        plain = evaluate(model, threat, **kw)
        quick = evaluate(model, threat, **kw, **fast)
        same = plain.per_example == quick.per_example and _stable(plain.details) == _stable(quick.details)
        search = quick.execution.get("search")
        path = f"{search} search" if search else "fp32-checked" if quick.execution else "fp32 (gradients)"
        # a bf16 search may reach other verdicts by design (scripts/fast_path_check.py --pgd measures them)
        equal = f"{'yes' if same else 'no'} (fast robust {quick.robust_acc:.1%})" if search else "NO"
        print(
            f"| {threat} | {plain.family} | {plain.robust_acc:.1%} | {plain.examples_per_s:,.1f} | "
            f"{fwd / plain.examples_per_s:,.1f} | {quick.examples_per_s:,.1f} | "
            f"{quick.examples_per_s / plain.examples_per_s:.2f}x ({path}) | {'yes' if same else equal} |"
        )


def _stable(details):
    """``details`` without timings and cache hits (a UAP's second run reads its fitted δ from the cache)."""
    if isinstance(details, dict):
        return {k: _stable(v) for k, v in details.items() if k not in ("fit_time_s", "cached")}
    return details


def foolbox_spatial(model, x, y, grid, batch_size):
    import foolbox as fb

    attack = fb.attacks.SpatialAttack(
        max_translation=grid.max_translation,
        max_rotation=grid.max_rotation,
        num_translations=grid.n_translations,
        num_rotations=grid.n_rotations,
    )
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    fooled = [
        attack(fmodel, x[i : i + batch_size], fb.criteria.Misclassification(y[i : i + batch_size]))[2]
        for i in range(0, len(x), batch_size)
    ]
    return ~torch.cat(fooled)


def peers_table(spatial_model, pgd_model, n, batch_size, fast):
    print(f"\n### peers: same clean-correct examples (of the first {n}), batch {batch_size}")
    print("\n| model | method | examples/s | ratio | target | robust acc (of clean-correct) |")
    print("|---|---|---:|---:|---|---:|")
    model = create_model(spatial_model, device="cpu")
    x, y = clean_correct(model, n)
    fwd = raw_throughput(model, x, batch_size)
    grid = create_threat("spatial", "mnist5k")
    ones = torch.ones_like(y, dtype=torch.bool)
    ours, t_ours = timed(
        lambda: grid.run_batch(model, x, y, ones, BatchContext(torch.Generator(), batch_size))
    )
    fb_robust, t_fb = timed(lambda: foolbox_spatial(model, x, y, grid, batch_size))
    floor = 775 * int(ours["robust"].sum()) / fwd  # seconds for 775 plain forwards per surviving example
    acc = float(ours["robust"].float().mean())
    print(
        f"| {spatial_model} | robench spatial (fp32) | {len(x) / t_ours:,.1f} | "
        f"{t_fb / t_ours:.2f}x Foolbox, "
        f"{floor / t_ours:.2f}x floor | >= 3x, >= 2x | {acc:.1%} |"
    )
    if fast:
        forward = Forward.make(model, grid, Speed(**fast), torch.device("cpu"), [(x[0], 0)])
        quick, t_quick = timed(
            lambda: grid.run_batch(forward.model, x, y, ones, BatchContext(torch.Generator(), batch_size))
        )
        assert torch.equal(quick["robust"], ours["robust"]), "the fast path changed a verdict"
        print(
            f"| {spatial_model} | robench spatial ({Speed(**fast).label}, fp32-checked) | "
            f"{len(x) / t_quick:,.1f} | "
            f"{t_fb / t_quick:.2f}x Foolbox, {floor / t_quick:.2f}x floor | >= 3x, >= 2x | {acc:.1%} |"
        )
    print(
        f"| {spatial_model} | Foolbox SpatialAttack | {len(x) / t_fb:,.1f} | 1.00x | | "
        f"{float(fb_robust.float().mean()):.1%} |"
    )
    print(f"| {spatial_model} | 775 raw forwards / surviving example | {len(x) / floor:,.1f} | | | |")

    model = create_model(pgd_model, device="cpu")
    x, y = clean_correct(model, n)
    pgd = create_threat("pgd_linf", "mnist5k")
    robust, t_pgd = timed(lambda: run_pgd(pgd, model, x, y, batch_size))
    import torchattacks

    attack = torchattacks.PGD(model, eps=pgd.eps, alpha=pgd.step_size, steps=pgd.steps, random_start=True)
    torch.manual_seed(0)
    x_adv, t_ta = timed(
        lambda: torch.cat(
            [attack(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        )
    )
    with torch.inference_mode():
        ta_acc = float((model(x_adv).argmax(1) == y).float().mean())
    print(
        f"| {pgd_model} | robench pgd_linf | {len(x) / t_pgd:,.1f} | {t_ta / t_pgd:.2f}x torchattacks "
        "| >= 2x | "
        f"{float(robust.float().mean()):.1%} |"
    )
    if fast:
        forward = Forward.make(model, pgd, Speed(**fast), torch.device("cpu"), [(x[0], 0)])
        quick, t_quick = timed(lambda: run_pgd(pgd, forward.model, x, y, batch_size))
        print(
            f"| {pgd_model} | robench pgd_linf ({Speed(**fast).label}, fp32-checked verdicts) | "
            f"{len(x) / t_quick:,.1f} | {t_ta / t_quick:.2f}x torchattacks | >= 2x | "
            f"{float(quick.float().mean()):.1%} |"
        )
    print(f"| {pgd_model} | torchattacks PGD | {len(x) / t_ta:,.1f} | 1.00x | | {ta_acc:.1%} |")


def run_pgd(pgd, model, x, y, batch_size):
    """robench's PGD verdicts on clean-correct (x, y), batch by batch, as the engine's loop calls it
    (``model`` is the plain model or the fast path's search model)."""
    ctx = BatchContext(torch.Generator().manual_seed(0), batch_size)
    ones = torch.ones_like(y, dtype=torch.bool)
    parts = [
        pgd.run_batch(model, x[i : i + batch_size], y[i : i + batch_size], ones[i : i + batch_size], ctx)
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat([p["robust"] for p in parts])


def clean_correct(model, n):
    x, y = load_tensors("mnist5k", "test", n)
    with torch.inference_mode():
        keep = model(x).argmax(1) == y
    return x[keep], y[keep]


def data_table(folder, sizes, batch_size, arch):
    import torchvision

    examples = datasets.first_examples("imagenet", "test", None, folder)
    workers = datasets.default_workers(examples)
    n = min(len(examples), 1000)
    _, seconds = timed(
        lambda: sum(
            len(x)
            for x, _ in datasets.stream_batches(examples, 0, n, batch_size, torch.device("cpu"), workers)
        )
    )
    resnet = torchvision.models.resnet18().eval()
    fwd = raw_throughput(resnet, torch.rand(batch_size, 3, 224, 224), batch_size)
    print(f"\n### data path: synthetic ImageNet JPEGs in {folder}")
    print(
        f"\ndecode (resize 256, crop 224; {workers} workers, batch {batch_size}): {n / seconds:,.1f} img/s; "
        f"resnet18 CPU forward: {fwd:,.1f} img/s; decode/model {n / seconds / fwd:.2f}x (target >= 2x)"
    )
    if sizes:
        print(f"\n| images evaluated (clean, random {arch}) | peak RSS (main process) | examples/s |")
        print("|---:|---:|---:|")
    for size in sizes:
        command = [
            sys.executable,
            __file__,
            "--rss-child",
            str(size),
            "--synthetic",
            folder,
            "--rss-arch",
            arch,
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        child = json.loads(out.split()[-1])
        print(f"| {size:,} | {child['rss_mb']:,.0f} MB | {child['ex_s']:,.1f} |")


def rss_child(size: int, folder: str, arch: str) -> None:
    """One ``clean`` evaluation of ``size`` images in this fresh process; prints its peak RSS as JSON.

    ImageNet's ``test`` split holds 5 images per class; this process raises that to size / 1000 so that the
    split holds every image of the synthetic folder (a measurement only: records never use this).
    """
    import torchvision

    imagenet.IMAGENET_PER_CLASS = size // 1000  # the module that splits the folder reads it
    torch.manual_seed(0)
    if arch == "pool":  # a near-free model: the data path alone
        layers = torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 1000)
        model = torch.nn.Sequential(*layers)
    else:
        model = torchvision.models.get_model(arch).eval()
    record = evaluate(model, "clean", "imagenet", data_dir=folder, model_name=arch, progress=False)
    assert record.n_examples == size, record.n_examples
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # workers hold a batch or two each
    print(json.dumps({"rss_mb": peak_mb, "ex_s": record.examples_per_s}, separators=(",", ":")))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--families-models",
        default="mnist_cnn_worst_of_10,mnist_cnn_pgd_linf",
        help="comma-separated model cards for the every-family table ('' to skip)",
    )
    parser.add_argument(
        "--n", type=int, default=200, help="examples per measurement (first n of mnist5k test)"
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    parser.add_argument(
        "--fast",
        default="bf16,channels_last",
        help="the fast path measured: precision[,channels_last][,compile] ('' for none)",
    )
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--synthetic", help="a make_synthetic_imagenet.py folder: adds the data-path table")
    parser.add_argument(
        "--memory-sizes", default="5000", help="comma-separated image counts for peak RSS ('': none)"
    )
    parser.add_argument(
        "--rss-arch",
        default="mobilenet_v3_small",
        help="torchvision model for the RSS runs, or 'pool' (near-free: the data path alone)",
    )
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        return rss_child(args.rss_child, args.synthetic, args.rss_arch)
    parts = [p for p in args.fast.split(",") if p]
    fast = (
        {"precision": parts[0], "channels_last": "channels_last" in parts, "compile": "compile" in parts}
        if parts
        else {}
    )
    print(
        f"# robench benchmark: {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"{os.cpu_count()} cores"
    )
    for name in filter(None, args.families_models.split(",")):
        model = create_model(name, device="cpu")
        x, _ = load_tensors("mnist5k", "test", args.batch_size)
        families_table(
            name,
            args.n,
            args.batch_size,
            fast,
            raw_throughput(model, x, args.batch_size),
            raw_throughput(model, x, args.batch_size, backward=True),
        )
    if not args.skip_peers:
        peers_table("mnist_cnn_worst_of_10", "mnist_cnn_pgd_linf", args.n, args.batch_size, fast)
    if args.synthetic:
        data_table(args.synthetic, [int(s) for s in args.memory_sizes.split(",") if s], 64, args.rss_arch)


if __name__ == "__main__":
    main()
