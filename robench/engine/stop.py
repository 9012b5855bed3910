"""Stopping on a signal: SIGINT or SIGTERM ends a run after the current batch, with every finished chunk kept.

Schedulers send SIGTERM (and people press Ctrl-C) some time before they kill a job. Inside
:func:`graceful` (the CLI enters it for ``eval`` and ``submit``) the first of these signals only sets a
flag; the chunk loop calls :func:`check` after every batch, which raises :class:`Interrupted` once the
flag is set, so the run stops at a batch boundary, every finished chunk is on disk (chunk files are
written atomically) and the rerun resumes from them. A second signal means "now": the handler restores
the default action and re-sends the signal, so the process ends at once; what is on disk is still only
whole files. Outside :func:`graceful` (robench used as a library) no handler is installed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_requested: int | None = None


class Interrupted(KeyboardInterrupt):
    """A run stopped at a batch boundary by ``signum``; the CLI exits with 128 + signum."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _handler(signum, frame) -> None:
    global _requested
    if _requested is not None:  # the second signal: end now, the way the signal ends a process
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _requested = signum


@contextlib.contextmanager
def graceful() -> Iterator[None]:
    """Within the block, a first SIGINT/SIGTERM stops the run at the next :func:`check` (module doc)."""
    global _requested
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _requested = None


def check() -> None:
    """Raise :class:`Interrupted` if a signal asked the run to stop (called after every batch)."""
    if _requested is not None:
        raise Interrupted(_requested)
