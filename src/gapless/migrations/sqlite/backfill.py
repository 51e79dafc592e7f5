"""The SQLite backfill: fill the new columns of existing rows in short write transactions, resumably.

Rows are walked in rowid order, ``size`` at a time, up to the largest rowid that existed when the
backfill began (recorded with the checkpoint): the triggers exist by then, so later rows are filled by
them and the backfill never chases an application that keeps inserting. Each batch is one
``BEGIN IMMEDIATE`` transaction that fills the batch's rows and moves the checkpoint to its last rowid,
so a batch and its checkpoint commit together: after a crash (even SIGKILL) the batch in flight is
rolled back with its checkpoint, and the next run resumes after the last committed batch. Every
statement fills only NULL targets, so a row is never converted twice.

**Yielding to the application.** SQLite has one write lock and no queue: a writer that finds it busy
sleeps in its busy handler and polls. So after every batch the backfill sleeps at least as long as the
batch held the lock (the application gets at least half of the time), plus ``--batch-delay``. When
taking the lock made the backfill wait long (``CONTENDED_WAIT``: writers are queueing), the extra
pause doubles, up to ``max_delay``, and relaxes when the waits stop.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence

from gapless.migrations.backfill import BackfillProgress
from gapless.migrations.policy import BatchPolicy, LockPolicy, next_batch_delay
from gapless.migrations.sqlite.actions import SyncRule
from gapless.migrations.sqlite.catalog import live_columns
from gapless.migrations.sqlite.locks import write_transaction
from gapless.migrations.sqlite.render import backfill_updates, rowid_name
from gapless.migrations.sqlite.state import SqliteStateStore
from gapless.migrations.sqlite.text import quote

__all__ = ["CONTENDED_WAIT", "run_backfill"]

CONTENDED_WAIT = 0.05
"""Waiting longer than this for the write lock means writers are queueing, not just writing (a writer's
transaction takes well under a millisecond and the busy handler polls every few): throttle."""


def run_backfill(
    conn: sqlite3.Connection,
    store: SqliteStateStore,
    *,
    migration: str,
    table: str,
    rules: Sequence[SyncRule],
    batch: BatchPolicy,
    lock: LockPolicy,
    on_progress: Callable[[BackfillProgress], None] | None = None,
    on_retry: Callable[[str], None] | None = None,
) -> int:
    """Fill every row of ``table`` not filled yet; return the rows handled in this run."""
    rowid = rowid_name([c for c, _ in live_columns(conn, table)])
    t = quote(table)

    counted = conn.execute(f"SELECT count(*) FROM {t}").fetchone()  # a read: outside the write lock  # noqa: S608 -- identifiers quoted by quote()
    rows = int(counted[0]) if counted else 0

    def begin(c: sqlite3.Connection) -> None:
        row = c.execute(f"SELECT max({rowid}) FROM {t}").fetchone()  # noqa: S608 -- identifiers quoted by quote()
        upper = None if row is None or row[0] is None else int(row[0])
        store.begin_backfill(migration, table, rows, upper)

    write_transaction(conn, begin, policy=lock, what=f"begin backfill of {table}", on_retry=on_retry)
    record = store.backfill(migration, table)
    if record is None:  # pragma: no cover - inserted just above
        raise RuntimeError(f"backfill record of {table} is missing")
    checkpoint = record.checkpoint
    upper = record.upper_bound
    done_total = record.rows_done
    estimate = record.rows_estimate or 0
    finished = record.done
    handled = 0
    delay = batch.delay
    while not finished:
        after = checkpoint

        def one_batch(c: sqlite3.Connection, after: int | None = after) -> tuple[int, int | None]:
            bounds = f"{rowid} <= :upper" if after is None else f"{rowid} > :after AND {rowid} <= :upper"
            ids = c.execute(
                f"SELECT {rowid} FROM {t} WHERE {bounds} ORDER BY {rowid} LIMIT :size",  # noqa: S608 -- identifiers quoted by quote()
                {"after": after, "upper": upper, "size": batch.size},
            ).fetchall()
            if not ids:
                store.checkpoint(migration, table, None, 0, done=True)
                return 0, None
            last = int(ids[-1][0])
            for statement in backfill_updates(table, rules, rowid, first=after is None):
                c.execute(statement, {"after": after, "last": last})
            store.checkpoint(migration, table, last, len(ids), done=len(ids) < batch.size)
            return len(ids), last

        held = write_transaction(
            conn, one_batch, policy=lock, what=f"backfill batch of {table}", on_retry=on_retry
        )
        count, last = held.result
        finished = count < batch.size  # a short batch reached the bound; its checkpoint says done
        if count:
            checkpoint = last
            handled += count
            done_total += count
        contended = held.waited > CONTENDED_WAIT
        delay = next_batch_delay(batch, delay, 1 if contended else 0)
        pause = 0.0 if finished else held.held + delay
        if on_progress is not None:
            on_progress(
                BackfillProgress(table, done_total, max(estimate, done_total), pause, contended, finished)
            )
        if pause > 0:
            time.sleep(pause)
    return handled
