"""``robench.submit(card, board=...)``: what ``robench submit CARD`` does, from Python."""

from __future__ import annotations

import os
from pathlib import Path

from robench.submission.submit import SubmitRequest
from robench.submission.submit import submit as _run


def submit(
    card: str | os.PathLike,
    board: str | None = None,
    *,
    root: str | os.PathLike | None = None,
    force: bool = False,
    device: str = "auto",
    data_dir: str | None = None,
    allow_pickle: bool = False,
) -> None:
    """Re-evaluate the model of ``card`` (a card file, e.g. from :func:`robench.write_card`) under every
    threat of ``board`` (default: every board of the card's dataset) and put it on the board in the
    checkout at ``root`` (default: the one around the working directory), all or nothing."""
    _run(
        SubmitRequest(
            card=str(card),
            boards=(board,) if board else None,
            force=force,
            allow_pickle=allow_pickle,
            device=device,
            data_dir=data_dir,
            root=Path(root) if root is not None else None,
        )
    )
