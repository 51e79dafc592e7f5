"""The batched backfill: touch every existing row once so the sync trigger converts it.

Rows are walked in primary-key order, ``size`` at a time, up to the largest key that existed when the
backfill began (recorded with the checkpoint): the trigger exists by then, so rows inserted later are
converted by it and the backfill never chases an application that keeps inserting. Each batch is one short transaction that
updates the rows (a no-op update of the key; the trigger does the work) and moves the checkpoint to
the batch's last key, so a batch and its checkpoint commit together: after a crash the backfill
resumes after the last committed batch and no row is converted twice. The transaction sets
``gapless.backfill``, which tells the trigger to fill only what is still NULL: rows the application
wrote since the trigger exists are already converted and are left alone.

Between batches the backfill looks at ``pg_locks``: while application sessions wait for locks on the
table, the pause doubles (up to ``max_delay``); when the waits are gone, it relaxes back. Row-lock
waits of the batch itself are bounded by lock_timeout and retried like DDL.
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

__all__ = ["BackfillProgress", "count_lock_waiters", "run_backfill"]

Conn = psycopg.Connection[TupleRow]


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


def _key_values(key: list[tuple[str, str]]) -> sql.Composed:
    # the types come from format_type() in the catalog
    return sql.SQL(", ").join(sql.SQL("CAST(%s AS {})").format(sql.SQL(typ)) for _, typ in key)


def _last_key_query(schema: str, table: str, key: list[tuple[str, str]]) -> sql.Composed:
    return sql.SQL("SELECT ARRAY[{}] FROM {} ORDER BY {} LIMIT 1").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k, _ in key),
        sql.Identifier(schema, table),
        sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(k)) for k, _ in key),
    )


def _batch_query(schema: str, table: str, key: list[tuple[str, str]], has_checkpoint: bool) -> sql.Composed:
    """Parameters: the checkpoint's values (if any), the upper bound's values, the batch size."""
    cols = sql.SQL(", ").join(sql.Identifier(k) for k, _ in key)
    target = sql.Identifier(schema, table)
    where: sql.Composable = sql.SQL("WHERE ({}) <= ({})").format(cols, _key_values(key))
    if has_checkpoint:
        where = sql.SQL("WHERE ({}) > ({}) AND ({}) <= ({})").format(
            cols, _key_values(key), cols, _key_values(key)
        )
    match = sql.SQL(" AND ").join(
        sql.SQL("_gapless_t.{c} = _gapless_b.{c}").format(c=sql.Identifier(k)) for k, _ in key
    )
    first = sql.Identifier(key[0][0])
    last_key = sql.SQL("ARRAY[{}]").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k, _ in key)
    )
    descending = sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier(k)) for k, _ in key)
    return sql.SQL(
        "WITH _gapless_b AS (SELECT {cols} FROM {target} {where} ORDER BY {cols} LIMIT %s), "
        "_gapless_u AS (UPDATE {target} AS _gapless_t SET {first} = _gapless_t.{first} FROM _gapless_b "
        "WHERE {match} RETURNING 1) "
        "SELECT (SELECT count(*) FROM _gapless_u), (SELECT {last_key} FROM _gapless_b ORDER BY {descending} LIMIT 1)"
    ).format(
        cols=cols,
        target=target,
        where=where,
        first=first,
        match=match,
        last_key=last_key,
        descending=descending,
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
    while not finished:
        query = _batch_query(schema, table, key, checkpoint is not None)
        params: list[object] = [*(checkpoint or []), *(record.upper_bound or []), batch.size]

        def one_batch(
            c: Conn, query: sql.Composed = query, params: list[object] = params
        ) -> tuple[int, list[str] | None]:
            c.execute(
                "SELECT set_config('search_path', %s, true), set_config(%s, 'on', true)",
                (sql.Identifier(schema).as_string(c), BACKFILL_SETTING),
            )
            row = c.execute(query, params).fetchone()
            count = int(row[0]) if row else 0
            last = [str(v) for v in row[1]] if row and row[1] is not None else None
            store.checkpoint(migration, table, last, count, done=count == 0)
            return count, last

        count, last = run_with_lock_timeout(
            conn,
            one_batch,
            policy=lock,
            what=f"backfill batch of {table}",
            schema=schema,
            tables=[table],
            on_retry=on_retry,
        )
        if count == 0:
            finished = True
        else:
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
