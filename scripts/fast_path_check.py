"""Prove that the fast path never changes a verdict: re-run committed zoo records on it and compare.

For every committed mnist5k record (leaderboards/runs/mnist5k/<model>/<threat>.json, 1,000 examples, made on
the plain fp32 path) the same (model, threat) is evaluated again with ``--precision bf16 --channels-last``
(optionally ``--compile``) and compared with the record field by field: per-example verdicts, clean
verdicts, accuracies, ``details`` (first fooling transform, transforms tried, curves, ...) and flags.
Families whose verdicts need gradients never take the fast path (robench.engine.forward); for them the
script only checks that a fast request leaves the run plain, which costs nothing to run. A UAP's fitted δ
is reproducible only up to float noise across machines, so UAP records are compared with an fp32 run made
here on the same δ (the engine's cache hands the fast run the δ the fp32 run fitted):

    python scripts/fast_path_check.py                        # the whole zoo, every family
    python scripts/fast_path_check.py --models mnist_cnn_worst_of_10 --threats spatial,spatial_random

Prints one line per record (OK / DIFF and what differs) and exits 1 if any differs.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", help="comma-separated (default: every model with mnist5k records)")
    parser.add_argument("--threats", help="comma-separated (default: every committed record)")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = ROOT / "leaderboards" / "runs" / "mnist5k"
    models = args.models.split(",") if args.models else sorted(p.name for p in runs.iterdir() if p.is_dir())
    speed = {"precision": args.precision, "channels_last": True, "compile": args.compile}
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
