"""Retrain zoo models from their cards and compare with the shipped checkpoints.

Each card's ``training.command`` is the one-line command that produced it; this script runs exactly that
command (only ``--out``/``--card-dir`` go to a scratch folder, so the shipped files are left alone) and
prints, per model, the shipped and retrained clean accuracy on mnist5k test, whether the weights are
bit-identical (they are on the machine and thread count that trained them), and both training times.
It exits 1 if any retrained model is more than one point away from its card.

    python scripts/retrain_zoo.py                     # every card that has a training command
    python scripts/retrain_zoo.py mnist_cnn_aug30 ... # some of them
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex
import sys
import tempfile
from pathlib import Path

from robench.cli import build_parser
from robench.core.config import names
from robench.models import load_card, load_card_file

TOLERANCE = 0.01  # one point of clean accuracy


def retrain(name: str, scratch: Path) -> dict:
    card = load_card(name)
    args = build_parser().parse_args(shlex.split(card.training["command"])[1:])
    args.out, args.card_dir = str(scratch), None
    with contextlib.redirect_stdout(io.StringIO()):
        args.func(args)
    new = load_card_file(scratch / f"{name}.yaml")
    return {
        "model": name,
        "shipped": card.training["clean_acc_test"],
        "retrained": new.training["clean_acc_test"],
        "identical": new.weights.sha256 == card.weights.sha256,
        "shipped_s": card.training["duration_s"],
        "retrained_s": new.training["duration_s"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", help="card names (default: every card with a training command)")
    args = parser.parse_args(argv)
    models = args.models or [n for n in names("models") if (load_card(n).training or {}).get("command")]
    print(
        "| model | shipped clean | retrained clean | diff | identical weights | shipped train s | retrain s |"
    )
    print("|---|---|---|---|---|---|---|")
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            r = retrain(name, Path(tmp))
            diff = r["retrained"] - r["shipped"]
            if abs(diff) > TOLERANCE:
                failed.append(name)
            print(
                f"| {name} | {r['shipped']:.1%} | {r['retrained']:.1%} | {diff * 100:+.1f} | "
                f"{'yes' if r['identical'] else 'no'} | {r['shipped_s']:.0f} | {r['retrained_s']:.0f} |",
                flush=True,
            )
    if failed:
        print(f"more than one point away: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
