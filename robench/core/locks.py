"""Lock files: one writer per record and per checkout, so concurrent commands end in a complete outcome.

Two ``robench eval`` writing the same record, two ``robench submit`` in one checkout, or a ``robench
leaderboard`` regeneration during a submit would otherwise interleave their writes (docs/reliability.md,
"Concurrency"). Whoever comes second is refused at once, in one line naming the holder (pid, host, start
time) and the lock file; nothing it would have written is touched.

The lock is ``fcntl.flock`` on a small file holding the holder's pid, host and start time. The kernel
releases a flock when its process dies, however it dies, so a crashed run never leaves a lock that blocks
the next one; the file it leaves behind is recognised as stale (its pid is gone) and reused, with one line
on stderr. The holder removes the file when it is done. Because a lock file can be removed while another
process waits to open it, a lock counts only if the path still names the locked file afterwards.

Locks are re-entrant within a process (``robench submit`` regenerates the boards under the checkout lock
it already holds). flock is local to a machine on some network file systems: runs of one record on two
machines must still be kept apart by the scheduler.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from robench.core.errors import RobenchError, WriteError

_held: dict[Path, int] = {}  # lock files this process holds -> nesting depth


class LockedError(RobenchError):
    """Another process holds the lock (exit status 1: wait for it, or run something else)."""


def _holder(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def alive(pid) -> bool:
    """Whether process ``pid`` exists on this host (someone else's counts)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process, alive
        return True
    return True


def _describe(holder: dict) -> str:
    if not holder:
        return "another process"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"


def _acquire(path: Path, what: str) -> int:
    """An open descriptor of ``path`` holding its flock, with this process's details written in.

    A lock that cannot be made (a full disk, a read-only place, a folder where the file goes) is a
    :class:`WriteError` naming the lock file, and leaves no lock file of ours behind.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _locked(path, what)
    except OSError as e:
        if isinstance(e, WriteError):
            raise
        reason = "a folder is in the way: remove it" if path.is_dir() else e.strerror or str(e)
        raise WriteError(path, reason, e.errno) from None
    previous = _holder(path)
    if previous.get("host") == socket.gethostname() and not alive(previous.get("pid")):
        print(
            f"robench: {what}: stale lock of {_describe(previous)} (no such process) taken over",
            file=sys.stderr,
        )
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "what": what,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
    except OSError as e:  # a full disk: the lock is ours, so the file is ours to remove
        _release(path, fd)
        raise WriteError(path, e.strerror or str(e), e.errno) from None
    return fd


def _locked(path: Path, what: str) -> int:
    """Open ``path`` and take its flock; :class:`LockedError` if another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise LockedError(
                f"{what} is in use by {_describe(_holder(path))} (lock file {path}); wait for it to finish"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file between our open and our lock: start over


def _release(path: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        path.unlink()  # before the unlock: whoever opens the path next creates a fresh file
    os.close(fd)


@contextlib.contextmanager
def lock(path: Path, what: str) -> Iterator[None]:
    """Hold the lock file ``path`` for the block; ``what`` names the locked thing in the refusal
    ("record runs/mnist5k/m/pgd_linf.json"). Raises :class:`LockedError` if another process holds it."""
    path = Path(path).absolute()
    if path in _held:
        _held[path] += 1
        try:
            yield
        finally:
            _held[path] -= 1
        return
    fd = _acquire(path, what)
    _held[path] = 1
    try:
        yield
    finally:
        del _held[path]
        _release(path, fd)
