"""Failures to write the state, told apart from other database errors and named for people.

A full disk, a read-only file system, an I/O error or a lock held too long make SQLite raise
``OperationalError`` (or the OS an ``OSError``) on a write. Those are temporary: the transaction is rolled
back, the old state stands, and the same write succeeds once the cause is gone. ``write_error`` turns
them into a ``StateWriteError`` with a short cause ("the disk is full") for status, events, logs and the
API's 503; anything else stays the error it was.
"""

from __future__ import annotations

import errno
import sqlite3
from dataclasses import dataclass

from gapless.core.errors import StateWriteError

__all__ = ["WriteFailure", "write_error"]


@dataclass(frozen=True)
class WriteFailure:
    """Writes to the state failing: since when (epoch seconds), why, how many attempts, until when."""

    since: float
    cause: str
    message: str
    attempts: int
    until: float | None


_WRITE_CAUSES = (
    ("disk is full", "the disk is full"),
    ("readonly", "the state directory is read-only"),
    ("read-only", "the state directory is read-only"),
    ("disk i/o error", "the disk reports an I/O error"),
    ("database is locked", "the database is locked by another process"),
    ("unable to open", "the database file cannot be opened"),
)
_ERRNO_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the state directory is read-only",
    errno.EACCES: "the state directory is not writable",
    errno.EIO: "the disk reports an I/O error",
}


def write_error(e: BaseException) -> StateWriteError | None:
    """A ``StateWriteError`` for errors of the disk under the database; None for anything else."""
    if isinstance(e, OSError) and e.errno in _ERRNO_CAUSES:
        return StateWriteError(_ERRNO_CAUSES[e.errno], e.strerror or str(e))
    if isinstance(e, sqlite3.OperationalError):
        text = str(e).lower()
        for needle, cause in _WRITE_CAUSES:
            if needle in text:
                return StateWriteError(cause, f"sqlite: {e}")
    return None
