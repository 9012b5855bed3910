"""Live progress of one run on stderr: a bar on a terminal, a log line at least every 30 s otherwise.

A chunk is 500 examples and can take minutes, so progress moves per batch (the loop calls
:meth:`Progress.advance` after each one), not per chunk. Piped to a log a carriage-return bar shows
nothing until it is flushed, so when stderr is not a terminal (``mode="auto"``) or when asked
(``mode="log"``) the same numbers come as plain lines, ``model | threat: done/total examples, ex/s, ETA``,
one as soon as ``interval`` seconds have passed since the last. One batch can outlast the interval
(AutoAttack on a robust model: minutes), so a daemon thread also asks for a line every ``poll`` seconds.
Examples read back from finished chunks count as done but not in the rate, so a resumed run's ETA is that
of the work left.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

from robench.core.errors import UsageError

MODES = ("auto", "bar", "log", "none")
LOG_INTERVAL_S = 30.0
_POLL_S = 1.0


def progress_mode(value: str | bool | None) -> str:
    """The mode of ``RunOptions.progress``: ``False`` is ``"none"``; ``None`` and ``True`` (the API's older
    spellings of "the default" and "show it") are ``"auto"``."""
    if value is None or value is True:
        return "auto"
    if value is False:
        return "none"
    if value not in MODES:
        raise UsageError(f"progress must be one of {', '.join(MODES)} (or True/False), got {value!r}")
    return value


def _duration(seconds: float) -> str:
    """``1:02:03`` or ``2:03``."""
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Examples done out of ``total`` for the run named ``desc``, shown per ``mode`` ("auto", "bar",
    "log", "none"; "auto" is a bar when ``stream`` is a terminal, log lines otherwise). ``clock`` is
    injectable so the log cadence is testable without waiting; ``poll`` None starts no thread (lines come
    only from :meth:`advance` and :meth:`tick`)."""

    def __init__(
        self,
        total: int,
        desc: str,
        mode: str = "auto",
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = LOG_INTERVAL_S,
        poll: float | None = _POLL_S,
    ):
        self.stream = sys.stderr if stream is None else stream
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "log"
        self.total, self.desc, self.mode, self.clock, self.interval = total, desc, mode, clock, interval
        self.done = self.computed = 0
        self.start = self.last_line = clock()
        self.bar = (
            tqdm(total=total, desc=desc, unit="ex", file=self.stream, leave=False) if mode == "bar" else None
        )
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = None
        if mode == "log" and poll is not None:
            self.thread = threading.Thread(target=self._heartbeat, args=(poll,), daemon=True)
            self.thread.start()

    def _heartbeat(self, poll: float) -> None:
        while not self.stopped.wait(poll):
            self.tick()

    def advance(self, n: int, computed: bool = True) -> None:
        """``n`` more examples done; ``computed`` False for examples read back from finished chunks."""
        with self.lock:
            self.done += n
            self.computed += n if computed else 0
        if self.bar is not None:
            self.bar.update(n)
        self.tick()

    def tick(self) -> None:
        """In log mode, one line if ``interval`` seconds have passed since the last."""
        with self.lock:
            if self.mode == "log" and self.clock() - self.last_line >= self.interval:
                self.line()

    def catch_up(self, done: int) -> None:
        """Under torchrun: every rank's examples done so far (this rank counted only its own)."""
        if done > self.done:
            self.advance(done - self.done, computed=False)

    def rate(self) -> float:
        elapsed = self.clock() - self.start
        return self.computed / elapsed if elapsed > 0 else 0.0

    def line(self) -> None:
        """One log line: ``model | threat: done/total examples, ex/s, ETA``."""
        self.last_line = self.clock()
        rate = self.rate()
        eta = _duration((self.total - self.done) / rate) if rate > 0 else "?"
        print(
            f"robench: {self.desc}: {self.done}/{self.total} examples, {rate_text(rate)} ex/s, ETA {eta}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def rate_text(value: float) -> str:
    """Examples per second with two significant digits below 10 (AutoAttack runs at 0.3 ex/s), whole above."""
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"
