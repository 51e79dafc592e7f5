"""Acceptance: a backfill of 1,000,000 rows killed with SIGKILL halfway resumes from its checkpoint and
ends with every row converted exactly once.

"Exactly once" is counted, not inferred: the test gives ``items`` a ``touches`` column and a BEFORE
UPDATE trigger of its own (not gapless's) that adds 1 to it on every update of the row. The backfill
converts a row by updating it, so after the killed run and the resumed one every row must have been
updated exactly once (``touches = 1``: none skipped, none converted twice, the batch in flight at
the kill rolled back with its counters and its checkpoint), the shadow column must equal ``up`` of the
old column for every row, and the checkpoint must count 1,000,000 rows. ``--batch-size 20000`` is
only a cap (the backfill sizes its batches to about 50 ms each, a few thousand rows here); it spares the
round trips of 1,000-row batches and keeps the test around half a minute on 2 cores.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

# About 30 s on an idle 2-core machine; the timeout leaves room for a CI machine shared with other tests.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROWS = 1_000_000
BATCH = 20_000

ALTER = """
name: m1
operations:
  - alter_column: {table: items, column: qty, type: bigint, up: "qty::bigint * 10", down: "(qty / 10)::integer"}
"""


def make_items(url: str) -> None:
    """``items`` with ROWS rows, each with a counter that a test-owned trigger bumps on every update."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, qty integer NOT NULL, touches integer NOT NULL DEFAULT 0)"
        )
        c.execute("INSERT INTO items (id, qty) SELECT g, g %% 100000 FROM generate_series(1, %s) g", (ROWS,))
        c.execute(
            "CREATE FUNCTION count_touch() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN NEW.touches := OLD.touches + 1; RETURN NEW; END $$"
        )
        c.execute(
            "CREATE TRIGGER zz_count BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION count_touch()"
        )
        c.execute("VACUUM ANALYZE items")


def one(url: str, query: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute(query, params).fetchone()
    assert row is not None
    return tuple(row)


def rows_done(conn: psycopg.Connection[Any]) -> int:
    try:
        row = conn.execute("SELECT coalesce(max(rows_done), 0) FROM gapless_migrations.backfills").fetchone()
    except psycopg.errors.UndefinedTable:
        return 0  # the state tables are created by the first step
    return int(row[0]) if row else 0


def test_million_row_backfill_killed_halfway_resumes_and_converts_every_row_once(
    db: str, tmp_path: Path
) -> None:
    """SIGKILL `gapless migrate start` at ~50% of 1,000,000 rows; `start` again finishes with every row updated once."""
    make_items(db)
    file = tmp_path / "m1.yaml"
    file.write_text(ALTER)
    argv = [
        sys.executable,
        "-m",
        "gapless",
        "migrate",
        "start",
        str(file),
        "--database-url",
        db,
        "--batch-size",
        str(BATCH),
    ]
    first_log = tmp_path / "first.log"
    began = time.monotonic()
    with first_log.open("w") as log, psycopg.connect(db, autocommit=True) as probe:
        proc = subprocess.Popen(argv, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None and rows_done(probe) < ROWS // 2:
                time.sleep(0.02)
            assert proc.poll() is None, first_log.read_text()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
    killed_after = time.monotonic() - began

    # The killed client's backend may still be finishing its batch: wait until it is gone (commit or rollback).
    gone = "SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s"
    deadline = time.monotonic() + 30
    while not one(db, gone, ("gapless-migrate",))[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    at_kill, checkpoint = one(db, "SELECT rows_done, checkpoint FROM gapless_migrations.backfills")
    assert ROWS // 2 <= at_kill < ROWS, at_kill
    # Everything up to the checkpoint was updated exactly once, nothing after it: the batch in flight
    # rolled back with its counters and its checkpoint.
    assert one(
        db,
        "SELECT count(*) FILTER (WHERE touches = 1 AND id <= %s), "
        "count(*) FILTER (WHERE touches = 0 AND id > %s) FROM items",
        (int(checkpoint[0]), int(checkpoint[0])),
    ) == (at_kill, ROWS - at_kill)

    resumed = subprocess.run(argv, capture_output=True, text=True, timeout=150, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the start of m1" in resumed.stderr

    converted_once, wrong, touched_min, touched_max = one(
        db,
        "SELECT count(*) FILTER (WHERE touches = 1), "
        "count(*) FILTER (WHERE _gapless_new_qty IS DISTINCT FROM qty::bigint * 10), "
        "min(touches), max(touches) FROM items",
    )
    assert (converted_once, wrong, touched_min, touched_max) == (ROWS, 0, 1, 1)
    assert one(db, "SELECT rows_done, done FROM gapless_migrations.backfills") == (ROWS, True)
    print(f"killed after {killed_after:.1f}s at {at_kill:,} rows; total {time.monotonic() - began:.1f}s")
