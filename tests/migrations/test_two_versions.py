"""Two application versions under load through a rename and a type change, and rollback without data loss."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import psycopg

from tests.migrations.conftest import Versions

CHANGE = """
name: m1
operations:
  - rename_column: {table: users, from: name, to: full_name}
  - alter_column: {table: users, column: age, type: bigint, up: "age::bigint * 10", down: "(age / 10)::integer"}
"""

COLUMNS = (
    "SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute "
    "WHERE attrelid = 'users'::regclass AND attnum > 0 AND NOT attisdropped"
)


@dataclass
class Load:
    """What one application version did: successful rounds, failed queries, the slowest query."""

    rounds: int = 0
    errors: list[str] = field(default_factory=list)
    slowest: float = 0.0
    inserted: int = 0

    def timed(
        self, conn: psycopg.Connection[tuple[object, ...]], query: str, params: tuple[object, ...]
    ) -> None:
        t0 = time.monotonic()
        conn.execute(query, params)
        self.slowest = max(self.slowest, time.monotonic() - t0)


def run_old(v: Versions, stop: threading.Event, load: Load) -> None:
    """Version m0: writes name and age (an integer)."""
    rng = random.Random(1)  # noqa: S311 -- a reproducible load pattern, not security
    with v.old(instance="load-old") as c:
        while not stop.is_set():
            try:
                load.timed(
                    c, "INSERT INTO users (name, age) VALUES (%s, %s)", (f"old{load.rounds}", load.rounds)
                )
                load.inserted += 1
                load.timed(c, "UPDATE users SET age = age + 1 WHERE id = %s", (rng.randint(1, 3300),))
                load.timed(c, "SELECT name, age FROM users WHERE id = %s", (rng.randint(1, 3300),))
                load.rounds += 1
            except psycopg.Error as e:
                load.errors.append(str(e))
            time.sleep(0.002)


def run_new(v: Versions, stop: threading.Event, load: Load) -> None:
    """Version m1: writes full_name and age (a bigint, always a multiple of 10), once its schema exists."""
    rng = random.Random(2)  # noqa: S311 -- a reproducible load pattern, not security
    with v.admin() as probe:
        while probe.execute("SELECT to_regnamespace('public_m1')").fetchone() == (None,):
            if stop.is_set():
                return
            time.sleep(0.01)
    with v.new(instance="load-new") as c:
        while not stop.is_set():
            try:
                load.timed(
                    c,
                    "INSERT INTO users (full_name, age) VALUES (%s, %s)",
                    (f"new{load.rounds}", load.rounds * 10),
                )
                load.inserted += 1
                load.timed(c, "UPDATE users SET age = age + 10 WHERE id = %s", (rng.randint(1, 3300),))
                load.timed(c, "SELECT full_name, age FROM users WHERE id = %s", (rng.randint(1, 3300),))
                load.rounds += 1
            except psycopg.Error as e:
                load.errors.append(str(e))
            time.sleep(0.002)


def test_both_versions_run_through_start_backfill_and_complete(versions: Versions) -> None:
    """Under load from both versions: no failed query, every row consistent in both shapes, then complete."""
    with versions.admin() as c:
        c.execute("INSERT INTO users (name, age) SELECT 'Bulk' || g, g FROM generate_series(1, 3000) g")
    stop = threading.Event()
    old, new = Load(), Load()
    threads = [
        threading.Thread(target=run_old, args=(versions, stop, old)),
        threading.Thread(target=run_new, args=(versions, stop, new)),
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        versions.start(CHANGE, size=200, delay=0.01)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert old.errors == []
    assert new.errors == []
    assert old.rounds > 10
    assert new.rounds > 10
    assert max(old.slowest, new.slowest) < 1.0
    with versions.admin() as c:
        assert c.execute(
            "SELECT count(*) FROM users WHERE _gapless_new_age IS DISTINCT FROM age::bigint * 10"
        ).fetchone() == (0,)
        total = c.execute("SELECT count(*) FROM users").fetchone()
    assert total == (3300 + old.inserted + new.inserted,)
    with versions.old() as o, versions.new() as n:
        old_view = o.execute("SELECT id, name, age FROM users ORDER BY id").fetchall()
        new_view = n.execute("SELECT id, full_name, age FROM users ORDER BY id").fetchall()
    assert [(i, name, age * 10) for i, name, age in old_view] == new_view
    versions.complete()
    with versions.new() as n:
        assert n.execute("SELECT id, full_name, age FROM users ORDER BY id").fetchall() == new_view
    with versions.admin() as c:
        assert c.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'age'"
        ).fetchone() == ("bigint",)
        assert c.execute(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'gapless_migrations'::regnamespace"
        ).fetchone() == (0,)


def test_rollback_restores_the_old_shape_with_rows_the_new_version_wrote(versions: Versions) -> None:
    """After rollback the table has its original columns and every row, including those the new version wrote."""
    with versions.admin() as c:
        original = c.execute(COLUMNS).fetchone()
    versions.start(
        CHANGE
        + """  - add_column: {table: users, column: {name: email, type: text}, up: lower(name)}
  - drop_column: {table: users, column: legacy, down: "'from-new'"}
"""
    )
    with versions.new() as n, versions.old() as o:
        n.execute("INSERT INTO users (full_name, age, email) VALUES ('Nina', 120, 'n@x')")
        n.execute("UPDATE users SET age = 70, full_name = 'Seven' WHERE id = 7")
        o.execute("INSERT INTO users (name, age) VALUES ('Olga', 3)")
    versions.rollback()
    with versions.admin() as c:
        assert c.execute(COLUMNS).fetchone() == original
        assert c.execute("SELECT count(*) FROM users").fetchone() == (302,)
        assert c.execute(
            "SELECT name, age, legacy FROM users WHERE name IN ('Nina', 'Seven', 'Olga') ORDER BY name"
        ).fetchall() == [
            ("Nina", 12, "from-new"),
            ("Olga", 3, "x"),
            ("Seven", 7, "x"),
        ]
        assert c.execute(
            "SELECT to_regnamespace('public_m1'), count(*) FROM pg_trigger WHERE tgname = '_gapless_sync'"
        ).fetchone() == (None, 0)
        assert c.execute("SELECT phase FROM gapless_migrations.migrations WHERE name = 'm1'").fetchone() == (
            "rolled_back",
        )
    with versions.old() as o:
        o.execute("INSERT INTO users (name, age) VALUES ('after', 1)")
    versions.start(CHANGE)  # the same migration can start again after a rollback
