"""GPU check: the CUDA path of evaluation for clean / PGD / spatial / UAP against the CPU, speed and memory.

Run once on a machine with a GPU (it needs no data and no downloaded weights):

    python scripts/gpu_check.py                          # resnet50, 224 px, random weights, synthetic images
    python scripts/gpu_check.py --device cpu --arch resnet18 --image-size 64 --n 8 --n-cpu 2   # smoke test

A random-weight torchvision model (seeded) classifies synthetic images whose labels are its own clean
predictions, so every example starts correct and every threat has work to do. For each threat the script runs
the engine's batch loop (``robench.engine.run_chunk``: clean forward, logit checks, the threat) on the device
and reports examples/s, the fraction of the fp32 raw limit (forward; forward+backward for PGD) and the peak
GPU memory; the grid and PGD run again on the fast path (bf16 + channels_last, ``--compile`` optional, every
close verdict re-checked in fp32): the grid's verdicts must equal the fp32 ones, PGD (a bf16 search) is set
beside fp32 for strength; then it reruns the first
``--n-cpu`` examples on the CPU with the same seed and compares the verdicts and the clean logits. TF32 is
switched off so that CPU and GPU compute the same fp32 function; PGD verdicts can still flip on an example
whose margin is within float noise, so they are reported, not asserted. Exit status 1 if the clean logits
disagree beyond tolerance, the clean/spatial verdicts differ, or the fast path changed a grid verdict.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import torch
import torchvision

from robench.engine import describe_device, run_chunk
from robench.engine.forward import Forward, Speed
from robench.models import NORMALIZATION_PRESETS, Classifier
from robench.threats import create_threat


def synthetic(model, n, size, seed, device, batch):
    """Smooth random images (low-frequency noise, like natural images more than white noise) and the
    model's own predictions as labels."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, max(2, size // 16), max(2, size // 16), generator=g)
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(
        0, 1
    )
    with torch.inference_mode():
        y = torch.cat([model(x[i : i + batch].to(device)).argmax(1).cpu() for i in range(0, n, batch)])
    return x, y


def raw_rate(model, x, backward: bool, repeats: int = 3) -> float:
    def once():
        if backward:
            xg = x.clone().requires_grad_(True)
            torch.autograd.grad(model(xg).sum(), xg)
        else:
            with torch.inference_mode():
                model(x)

    once()
    sync(x.device)
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    sync(x.device)
    return repeats * len(x) / (time.perf_counter() - start)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_chunk(model, threat, xs, ys, args, device) -> tuple[dict, float, float]:
    """The engine's batch loop on the device: stats, wall seconds, peak GPU memory (GiB; NaN on a CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    stats = run_chunk(
        model, threat, xs.to(device), ys.to(device), args.batch_size, args.seed, 1000, args.arch
    )
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return stats, seconds, peak


def fast_run(model, name, threat, xs, ys, args, device, fp32_stats, limit) -> dict:
    """``name`` again on bf16 + channels_last (robench.engine.forward), beside the fp32 run's ``fp32_stats``.

    The grid's verdicts are argmaxes re-checked in fp32, so they must equal the fp32 ones; PGD searches on
    bf16 gradients (its own trajectory) with every verdict decided in fp32, so it is compared for strength:
    its robust accuracy beside fp32's, and its fraction of the fp32 forward+backward limit.
    """
    forward = Forward.make(model, threat, Speed("bf16", True, args.compile), device, [(xs[0].to(device), 0)])
    stats, seconds, peak = timed_chunk(forward, threat, xs, ys, args, device)
    if threat.argmax_verdicts:
        keys = [k for k in ("robust", "fooled_by", "tried", "clean_correct") if k in stats]
        equal = all((stats[k] == fp32_stats[k]).all() for k in keys)
        verdicts = f"verdicts = fp32: {equal}"
    else:
        equal = True  # a different search: compared for strength, not verdict by verdict
        verdicts = f"fp32 run: {float(fp32_stats['robust'].mean()):.1%} robust"
    rechecked = forward.fast.rechecked / max(1, forward.fast.rows)
    return {
        "threat": f"{name} {forward.speed.label} (fp32-checked; {rechecked:.1%} rows re-checked; {verdicts})",
        "n": len(xs),
        "examples_per_s": len(xs) / seconds,
        "robust_acc": float(stats["robust"].mean()),
        "peak_gib": peak,
        "cpu_agree": "-",
        "max_logit_diff": float("nan"),
        "of_limit": limit(name, stats, seconds),
        "equal": bool(equal),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--n", type=int, default=256, help="examples per threat on the device (spatial uses n/4)")
    p.add_argument("--n-cpu", type=int, default=4, help="examples rerun on the CPU for the comparison")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--compile", action="store_true", help="also torch.compile the fast path")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --device cpu for a smoke test", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(args.seed)
    net = torchvision.models.get_model(args.arch, weights=None, num_classes=1000)
    norm = NORMALIZATION_PRESETS["imagenet"]
    cpu_model = Classifier(net, norm["mean"], norm["std"]).eval().requires_grad_(False)
    model = copy.deepcopy(cpu_model).to(device)
    x, y = synthetic(model, args.n, args.image_size, args.seed, device, args.batch_size)
    fwd = raw_rate(model, x[: args.batch_size].to(device), backward=False)
    fwd_bwd = raw_rate(model, x[: args.batch_size].to(device), backward=True)
    print(
        f"{args.arch} at {args.image_size}px on {describe_device(device)}; raw forward {fwd:,.0f} img/s, "
        f"forward+backward {fwd_bwd:,.0f} img/s at batch {args.batch_size}"
    )

    def limit(name, stats, seconds):
        """Images through the model per second over the fp32 raw limit (forward; fwd+bwd for PGD)."""
        if name == "spatial":
            return float(stats["tried"].sum()) / seconds / fwd
        if name == "pgd_linf":
            steps = create_threat(name, "imagenet").steps
            fooled_at = torch.from_numpy(stats["fooled_at"])
            passes = torch.where(fooled_at >= 0, fooled_at + 1, torch.tensor(steps + 1))
            return float(passes.sum()) / seconds / fwd_bwd
        return len(stats["robust"]) / seconds / fwd

    results, ok = [], True
    for name in ("clean", "pgd_linf", "spatial", "uap_linf"):
        threat = create_threat(name, "imagenet")
        n = args.n // 4 if name == "spatial" else args.n
        xs, ys = x[:n], y[:n]
        if (
            name == "uap_linf"
        ):  # fit on a disjoint set of synthetic images, as prepare() would on the fit split
            xf, yf = synthetic(model, args.n, args.image_size, args.seed + 1, device, args.batch_size)
            threat.delta, _ = threat.fit(model, xf, yf, device, torch.Generator().manual_seed(args.seed))
            signs = (
                torch.randint(0, 2, threat.delta.shape, generator=torch.Generator().manual_seed(args.seed))
                * 2
                - 1
            )
            threat.control = threat.random_control(threat.delta, signs.float().to(device))
        stats, seconds, peak = timed_chunk(model, threat, xs, ys, args, device)
        # the same examples on the CPU, same seed
        k = min(args.n_cpu, n)
        if name == "uap_linf":
            threat.delta, threat.control = threat.delta.cpu(), threat.control.cpu()
        ref = run_chunk(cpu_model, threat, x[:k], y[:k], args.batch_size, args.seed, 1000, args.arch)
        agree = int((ref["robust"] == stats["robust"][:k]).sum())
        with torch.inference_mode():
            diff = float((cpu_model(x[:k]) - model(x[:k].to(device)).cpu()).abs().max())
        if (name in ("clean", "spatial") and agree != k) or diff > 1e-3:
            ok = False
        results.append(
            {
                "threat": name,
                "n": n,
                "examples_per_s": n / seconds,
                "robust_acc": float(stats["robust"].mean()),
                "peak_gib": peak,
                "cpu_agree": f"{agree}/{k}",
                "max_logit_diff": diff,
                "of_limit": limit(name, stats, seconds),
            }
        )
        if name in ("spatial", "pgd_linf"):  # the fast path on the same examples (grid: equal verdicts)
            fast = fast_run(model, name, threat, xs, ys, args, device, stats, limit)
            ok &= fast["equal"]
            results.append(fast)
    print(
        "\n| threat | n | examples/s | of raw limit | robust acc | peak GPU memory (GiB) | verdicts = CPU "
        "| max |logit diff| |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['threat']} | {r['n']} | {r['examples_per_s']:,.1f} | {r['of_limit']:.2f} | "
            f"{r['robust_acc']:.1%} | {r['peak_gib']:.2f} | {r['cpu_agree']} | {r['max_logit_diff']:.2e} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "device": describe_device(device),
                    "raw_forward": fwd,
                    "raw_forward_backward": fwd_bwd,
                    "results": results,
                },
                f,
                indent=1,
            )
    print(
        "OK"
        if ok
        else "MISMATCH: clean logits or clean/spatial verdicts differ between the device and the CPU"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
