"""The ``robench`` command: eval | train | submit | leaderboard | ls.

User errors (unknown names, malformed options, missing data, bad checkpoints) end with one line on
stderr and exit status 2 (usage) or 1 (runtime), never a traceback; ``--debug`` shows one. Heavy imports
(torch) happen inside the subcommands that need them, so ``robench --help`` and ``robench leaderboard``
stay fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from robench.errors import RobenchError


def _csv(value: str) -> list[str]:
    items = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))  # unique, in order
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return items


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robench", description="Adversarial and spatial robustness benchmark for image classifiers."
    )
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = sub.add_parser("eval", help="evaluate a model under one or more threats, one record each")
    ev.add_argument("--model", required=True, help="model card name (robench ls models)")
    ev.add_argument("--threat", required=True, type=_csv, help="threat name(s), comma-separated (robench ls threats)")
    ev.add_argument("--dataset", help="dataset (default: the one the model card names)")
    ev.add_argument("--split", default="test", help="split to evaluate (default: test)")
    ev.add_argument("--n-examples", type=_positive_int, help="evaluate the first N examples (default: all)")
    ev.add_argument("--batch-size", type=_positive_int, help="images per forward pass (default: 256)")
    ev.add_argument("--chunk-size", type=_positive_int, help="examples per resumable chunk (default: 500)")
    ev.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    ev.add_argument("--seed", type=int, default=0, help="seed for random starts and draws (default: 0)")
    ev.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a threat parameter, e.g. --set eps=8/255 (repeatable)")
    ev.add_argument("--data-dir", help="dataset folder (default: $ROBENCH_DATA or ~/.cache/robench/data)")
    ev.add_argument("--out", default="runs", help="records go to OUT/<dataset>/<model>/<threat>.json (default: runs)")
    ev.add_argument("--allow-pickle", action="store_true",
                    help="allow a pickle checkpoint, loaded with torch.load(weights_only=True)")
    ev.add_argument("--json", action="store_true", help="print one JSON record per line on stdout, nothing else")
    ev.add_argument("--shard", type=_shard, metavar="I/N",
                    help="job-array task I of N: compute only chunks c with c %% N == I into --out, write no "
                         "record (rerun without --shard to write it)")
    ev.add_argument("--workers", type=int, metavar="N",
                    help="processes decoding image files (default: min(8, cores); in-memory datasets: 0)")
    ev.add_argument("--precision", default="fp32",
                    help="fp32 (default) or bf16: argmax-verdict threats search in bf16 autocast, every close "
                         "verdict re-checked in fp32 (records equal fp32's; gradient attacks stay fp32)")
    ev.add_argument("--channels-last", action="store_true",
                    help="run the search in channels_last memory format (checked like --precision bf16)")
    ev.add_argument("--compile", action="store_true",
                    help="torch.compile the search's model (checked likewise)")
    ev.set_defaults(func=cmd_eval)

    tr = sub.add_parser("train", help="train a model with a reference recipe; writes weights and a model card")
    tr.add_argument("--recipe", required=True, help="recipe name (configs/recipes)")
    tr.add_argument("--arch", required=True, help="timm architecture name, e.g. mnist_cnn")
    tr.add_argument("--name", required=True, help="model name for the card, e.g. mnist_cnn_standard")
    tr.add_argument("--dataset", default="mnist5k", help="training dataset (default: mnist5k, split train)")
    tr.add_argument("--epochs", type=_positive_int, help="override the recipe's epochs")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default="auto")
    tr.add_argument("--arch-kwarg", dest="arch_kwargs", action="append", default=[], metavar="KEY=VALUE",
                    help="architecture argument, e.g. --arch-kwarg width=32 (repeatable)")
    tr.add_argument("--out", required=True, help="folder for <name>.safetensors (and the card)")
    tr.add_argument("--card-dir", help="write the card here instead, e.g. configs/models")
    tr.set_defaults(func=cmd_train)

    lb = sub.add_parser("leaderboard", help="regenerate leaderboards/*.md from the committed run records")
    lb.add_argument("--board", dest="boards", action="append", metavar="NAME",
                    help="only this board (repeatable; default: every board in configs/boards)")
    lb.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 if a committed board differs from what the records produce")
    lb.add_argument("--root", type=Path, help="folder holding leaderboards/ (default: the checkout)")
    lb.set_defaults(func=cmd_leaderboard)

    sm = sub.add_parser(
        "submit", help="re-evaluate a checkpoint on its board's threats and add it to the board",
        description="Submit CARD.yaml, or --checkpoint FILE --arch A --dataset D --name N (which writes the card): "
                    "the weights are sha256-checked and loaded safely, every threat the board needs is re-run "
                    "with the board's examples and seed, and the board is regenerated. Numbers written in the "
                    "card are never used.")
    sm.add_argument("card", nargs="?", help="model card YAML (copied to configs/models/<file name>.yaml)")
    sm.add_argument("--checkpoint", help="weights to write a card for (.safetensors; any other file is a pickle)")
    sm.add_argument("--arch", help="with --checkpoint: timm architecture name (e.g. mnist_cnn)")
    sm.add_argument("--dataset", help="with --checkpoint: the dataset the model was trained for")
    sm.add_argument("--name", help="with --checkpoint: model name (letters, digits, '_', '-', '.')")
    sm.add_argument("--arch-kwarg", dest="arch_kwargs", action="append", default=[], metavar="KEY=VALUE",
                    help="with --checkpoint: architecture argument (repeatable)")
    sm.add_argument("--normalization", help="with --checkpoint: preset (imagenet, none; default none) or "
                                            "the means then the stds, comma-separated")
    sm.add_argument("--display-name", help="with --checkpoint: name shown on the board")
    sm.add_argument("--paper-title", help="with --checkpoint: paper title shown on the board")
    sm.add_argument("--paper-url", help="with --checkpoint: paper link (http/https)")
    sm.add_argument("--board", dest="boards", action="append", metavar="NAME",
                    help="submit to this board (repeatable; default: every board of the model's dataset)")
    sm.add_argument("--force", action="store_true",
                    help="replace a different card registered under the same name, and its records")
    sm.add_argument("--allow-pickle", action="store_true",
                    help="allow a pickle checkpoint, loaded with torch.load(weights_only=True)")
    sm.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    sm.add_argument("--data-dir", help="dataset folder (default: $ROBENCH_DATA or ~/.cache/robench/data)")
    sm.add_argument("--root", type=Path, help="folder holding configs/ and leaderboards/ (default: the checkout)")
    sm.set_defaults(func=cmd_submit)

    ls = sub.add_parser("ls", help="list models, threats, datasets or boards")
    ls.add_argument("what", choices=["models", "threats", "datasets", "boards"])
    ls.set_defaults(func=cmd_ls)
    return parser


def _shard(value: str) -> tuple[int, int]:
    i, sep, n = value.partition("/")
    if not (sep and i.isdigit() and n.isdigit() and int(i) < int(n)):
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N (job-array task I of N), got {value!r}")
    return int(i), int(n)


def cmd_eval(args) -> int:
    from robench import config
    from robench.engine.forward import Speed
    from robench.engine.request import EvalRequest, run_request
    from robench.record import RunRecord

    request = EvalRequest(
        model=args.model, threats=tuple(args.threat), out_dir=Path(args.out), dataset=args.dataset, split=args.split,
        n_examples=args.n_examples, batch_size=args.batch_size, chunk_size=args.chunk_size, device=args.device,
        seed=args.seed, overrides=config.parse_overrides(args.overrides), data_dir=args.data_dir,
        allow_pickle=args.allow_pickle, shard=args.shard, workers=args.workers,
        speed=Speed(args.precision, args.channels_last, args.compile),
    )
    rows = []
    for result in run_request(request):  # rank 0's results only: one printout under torchrun
        if not isinstance(result, RunRecord):  # a job-array shard: its chunks are on disk, the record comes later
            i, n = result.shard
            print(f"robench: {result.threat}: shard {i}/{n} done; once every shard has finished, run the same "
                  "command without --shard to write the record", file=sys.stderr)
        elif args.json:
            print(json.dumps(json.loads(result.to_json()), sort_keys=True), flush=True)
        else:
            rows.append(result)
    if rows:
        print(_table(rows, request.out_dir))
    return 0


def cmd_train(args) -> int:
    from robench import config
    from robench.train import train

    card = train(
        args.recipe, args.arch, args.dataset, name=args.name, out=args.out, card_dir=args.card_dir,
        epochs=args.epochs, seed=args.seed, device=args.device, arch_kwargs=config.parse_overrides(args.arch_kwargs),
    )
    print(card)
    return 0


def _table(records, out: Path) -> str:
    header = ["model", "dataset", "threat", "n", "clean", "robust", "ex/s", "flags"]
    lines = [[r.model, r.dataset, r.threat, str(r.n_examples), f"{r.clean_acc:.1%}", f"{r.robust_acc:.1%}",
              f"{r.examples_per_s:.0f}", str(len(r.flags))] for r in records]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths))
    text = [fmt.format(*header)] + [fmt.format(*line) for line in lines]
    text.append(f"records: {out}/<dataset>/<model>/<threat>.json")
    for r in records:
        text.extend(f"  ! {r.threat}: {flag}" for flag in r.flags)
    return "\n".join(text)


def cmd_leaderboard(args) -> int:
    from robench import boards

    root = args.root if args.root is not None else boards.default_root()
    if args.check:
        stale = boards.check(args.boards, root)
        for path in stale:
            print(f"{path}: stale; run 'robench leaderboard' and commit the result")
        return 1 if stale else 0
    for path in boards.write(args.boards, root):
        print(f"wrote {path.relative_to(root).as_posix()}")
    return 0


def cmd_submit(args) -> int:
    from robench.boards.submit import CheckpointSpec, SubmitRequest, submit

    checkpoint = CheckpointSpec(
        path=args.checkpoint, arch=args.arch, dataset=args.dataset, name=args.name,
        arch_kwargs=tuple(args.arch_kwargs), normalization=args.normalization, display_name=args.display_name,
        paper_url=args.paper_url, paper_title=args.paper_title,
    )
    submit(SubmitRequest(
        card=args.card, checkpoint=checkpoint, boards=tuple(args.boards) if args.boards else None,
        force=args.force, allow_pickle=args.allow_pickle, device=args.device, data_dir=args.data_dir,
        root=args.root,
    ))
    return 0


def cmd_ls(args) -> int:
    from robench import config

    if args.what == "models":
        names = config.names("models")
    elif args.what == "threats":
        names = config.names("threats")
    elif args.what == "boards":
        names = config.names("boards")
    else:
        from robench.datasets import list_datasets

        names = list_datasets()
    print("\n".join(names))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RobenchError as e:
        if args.debug:
            traceback.print_exc()
        print(f"robench: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("robench: interrupted (finished chunks are kept; rerun the same command to resume)", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not a user error: one line unless --debug
        if args.debug:
            raise
        print(f"robench: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
