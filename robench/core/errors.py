"""Errors a user can act on.

Every failure a user can cause (a typo in a name, a bad ``--set``, a missing data directory, a tampered
checkpoint) is raised as a :class:`RobenchError` whose message is one line saying what is wrong and how
to fix it. The CLI prints that line and exits with ``exit_code``; it never shows a traceback for them.
"""

from __future__ import annotations


class RobenchError(Exception):
    """Base class: a one-line, user-facing message and the CLI exit status to use."""

    exit_code = 1


class UsageError(RobenchError, ValueError):
    """Bad usage: unknown name, malformed option, value out of range (exit status 2)."""

    exit_code = 2


class DataError(RobenchError):
    """A dataset or data directory is missing or malformed (exit status 1)."""


class CheckpointError(RobenchError):
    """Weights missing, truncated, tampered with, or not matching the architecture (exit status 1)."""


class EvaluationError(RobenchError):
    """The model misbehaved during evaluation: wrong output shape, non-finite logits (exit status 1)."""


class RecordError(RobenchError):
    """A run record (or another file robench wrote) is unreadable or contradicts itself (exit status 1)."""


class WriteError(RobenchError, OSError):
    """A file could not be written (full disk, read-only place); the previous file is intact (exit status 1).

    Also an ``OSError`` (with the failed write's ``errno``), so code that can carry on without the file
    catches it as one.
    """

    def __init__(self, path, reason: str, errno: int | None):
        super().__init__(f"cannot write {path}: {reason} (the previous file, if any, is unchanged)")
        self.path, self.reason, self.errno = path, reason, errno

    def __str__(self) -> str:  # OSError's would print the errno instead of the message
        return self.args[0]
