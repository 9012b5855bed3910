"""``robench submit --list FILE``: a whole board of published models in one resumable command.

Each line of FILE is a model spec (:data:`robench.models.specs.SPEC_FORMS`: a card file, ``timm:``,
``torchvision:``, ``robustbench:``); blank lines and ``#`` comments are skipped. Every model goes through
:func:`robench.submission.submit.submit` exactly as a single submission does (re-evaluated, put in place
atomically), so the list resumes at two levels: a model already ranked on every board it goes to is
skipped, and an interrupted model resumes from its staged threats and finished chunks. A model that
fails (weights not downloadable offline, an unknown name) is reported in one line and the next one runs;
the command exits 1 when any failed, so rerunning it after a fix finishes the board.

A library spec has no card file, so one is written first: the mapping
:func:`robench.models.specs.library_card_data`
derives from the library's config, with the sha256 of the weights file that was read pinned, so the
registered card names exactly the weights its records measured. It waits in ``leaderboards/.submit/.cards/``
(a model name never starts with '.') until its submission has registered it.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import yaml

from robench.boards.render import standings
from robench.boards.selection import default_root
from robench.core.errors import RobenchError, UsageError
from robench.models import create_model, load_card, specs
from robench.submission.submit import STAGING_DIR, SubmitRequest, select_boards, submit
from robench.submission.undo import rmdir_if_empty


def read_list(path: str | Path) -> list[str]:
    """The specs of a list file, in order; a spec listed twice is a usage error (one record per model)."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read model list {path} ({type(e).__name__})") from None
    found = [line.split("#", 1)[0].strip() for line in lines]
    found = [spec for spec in found if spec]
    twice = sorted({spec for spec in found if found.count(spec) > 1})
    if twice:
        raise UsageError(f"model list {path} names {twice[0]!r} twice")
    if not found:
        raise UsageError(f"model list {path} names no model")
    return found


def _card_file(spec: str, folder: Path, allow_pickle: bool) -> Path:
    """A card file for ``spec``: the file a card spec names, a registered card's own file, or a card written
    for a library spec."""
    if specs.is_card_path(spec) or not specs.is_spec(spec):
        return load_card(spec).source  # a missing file, an unknown name: one line (with a suggestion)
    name, data = specs.library_card_data(spec)
    pinned = create_model(spec, allow_pickle=allow_pickle).card.weights.sha256  # downloads, loads, hashes
    data = {**data, "weights": {**data["weights"], "sha256": pinned}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000))
    return path


def _ranked_everywhere(spec: str, request: SubmitRequest, root: Path) -> bool:
    """Whether the model is ranked (current, complete records) on every board it would go to."""
    card = load_card(spec)
    return all(
        card.name in set(standings(b.name, root)["model"]) for b in select_boards(card, request.boards)
    )


def submit_list(path: str | Path, request: SubmitRequest) -> int:
    """Submit every model of the list at ``path`` with ``request``'s boards and options; 0 if all are on
    their boards, else 1 (the failures were reported, one line each)."""
    if request.card or request.checkpoint.path:
        raise UsageError("--list goes without a card file or --checkpoint: the list names the models")
    root = Path(request.root).resolve() if request.root is not None else default_root().resolve()
    request = dataclasses.replace(request, root=root)
    entries = read_list(path)
    cards = root / STAGING_DIR / ".cards"
    failed = []
    for i, spec in enumerate(entries, 1):
        where = f"robench: [{i}/{len(entries)}] {spec}"
        try:
            if _ranked_everywhere(spec, request, root):
                print(f"{where}: already ranked, skipped", file=sys.stderr)
                continue
            print(f"{where}: submitting", file=sys.stderr)
            card = _card_file(spec, cards, request.allow_pickle)
            submit(dataclasses.replace(request, card=str(card)))
            if card.parent == cards:  # registered now: the written card has done its job
                card.unlink()
                rmdir_if_empty(cards)
                rmdir_if_empty(cards.parent)
        except RobenchError as e:
            print(f"{where}: error: {e}", file=sys.stderr)
            failed.append(spec)
    if failed:
        print(
            f"robench: {len(failed)} of {len(entries)} models not submitted ({', '.join(failed)}); fix them "
            "and rerun the same command: models already ranked are skipped",
            file=sys.stderr,
        )
    return 1 if failed else 0
