"""SQLite's write lock: take it with a bounded wait, hold it for one short transaction, retry with backoff.

Every change runs as ``BEGIN IMMEDIATE`` ... ``COMMIT``: the write lock is taken at the start (waiting
at most ``busy_timeout``, the ``--lock-timeout``), so a step never holds a read snapshot that a
concurrent commit invalidates half-way. When the lock stays busy, the attempt is abandoned (nothing
changed), and retried after an exponentially growing, jittered pause, like PostgreSQL's lock_timeout
retries. SQLite cannot say which connection holds the lock, so the final error cannot name it.

One ``gapless migrate`` per database at a time: an exclusive ``flock`` on ``<database>-gapless.lock``,
released by the kernel when the process ends, even by SIGKILL. The database file itself is never
locked this way: SQLite's own POSIX locks on it would be dropped when another descriptor closes.
"""

from __future__ import annotations

import fcntl
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Generic, TypeVar

from gapless.core.errors import GaplessError
from gapless.migrations.policy import LockPolicy, backoff_delay

__all__ = ["Held", "WriteLockError", "is_busy", "migration_lock", "write_transaction"]

T = TypeVar("T")
_jitter = random.SystemRandom()
_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED


def is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _BUSY_CODES
    return "locked" in str(error) or "busy" in str(error)


class WriteLockError(GaplessError):
    """The write lock stayed busy in every attempt; nothing of the step was applied."""

    def __init__(self, what: str, attempts: int, timeout: float) -> None:
        super().__init__(
            f"could not take the database write lock for '{what}' in {attempts} attempt(s) of {timeout:g}s "
            "busy_timeout; nothing was changed by this step\n"
            "  another connection keeps a write transaction open (SQLite cannot say which one)\n"
            "end or wait for it, then run the same command again (it resumes)"
        )


@dataclass(frozen=True)
class Held(Generic[T]):
    """What a write transaction returned, how long it waited for the lock, and how long it held it."""

    result: T
    waited: float
    held: float


def write_transaction(
    conn: sqlite3.Connection,
    work: Callable[[sqlite3.Connection], T],
    *,
    policy: LockPolicy,
    what: str,
    on_retry: Callable[[str], None] | None = None,
) -> Held[T]:
    """Run ``work`` in ``BEGIN IMMEDIATE`` ... ``COMMIT``; retry the whole transaction while the lock is busy.

    ``conn`` is in autocommit mode (``isolation_level=None``) with ``busy_timeout`` set. Any error other
    than a busy lock rolls back and propagates at once.
    """
    for attempt in range(1, policy.attempts + 1):
        t0 = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if not is_busy(e):
                raise
        else:
            t1 = time.perf_counter()
            try:
                result = work(conn)
                conn.execute("COMMIT")
                return Held(result, t1 - t0, time.perf_counter() - t1)
            except sqlite3.OperationalError as e:
                conn.rollback()
                if not is_busy(e):
                    raise
            except BaseException:
                conn.rollback()
                raise
        if attempt == policy.attempts:
            raise WriteLockError(what, policy.attempts, policy.timeout)
        delay = backoff_delay(policy, attempt, _jitter.random())
        if on_retry is not None:
            on_retry(
                f"database write lock busy for {what} (attempt {attempt}/{policy.attempts}); "
                f"retrying in {delay:.1f}s"
            )
        time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


@contextmanager
def migration_lock(database: Path, *, wait: float) -> Iterator[None]:
    """Hold the one-migrate-per-database lock; wait up to ``wait`` seconds for a run that is ending."""
    path = database.with_name(database.name + "-gapless.lock")
    handle: IO[str] = path.open("a+")
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise GaplessError(
                        f"another gapless migrate is working on {database}; try again when it is done"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        handle.close()
