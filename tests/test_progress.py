"""Live progress (issue #25): per batch, a log line at least every 30 s when stderr is not a terminal, the
mode from ``RunOptions.progress``. The clock is injected: nothing here waits or times anything."""

from __future__ import annotations

import functools
import io

import pytest

from robench.core.errors import UsageError
from robench.engine import evaluate, loop
from robench.engine.progress import Progress, progress_mode
from robench.engine.spec import RunOptions


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _log(total=1000, **kwargs):
    clock, stream = Clock(), io.StringIO()
    return Progress(total, "m | t", "log", stream, clock, poll=None, **kwargs), clock, stream


def test_a_log_line_once_30_seconds_have_passed_with_rate_and_eta():
    progress, clock, stream = _log()
    clock.now = 10.0
    progress.advance(100)
    assert stream.getvalue() == ""
    clock.now = 30.0
    progress.advance(200)  # 300 done in 30 s: 10 ex/s, 700 left: 70 s
    assert stream.getvalue() == "robench: m | t: 300/1000 examples, 10 ex/s, ETA 1:10\n"
    clock.now = 59.0
    progress.tick()
    assert stream.getvalue().count("\n") == 1
    clock.now = 60.0
    progress.tick()  # no batch finished: the heartbeat's line still comes
    assert stream.getvalue().splitlines()[-1] == "robench: m | t: 300/1000 examples, 5 ex/s, ETA 2:20"


def test_resumed_examples_are_done_but_not_in_the_rate():
    progress, clock, stream = _log(total=100)
    progress.advance(60, computed=False)
    clock.now = 40.0
    progress.advance(8)  # 0.2 ex/s on the 8 computed; 32 left
    assert stream.getvalue() == "robench: m | t: 68/100 examples, 0.2 ex/s, ETA 2:40\n"


def test_auto_is_a_bar_on_a_terminal_and_log_lines_otherwise():
    assert Progress(10, "d", "auto", Terminal(), poll=None).mode == "bar"
    assert Progress(10, "d", "auto", io.StringIO(), poll=None).mode == "log"
    terminal = Terminal()
    with Progress(10, "m | t", "bar", terminal, poll=None) as bar:
        bar.advance(4)
        assert bar.bar.n == 4  # tqdm redraws at most every 0.1 s: its count, not its drawing
    assert "m | t" in terminal.getvalue()
    quiet = io.StringIO()
    with Progress(10, "m | t", "none", quiet, Clock(), interval=0.0, poll=None) as none:
        none.advance(4)
    assert quiet.getvalue() == ""


def test_progress_option_is_the_mode():
    assert [progress_mode(v) for v in (None, True, False, "auto", "bar", "log", "none")] == [
        "auto",
        "auto",
        "none",
        "auto",
        "bar",
        "log",
        "none",
    ]
    assert RunOptions(progress=False).progress == "none"
    assert RunOptions().progress == "auto"
    with pytest.raises(UsageError, match="progress must be one of"):
        RunOptions(progress="loud")


def test_the_loop_reports_every_batch_inside_a_chunk(monkeypatch, capsys):
    """One 500-example chunk, batches of 7: a line after each batch, not one at the chunk's end."""
    monkeypatch.setattr(loop, "Progress", functools.partial(Progress, interval=0.0, poll=None))
    evaluate("mnist_cnn_standard", "clean", n_examples=20, batch_size=7, progress="log")
    lines = capsys.readouterr().err.splitlines()
    done = [line.split(": ")[2].split(" ")[0] for line in lines if "examples," in line]
    assert done == ["7/20", "14/20", "20/20"], lines
    assert all(line.startswith("robench: mnist_cnn_standard | clean: ") for line in lines)
