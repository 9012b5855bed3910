"""Prove that the fast path never changes a verdict: re-run committed zoo records on it and compare.

For every committed mnist5k record (leaderboards/runs/mnist5k/<model>/<threat>.json, 1,000 examples, made on
the plain fp32 path) the same (model, threat) is evaluated again with ``--precision bf16 --channels-last``
(optionally ``--compile``) and compared with the record field by field: per-example verdicts, clean
verdicts, accuracies, ``details`` (first fooling transform, transforms tried, curves, ...) and flags.
Gradient families other than PGD never take the fast path (robench.engine.forward); for them the script
only checks that a fast request leaves the run plain, which costs nothing to run. A UAP's fitted δ
is reproducible only up to float noise across machines, so UAP records are compared with an fp32 run made
here on the same δ (the engine's cache hands the fast run the δ the fp32 run fitted):

    python scripts/fast_path_check.py                        # the whole zoo, every family
    python scripts/fast_path_check.py --models mnist_cnn_worst_of_10 --threats spatial,spatial_random

Prints one line per record (OK / DIFF and what differs) and exits 1 if any differs.

PGD searches in bf16 on the fast path (gradients from bf16, every verdict fp32's), so its record cannot equal
the fp32 one; ``--pgd`` measures instead whether the two are equally strong. For every mnist5k zoo model,
pgd_linf and pgd_l2 are run in fp32 and on the fast path on the first ``--n`` examples, and one table row
per (model, threat) gives both robust accuracies, the examples robust in only one of the two runs, and the
exact McNemar p-value of the difference (robench.core.stats.compare). It also checks that every fast run's
record is self-consistent and marked ``execution.search``. Every fooling of the fast run is an fp32 fooling
(its verdicts are fp32's), so a fast run that breaks more examples is a stronger attack, not a wrong one;
the script exits 1 if the fast run is significantly *weaker* (more examples robust only there, exact
McNemar p < 0.05; with 28 rows, about one p < 0.05 is expected by chance alone):

    python scripts/fast_path_check.py --pgd --n 1000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ROBENCH_CACHE", tempfile.mkdtemp())  # UAPs are fitted again, not read from a cache

import torch  # noqa: E402

from robench import evaluate  # noqa: E402
from robench.core import record as rec  # noqa: E402
from robench.core import stats
from robench.engine.forward import Speed  # noqa: E402
from robench.models import create_model  # noqa: E402
from robench.threats import create_threat  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMPARED = (
    "per_example",
    "clean_per_example",
    "robust_acc",
    "clean_acc",
    "flags",
    "n_examples",
    "config_hash",
)
VOLATILE = {"fit_time_s", "cached"}  # timings and cache hits, not results


def _stable(details):
    if isinstance(details, dict):
        return {k: _stable(v) for k, v in details.items() if k not in VOLATILE}
    return details


def check(model_name: str, record: Path, speed: dict) -> str:
    old = json.loads(record.read_text())
    threat = create_threat(record.stem, "mnist5k")
    if threat.fast_search:
        return "bf16 search, not the fp32 record (compared with --pgd)"
    if not threat.argmax_verdicts:
        return "plain (gradient family: fast path off)"
    model = create_model(model_name, device="cpu")
    kwargs = dict(batch_size=old["batch_size"], progress=False, model_name=model_name)
    against = "the committed record"
    if threat.fits_on_data:  # the fitted δ is only reproducible up to float noise: compare on the same δ
        old, against = (
            json.loads(evaluate(model, record.stem, "mnist5k", **kwargs).to_json()),
            "fp32 now, same δ",
        )
    new = evaluate(model, record.stem, "mnist5k", **kwargs, **speed)
    diffs = [k for k in COMPARED if getattr(new, k) != old[k]]
    if _stable(new.details) != _stable(old["details"]):
        diffs.append("details")
    if not new.execution.get("verdicts") == "fp32-checked":
        diffs.append("execution")
    return ("OK" if not diffs else "DIFF " + ",".join(diffs)) + f" (vs {against})"


PGD_THREATS = ("pgd_linf", "pgd_l2")


def pgd_strength(models: list[str], n: int, speed: dict, threats=PGD_THREATS) -> int:
    """One row per (model, PGD threat): fp32 vs fast-path robust accuracy on the first ``n`` examples and
    the exact McNemar p of their paired difference; returns how many fast runs are significantly weaker."""
    label = Speed(**speed).label
    print(
        f"\n| model | threat | n | robust fp32 | robust {label} | only fp32 robust | "
        "only fast robust | McNemar p | fp32 s | fast s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    weaker = 0
    for model_name in models:
        model = create_model(model_name, device="cpu")
        for threat in threats:
            kwargs = dict(n_examples=n, progress=False, model_name=model_name)
            started = time.time()
            plain = evaluate(model, threat, "mnist5k", **kwargs)
            middle = time.time()
            fast = evaluate(model, threat, "mnist5k", **kwargs, **speed)
            ended = time.time()
            assert rec.problem(fast) is None and fast.execution.get("search") == label, fast.execution
            assert fast.clean_per_example == plain.clean_per_example, (
                "clean verdicts are fp32's on both paths"
            )
            paired = stats.compare(plain.per_example, fast.per_example)
            weaker += paired.only_b > paired.only_a and paired.p < 0.05
            print(
                f"| {model_name} | {threat} | {n} | {plain.robust_acc:.1%} | {fast.robust_acc:.1%} | "
                f"{paired.only_a} | {paired.only_b} | {paired.p:.3g} | {middle - started:.0f} | "
                f"{ended - middle:.0f} |",
                flush=True,
            )
    return weaker


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated (default: every model with mnist5k records)")
    parser.add_argument("--threats", help="comma-separated (default: every committed record)")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--pgd", action="store_true", help="PGD fp32 vs fast-path strength instead (see above)"
    )
    parser.add_argument("--n", type=int, default=1000, help="examples per PGD run (--pgd)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = ROOT / "leaderboards" / "runs" / "mnist5k"
    models = args.models.split(",") if args.models else sorted(p.name for p in runs.iterdir() if p.is_dir())
    speed = {"precision": args.precision, "channels_last": True, "compile": args.compile}
    if args.pgd:
        threats = args.threats.split(",") if args.threats else PGD_THREATS
        return 1 if pgd_strength(models, args.n, speed, threats) else 0
    bad = 0
    for model_name in models:
        for record in sorted((runs / model_name).glob("*.json")):
            if args.threats and record.stem not in args.threats.split(","):
                continue
            started = time.time()
            verdict = check(model_name, record, speed)
            bad += verdict.startswith("DIFF")
            print(f"{model_name:24s} {record.stem:22s} {verdict}  {time.time() - started:.0f}s", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
