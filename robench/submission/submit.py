"""``robench submit``: a checkpoint in, its measured place on the board out, in one command.

A submission is re-evaluated, never believed (docs/reliability.md): the card's weights are pinned by
sha256 and loaded safely (:func:`robench.models.create_model`), every threat the board needs
(``require``, the x axis and the y-axis threats that exist) is run with the board's split, example count
and seed, and only those measured records reach the page. A card's ``claimed:`` numbers are kept in the
card for the reader of the card and used nowhere else.

Nothing is half-done. The card is validated and the checkpoint loaded before any evaluation; records are
evaluated into a staging folder (``leaderboards/.submit/<name>/``) and moved into ``leaderboards/runs/`` only
once every threat has succeeded, together with the card and the regenerated board; if any of those
steps fails, or the process is killed among them, the records, the card and the board files are put back
as they were (a journal, :mod:`robench.submission.undo`, which the next command reads). A staging folder is
removed when a submission fails on something the user must fix, and kept when it is interrupted, so
that rerunning the same command keeps the threats already evaluated (if they are still current for the
same card) and resumes the unfinished one from its finished chunks.

The card lands in ``configs/models/<name>.yaml`` so the model registry and the records agree: a weights
path is rewritten to resolve from there (relative inside the checkout, absolute outside it), and a
different card already registered under the name is replaced only with ``--force``.

The command takes a typed :class:`SubmitRequest` (built from the command line by :mod:`robench.cli`), so
that this module never sees argparse. It is the one module of :mod:`robench.boards` that imports torch
(through :mod:`robench.models`), and it imports the engine only when an evaluation runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import yaml

from robench.boards import files
from robench.boards.render import build, standings
from robench.boards.schema import Board, board_names, load_board
from robench.boards.selection import RUNS_DIR, collect, default_root
from robench.core import config, record
from robench.core.errors import CheckpointError, RobenchError, UsageError
from robench.core.record import check_name
from robench.datasets import dataset_info, default_eval_dataset
from robench.models import ModelCard, card_from_dict, code, sha256_file
from robench.models.card import NORMALIZATION_NEEDED, parse_normalization
from robench.submission.undo import commit, discard, recover

STAGING_DIR = RUNS_DIR.parent / ".submit"


@dataclasses.dataclass(frozen=True)
class CheckpointSpec:
    """What ``--checkpoint FILE --arch A --dataset D --name N ...`` says about a checkpoint with no card.

    Every field but ``path`` describes the card to write, so with a card file (``path`` None) any of
    them being set is a usage error; their order is the order that error names them in.
    """

    path: str | None = None
    arch: str | None = None
    dataset: str | None = None
    name: str | None = None
    arch_kwargs: tuple[str, ...] = ()  # KEY=VALUE strings, as --arch-kwarg takes them
    normalization: str | None = None  # a preset name, or the means then the stds, comma-separated
    display_name: str | None = None
    paper_url: str | None = None
    paper_title: str | None = None


@dataclasses.dataclass(frozen=True)
class SubmitRequest:
    """One ``robench submit``: a card file or a checkpoint, and where and how to evaluate it."""

    card: str | None = None  # a model card YAML; else checkpoint.path
    checkpoint: CheckpointSpec = CheckpointSpec()
    boards: tuple[str, ...] | None = None  # None: every board of the model's dataset
    force: bool = False  # replace a different card (and its records) registered under the name
    allow_pickle: bool = False
    device: str = "auto"
    data_dir: str | None = None
    root: Path | None = None  # the folder holding configs/ and leaderboards/; None: the checkout
    as_json: bool = False  # the closing report as one JSON object on stdout instead of text (--json)


# --- the card ----------------------------------------------------------------------------------------------


def card_for_checkpoint(spec: CheckpointSpec) -> dict:
    """The card that ``spec`` describes, sha256 pinned.

    The format follows the file name: ``.safetensors`` or a pickle (which still loads only with
    ``--allow-pickle``).
    """
    missing = [f"--{k}" for k in ("arch", "dataset", "name") if not getattr(spec, k)]
    if missing:
        raise UsageError(f"--checkpoint needs {', '.join(missing)} as well")
    checkpoint = Path(os.path.expanduser(spec.path)).resolve()
    if not checkpoint.is_file():
        raise CheckpointError(f"checkpoint {spec.path} not found")
    info = dataset_info(spec.dataset)
    data = {"arch": spec.arch, "dataset": spec.dataset, "num_classes": info.num_classes}
    if spec.arch_kwargs:
        data["arch_kwargs"] = config.parse_overrides(list(spec.arch_kwargs))
    if spec.normalization is None:
        raise UsageError(NORMALIZATION_NEEDED.format(option="--checkpoint"))
    data["normalization"] = parse_normalization(spec.normalization, spec.dataset)
    data["weights"] = {"path": str(checkpoint), "sha256": sha256_file(checkpoint)}
    if checkpoint.suffix != ".safetensors":
        data["weights"]["format"] = "pickle"
    if spec.display_name:
        data["display_name"] = spec.display_name
    if spec.paper_url or spec.paper_title:
        data["paper"] = {"title": spec.paper_title or spec.paper_url}
        if spec.paper_url:
            data["paper"]["url"] = spec.paper_url
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


def _pin_code_path(data: dict, source_dir: Path, models_dir: Path, root: Path) -> dict:
    """The card with an import-path architecture's file (``path/file.py:Class``) resolving from
    ``models_dir`` as it did from ``source_dir``, like :func:`_pin_weights_path` does for the weights."""
    arch = data.get("arch")
    if not isinstance(arch, str) or not code.is_code_ref(arch) or not arch.rpartition(":")[0].endswith(".py"):
        return data
    where, _, attr = arch.rpartition(":")
    path = Path(os.path.expanduser(where))
    path = (source_dir / path).resolve() if not path.is_absolute() else path.resolve()
    inside = path.is_relative_to(root.resolve())
    return {**data, "arch": f"{os.path.relpath(path, models_dir.resolve()) if inside else path}:{attr}"}


def check_rerunnable(card: ModelCard, root: Path) -> None:
    """A board takes only code anyone can re-run: an installed package pinned by name and version in the
    card (``code: {package, version}``), or a file committed in the checkout whose sha256 the card pins
    (``code: {sha256}``). Anything else is refused in one line, before any evaluation."""
    if card.library != "python":
        return
    found = code.provenance(card.arch, card.source.parent if card.source else None)
    pin = card.code
    if "package" in found:
        if pin is None or (pin.package, pin.version) != (found["package"], found["version"]):
            raise UsageError(
                f"model card {card.name!r}: a board needs code anyone can re-run: pin the package in the "
                f"card as code: {{package: {found['package']}, version: {found['version']}}}"
            )
        return
    where = card.arch.rpartition(":")[0]
    path = Path(where) if where.endswith(".py") else None
    if path is not None and not path.is_absolute() and card.source is not None:
        path = card.source.parent / path
    committed = path is not None and path.resolve().is_relative_to(root.resolve()) and _tracked(path, root)
    if not committed or pin is None or pin.sha256 != found["file_sha256"]:
        raise UsageError(
            f"model card {card.name!r}: a board needs code anyone can re-run: commit the file that defines "
            f"{card.arch.rpartition(':')[2]} in this checkout and pin it in the card as "
            f"code: {{sha256: {found['file_sha256']}}} (or pin an installed package: "
            "code: {package, version})"
        )


def _tracked(path: Path, root: Path) -> bool:
    """Whether git tracks ``path`` in the checkout at ``root`` (a file only on one disk is not
    re-runnable)."""
    import subprocess

    result = subprocess.run(
        ["git", "-C", str(root), "ls-files", "--error-unmatch", str(path.resolve())],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def _taken_by_another(name: str, card_data: dict, target: Path, root: Path) -> bool:
    """Whether ``name`` is already taken by something else: a different card, or records with no card."""
    if target.exists():
        return config.read_yaml(target) != card_data
    return any((root / RUNS_DIR).glob(f"*/{name}/*.json"))


# --- boards and evaluation ---------------------------------------------------------------------------------


def select_boards(card: ModelCard, names: list[str] | None) -> list[Board]:
    """The boards a submission goes to: ``names``, else every board of the dataset the card is judged on
    (:func:`~robench.datasets.default_eval_dataset`: ``mnist`` for an ``mnist5k`` card).

    One record per (dataset, model, threat) is kept, so boards evaluated together must agree on the
    examples (split, count, seed); otherwise the user picks one.
    """
    if names:
        boards = [load_board(n) for n in names]
    else:
        dataset = default_eval_dataset(card.dataset)
        boards = [b for b in map(load_board, board_names()) if b.dataset == dataset]
        if not boards:
            raise UsageError(
                f"no board in configs/boards evaluates {dataset!r} "
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
    by threat: the board's own test (:func:`robench.boards.selection.collect`) plus the same card, so a
    rerun continues where the last one stopped and never reuses a record of other weights or another
    protocol. A damaged staged record is removed, with one line saying so, and its threat evaluated again."""
    for path in sorted((stage / RUNS_DIR).glob("*/*/*.json")):
        try:
            record.load_checked(path)
        except RobenchError as e:  # staged by this submission's earlier run: recomputable
            print(f"robench: {e}; evaluating that threat again", file=sys.stderr)
            path.unlink()
    frame, _, _ = collect(board, stage)
    mine = frame[(frame["model"] == card.name) & frame["meta"].map(lambda meta: meta == card.meta())]
    return {
        t: record.load(record.path_for(stage / RUNS_DIR, board.dataset, card.name, t)) for t in mine["threat"]
    }


def _evaluate(
    card: ModelCard, board: Board, threats: list[str], stage: Path, request: SubmitRequest
) -> list[record.RunRecord]:
    """Run every threat not yet staged into ``stage``, with the board's examples and seed (the weights
    load sha256-checked, safe formats only; everything is checked before they do); returns the records of
    all ``threats``, in order."""
    from robench.engine.request import run_threats
    from robench.engine.spec import RunOptions

    options = RunOptions(
        dataset=board.dataset,
        split=board.split,
        n_examples=board.n_examples,
        seed=board.seed,
        model_name=card.name,
        device=request.device,
        data_dir=request.data_dir,
        allow_pickle=request.allow_pickle,
        out_dir=stage / RUNS_DIR,
    )
    done = _staged(board, card, stage) if stage.exists() else {}
    if done:
        print(f"robench: resuming {card.name}: {', '.join(done)} already evaluated", file=sys.stderr)
    todo = [name for name in threats if name not in done]
    done |= dict(zip(todo, run_threats(card, todo, options), strict=True))
    return [done[name] for name in threats]


# --- the command -------------------------------------------------------------------------------------------


def _card(request: SubmitRequest, root: Path, models_dir: Path) -> tuple[str, dict, Path | None]:
    """(name, card mapping as it will be registered, the user's card file or None)."""
    spec = request.checkpoint
    if request.card and spec.path:
        raise UsageError("give either a card file or --checkpoint, not both")
    if request.card:
        fields = [f.name for f in dataclasses.fields(spec) if f.name != "path"]
        given = [f"--{k.replace('_', '-')}" for k in fields if getattr(spec, k)]
        if given:
            raise UsageError(f"{', '.join(given)} only go with --checkpoint; with a card file, edit the card")
        source = Path(request.card)
        name = check_name("model", source.stem)
        data = config.read_yaml(source)
        data = _pin_code_path(data, source.resolve().parent, models_dir, root)
        return name, _pin_weights_path(data, source.resolve().parent, models_dir, root), source
    if not spec.path:
        raise UsageError(
            "give a card file (robench submit CARD.yaml) or --checkpoint FILE --arch A --dataset D --name N"
        )
    if spec.name is not None:
        check_name("model", spec.name)  # before the checkpoint is hashed
    data = card_for_checkpoint(spec)
    return spec.name, _pin_weights_path(data, Path.cwd(), models_dir, root), None


def submit(request: SubmitRequest) -> None:
    """Validate, evaluate, commit, and print where the model stands on each board."""
    root = Path(request.root).resolve() if request.root is not None else default_root().resolve()
    config.checkout_configs(root)  # a root whose configs are not in use fails before anything is written
    with files.checkout_lock(root):  # one submission per checkout; boards are not regenerated meanwhile
        recover(root)  # a commit a kill left half-done is completed or rolled back first
        _submit(request, root)


def _submit(request: SubmitRequest, root: Path) -> None:
    models_dir = config.checkout_configs(root) / "models"
    name, data, source = _card(request, root, models_dir)
    target = models_dir / f"{name}.yaml"
    in_place = source is not None and source.resolve() == target.resolve()
    card = card_from_dict(name, config.read_yaml(target) if in_place else data, source=target)
    check_rerunnable(card, root)
    replace = not in_place and _taken_by_another(name, data, target, root)
    if replace and not request.force:
        what = (
            f"a different card {target.relative_to(root)}" if target.exists() else "run records with no card"
        )
        raise UsageError(
            f"model name {name!r} is taken by {what}; rename the submission, or pass --force to "
            "replace it (its records are removed and the board's threats re-run)"
        )
    boards = select_boards(card, request.boards)
    for b in boards:  # an unreadable record elsewhere on the board fails now, not after the evaluation
        build(b.name, root)
    protocol = boards[0]

    stage = root / STAGING_DIR / name
    new_card = not in_place and (replace or not target.exists())
    card_bytes = (
        yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000).encode() if new_card else None
    )
    try:
        records = _evaluate(card, protocol, threats_for(boards), stage, request)
        commit(name, records, stage, (target, card_bytes), replace, boards, root)
    except RobenchError:  # the user must change something first: nothing here is worth resuming
        discard(stage)
        raise
    discard(stage)
    # every record has the same clean accuracy
    _report(name, records[0].clean_acc, boards, root, target, request.as_json)


def _report(name: str, clean: float, boards: list[Board], root: Path, card_path: Path, as_json: bool) -> None:
    """The model's row as each regenerated page shows it, and what to commit to publish it: text, or one
    JSON object (:func:`standing`)."""
    report = standing(name, clean, boards, root, card_path)
    if as_json:
        print(json.dumps(report, sort_keys=True))
        return
    for b, row in zip(boards, report["boards"], strict=True):
        print(f"board {b.name}: {name} on {b.n_examples:,} {b.dataset} {b.split} examples, seed {b.seed}")
        if row["rank"] is None:
            print(f"  not ranked: see leaderboards/{b.name}.md for why (stale or incomplete records)")
            continue
        print(
            f"  clean {100 * clean:.1f}%  |  x {b.x.label}: {100 * row['x']:.1f}%  |  "
            f"y {b.y_label} ({row['y_label']}): {100 * row['y']:.1f}%"
        )
        front = "on the Pareto front" if row["front"] else "not on the Pareto front (dominated)"
        print(f"  rank {row['rank']} of {row['of']} by y; {front}")
    print(f"to publish: git add {' '.join(report['publish'])}")


def standing(name: str, clean: float, boards: list[Board], root: Path, card_path: Path) -> dict:
    """Where the model stands on each board (rank None: not ranked, its page says why) and the files to
    commit to publish it."""
    rows = []
    for b in boards:
        table = standings(b.name, root)
        mine = table[table["model"] == name]
        row = {"board": b.name, "rank": None}
        if not mine.empty:
            found = mine.iloc[0]
            row.update(
                rank=int(mine.index[0]) + 1,
                of=len(table),
                x=float(found["x"]),
                y=float(found["y"]),
                y_threat=str(found["y_threat"]),
                y_label=next(c.label for c in b.y_prefer if c.threat == found["y_threat"]),
                front=bool(found["front"]),
            )
        rows.append(row)
    runs = RUNS_DIR / boards[0].dataset / name
    pages = [f"{files.BOARDS_DIR / b.name}.{ext}" for b in boards for ext in ("md", "svg")]
    publish = [card_path.relative_to(root).as_posix(), runs.as_posix(), *pages]
    return {"model": name, "clean_acc": clean, "boards": rows, "publish": publish}
