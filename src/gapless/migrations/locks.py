"""Run a statement under ``lock_timeout`` and retry it with backoff: never queue behind a long transaction.

A DDL statement that waits for its lock blocks every query that arrives after it, because PostgreSQL
grants locks in order. With ``lock_timeout`` the wait is bounded (50 ms by default); on timeout the
transaction is rolled back, the application's queued queries run, and the statement is tried again
after an exponentially growing, jittered pause. When every attempt failed, ``LockNotAcquiredError`` names
the sessions that held conflicting locks (pid, state, how long their transaction has been open, query).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg import errors
from psycopg.rows import TupleRow

from gapless.core.errors import GaplessError
from gapless.migrations.policy import LockPolicy, backoff_delay

__all__ = ["Blocker", "LockNotAcquiredError", "LockRetry", "find_blockers", "run_with_lock_timeout"]

Conn = psycopg.Connection[TupleRow]

_RETRYABLE = (errors.LockNotAvailable, errors.DeadlockDetected)
_jitter = random.SystemRandom()
T = TypeVar("T")


@dataclass(frozen=True)
class Blocker:
    """A session that held a lock the migration needed."""

    pid: int
    state: str
    application_name: str
    transaction_seconds: float | None
    query: str
    mode: str

    def describe(self) -> str:
        age = f" for {self.transaction_seconds:.0f}s" if self.transaction_seconds is not None else ""
        app = f" [{self.application_name}]" if self.application_name else ""
        query = " ".join(self.query.split())[:120]
        return f"pid {self.pid}{app} ({self.state}{age}, holds {self.mode}): {query}"


@dataclass(frozen=True)
class LockRetry:
    """One failed attempt: reported so a face can show that the migration is yielding."""

    what: str
    attempt: int
    attempts: int
    delay: float
    blockers: tuple[Blocker, ...]


class LockNotAcquiredError(GaplessError):
    """A lock could not be taken within lock_timeout in any attempt; nothing of the step was applied."""

    def __init__(self, what: str, attempts: int, timeout: float, blockers: Sequence[Blocker]) -> None:
        self.what = what
        self.attempts = attempts
        self.timeout = timeout
        self.blockers = tuple(blockers)
        lines = "\n".join(f"  blocked by {b.describe()}" for b in self.blockers) or (
            "  (the blocking session had finished by the time gapless looked)"
        )
        super().__init__(
            f"could not take the lock for '{what}' in {attempts} attempt(s) of {timeout:g}s lock_timeout; "
            f"nothing was changed by this step\n{lines}\n"
            "end or wait for the blocking transaction, then run the same command again (it resumes)"
        )


def find_blockers(conn: Conn, schema: str, tables: Sequence[str], timeout: float) -> list[Blocker]:
    """Sessions holding locks on ``tables``; without tables, sessions whose transaction is older than ``timeout``."""
    base = (
        "SELECT a.pid, coalesce(a.state, ''), coalesce(a.application_name, ''), "
        "extract(epoch FROM now() - a.xact_start)::float8, coalesce(a.query, ''), {mode} "
        "FROM pg_stat_activity a {join} WHERE a.pid <> pg_backend_pid() AND a.datname = current_database() "
    )
    if tables:
        query = (
            base.format(mode="string_agg(DISTINCT l.mode, ', ')", join="JOIN pg_locks l ON l.pid = a.pid")
            + "AND l.granted AND l.relation IN (SELECT to_regclass(format('%%I.%%I', %s::text, t)) "
            "FROM unnest(%s::text[]) AS t) GROUP BY 1, 2, 3, 4, 5 ORDER BY 4 DESC NULLS LAST"
        )
        rows = conn.execute(query, (schema, list(tables))).fetchall()
    else:
        query = base.format(mode="'(unknown)'", join="") + (
            "AND a.xact_start < now() - make_interval(secs => %s) ORDER BY 4 DESC NULLS LAST"
        )
        rows = conn.execute(query, (timeout,)).fetchall()
    return [
        Blocker(int(pid), str(state), str(app), None if age is None else float(age), str(q), str(mode))
        for pid, state, app, age, q, mode in rows
    ]


def _set_lock_timeout(conn: Conn, seconds: float, *, local: bool) -> None:
    conn.execute("SELECT set_config('lock_timeout', %s, %s)", (f"{max(1, round(seconds * 1000))}ms", local))


def run_with_lock_timeout(
    conn: Conn,
    work: Callable[[Conn], T],
    *,
    policy: LockPolicy,
    what: str,
    schema: str,
    tables: Sequence[str] = (),
    transactional: bool = True,
    on_retry: Callable[[LockRetry], None] | None = None,
) -> T:
    """Run ``work`` with lock_timeout, in a transaction unless it must not be (CONCURRENTLY).

    ``conn`` is in autocommit mode. A lock timeout or a deadlock rolls the attempt back and retries it;
    any other error propagates at once (it is not going to go away by waiting).
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            if transactional:
                with conn.transaction():
                    _set_lock_timeout(conn, policy.timeout, local=True)
                    return work(conn)
            _set_lock_timeout(conn, policy.timeout, local=False)
            try:
                return work(conn)
            finally:
                conn.execute("RESET lock_timeout")
        except _RETRYABLE:
            blockers = find_blockers(conn, schema, tables, policy.timeout)
            if attempt == policy.attempts:
                raise LockNotAcquiredError(what, policy.attempts, policy.timeout, blockers) from None
            delay = backoff_delay(policy, attempt, _jitter.random())
            if on_retry is not None:
                on_retry(LockRetry(what, attempt, policy.attempts, delay, tuple(blockers)))
            time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover
