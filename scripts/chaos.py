"""Chaos run: kill random torchrun ranks at random moments, relaunch, and check the record at the end.

    python scripts/chaos.py --rounds 5 [--nproc 2] [--seed 0] [--threat pgd_linf] [--keep DIR]

First the same evaluation runs once undisturbed in a single process (the reference). Then, each round,
``torchrun --standalone --nproc_per_node N -m robench eval ...`` is launched into one output folder and,
once a random number of further chunks is on disk (plus a random fraction of a second), one of these
happens at random: a random rank gets SIGKILL (a crash or an OOM kill),
a random rank gets SIGTERM, every rank gets SIGKILL (the node is lost), or torchrun itself gets SIGTERM (a
scheduler's preemption). torchrun ends the other ranks, and the next round relaunches the same command,
which resumes from the chunk files the killed rounds left. A round whose run finishes before its kill ends
the rounds early. A last launch, undisturbed, writes the record, which must equal the reference in every
field that describes the result (per-example verdicts, accuracies, details, config_hash, flags).

Exit status 0 when the record equals the reference, 1 otherwise; the last line says how many kills the
run survived. docs/reliability.md "Failure catalogue (issue #14)" quotes two runs of this script.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULT_FIELDS = (
    "per_example",
    "clean_per_example",
    "robust_acc",
    "clean_acc",
    "config_hash",
    "flags",
    "threat_config",
    "n_examples",
    "model_meta",
)
ACTIONS = ("SIGKILL one rank", "SIGTERM one rank", "SIGKILL every rank", "SIGTERM torchrun")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="kill rounds before the last, undisturbed launch")
    p.add_argument("--nproc", type=int, default=2, help="torchrun processes (CPU, one thread each)")
    p.add_argument("--seed", type=int, default=0, help="seed of the chaos (which rank, when, how)")
    p.add_argument("--model", default="mnist_cnn_pgd_linf")  # robust: chunks take long enough to be hit
    p.add_argument("--dataset", default="mnist", help="dataset evaluated (default: mnist's test images)")
    p.add_argument("--threat", default="pgd_linf")
    p.add_argument("--n-examples", type=int, default=200)
    p.add_argument("--chunk-size", type=int, default=10)
    p.add_argument("--set", dest="overrides", action="append", default=["steps=20"], metavar="KEY=VALUE")
    p.add_argument(
        "--max-delay", type=float, default=120.0, help="kill by this many seconds after launch at the latest"
    )
    p.add_argument("--keep", type=Path, help="work here (kept) instead of a temporary folder")
    return p.parse_args(argv)


def eval_args(args, out: Path) -> list[str]:
    sets = [x for item in args.overrides for x in ("--set", item)]
    return [
        "-m",
        "robench",
        "eval",
        "--model",
        args.model,
        "--dataset",
        args.dataset,
        "--threat",
        args.threat,
        "--n-examples",
        str(args.n_examples),
        "--chunk-size",
        str(args.chunk_size),
        "--device",
        "cpu",
        "--runs",
        str(out),
        *sets,
    ]


def environment(cache: Path) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "ROBENCH_CACHE": str(cache), "PYTHONPATH": str(REPO)}


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the torchrun workers), read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def torchrun(args, out: Path, env: dict) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={args.nproc}",
        *eval_args(args, out),
    ]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def chaos_round(args, out: Path, env: dict, rng: random.Random) -> str:
    """One launch and one kill at a random moment: once a random number (at least one) of further chunks
    is on disk, plus a random part of a second, or at ``--max-delay`` if the chunks are slower; returns
    what happened, for the log."""
    before = len(list(out.rglob("chunk-*.npz")))
    total = -(-args.n_examples // args.chunk_size)
    target = before + rng.randint(1, max(1, (total - before) // 3))  # leave work for later rounds
    proc = torchrun(args, out, env)
    started = time.time()
    deadline = started + args.max_delay
    while time.time() < deadline and proc.poll() is None and len(list(out.rglob("chunk-*.npz"))) < target:
        time.sleep(0.02)
    time.sleep(rng.uniform(0, 0.5))
    if proc.poll() is not None:
        proc.communicate()
        return f"finished before the kill (exit {proc.returncode})"
    action = rng.choice(ACTIONS)
    ranks = children(proc.pid)
    if action == "SIGTERM torchrun" or not ranks:
        proc.send_signal(signal.SIGTERM)
    else:
        targets = ranks if action == "SIGKILL every rank" else [rng.choice(ranks)]
        for pid in targets:
            os.kill(pid, signal.SIGTERM if action == "SIGTERM one rank" else signal.SIGKILL)
    killed_at = time.time() - started
    try:
        _, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:  # torchrun waits for its workers; never leave them behind
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    (out / "torchrun.log").open("a").write(err)
    chunks = len(list(out.rglob("chunk-*.npz")))
    return (
        f"{action} after {killed_at:.1f}s (exit {proc.returncode}; chunk files on disk: {before} -> {chunks})"
    )


def result(path: Path) -> dict:
    data = json.loads(path.read_text())
    details = data["details"]
    details.get("fit", {}).pop("fit_time_s", None), details.get("fit", {}).pop("cached", None)
    return {k: data[k] for k in RESULT_FIELDS} | {"details": details}


def main(argv=None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="robench-chaos-") as tmp:
        work = args.keep or Path(tmp)
        env = environment(work / "cache")
        record = Path(args.dataset) / args.model / f"{args.threat}.json"
        print(f"chaos: reference run ({args.model} | {args.threat}, {args.n_examples} examples)", flush=True)
        subprocess.run(
            [sys.executable, *eval_args(args, work / "reference")],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        survived = 0
        for r in range(1, args.rounds + 1):
            what = chaos_round(args, work / "chaos", env, rng)
            done = (work / "chaos" / record).exists()  # the kill came after the record was written
            print(f"chaos: round {r}: {what}{'; the record was written' if done else ''}", flush=True)
            survived += not what.startswith("finished")
            if done:
                break
        if not (work / "chaos" / record).exists():
            final = torchrun(args, work / "chaos", env)
            _, err = final.communicate()
            if final.returncode:
                print(f"chaos: the last launch failed (exit {final.returncode}): {err.strip()[-2000:]}")
                return 1
        same = result(work / "reference" / record) == result(work / "chaos" / record)
        leftovers = list((work / "chaos").rglob(".partial"))
        verdict = "equals" if same else "DIFFERS from"
        print(
            f"chaos: {survived} kill(s) survived over {args.nproc} ranks; the record {verdict} the "
            f"uninterrupted one{'; chunk folders left behind: ' + str(leftovers) if leftovers else ''}"
        )
        return 0 if same and not leftovers else 1


if __name__ == "__main__":
    sys.exit(main())
