"""The backfill: resumable after SIGKILL with every row converted exactly once, and throttled by lock waits."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from gapless.migrations.backfill import BackfillProgress
from gapless.migrations.engine import EngineEvent, EngineSettings, MigrationEngine
from gapless.migrations.policy import BatchPolicy
from tests.migrations.conftest import FAST_LOCKS, migration

ALTER = """
name: m1
operations:
  - alter_column: {table: items, column: qty, type: bigint, up: "qty::bigint * 10", down: "(qty / 10)::integer"}
"""


def make_items(url: str, rows: int) -> None:
    """A table of ``rows`` rows, and a log of every update any trigger-visible writer makes to it."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE items (id bigserial PRIMARY KEY, qty integer)")
        c.execute("INSERT INTO items (qty) SELECT g FROM generate_series(1, %s) g", (rows,))
        c.execute("CREATE TABLE touched (id bigint NOT NULL)")
        c.execute(
            "CREATE FUNCTION log_touch() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO touched VALUES (NEW.id); RETURN NEW; END $$"
        )
        c.execute("CREATE TRIGGER zz_log AFTER UPDATE ON items FOR EACH ROW EXECUTE FUNCTION log_touch()")
        c.execute("ANALYZE items")


def scalar(url: str, query: str) -> object:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute(query).fetchone()
    return None if row is None else row[0]


def test_backfill_resumes_after_sigkill_converting_every_row_exactly_once(db: str, tmp_path: Path) -> None:
    """Kill the CLI mid-backfill: the checkpoint commits with its batch, so the resumed run converts each row once."""
    rows = 20_000
    make_items(db, rows)
    file = tmp_path / "m1.yaml"
    file.write_text(ALTER)
    argv = [sys.executable, "-m", "gapless", "migrate", "start", str(file), "--database-url", db]
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen([*argv, "--batch-size", "250", "--batch-delay", "0.05"], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = int(
                    scalar(db, "SELECT coalesce(max(rows_done), 0) FROM gapless_migrations.backfills") or 0
                )  # type: ignore[call-overload]
            except psycopg.errors.UndefinedTable:
                done = 0
            if done >= 2_000:
                break
            time.sleep(0.02)
        assert proc.poll() is None, (tmp_path / "first.log").read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    at_kill = scalar(db, "SELECT rows_done FROM gapless_migrations.backfills")
    assert isinstance(at_kill, int)
    assert 0 < at_kill < rows
    assert scalar(db, "SELECT count(*) FROM touched") == at_kill  # the batch in flight was rolled back
    while scalar(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gapless-migrate'"):
        time.sleep(0.05)  # the killed client's backend goes away on its own
    resumed = subprocess.run(
        [*argv, "--batch-size", "2000"], capture_output=True, text=True, timeout=60, check=False
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the start of m1" in resumed.stderr
    assert scalar(db, "SELECT count(*) FROM touched") == rows
    assert scalar(db, "SELECT count(DISTINCT id) FROM touched") == rows
    assert (
        scalar(db, "SELECT count(*) FROM items WHERE _gapless_new_qty IS DISTINCT FROM qty::bigint * 10") == 0
    )
    assert scalar(db, "SELECT rows_done FROM gapless_migrations.backfills") == rows


def test_backfill_backs_off_while_application_sessions_wait_for_locks(db: str) -> None:
    """While a session waits for a lock on the table, the pause between batches grows; then it relaxes and finishes."""
    make_items(db, 1_000)
    blocker = psycopg.connect(db, autocommit=True)
    waiter_done = threading.Event()
    events: list[BackfillProgress] = []

    def wait_for_row() -> None:
        with psycopg.connect(db, autocommit=True) as c:
            c.execute("UPDATE items SET qty = qty WHERE id = 990")
        waiter_done.set()

    waiter = threading.Thread(target=wait_for_row)

    def on_event(event: EngineEvent) -> None:
        if not isinstance(event, BackfillProgress):
            return
        events.append(event)
        if len(events) == 1:  # the trigger exists now: hold a row lock and make another session wait for it
            blocker.execute("BEGIN")
            blocker.execute("UPDATE items SET qty = qty WHERE id = 990")
            waiter.start()
            while (
                scalar(db, "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'")
                == 0
            ):
                time.sleep(0.01)
        elif sum(e.throttled for e in events) == 3:
            blocker.execute("COMMIT")

    try:
        settings = EngineSettings(lock=FAST_LOCKS, batch=BatchPolicy(size=50, delay=0.0, max_delay=0.2))
        with MigrationEngine(db, settings, on_event=on_event) as engine:
            engine.start(migration(ALTER))
    finally:
        blocker.close()
        waiter.join(timeout=10)
    throttled = [e for e in events if e.throttled]
    assert len(throttled) >= 3
    assert [e.delay for e in throttled[:3]] == [0.1, 0.2, 0.2]
    assert not events[-2].throttled
    assert events[-1].done
    assert waiter_done.is_set()
    assert (
        scalar(db, "SELECT count(*) FROM items WHERE _gapless_new_qty IS DISTINCT FROM qty::bigint * 10") == 0
    )


def test_backfill_of_a_table_with_an_identity_key(db: str) -> None:
    """GENERATED ALWAYS identity keys cannot be assigned: the backfill updates rows without setting the key."""
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, qty integer)")
        c.execute("INSERT INTO items (qty) SELECT g FROM generate_series(1, 3000) g")
    with MigrationEngine(db, EngineSettings(lock=FAST_LOCKS, batch=BatchPolicy(size=500))) as e:
        e.start(migration(ALTER))
    assert (
        scalar(db, "SELECT count(*) FROM items WHERE _gapless_new_qty IS DISTINCT FROM qty::bigint * 10") == 0
    )
