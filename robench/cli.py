"""The ``robench`` command: eval | train | submit | leaderboard | compare | verify | ls.

User errors (unknown names, malformed options, missing data, bad checkpoints) end with one line on
stderr and exit status 2 (usage) or 1 (runtime), never a traceback; ``--debug`` shows one. Heavy imports
(torch) happen inside the subcommands that need them, so ``robench --help`` and ``robench leaderboard``
stay fast.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import traceback
from pathlib import Path

from robench.core.errors import RobenchError


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
    parser.add_argument(
        "--config-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="also search DIR/{threats,models,recipes,boards}/*.yaml, after the shipped "
        "configs and $ROBENCH_CONFIGS; a file there overrides a shipped one of that name "
        "(repeatable)",
    )
    parser.add_argument(
        "--code-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="also import architectures named by import path (package.module:Class) from DIR, before "
        "$ROBENCH_CODE and the installed packages (repeatable)",
    )
    parser.set_defaults(command_line=None)  # main() fills it in: the command as typed, for training cards
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _eval_parser(sub)
    _train_parser(sub)
    _leaderboard_parser(sub)
    _verify_parser(sub)
    _compare_parser(sub)
    _submit_parser(sub)
    _corruptions_report_parser(sub)
    _ls_parser(sub)
    _show_parser(sub)
    return parser


def _eval_parser(sub) -> None:
    """The options of ``robench eval``."""
    ev = sub.add_parser("eval", help="evaluate a model under one or more threats, one record each")
    ev.add_argument(
        "--model",
        required=True,
        help="card name (robench ls models), card.yaml, timm:NAME, torchvision:NAME[:WEIGHTS] "
        "or robustbench:NAME[:DATASET[:THREAT]]",
    )
    ev.add_argument(
        "--threat", required=True, type=_csv, help="threat name(s), comma-separated (robench ls threats)"
    )
    ev.add_argument("--dataset", help="dataset (default: the one the model card names)")
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
        "--out", default="runs", help="records go to OUT/<dataset>/<model>/<threat>.json (default: runs)"
    )
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
    ev.add_argument(
        "--json", action="store_true", help="print one JSON record per line on stdout, nothing else"
    )
    ev.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="job-array task I of N: compute only chunks c with c %% N == I into --out, write no "
        "record (rerun without --shard to write it)",
    )
    ev.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes decoding image files (default: min(8, cores); in-memory datasets: 0)",
    )
    ev.add_argument(
        "--precision",
        default="fp32",
        help="fp32 (default) or bf16 (autocast): argmax-verdict threats re-check every close verdict in "
        "fp32 (records equal fp32's); PGD takes its gradients in bf16 and every verdict in fp32 (another "
        "protocol: recorded as execution.search, not on boards); AutoAttack and spatial_pgd stay fp32",
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


def _train_parser(sub) -> None:
    """The options of ``robench train``."""
    tr = sub.add_parser(
        "train", help="train a model with a reference recipe; writes weights and a model card"
    )
    tr.add_argument("--recipe", required=True, help="recipe name (configs/recipes or a --config-dir)")
    tr.add_argument("--arch", required=True, help="timm architecture name, e.g. mnist_cnn")
    tr.add_argument("--name", required=True, help="model name for the card, e.g. mnist_cnn_standard")
    tr.add_argument("--dataset", default="mnist5k", help="training dataset (default: mnist5k, split train)")
    tr.add_argument("--epochs", type=_positive_int, help="override the recipe's epochs")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default="auto")
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


def _leaderboard_parser(sub) -> None:
    """The options of ``robench leaderboard``."""
    lb = sub.add_parser("leaderboard", help="regenerate leaderboards/*.md from the committed run records")
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
    lb.set_defaults(func=cmd_leaderboard)


def _verify_parser(sub) -> None:
    """The options of ``robench verify``."""
    vf = sub.add_parser(
        "verify",
        help="re-run committed records and compare them with the files (bit for bit on their machine class)",
        description="Re-run committed records (leaderboards/runs) from the shipped weights, configs and code "
        "on the CPU and compare them: bit for bit when this machine is of the record's class (CPU or GPU, "
        "torch, threads), else by agreement (at most 1% of the verdicts differ, exact McNemar p >= 0.05). "
        "One line per record (OK, EQUIVALENT (...) or DIFFERS: fields) naming the contract and why; exit 1 "
        "if any record differs.",
    )
    vf.add_argument("--all", dest="all_records", action="store_true", help="every committed record")
    for flag, what in (
        ("--board", "this board's dataset"),
        ("--model", "this model"),
        ("--threat", "this threat"),
    ):
        vf.add_argument(
            flag, dest=flag[2:] + "s", action="append", metavar="NAME", help=f"records of {what} (repeatable)"
        )
    vf.add_argument(
        "--n-examples",
        type=_positive_int,
        metavar="N",
        help="re-run only the first N examples (rounded up to a prefix the seeds reproduce) and "
        "compare their verdicts",
    )
    vf.add_argument("--data-dir", help="dataset folder (default: $ROBENCH_DATA or ~/.cache/robench/data)")
    vf.add_argument("--root", type=Path, help="folder holding leaderboards/ (default: the checkout)")
    vf.set_defaults(func=cmd_verify)


def _compare_parser(sub) -> None:
    """The options of ``robench compare``."""
    cp = sub.add_parser(
        "compare",
        help="paired comparison of two models' committed records, threat by threat",
        description="Per threat: both accuracies with Wilson 95%% intervals, the difference with "
        "Newcombe's paired 95%% interval and the exact McNemar p-value, computed "
        "from the records' per-example verdicts on the same examples.",
    )
    cp.add_argument("model_a", metavar="A", help="model name")
    cp.add_argument("model_b", metavar="B", help="model name")
    cp.add_argument(
        "--threat",
        dest="threats",
        action="extend",
        type=_csv,
        metavar="T",
        help="threat(s) to compare (repeatable or comma-separated; default: every threat both have)",
    )
    where = cp.add_mutually_exclusive_group()
    where.add_argument("--board", help="only the records this board shows (current configs, its examples)")
    where.add_argument(
        "--dataset", help="records of this dataset (default: the one both models have records of)"
    )
    cp.add_argument("--root", type=Path, help="folder holding leaderboards/ (default: the checkout)")
    cp.set_defaults(func=cmd_compare)


def _submit_parser(sub) -> None:
    """The options of ``robench submit``."""
    sm = sub.add_parser(
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
    sm.set_defaults(func=cmd_submit)


def _corruptions_report_parser(sub) -> None:
    """The options of ``robench corruptions-report``."""
    cr = sub.add_parser(
        "corruptions-report",
        help="mCE and relative mCE of a model's corruption record "
        "against a reference model's (Hendrycks & Dietterich 2019)",
    )
    cr.add_argument("--model", required=True, help="model whose record is reported")
    cr.add_argument("--reference", help="reference model (default for mnist5k: mnist_cnn_standard)")
    cr.add_argument("--dataset", default="mnist5k", help="dataset of both records (default: mnist5k)")
    cr.add_argument("--threat", default="corruptions", help="threat of both records (default: corruptions)")
    cr.add_argument("--runs", default="leaderboards/runs", help="records folder (default: leaderboards/runs)")
    cr.add_argument("--json", action="store_true", help="print the report as JSON")
    cr.set_defaults(func=cmd_corruptions_report)


def _ls_parser(sub) -> None:
    """The options of ``robench ls``."""
    ls = sub.add_parser("ls", help="list models, threats, datasets or boards")
    ls.add_argument("what", choices=["models", "threats", "datasets", "boards"])
    ls.set_defaults(func=cmd_ls)


def _shard(value: str) -> tuple[int, int]:
    i, sep, n = value.partition("/")
    if not (sep and i.isdigit() and n.isdigit() and int(i) < int(n)):
        raise argparse.ArgumentTypeError(
            f"expected I/N with 0 <= I < N (job-array task I of N), got {value!r}"
        )
    return int(i), int(n)


def cmd_eval(args) -> int:
    from robench.core import config
    from robench.core.record import RunRecord
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
        out_dir=Path(args.out),
        shard=args.shard,
    )
    rows = []
    for result in run_threats(
        args.model, list(args.threat), options
    ):  # rank 0's results only: one printout under torchrun
        if not isinstance(
            result, RunRecord
        ):  # a job-array shard: its chunks are on disk, the record comes later
            i, n = result.shard
            print(
                f"robench: {result.threat}: shard {i}/{n} done; once every shard has finished, run the same "
                "command without --shard to write the record",
                file=sys.stderr,
            )
        elif args.json:
            print(json.dumps(json.loads(result.to_json()), sort_keys=True), flush=True)
        else:
            rows.append(result)
    if rows:
        print(_table(rows, options.out_dir))
    return 0


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


def _table(records, out: Path) -> str:
    from robench.core.stats import successes, wilson

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
            f"{r.examples_per_s:.0f}",
            str(len(r.flags)),
        ]
        for r, (low, high) in zip(records, cis, strict=True)
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths))
    text = [fmt.format(*header)] + [fmt.format(*line) for line in lines]
    text.append(f"records: {out}/<dataset>/<model>/<threat>.json")
    for r in records:
        text.extend(f"  ! {r.threat}: {flag}" for flag in r.flags)
    return "\n".join(text)


def cmd_leaderboard(args) -> int:
    from robench import boards
    from robench.submission.undo import recover

    root = args.root if args.root is not None else boards.default_root()
    recover(Path(root))  # a submission's commit that a kill left half-done: completed or rolled back first
    if args.check:
        stale = boards.check(args.boards, root)
        for path in stale:
            print(f"{path}: stale; run 'robench leaderboard' and commit the result")
        site = boards.check_site(args.site, args.boards, root) if args.site is not None else []
        for path in site:
            print(f"{args.site / path}: differs from what the records build; rebuild with --site")
        return 1 if stale or site else 0
    for path in boards.write(args.boards, root):
        print(f"wrote {path.relative_to(root).as_posix()}")
    if args.site is not None:
        changed = boards.write_site(args.site, args.boards, root)
        print(f"site: {args.site / 'index.html'} ({len(changed)} files written)")
    return 0


def cmd_compare(args) -> int:
    from robench import boards
    from robench.boards.compare import compare_models, format_rows

    root = args.root if args.root is not None else boards.default_root()
    dataset, rows = compare_models(
        args.model_a, args.model_b, threats=args.threats, board=args.board, dataset=args.dataset, root=root
    )
    print(format_rows(args.model_a, args.model_b, dataset, rows))
    return 0


def cmd_verify(args) -> int:
    from robench.boards import default_root
    from robench.submission.verify import select, verify

    root = args.root if args.root is not None else default_root()
    failed = 0
    paths = select(root, args.boards, args.models, args.threats, args.all_records)
    for outcome in verify(paths, args.n_examples, args.data_dir):
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
    )
    if args.spec_list:
        from robench.submission.submit_list import submit_list

        return submit_list(args.spec_list, request)
    submit(request)
    return 0


def cmd_corruptions_report(args) -> int:
    from robench.core.corruption_report import format_report, report_from_runs

    report = report_from_runs(args.runs, args.model, args.reference, args.dataset, args.threat)
    print(json.dumps(report, sort_keys=True) if args.json else format_report(report))
    return 0


def cmd_ls(args) -> int:
    """One line per entry, columns aligned. Models, threats and boards are read from their YAML alone
    (no torch import, no weights read), so listing stays instant and a broken card still shows."""
    from robench.core import config

    rows = {"models": _model_rows, "threats": _threat_rows, "datasets": _dataset_rows, "boards": _board_rows}
    lines = rows[args.what](config)
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]) - 1)] if lines else []
    for row in lines:
        print("  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip())
    if args.what == "models":
        from robench.models.specs import SPEC_FORMS

        print(f"--model also takes: {', '.join(SPEC_FORMS[1:])}")
    return 0


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


def _show_parser(sub) -> None:
    """The options of ``robench show``."""
    sh = sub.add_parser("show", help="print a threat's resolved parameters or a model's whole card")
    sh.add_argument("what", choices=["threat", "model"], help="what to show")
    sh.add_argument("name", help="a threat name (robench ls threats) or a model name or spec")
    sh.add_argument(
        "--dataset", help="the dataset to resolve a threat's parameters for (default: one per budget family)"
    )
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
    print(yaml.safe_dump(out, sort_keys=False, allow_unicode=True, width=100), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
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
