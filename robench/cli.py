"""The ``robench`` command: eval | train | submit | leaderboard | compare | verify | ls.

User errors (unknown names, malformed options, missing data, bad checkpoints) end with one line on
stderr and exit status 2 (usage) or 1 (runtime), never a traceback; ``--debug`` shows one. Heavy imports
(torch) happen inside the subcommands that need them, so ``robench --help`` and ``robench leaderboard``
stay fast.
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import signal
import sys
import traceback
from pathlib import Path

from robench.core.errors import RobenchError


def _csv(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]  # repeats are dropped by parse()
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


#: Options of the whole command, accepted before or after the subcommand (``robench eval ... --debug``).
GLOBAL_OPTIONS = ("--debug", "--config-dir", "--code-dir")
#: Prefix of the destinations the subcommands give the global options (merged by :func:`parse`).
_LATE = "late_"


def _global_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """``--debug``, ``--config-dir``, ``--code-dir`` on ``parser``. The subcommands' copies write to
    ``late_*`` destinations with no defaults, so ``robench --config-dir A eval --config-dir B`` keeps both
    (argparse would otherwise let the subcommand's empty list replace the first)."""
    suppress = {"default": argparse.SUPPRESS} if prefix else {}
    parser.add_argument(
        "--debug",
        dest=f"{prefix}debug",
        action="store_true",
        help="show Python tracebacks for errors",
        **suppress,
    )
    parser.add_argument(
        "--config-dir",
        dest=f"{prefix}config_dir",
        action="append",
        metavar="DIR",
        help="also search DIR/{threats,models,recipes,boards}/*.yaml, after the shipped "
        "configs and $ROBENCH_CONFIGS; a file there overrides a shipped one of that name "
        "(repeatable)",
        **(suppress or {"default": []}),
    )
    parser.add_argument(
        "--code-dir",
        dest=f"{prefix}code_dir",
        action="append",
        metavar="DIR",
        help="also import architectures named by import path (package.module:Class) from DIR, before "
        "$ROBENCH_CODE and the installed packages (repeatable)",
        **(suppress or {"default": []}),
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("robench")
    except PackageNotFoundError:  # run from a source tree without installing
        import robench

        return robench.__version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robench", description="Adversarial and spatial robustness benchmark for image classifiers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _global_options(parser)
    late = argparse.ArgumentParser(add_help=False)
    _global_options(late, _LATE)
    parser.set_defaults(command_line=None)  # main() fills it in: the command as typed, for training cards
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = functools.partial(sub.add_parser, parents=[late])
    for make in (
        _eval_parser,
        _train_parser,
        _leaderboard_parser,
        _verify_parser,
        _compare_parser,
        _submit_parser,
        _corruptions_report_parser,
        _ls_parser,
        _show_parser,
    ):
        make(add)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """The parsed command line, with the global options given after the subcommand merged in and the
    threats of every ``--threat`` once each, in order."""
    args = build_parser().parse_args(argv)
    if getattr(args, "threats", None):
        args.threats = list(dict.fromkeys(args.threats))
    late = {k[len(_LATE) :]: vars(args).pop(k) for k in list(vars(args)) if k.startswith(_LATE)}
    args.debug = args.debug or late.get("debug", False)
    args.config_dir = [*args.config_dir, *late.get("config_dir", [])]
    args.code_dir = [*args.code_dir, *late.get("code_dir", [])]
    return args


def _threat_option(parser, help: str, **kwargs) -> None:
    """``--threat``, the same everywhere: repeatable and comma-separated (``--threat a,b --threat c``)."""
    parser.add_argument(
        "--threat", dest="threats", action="extend", type=_csv, metavar="T[,T...]", help=help, **kwargs
    )


def _json_option(parser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout, nothing else")


class _Deprecated(argparse.Action):
    """An old spelling of an option: stores into the new one's destination and says so on stderr, once
    per command line however often it is given."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new, self.warned = new, False
        super().__init__(option_strings, dest, help=f"deprecated spelling of {new}", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if not self.warned:
            self.warned = True
            print(f"robench: warning: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _eval_parser(add) -> None:
    """The options of ``robench eval``."""
    ev = add("eval", help="evaluate a model under one or more threats, one record each")
    ev.add_argument(
        "--model",
        required=True,
        help="card name (robench ls models), card.yaml, timm:NAME, torchvision:NAME[:WEIGHTS] "
        "or robustbench:NAME[:DATASET[:THREAT]]",
    )
    _threat_option(ev, "threat name(s), repeatable or comma-separated (robench ls threats)", required=True)
    ev.add_argument(
        "--dataset",
        help="dataset (default: the card's; for a model built on mnist5k, mnist's official test images)",
    )
    ev.add_argument("--split", default="test", help="split to evaluate (default: test)")
    ev.add_argument("--n-examples", type=_positive_int, help="evaluate the first N examples (default: all)")
    ev.add_argument("--batch-size", type=_positive_int, help="images per forward pass (default: 256)")
    ev.add_argument("--chunk-size", type=_positive_int, help="examples per resumable chunk (default: 500)")
    ev.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    ev.add_argument("--seed", type=int, default=0, help="seed for random starts and draws (default: 0)")
    ev.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a threat parameter, e.g. --set eps=8/255 (repeatable)",
    )
    ev.add_argument("--data-dir", help="dataset folder (default: $ROBENCH_DATA or ~/.cache/robench/data)")
    ev.add_argument(
        "--runs",
        default="runs",
        metavar="DIR",
        help="records folder: records go to DIR/<dataset>/<model>/<threat>.json (default: runs)",
    )
    ev.add_argument("--out", dest="runs", action=_Deprecated, new="--runs", metavar="DIR")
    ev.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow a pickle checkpoint, loaded with torch.load(weights_only=True)",
    )
    ev.add_argument(
        "--weights",
        metavar="FILE",
        help="with --model timm:/torchvision:, this local file instead of the library's "
        "pretrained weights (.safetensors; a pickle needs --allow-pickle)",
    )
    ev.add_argument(
        "--normalization",
        metavar="PRESET|M,..,S,..",
        help="with --model package.module:Class or file.py:Class: how inputs are normalised inside the "
        "model: none ([0,1] pixels), imagenet, or the means then the stds, comma-separated (required there)",
    )
    ev.add_argument(
        "--arch-kwarg",
        dest="arch_kwargs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --model package.module:Class or file.py:Class: a keyword argument of the class "
        "(repeatable)",
    )
    ev.add_argument(
        "--subset-file",
        metavar="FILE",
        help="ImageNet: evaluate exactly the images listed here, one file name or id per line, "
        "in that order (e.g. RobustBench's 5,000 ids)",
    )
    _json_option(ev, "one record per line")
    ev.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="job-array task I of N: compute only chunks c with c %% N == I into --runs, write no "
        "record (rerun without --shard to write it)",
    )
    ev.add_argument(
        "--progress",
        choices=("auto", "bar", "log", "none"),
        default="auto",
        help="on stderr: a bar updated per batch (bar), a line with done/total, ex/s and ETA at least "
        "every 30 s (log), or nothing (none); auto (default): bar on a terminal, log otherwise",
    )
    ev.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes decoding image files (default: min(8, cores); in-memory datasets: 0)",
    )
    ev.add_argument(
        "--precision",
        default="auto",
        help="auto (default): bf16 where the records equal fp32's (argmax-verdict threats on CUDA), else "
        "fp32; bf16 (autocast): argmax-verdict threats re-check every close verdict in fp32 (records equal "
        "fp32's); PGD takes its gradients in bf16 and every verdict in fp32 (another protocol: recorded as "
        "execution.search, not on boards); AutoAttack and spatial_pgd stay fp32; fp32: never the fast path",
    )
    ev.add_argument(
        "--channels-last",
        action="store_true",
        help="run the search in channels_last memory format (checked like --precision bf16)",
    )
    ev.add_argument(
        "--compile", action="store_true", help="torch.compile the search's model (checked likewise)"
    )
    ev.set_defaults(func=cmd_eval)


def _train_parser(add) -> None:
    """The options of ``robench train``."""
    tr = add("train", help="train a model with a reference recipe; writes weights and a model card")
    tr.add_argument("--recipe", required=True, help="recipe name (configs/recipes or a --config-dir)")
    tr.add_argument("--arch", required=True, help="timm architecture name, e.g. mnist_cnn")
    tr.add_argument("--name", required=True, help="model name for the card, e.g. mnist_cnn_standard")
    tr.add_argument("--dataset", default="mnist5k", help="training dataset (default: mnist5k, split train)")
    tr.add_argument("--epochs", type=_positive_int, help="override the recipe's epochs")
    tr.add_argument("--seed", type=int, default=0, help="seed for initialisation and batches (default: 0)")
    tr.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    tr.add_argument(
        "--arch-kwarg",
        dest="arch_kwargs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture argument, e.g. --arch-kwarg width=32 (repeatable)",
    )
    tr.add_argument("--out", required=True, help="folder for <name>.safetensors (and the card)")
    tr.add_argument("--card-dir", help="write the card here instead, e.g. configs/models")
    tr.set_defaults(func=cmd_train)


def _leaderboard_parser(add) -> None:
    """The options of ``robench leaderboard``."""
    lb = add("leaderboard", help="regenerate leaderboards/*.md from the committed run records")
    lb.add_argument(
        "--board",
        dest="boards",
        action="append",
        metavar="NAME",
        help="only this board (repeatable; default: every board in configs/boards)",
    )
    lb.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a committed board differs from what the records produce",
    )
    lb.add_argument(
        "--root",
        type=Path,
        help="checkout holding leaderboards/ (default: the nearest one from the working directory up)",
    )
    lb.add_argument(
        "--site",
        type=Path,
        metavar="DIR",
        help="also build the offline HTML site into DIR (with --check: exit 1 if DIR differs)",
    )
    _json_option(lb, "the files written (with --check: the stale ones)")
    lb.set_defaults(func=cmd_leaderboard)


def _verify_parser(add) -> None:
    """The options of ``robench verify``."""
    vf = add(
        "verify",
        help="re-run committed records and compare them with the files (bit for bit on their machine class)",
        description="Re-run committed records (leaderboards/runs) from the shipped weights, configs and code "
        "on the CPU and compare them: bit for bit when this machine is of the record's class (CPU or GPU, "
        "torch, threads), else by agreement (at most 1% of the verdicts differ, exact McNemar p >= 0.05). "
        "One line per record (OK, EQUIVALENT (...) or DIFFERS: fields) naming the contract and why; exit 1 "
        "if any record differs.",
    )
    vf.add_argument("--all", dest="all_records", action="store_true", help="every committed record")
    for flag, what in (("--board", "this board's dataset"), ("--model", "this model")):
        vf.add_argument(
            flag, dest=flag[2:] + "s", action="append", metavar="NAME", help=f"records of {what} (repeatable)"
        )
    _threat_option(vf, "records of these threats (repeatable or comma-separated)")
    vf.add_argument(
        "--n-examples",
        type=_positive_int,
        metavar="N",
        help="re-run only the first N examples (rounded up to a prefix the seeds reproduce) and "
        "compare their verdicts",
    )
    vf.add_argument("--data-dir", help="dataset folder (default: $ROBENCH_DATA or ~/.cache/robench/data)")
    vf.add_argument("--root", type=Path, help="checkout holding leaderboards/ (default: the nearest one up)")
    _json_option(vf, "one object per record (record, n_examples, differs, seconds)")
    vf.set_defaults(func=cmd_verify)


def _compare_parser(add) -> None:
    """The options of ``robench compare``."""
    cp = add(
        "compare",
        help="paired comparison of two models' committed records, threat by threat",
        # a description is printed as written (only help strings are %-formatted): one "%"
        description="Per threat: both accuracies with Wilson 95% intervals, the difference with "
        "Newcombe's paired 95% interval and the exact McNemar p-value, computed "
        "from the records' per-example verdicts on the same examples.",
    )
    cp.add_argument("model_a", metavar="A", help="model name")
    cp.add_argument("model_b", metavar="B", help="model name")
    _threat_option(
        cp,
        "threat(s) to compare (repeatable or comma-separated; default: every threat both have); a threat "
        "set such as spatial+pgd_linf compares the examples robust under each of its threats",
    )
    where = cp.add_mutually_exclusive_group()
    where.add_argument("--board", help="only the records this board shows (current configs, its examples)")
    where.add_argument(
        "--dataset", help="records of this dataset (default: the one both models have records of)"
    )
    cp.add_argument("--root", type=Path, help="checkout holding leaderboards/ (default: the nearest one up)")
    _json_option(cp, "one object per threat")
    cp.set_defaults(func=cmd_compare)


def _submit_parser(add) -> None:
    """The options of ``robench submit``."""
    sm = add(
        "submit",
        help="re-evaluate a checkpoint on its board's threats and add it to the board",
        description="Submit CARD.yaml, or --checkpoint FILE --arch A --dataset D --name N "
        "(which writes the card): "
        "the weights are sha256-checked and loaded safely, every threat the board needs is re-run "
        "with the board's examples and seed, and the board is regenerated. Numbers written in the "
        "card are never used.",
    )
    sm.add_argument(
        "card", nargs="?", help="model card YAML (copied into the checkout's models/ config folder)"
    )
    sm.add_argument(
        "--list",
        dest="spec_list",
        metavar="FILE",
        help="submit every model of FILE, one spec per line (card file, timm:, torchvision:, "
        "robustbench:); resumable: rerun to finish, models already ranked are skipped",
    )
    sm.add_argument(
        "--checkpoint", help="weights to write a card for (.safetensors; any other file is a pickle)"
    )
    sm.add_argument("--arch", help="with --checkpoint: timm architecture name (e.g. mnist_cnn)")
    sm.add_argument("--dataset", help="with --checkpoint: the dataset the model was trained for")
    sm.add_argument("--name", help="with --checkpoint: model name (letters, digits, '_', '-', '.')")
    sm.add_argument(
        "--arch-kwarg",
        dest="arch_kwargs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --checkpoint: architecture argument (repeatable)",
    )
    sm.add_argument(
        "--normalization",
        help="with --checkpoint: preset (imagenet, none; default none) or "
        "the means then the stds, comma-separated",
    )
    sm.add_argument("--display-name", help="with --checkpoint: name shown on the board")
    sm.add_argument("--paper-title", help="with --checkpoint: paper title shown on the board")
    sm.add_argument("--paper-url", help="with --checkpoint: paper link (http/https)")
    sm.add_argument(
        "--board",
        dest="boards",
        action="append",
        metavar="NAME",
        help="submit to this board (repeatable; default: every board of the model's dataset)",
    )
    sm.add_argument(
        "--force",
        action="store_true",
        help="replace a different card registered under the same name, and its records",
    )
    sm.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow a pickle checkpoint, loaded with torch.load(weights_only=True)",
    )
    sm.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    sm.add_argument("--data-dir", help="dataset folder (default: $ROBENCH_DATA or ~/.cache/robench/data)")
    sm.add_argument(
        "--root",
        type=Path,
        help="checkout holding leaderboards/ and configs/ or configs/ (default: the "
        "nearest one from the working directory up)",
    )
    _json_option(sm, "each submitted model's standing on its boards (one object per line)")
    sm.set_defaults(func=cmd_submit)


def _corruptions_report_parser(add) -> None:
    """The options of ``robench corruptions-report``."""
    cr = add(
        "corruptions-report",
        help="mCE and relative mCE of a model's corruption record "
        "against a reference model's (Hendrycks & Dietterich 2019)",
    )
    cr.add_argument("--model", required=True, help="model whose record is reported")
    cr.add_argument("--reference", help="reference model (default for mnist5k: mnist_cnn_standard)")
    cr.add_argument("--dataset", default="mnist5k", help="dataset of both records (default: mnist5k)")
    _threat_option(
        cr, "threat(s) of both records, one report each (repeatable or comma-separated; default: corruptions)"
    )
    cr.add_argument(
        "--runs",
        default="leaderboards/runs",
        metavar="DIR",
        help="records folder holding <dataset>/<model>/<threat>.json (default: leaderboards/runs)",
    )
    _json_option(cr, "one report per line")
    cr.set_defaults(func=cmd_corruptions_report)


def _ls_parser(add) -> None:
    """The options of ``robench ls``."""
    ls = add("ls", help="list models, threats, datasets or boards")
    kinds = ["models", "threats", "datasets", "boards"]
    # the metavar, not the dest, is what argparse names in "the following arguments are required"
    ls.add_argument("what", choices=kinds, metavar="{" + ",".join(kinds) + "}", help="what to list")
    _json_option(ls, "a list of objects, one per entry")
    ls.set_defaults(func=cmd_ls)


def _shard(value: str) -> tuple[int, int]:
    i, sep, n = value.partition("/")
    if not (sep and i.isdigit() and n.isdigit() and int(i) < int(n)):
        raise argparse.ArgumentTypeError(
            f"expected I/N with 0 <= I < N (job-array task I of N), got {value!r}"
        )
    return int(i), int(n)


def cmd_eval(args) -> int:
    """Each threat's result as it finishes (a line on stderr naming the record written; with ``--json``
    the record on stdout), then the table of them all on stdout with the exact record paths."""
    from robench.core import config
    from robench.core.record import RunRecord, path_for
    from robench.engine.forward import Speed
    from robench.engine.request import run_threats
    from robench.engine.spec import RunOptions

    options = RunOptions(
        dataset=args.dataset,
        split=args.split,
        n_examples=args.n_examples,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        seed=args.seed,
        overrides=config.parse_overrides(args.overrides),
        subset_file=args.subset_file,
        speed=Speed(args.precision, args.channels_last, args.compile),
        device=args.device,
        data_dir=args.data_dir,
        workers=args.workers,
        allow_pickle=args.allow_pickle,
        weights=args.weights,
        normalization=args.normalization,
        arch_kwargs=config.parse_overrides(args.arch_kwargs),
        out_dir=Path(args.runs),
        shard=args.shard,
        progress=args.progress,
    )
    rows = []
    for result in run_threats(args.model, args.threats, options):  # rank 0's results only under torchrun
        if not isinstance(result, RunRecord):  # a job-array shard: its chunks are on disk, the record later
            i, n = result.shard
            print(
                f"robench: {result.threat}: shard {i}/{n} done; once every shard has finished, run the same "
                "command without --shard to write the record",
                file=sys.stderr,
            )
            continue
        path = path_for(options.out_dir, result.dataset, result.model, result.threat)
        rows.append((result, path))
        if args.json:
            print(json.dumps(json.loads(result.to_json()), sort_keys=True), flush=True)
        elif options.progress != "none":
            print(f"robench: {_summary(result)} -> {path}", file=sys.stderr, flush=True)
    if rows and not args.json:
        print(_table(rows))
    return 0


def _summary(r) -> str:
    """``model | threat: clean 98.0%, robust 12.0% of 500, 31 ex/s``: one threat's result in a line."""
    return (
        f"{r.model} | {r.threat}: clean {r.clean_acc:.1%}, robust {r.robust_acc:.1%} of {r.n_examples}, "
        f"{_speed(r.examples_per_s)}"
    )


def _speed(examples_per_s: float) -> str:
    """The record's ``examples_per_s`` as the table shows it; 0 means nothing was computed in this call
    (every chunk was resumed from disk), which is not a speed."""
    from robench.engine.progress import rate_text

    return f"{rate_text(examples_per_s)} ex/s" if examples_per_s > 0 else "resumed"


def cmd_train(args) -> int:
    from robench.core import config
    from robench.training.train import train

    card = train(
        args.recipe,
        args.arch,
        args.dataset,
        name=args.name,
        out=args.out,
        card_dir=args.card_dir,
        epochs=args.epochs,
        seed=args.seed,
        device=args.device,
        arch_kwargs=config.parse_overrides(args.arch_kwargs),
        command=args.command_line,
    )
    print(card)
    return 0


def _table(rows: list) -> str:
    """The records of ``rows`` ((record, path written) pairs) as a table, then the paths and any flags."""
    from robench.core.stats import successes, wilson

    records = [r for r, _ in rows]
    header = ["model", "dataset", "threat", "n", "clean", "robust", "95% CI (Wilson)", "ex/s", "flags"]
    cis = [wilson(successes(r.per_example, r.n_examples, r.robust_acc), r.n_examples) for r in records]
    lines = [
        [
            r.model,
            r.dataset,
            r.threat,
            str(r.n_examples),
            f"{r.clean_acc:.1%}",
            f"{r.robust_acc:.1%}",
            f"[{low:.1%}, {high:.1%}]",
            _speed(r.examples_per_s).removesuffix(" ex/s"),
            str(len(r.flags)),
        ]
        for r, (low, high) in zip(records, cis, strict=True)
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths))
    text = [fmt.format(*header)] + [fmt.format(*line) for line in lines]
    text.append("records:")
    text.extend(f"  {path}" for _, path in rows)
    for r in records:
        text.extend(f"  ! {r.threat}: {flag}" for flag in r.flags)
    return "\n".join(text)


def cmd_leaderboard(args) -> int:
    from robench import boards
    from robench.submission.undo import recover

    root = args.root if args.root is not None else boards.default_root()
    recover(Path(root))  # a submission's commit that a kill left half-done: completed or rolled back first
    if args.check:
        stale = [str(path) for path in boards.check(args.boards, root)]
        site = boards.check_site(args.site, args.boards, root) if args.site is not None else []
        site = [str(args.site / path) for path in site]
        if args.json:
            print(json.dumps({"stale": stale, "site_differs": site}, sort_keys=True))
        for path in [] if args.json else stale:
            print(f"{path}: stale; run 'robench leaderboard' and commit the result")
        for path in [] if args.json else site:
            print(f"{path}: differs from what the records build; rebuild with --site")
        return 1 if stale or site else 0
    wrote = [path.relative_to(root).as_posix() for path in boards.write(args.boards, root)]
    changed = boards.write_site(args.site, args.boards, root) if args.site is not None else None
    if args.json:
        site = None if changed is None else {"index": str(args.site / "index.html"), "written": len(changed)}
        print(json.dumps({"wrote": wrote, "site": site}, sort_keys=True))
        return 0
    for path in wrote:
        print(f"wrote {path}")
    if changed is not None:
        print(f"site: {args.site / 'index.html'} ({len(changed)} files written)")
    return 0


def cmd_compare(args) -> int:
    from robench import boards
    from robench.boards.compare import compare_models, format_rows

    root = args.root if args.root is not None else boards.default_root()
    dataset, rows = compare_models(
        args.model_a, args.model_b, threats=args.threats, board=args.board, dataset=args.dataset, root=root
    )
    if not args.json:
        print(format_rows(args.model_a, args.model_b, dataset, rows))
        return 0
    for row in rows:
        paired = row.result._asdict() if row.result is not None else None
        line = {"a": args.model_a, "b": args.model_b, "dataset": dataset, "threat": row.threat}
        print(json.dumps({**line, "paired": paired, "why": row.why or None}, sort_keys=True))
    return 0


def cmd_verify(args) -> int:
    from robench.boards import default_root
    from robench.submission.verify import RUNS_DIR, select, verify

    root = args.root if args.root is not None else default_root()
    failed = 0
    paths = select(root, args.boards, args.models, args.threats, args.all_records)
    for outcome in verify(paths, args.n_examples, args.data_dir):
        if args.json:
            record = outcome.path.relative_to(root / RUNS_DIR).as_posix()
            fields = {"n_examples": outcome.n_examples, "seconds": round(outcome.seconds, 3)}
            print(json.dumps({"record": record, "differs": list(outcome.differs), **fields}, sort_keys=True))
        else:
            print(outcome.line(root), flush=True)
        failed += bool(outcome.differs)
    if failed:
        print(
            f"robench: {failed} record(s) differ from a re-run of the shipped code and weights",
            file=sys.stderr,
        )
    return 1 if failed else 0


def cmd_submit(args) -> int:
    from robench.submission.submit import CheckpointSpec, SubmitRequest, submit

    checkpoint = CheckpointSpec(
        path=args.checkpoint,
        arch=args.arch,
        dataset=args.dataset,
        name=args.name,
        arch_kwargs=tuple(args.arch_kwargs),
        normalization=args.normalization,
        display_name=args.display_name,
        paper_url=args.paper_url,
        paper_title=args.paper_title,
    )
    request = SubmitRequest(
        card=args.card,
        checkpoint=checkpoint,
        boards=tuple(args.boards) if args.boards else None,
        force=args.force,
        allow_pickle=args.allow_pickle,
        device=args.device,
        data_dir=args.data_dir,
        root=args.root,
        as_json=args.json,
    )
    if args.spec_list:
        from robench.submission.submit_list import submit_list

        return submit_list(args.spec_list, request)
    submit(request)
    return 0


def cmd_corruptions_report(args) -> int:
    from robench.core.corruption_report import format_report, report_from_runs

    for threat in args.threats or ["corruptions"]:
        report = report_from_runs(args.runs, args.model, args.reference, args.dataset, threat)
        print(json.dumps(report, sort_keys=True) if args.json else format_report(report))
    return 0


def cmd_ls(args) -> int:
    """One line per entry, columns aligned. Models, threats and boards are read from their YAML alone
    (no torch import, no weights read), so listing stays instant and a broken card still shows."""
    from robench.core import config

    rows = {"models": _model_rows, "threats": _threat_rows, "datasets": _dataset_rows, "boards": _board_rows}
    lines = rows[args.what](config)
    if args.json:
        print(json.dumps([dict(zip(_LS_FIELDS[args.what], row, strict=True)) for row in lines]))
        return 0
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]) - 1)] if lines else []
    for row in lines:
        print("  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip())
    if args.what == "models":
        from robench.models.specs import SPEC_FORMS

        print(f"--model also takes: {', '.join(SPEC_FORMS[1:])}")
    return 0


#: The columns of each ``robench ls`` listing, as ``--json`` names them.
_LS_FIELDS = {
    "models": ("name", "arch", "dataset", "clean_acc_test"),
    "threats": ("name", "family", "budgets"),
    "datasets": ("name", "classes", "size", "budgets", "splits"),
    "boards": ("name", "dataset", "examples", "title"),
}


def _model_rows(config) -> list[list[str]]:
    """name, architecture (library), dataset, clean test accuracy measured at training time or '—'."""
    rows = []
    for name in config.names("models"):
        card = config.read_yaml(config.find("models", name))
        acc = (card.get("training") or {}).get("clean_acc_test")
        arch = f"{card.get('arch', '?')} ({card.get('library', 'timm')})"
        shown = f"{acc:.1%}" if isinstance(acc, float) else "—"
        rows.append([name, arch, str(card.get("dataset", "?")), shown])
    return rows


#: Parameters that set a threat's budget (the rest set the attack's effort), shown by ``robench ls threats``.
_BUDGET_KEYS = ("norm", "eps", "max_rotation", "max_translation", "max_shift", "headline_magnitude")


def _threat_rows(config) -> list[list[str]]:
    """name, family, then the budget per budget family (mnist, cifar, imagenet)."""
    examples = {"mnist": "mnist5k", "cifar": "cifar10", "imagenet": "imagenet"}
    rows = []
    for name in config.names("threats"):
        budgets = []
        for family, dataset in examples.items():
            params = config.threat_config(name, dataset)
            shown = " ".join(f"{k}={_budget(params[k])}" for k in _BUDGET_KEYS if k in params)
            budgets.append(f"{family}: {shown or '—'}")
        rows.append([name, config.threat_spec(name).family, " | ".join(budgets)])
    return rows


def _budget(value) -> str:
    """ε as published: 0.0313... -> 8/255."""
    if isinstance(value, float) and 0 < value < 1 and abs(value * 255 - round(value * 255)) < 1e-9:
        return f"{round(value * 255)}/255"
    return str(value)


def _dataset_rows(config) -> list[list[str]]:
    from robench.datasets import dataset_info, list_datasets

    rows = []
    for name in list_datasets():
        info = dataset_info(name)
        size = f"{info.channels}x{info.image_size}x{info.image_size}"
        rows.append(
            [
                name,
                f"{info.num_classes} classes",
                size,
                f"budgets: {info.family}",
                f"splits: {', '.join(info.splits)}",
            ]
        )
    return rows


def _board_rows(config) -> list[list[str]]:
    from robench.boards.schema import load_board

    rows = []
    for name in config.names("boards"):
        board = load_board(name)
        rows.append([name, board.dataset, f"{board.n_examples} examples", board.title])
    return rows


def _show_parser(add) -> None:
    """The options of ``robench show``."""
    sh = add("show", help="print a threat's resolved parameters or a model's whole card")
    sh.add_argument("what", choices=["threat", "model"], metavar="{threat,model}", help="what to show")
    sh.add_argument("name", help="a threat name (robench ls threats) or a model name or spec")
    sh.add_argument(
        "--dataset", help="the dataset to resolve a threat's parameters for (default: one per budget family)"
    )
    _json_option(sh, "it (instead of YAML)")
    sh.set_defaults(func=cmd_show)


def cmd_show(args) -> int:
    """Everything ``ls`` leaves out: every resolved parameter of a threat (per budget family, or for
    ``--dataset``), or the card of a model with its identity as a record will keep it. YAML on stdout."""
    import yaml

    from robench.core import config

    if args.what == "threat":
        spec = config.threat_spec(args.name)
        datasets = [args.dataset] if args.dataset else ["mnist5k", "cifar10", "imagenet"]
        out = {
            "threat": args.name,
            "family": spec.family,
            "description": spec.description,
            "parameters": {d: config.threat_config(args.name, d) for d in datasets},
        }
    else:
        from robench.models import load_card

        card = load_card(args.name)
        out = {
            "model": card.name,
            "card": str(card.source) if card.source else None,
            "model_meta": card.meta(),
        }
    if args.json:
        print(json.dumps(out))
    else:
        print(yaml.safe_dump(out, sort_keys=False, allow_unicode=True, width=100), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    args.command_line = shlex.join(["robench", *argv])  # as typed: what a card says retrains it
    try:
        from robench.core import config
        from robench.models.code import set_code_dirs

        config.set_user_dirs(args.config_dir)
        set_code_dirs(args.code_dir)
        config.search_path()  # a configuration folder that does not exist fails here, for every command
        if args.command not in ("eval", "submit"):
            return args.func(args)
        from robench.engine.stop import graceful

        with graceful():  # SIGINT/SIGTERM: stop after the current batch, keep finished chunks
            return args.func(args)
    except RobenchError as e:
        if args.debug:
            traceback.print_exc()
        print(f"robench: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(
            f"robench: interrupted by {signal.Signals(signum).name} "
            "(finished chunks are kept; rerun the same "
            "command to resume)",
            file=sys.stderr,
        )
        return 128 + signum
    except Exception as e:  # a bug, not a user error: one line unless --debug
        if args.debug:
            raise
        print(
            f"robench: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
