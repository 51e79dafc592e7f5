"""lock_timeout and retries: a migration never makes the application wait much longer than the lock timeout."""

from __future__ import annotations

import contextlib
import threading
import time

import psycopg

from gapless.migrations.engine import EngineEvent, EngineSettings, MigrationEngine
from gapless.migrations.locks import LockRetry
from gapless.migrations.policy import LockPolicy
from tests.migrations.conftest import Versions, migration
from tests.migrations.test_cli import cli

ADD = "name: m1\noperations:\n  - add_column: {table: users, column: {name: bio, type: text}}\n"


def hold_share_lock(v: Versions) -> psycopg.Connection[tuple[object, ...]]:
    """A session that read the table in a transaction it leaves open (idle in transaction)."""
    blocker = v.admin()
    blocker.execute("BEGIN")
    blocker.execute("SELECT count(*) FROM users")
    return blocker


def test_blocked_ddl_yields_to_queries_and_succeeds_when_the_blocker_ends(versions: Versions) -> None:
    """Behind a long transaction the ADD COLUMN times out and retries; a third session waits at most ~lock_timeout."""
    blocker = hold_share_lock(versions)
    events: list[EngineEvent] = []
    failure: list[BaseException] = []
    timeout = 0.3

    def migrate() -> None:
        settings = EngineSettings(
            lock=LockPolicy(timeout=timeout, attempts=40, base_delay=0.1, max_delay=0.3)
        )
        try:
            with MigrationEngine(versions.url, settings, on_event=events.append) as engine:
                engine.start(migration(ADD))
        except BaseException as e:  # reported by the assertion below
            failure.append(e)

    thread = threading.Thread(target=migrate)
    thread.start()
    slowest = 0.0
    try:
        with versions.old(instance="probe") as probe:
            probe.execute(
                "SET statement_timeout = '3s'"
            )  # without lock_timeout the probe would queue forever
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                t0 = time.monotonic()
                with contextlib.suppress(psycopg.errors.QueryCanceled):
                    probe.execute("SELECT count(*) FROM users")
                slowest = max(slowest, time.monotonic() - t0)
                time.sleep(0.01)
    finally:
        blocker.execute("COMMIT")
        blocker.close()
        thread.join(timeout=20)
    assert failure == []
    retries = [e for e in events if isinstance(e, LockRetry)]
    assert len(retries) >= 3
    assert retries[0].blockers[0].pid > 0
    assert retries[0].blockers[0].state == "idle in transaction"
    assert timeout * 0.5 < slowest < timeout + 0.35  # it did queue behind the migration, but only briefly
    with versions.new() as new:
        new.execute("INSERT INTO users (name, bio) VALUES ('Nina', 'hi')")


def test_with_the_default_policy_no_application_query_waits_100_ms(versions: Versions) -> None:
    """Default lock policy behind a long transaction: every probe query on the table returns within 100 ms."""
    blocker = hold_share_lock(versions)
    events: list[EngineEvent] = []
    failure: list[BaseException] = []

    def migrate() -> None:
        try:
            with MigrationEngine(versions.url, EngineSettings(), on_event=events.append) as engine:
                engine.start(migration(ADD))
        except BaseException as e:  # reported by the assertion below
            failure.append(e)

    thread = threading.Thread(target=migrate)
    thread.start()
    waits: list[float] = []
    try:
        with versions.old(instance="probe") as probe:
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                t0 = time.monotonic()
                probe.execute("SELECT count(*) FROM users")
                waits.append(time.monotonic() - t0)
                time.sleep(0.005)
    finally:
        blocker.execute("COMMIT")
        blocker.close()
        thread.join(timeout=30)
    assert failure == []
    assert len([e for e in events if isinstance(e, LockRetry)]) >= 3
    assert max(waits) < 0.1, sorted(waits)[-5:]
    assert max(waits) > 0.02  # some probe did queue behind the migration's lock request


def test_giving_up_exits_1_naming_the_blocking_session(versions: Versions, tmp_path: object) -> None:
    """When every attempt times out, start exits 1, names the blocker's pid and state, and applied nothing."""
    blocker = hold_share_lock(versions)
    try:
        file = tmp_path / "m1.yaml"  # type: ignore[operator]
        file.write_text(ADD)
        result = cli(
            "start",
            str(file),
            "--database-url",
            versions.url,
            "--lock-timeout",
            "0.1",
            "--lock-attempts",
            "2",
        )
        pid = blocker.info.backend_pid
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert result.exit_code == 1, result.output
    assert f"pid {pid}" in result.stderr
    assert "idle in transaction" in result.stderr
    assert "2 attempt(s)" in result.stderr
    with versions.admin() as c:
        assert c.execute(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'bio'"
        ).fetchone() == (0,)
        assert c.execute(
            "SELECT phase, step FROM gapless_migrations.migrations WHERE name = 'm1'"
        ).fetchone() == ("starting", 0)
