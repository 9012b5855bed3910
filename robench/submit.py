"""``robench submit``: a checkpoint in, its measured place on the board out, in one command.

A submission is re-evaluated, never believed (reliability.md): the card's weights are pinned by sha256 and
loaded safely (:func:`robench.models.create_model`), every threat the board needs (``require``, the x axis
and the y-axis threats that exist) is run with the board's split, example count and seed, and only those
measured records reach the page. A card's ``claimed:`` numbers are kept in the card for the reader of the
card and used nowhere else.

Nothing is half-done. The card is validated and the checkpoint loaded before any evaluation; records are
evaluated into a staging folder (``leaderboards/.submit/<name>/``) and moved into ``leaderboards/runs/`` only
once every threat has succeeded, together with the card and the regenerated board; if any of those
steps fails, the records, the card and the board files are put back as they were. A staging folder is
removed when a submission fails on something the user must fix, and kept when it is interrupted, so
that rerunning the same command keeps the threats already evaluated (if they are still current for the
same card) and resumes the unfinished one from its finished chunks.

The card lands in ``configs/models/<name>.yaml`` so the model registry and the records agree: a weights
path is rewritten to resolve from there (relative inside the checkout, absolute outside it), and a
different card already registered under the name is replaced only with ``--force``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import yaml

from robench import config, leaderboard, record
from robench.boards import RUNS_DIR, Board, board_names, collect, load_board
from robench.datasets import dataset_info
from robench.errors import CheckpointError, RobenchError, UsageError
from robench.models import NORMALIZATION_PRESETS, ModelCard, card_from_dict, sha256_file
from robench.record import atomic_write_bytes, check_name

STAGING_DIR = RUNS_DIR.parent / ".submit"
_CHECKPOINT_ONLY = (
    "arch",
    "dataset",
    "name",
    "arch_kwargs",
    "normalization",
    "display_name",
    "paper_url",
    "paper_title",
)


# --- the card ----------------------------------------------------------------------------------------------


def parse_normalization(text: str, dataset: str):
    """A preset name (``imagenet``, ``none``; kept by name in the card) or ``m1,...,mC,s1,...,sC``:
    the means, then the stds, of the dataset's C channels."""
    if text in NORMALIZATION_PRESETS:
        return text
    channels = dataset_info(dataset).channels
    try:
        values = [float(config.parse_number(v.strip())) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2 * channels or any(v <= 0 for v in values[channels:]):
        raise UsageError(
            f"--normalization {text!r}: give a preset ({', '.join(NORMALIZATION_PRESETS)}) "
            f"or {channels} means "
            f"then {channels} positive stds, comma-separated, e.g. {','.join(['0.5'] * 2 * channels)}"
        )
    return {"mean": values[:channels], "std": values[channels:]}


def card_for_checkpoint(args) -> dict:
    """The card that ``--checkpoint FILE --arch A --dataset D --name N ...`` describes, sha256 pinned.

    The format follows the file name: ``.safetensors`` or a pickle (which still loads only with
    ``--allow-pickle``).
    """
    missing = [f"--{k}" for k in ("arch", "dataset", "name") if not getattr(args, k)]
    if missing:
        raise UsageError(f"--checkpoint needs {', '.join(missing)} as well")
    checkpoint = Path(os.path.expanduser(args.checkpoint)).resolve()
    if not checkpoint.is_file():
        raise CheckpointError(f"checkpoint {args.checkpoint} not found")
    info = dataset_info(args.dataset)
    data = {"arch": args.arch, "dataset": args.dataset, "num_classes": info.num_classes}
    if args.arch_kwargs:
        data["arch_kwargs"] = config.parse_overrides(args.arch_kwargs)
    data["normalization"] = parse_normalization(args.normalization or "none", args.dataset)
    data["weights"] = {"path": str(checkpoint), "sha256": sha256_file(checkpoint)}
    if checkpoint.suffix != ".safetensors":
        data["weights"]["format"] = "pickle"
    if args.display_name:
        data["display_name"] = args.display_name
    if args.paper_url or args.paper_title:
        data["paper"] = {"title": args.paper_title or args.paper_url}
        if args.paper_url:
            data["paper"]["url"] = args.paper_url
    return data


def _pin_weights_path(data: dict, source_dir: Path, models_dir: Path, root: Path) -> dict:
    """The card with ``weights.path`` resolving from ``models_dir`` as it did from ``source_dir``:
    relative when the file is inside ``root`` (so the committed card works in any checkout), else absolute."""
    weights = data.get("weights")
    if not isinstance(weights, dict) or not isinstance(weights.get("path"), str):
        return data
    path = Path(os.path.expanduser(weights["path"]))
    path = (source_dir / path).resolve() if not path.is_absolute() else path.resolve()
    inside = path.is_relative_to(root.resolve())
    pinned = os.path.relpath(path, models_dir.resolve()) if inside else str(path)
    return {**data, "weights": {**weights, "path": pinned}}


def _taken_by_another(name: str, card_data: dict, target: Path, root: Path) -> bool:
    """Whether ``name`` is already taken by something else: a different card, or records with no card."""
    if target.exists():
        return config.read_yaml(target) != card_data
    return any((root / RUNS_DIR).glob(f"*/{name}/*.json"))


# --- boards and evaluation ---------------------------------------------------------------------------------


def select_boards(card: ModelCard, names: list[str] | None) -> list[Board]:
    """The boards a submission goes to: ``names``, else every board of the card's dataset.

    One record per (dataset, model, threat) is kept, so boards evaluated together must agree on the
    examples (split, count, seed); otherwise the user picks one.
    """
    if names:
        boards = [load_board(n) for n in names]
    else:
        boards = [b for b in map(load_board, board_names()) if b.dataset == card.dataset]
        if not boards:
            raise UsageError(
                f"no board in configs/boards evaluates {card.dataset!r} "
                f"(boards: {', '.join(board_names())}); "
                "choose one whose images fit the model with --board"
            )
    protocols = {(b.dataset, b.split, b.n_examples, b.seed) for b in boards}
    if len(protocols) > 1:
        raise UsageError(
            f"boards {', '.join(b.name for b in boards)} evaluate different examples "
            f"({sorted(protocols)}); submit to one at a time with --board"
        )
    return boards


def threats_for(boards: list[Board]) -> list[str]:
    """Every threat a board needs for a ranked row: ``require``, the x axis and the existing y threats."""
    names = []
    for b in boards:
        names += [*b.require, b.x.threat, *(c.threat for c in b.y_prefer)]
    return list(dict.fromkeys(names))


def _staged(board: Board, card: ModelCard, stage: Path) -> dict[str, record.RunRecord]:
    """Records that an interrupted run of this submission left in ``stage`` and that are still current,
    by threat: the board's own test (:func:`robench.boards.collect`) plus the same card, so a rerun
    continues where the last one stopped and never reuses a record of other weights or another protocol."""
    frame, _, _ = collect(board, stage)
    mine = frame[(frame["model"] == card.name) & frame["meta"].map(lambda meta: meta == card.meta())]
    return {
        t: record.load(record.path_for(stage / RUNS_DIR, board.dataset, card.name, t)) for t in mine["threat"]
    }


def _evaluate(card: ModelCard, board: Board, threats: list[str], stage: Path, args) -> list[record.RunRecord]:
    """Load the weights (sha256-checked, safe formats only) and run every threat not yet staged into
    ``stage``; returns the records of all ``threats``, in order."""
    from robench.datasets import create_dataset
    from robench.engine import evaluate, resolve_device
    from robench.models import check_dataset, create_model
    from robench.threats import create_threat

    check_dataset(card, board.dataset)
    for name in threats:  # a bad threat config fails before any work
        create_threat(name, board.dataset)
    device = resolve_device(args.device)
    create_dataset(board.dataset, board.split, args.data_dir)  # missing data fails before the weights load
    model = create_model(card, device=device, allow_pickle=args.allow_pickle)
    done = _staged(board, card, stage) if stage.exists() else {}
    if done:
        print(f"robench: resuming {card.name}: {', '.join(done)} already evaluated", file=sys.stderr)
    return [
        done.get(name)
        or evaluate(
            model,
            name,
            board.dataset,
            n_examples=board.n_examples,
            device=device,
            seed=board.seed,
            split=board.split,
            data_dir=args.data_dir,
            out_dir=stage / RUNS_DIR,
            model_name=card.name,
        )
        for name in threats
    ]


# --- putting it in place, or nothing -----------------------------------------------------------------------


class _Undo:
    """Changes files while remembering how to put each one back, so a failed commit leaves no trace.

    Replaced files and folders are moved aside into ``backup`` (same file system, so every move is an
    atomic rename), and folders the commit had to create are removed again.
    """

    def __init__(self, backup: Path):
        self.backup = backup
        self.steps = []

    def _make_parents(self, path: Path) -> None:
        missing = [d for d in path.parents if not d.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        self.steps += [lambda d=d: _rmdir_if_empty(d) for d in reversed(missing)]

    def _set_aside(self, path: Path) -> None:
        """Move ``path`` out of the way; undo removes whatever is there then and moves it back."""
        if path.exists():
            kept = self.backup / str(len(self.steps))
            kept.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, kept)
            self.steps.append(lambda: (_remove(path), os.replace(kept, path)))
        else:
            self.steps.append(lambda: _remove(path))

    def move(self, src: Path, dest: Path) -> None:
        self._make_parents(dest)
        self._set_aside(dest)
        os.replace(src, dest)

    def remove(self, path: Path) -> None:
        self._set_aside(path)

    def write(self, path: Path, data: bytes) -> None:
        self._make_parents(path)
        self._set_aside(path)
        atomic_write_bytes(path, data)

    def remember(self, path: Path) -> None:
        """Restore ``path``'s current content (or absence) on undo, whoever rewrites it in between."""
        old = path.read_bytes() if path.exists() else None
        self.steps.append(lambda: atomic_write_bytes(path, old) if old is not None else _remove(path))

    def rollback(self) -> None:
        for step in reversed(self.steps):
            step()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (or already gone): leave it
        pass


def _commit(
    name: str,
    records: list,
    stage: Path,
    card_bytes: bytes | None,
    card_path: Path,
    replace: bool,
    boards: list[Board],
    root: Path,
) -> None:
    """Records, card and boards in place together; on any failure, all three as they were.

    Only the files of this submission's records move (each record and its artifacts), so anything an
    earlier, interrupted submission left in the staging folder cannot slip in.
    """
    runs = root / RUNS_DIR
    undo = _Undo(stage / "previous")
    try:
        for b in boards:
            for suffix in (".md", ".svg"):
                undo.remember(root / leaderboard.BOARDS_DIR / f"{b.name}{suffix}")
        if replace:  # the old card's records describe other weights: they go with it
            for old in sorted(runs.glob(f"*/{name}")):
                undo.remove(old)
        for r in records:
            for file in (f"{r.threat}.json", *r.artifacts.values()):
                undo.move(
                    record.path_for(stage / RUNS_DIR, r.dataset, name, r.threat).with_name(file),
                    record.path_for(runs, r.dataset, name, r.threat).with_name(file),
                )
        if card_bytes is not None:
            undo.write(card_path, card_bytes)
        leaderboard.write([b.name for b in boards], root)
    except BaseException:
        undo.rollback()
        raise


# --- the command -------------------------------------------------------------------------------------------


def _card(args, root: Path, models_dir: Path) -> tuple[str, dict, Path | None]:
    """(name, card mapping as it will be registered, the user's card file or None)."""
    if args.card and args.checkpoint:
        raise UsageError("give either a card file or --checkpoint, not both")
    if args.card:
        given = [f"--{k.replace('_', '-')}" for k in _CHECKPOINT_ONLY if getattr(args, k)]
        if given:
            raise UsageError(f"{', '.join(given)} only go with --checkpoint; with a card file, edit the card")
        source = Path(args.card)
        name = check_name("model", source.stem)
        data = config.read_yaml(source)
        return name, _pin_weights_path(data, source.resolve().parent, models_dir, root), source
    if not args.checkpoint:
        raise UsageError(
            "give a card file (robench submit CARD.yaml) or --checkpoint FILE --arch A --dataset D --name N"
        )
    if args.name is not None:
        check_name("model", args.name)  # before the checkpoint is hashed
    data = card_for_checkpoint(args)
    return args.name, _pin_weights_path(data, Path.cwd(), models_dir, root), None


def submit(args) -> None:
    """Validate, evaluate, commit, and print where the model stands on each board."""
    root = Path(args.root).resolve() if args.root is not None else leaderboard.default_root().resolve()
    if (root / "configs").resolve() != config.config_root().resolve():
        raise UsageError(
            f"--root {root} does not hold the configs in use ({config.config_root()}); set "
            f"ROBENCH_CONFIGS={root / 'configs'} so the card, the threats and the boards come from one place"
        )
    models_dir = root / "configs" / "models"
    name, data, source = _card(args, root, models_dir)
    target = models_dir / f"{name}.yaml"
    in_place = source is not None and source.resolve() == target.resolve()
    card = card_from_dict(name, config.read_yaml(target) if in_place else data, source=target)
    replace = not in_place and _taken_by_another(name, data, target, root)
    if replace and not args.force:
        what = (
            f"a different card {target.relative_to(root)}" if target.exists() else "run records with no card"
        )
        raise UsageError(
            f"model name {name!r} is taken by {what}; rename the submission, or pass --force to "
            "replace it (its records are removed and the board's threats re-run)"
        )
    boards = select_boards(card, args.boards)
    for b in boards:  # an unreadable record elsewhere on the board fails now, not after the evaluation
        leaderboard.build(b.name, root)
    protocol = boards[0]

    stage = root / STAGING_DIR / name
    new_card = not in_place and (replace or not target.exists())
    card_bytes = (
        yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000).encode() if new_card else None
    )
    try:
        records = _evaluate(card, protocol, threats_for(boards), stage, args)
        _commit(name, records, stage, card_bytes, target, replace, boards, root)
    except RobenchError:  # the user must change something first: nothing here is worth resuming
        _discard(stage)
        raise
    _discard(stage)
    _report(name, records[0].clean_acc, boards, root, target)  # every record has the same clean accuracy


def _discard(stage: Path) -> None:
    shutil.rmtree(stage, ignore_errors=True)
    _rmdir_if_empty(stage.parent)


def _report(name: str, clean: float, boards: list[Board], root: Path, card_path: Path) -> None:
    """The model's row as each regenerated page shows it, and what to commit to publish it."""
    for b in boards:
        table = leaderboard.standings(b.name, root)
        mine = table[table["model"] == name]
        row = None if mine.empty else mine.iloc[0]
        print(f"board {b.name}: {name} on {b.n_examples:,} {b.dataset} {b.split} examples, seed {b.seed}")
        if row is None:
            print(f"  not ranked: see leaderboards/{b.name}.md for why (stale or incomplete records)")
            continue
        y_label = next(c.label for c in b.y_prefer if c.threat == row["y_threat"])
        print(
            f"  clean {100 * clean:.1f}%  |  x {b.x.label}: {100 * row['x']:.1f}%  |  "
            f"y {b.y_label} ({y_label}): {100 * row['y']:.1f}%"
        )
        place = int(mine.index[0]) + 1
        front = "on the Pareto front" if row["front"] else "not on the Pareto front (dominated)"
        print(f"  rank {place} of {len(table)} by y; {front}")
    runs = RUNS_DIR / boards[0].dataset / name
    pages = " ".join(
        f"{leaderboard.BOARDS_DIR / b.name}.md {leaderboard.BOARDS_DIR / b.name}.svg" for b in boards
    )
    print(f"to publish: git add {card_path.relative_to(root).as_posix()} {runs.as_posix()} {pages}")


def main(args) -> int:
    """``robench submit`` (see :func:`robench.cli.build_parser` for the options)."""
    submit(args)
    return 0
