"""The batched backfill: touch every existing row once so the sync trigger converts it.

Rows are walked in primary-key order up to the largest key that existed when the backfill began
(recorded with the checkpoint): the trigger exists by then, so rows inserted later are converted by it
and the backfill never chases an application that keeps inserting. Each batch is one short transaction:
it looks up the key of the batch's last row in the primary key's index, updates the key range after the
checkpoint up to it (a no-op ``SET col = col`` of a non-key column; the trigger does the work) and moves
the checkpoint to that key, so a batch and its checkpoint commit together: after a crash the backfill
resumes after the last committed batch and no row is converted twice. The transaction sets
``gapless.backfill``, which tells the trigger to fill only what is still NULL: rows the application
wrote since the trigger exists are already converted and are left alone.

A batch commits with ``synchronous_commit = off``. That is safe because the batch and its checkpoint
are one transaction: a server crash loses at most whole recent batches together with their
checkpoints, and the resumed backfill converts those rows again (from the old columns, which it never
changes). Anything durable that depends on a batch comes later in the WAL, so it is lost with it.

A batch holds its rows locked until it commits, and an application write to one of them waits that
long: batches have at most ``size`` rows and are sized to take about ``BATCH_SECONDS`` each at the pace
of the previous one. Between batches the backfill looks at ``pg_locks``: while application sessions wait
for locks on the table, the pause doubles (up to ``max_delay``); when the waits are gone, it relaxes
back. Row-lock waits of the batch itself are bounded by lock_timeout and retried like DDL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from gapless.core.errors import GaplessError
from gapless.migrations.catalog import primary_key
from gapless.migrations.locks import LockRetry, run_with_lock_timeout
from gapless.migrations.policy import BatchPolicy, LockPolicy, next_batch_delay
from gapless.migrations.state import StateStore
from gapless.migrations.triggers import BACKFILL_SETTING

__all__ = ["BATCH_SECONDS", "BackfillProgress", "count_lock_waiters", "next_batch_size", "run_backfill"]

Conn = psycopg.Connection[TupleRow]

BATCH_SECONDS = 0.05
"""How long one batch should hold its rows locked: an application write to one of them waits that long."""
FIRST_BATCH = 1000
"""Rows in the first batch when ``--batch-size`` allows more; later batches grow to fit BATCH_SECONDS."""


@dataclass(frozen=True)
class BackfillProgress:
    """Where a backfill is: rows converted so far, the estimate of the total, the current pause."""

    table: str
    rows_done: int
    rows_estimate: int
    delay: float
    throttled: bool
    done: bool


def count_lock_waiters(conn: Conn, schema: str, table: str) -> int:
    """Sessions waiting for a lock on the table, or waiting while they hold one (e.g. for a row lock)."""
    row = conn.execute(
        "WITH t AS (SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) AS oid) "
        "SELECT count(DISTINCT w.pid) FROM pg_locks w, t WHERE NOT w.granted AND w.pid <> pg_backend_pid() "
        "AND (w.relation = t.oid OR w.pid IN "
        "(SELECT h.pid FROM pg_locks h WHERE h.granted AND h.relation = t.oid))",
        (schema, table),
    ).fetchone()
    return int(row[0]) if row else 0


def next_batch_size(limit: int, size: int, rows: int, seconds: float) -> int:
    """Rows for the next batch: what fits in BATCH_SECONDS at the last batch's pace, at most twice the last
    size and at most ``limit`` (``--batch-size``). A short last batch (the end of the table) says nothing."""
    if rows < size or seconds <= 0:
        return size
    return max(1, min(limit, 2 * size, int(rows * BATCH_SECONDS / seconds)))


def _estimate(conn: Conn, schema: str, table: str) -> int:
    row = conn.execute(
        "SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, table),
    ).fetchone()
    if row is not None and int(row[0]) >= 0:
        return int(row[0])
    counted = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
    ).fetchone()
    return int(counted[0]) if counted else 0


def _touch_column(conn: Conn, schema: str, table: str, key: list[tuple[str, str]]) -> str:
    """The column a batch sets to itself: the first one that is in no unique index and may be written.

    Setting a key column (even to itself) makes the BEFORE trigger lock the row FOR UPDATE, which
    conflicts with the FOR KEY SHARE lock of a foreign-key check: an application inserting a child row
    would wait for the batch. A non-key column takes FOR NO KEY UPDATE, which does not conflict. A
    generated column or a GENERATED ALWAYS identity cannot be set at all. Falls back to the first key
    column when every column is a key.
    """
    row = conn.execute(
        "SELECT a.attname FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(format('%%I.%%I', %s::text, %s::text)) AND a.attnum > 0 "
        "AND NOT a.attisdropped AND a.attgenerated = '' AND a.attidentity <> 'a' "
        "AND NOT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisunique "
        "AND a.attnum = ANY (i.indkey::int2[])) ORDER BY a.attnum LIMIT 1",
        (schema, table),
    ).fetchone()
    return str(row[0]) if row is not None else key[0][0]


def _key_values(key: list[tuple[str, str]]) -> sql.Composed:
    # the types come from format_type() in the catalog
    return sql.SQL(", ").join(sql.SQL("CAST(%s AS {})").format(sql.SQL(typ)) for _, typ in key)


def _last_key_query(schema: str, table: str, key: list[tuple[str, str]]) -> sql.Composed:
    return sql.SQL("SELECT ARRAY[{}] FROM {} ORDER BY {} LIMIT 1").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k, _ in key),
        sql.Identifier(schema, table),
        sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(k)) for k, _ in key),
    )


def _range(key: list[tuple[str, str]], has_checkpoint: bool) -> sql.Composed:
    """``(key) > (checkpoint) AND (key) <= (bound)``: parameters are the checkpoint's values, then the bound's."""
    cols = sql.SQL(", ").join(sql.Identifier(k) for k, _ in key)
    upto = sql.SQL("({}) <= ({})").format(cols, _key_values(key))
    if not has_checkpoint:
        return upto
    return sql.SQL("({}) > ({}) AND {}").format(cols, _key_values(key), upto)


def _batch_end_query(
    schema: str, table: str, key: list[tuple[str, str]], has_checkpoint: bool
) -> sql.Composed:
    """The key of the ``size``-th row after the checkpoint (none when fewer are left).

    Parameters: the checkpoint's values (if any), the upper bound's values, ``size - 1``. An index scan
    of ``size`` entries of the primary key.
    """
    return sql.SQL("SELECT ARRAY[{}] FROM {} WHERE {} ORDER BY {} OFFSET %s LIMIT 1").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k, _ in key),
        sql.Identifier(schema, table),
        _range(key, has_checkpoint),
        sql.SQL(", ").join(sql.Identifier(k) for k, _ in key),
    )


def _batch_update(
    schema: str, table: str, key: list[tuple[str, str]], touch: str, has_checkpoint: bool
) -> sql.Composed:
    """Touch the rows after the checkpoint up to the batch's end (a key range: one index range scan).

    Parameters: the checkpoint's values (if any), the batch end's values.
    """
    column = sql.Identifier(touch)
    return sql.SQL("UPDATE {} SET {} = {} WHERE {}").format(
        sql.Identifier(schema, table), column, column, _range(key, has_checkpoint)
    )


def run_backfill(
    conn: Conn,
    store: StateStore,
    *,
    schema: str,
    migration: str,
    table: str,
    batch: BatchPolicy,
    lock: LockPolicy,
    on_progress: Callable[[BackfillProgress], None] | None = None,
    on_retry: Callable[[LockRetry], None] | None = None,
) -> int:
    """Convert every row of ``table`` not converted yet; return the rows converted in this run."""
    key = [(k.name, k.type) for k in primary_key(conn, schema, table)]
    if not key:
        raise GaplessError(f"table {schema}.{table} has no primary key: the backfill walks the table by it")
    with conn.transaction():
        row = conn.execute(_last_key_query(schema, table, key)).fetchone()
        upper = [str(v) for v in row[0]] if row is not None else None
        store.begin_backfill(migration, table, _estimate(conn, schema, table), upper)
    record = store.backfill(migration, table)
    if record is None:  # pragma: no cover - inserted just above
        raise GaplessError(f"backfill record of {table} is missing")
    checkpoint = record.checkpoint
    done_total = record.rows_done
    estimate = record.rows_estimate or 0
    converted = 0
    delay = batch.delay
    finished = record.done
    bound = record.upper_bound or []
    touch = _touch_column(conn, schema, table, key)
    size = min(batch.size, FIRST_BATCH)
    while not finished:
        has_checkpoint = checkpoint is not None
        end_query = _batch_end_query(schema, table, key, has_checkpoint)
        update = _batch_update(schema, table, key, touch, has_checkpoint)
        after = list(checkpoint or [])

        def one_batch(
            c: Conn,
            end_query: sql.Composed = end_query,
            update: sql.Composed = update,
            after: list[str] = after,
            size: int = size,
        ) -> tuple[int, list[str], bool]:
            c.execute(
                "SELECT set_config('search_path', %s, true), set_config(%s, 'on', true), "
                "set_config('synchronous_commit', 'off', true)",
                (sql.Identifier(schema).as_string(c), BACKFILL_SETTING),
            )
            row = c.execute(end_query, [*after, *bound, size - 1]).fetchone()
            last = [str(v) for v in row[0]] if row is not None else list(bound)
            count = c.execute(update, [*after, *last]).rowcount
            last_batch = row is None  # fewer than ``size`` rows were left: this batch went up to the bound
            store.checkpoint(migration, table, last, count, done=last_batch)
            return count, last, last_batch

        began = time.perf_counter()
        count, last, finished = run_with_lock_timeout(
            conn,
            one_batch,
            policy=lock,
            what=f"backfill batch of {table}",
            schema=schema,
            tables=[table],
            on_retry=on_retry,
        )
        size = next_batch_size(batch.size, size, count, time.perf_counter() - began)
        checkpoint = last
        converted += count
        done_total += count
        waiters = 0 if finished else count_lock_waiters(conn, schema, table)
        delay = next_batch_delay(batch, delay, waiters)
        if on_progress is not None:
            on_progress(
                BackfillProgress(table, done_total, max(estimate, done_total), delay, waiters > 0, finished)
            )
        if not finished and delay > 0:
            time.sleep(delay)
    return converted
