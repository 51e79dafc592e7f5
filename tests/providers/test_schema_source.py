"""Reading a database's migration state for schema gating: PostgreSQL, SQLite, and reported events."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from gapless.migrations.files import parse_migration
from gapless.migrations.policy import BatchPolicy, LockPolicy
from gapless.migrations.sqlite.engine import SqliteMigrationEngine, SqliteSettings
from gapless.providers.schema import DatabaseMigrations, describe_database, snapshot_from_events
from gapless.store.records import EventRecord
from tests.migrations.conftest import BASE, db, engine, migration  # noqa: F401 - fixtures

ADD = """
name: m1
operations:
  - add_column: {table: users, column: {name: email, type: text, nullable: false}, up: lower(name) || '@x'}
"""


def test_postgres_phases_as_the_engine_moves(db: str) -> None:  # noqa: F811
    source = DatabaseMigrations(db)
    try:
        empty = source.read()
        assert empty.error == ""
        assert empty.migrations == ()  # no gapless_migrations schema yet
        with engine(db) as e:
            e.start(migration(BASE))
            e.complete()
            e.start(migration(ADD))
            s = source.read()
            assert {(m.name, m.phase) for m in s.migrations} == {("m0", "completed"), ("m1", "started")}
            assert all(m.since is not None and m.since > 0 for m in s.migrations)
            e.rollback(force=True)
        after = source.read().find("m1")
        assert after is not None
        assert after.phase == "rolled_back"
        other = DatabaseMigrations(db, schema="elsewhere")
        assert other.read().migrations == ()  # another base schema has its own migrations
        other.close()
    finally:
        source.close()


def test_postgres_unreachable_is_an_error_snapshot() -> None:
    s = DatabaseMigrations("postgresql://postgres:secret@127.0.0.1:1/x", timeout=1).read()
    assert s.migrations == ()
    assert "127.0.0.1" in s.error
    assert "secret" not in s.source
    assert s.source == "PostgreSQL 127.0.0.1:1/x schema public"


def test_sqlite_phases(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    url = f"sqlite:///{path}"
    missing = DatabaseMigrations(url).read()
    assert "no database file" in missing.error
    with closing(sqlite3.connect(path)) as c:
        c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        c.executemany("INSERT INTO users (name) VALUES (?)", [(f"u{i}",) for i in range(50)])
        c.commit()
    assert DatabaseMigrations(url).read().migrations == ()
    settings = SqliteSettings(lock=LockPolicy(timeout=2.0, attempts=3), batch=BatchPolicy(size=10))
    with SqliteMigrationEngine(url, settings) as e:
        e.start(parse_migration(ADD))
    s = DatabaseMigrations(url).read()
    assert [(m.name, m.phase) for m in s.migrations] == [("m1", "started")]
    assert s.source == f"SQLite {path}"


def test_events_make_a_snapshot() -> None:
    def ev(i: int, stream: str, name: str, type_: str) -> EventRecord:
        return EventRecord(i, float(i), stream, name, type_, "")

    s = snapshot_from_events(
        [
            ev(1, "migrations:shop", "m1", "MigrationStarted"),
            ev(2, "migrations:shop", "m1", "BackfillDone"),
            ev(3, "migrations:shop", "m2", "MigrationStarted"),
            ev(4, "shop", "m3", "MigrationStarted"),  # not a migration stream
            ev(5, "migrations:shop", "m1", "MigrationCompleted"),
            ev(6, "migrations:shop", "m2", "MigrationRolledBack"),
        ]
    )
    assert [(m.name, m.phase, m.since) for m in s.migrations] == [
        ("m1", "completed", 5.0),
        ("m2", "rolled_back", 6.0),
    ]


def test_describe_database_hides_the_password() -> None:
    assert describe_database("postgresql://u:pw@db.example:6543/shop", "app") == (
        "PostgreSQL db.example:6543/shop schema app"
    )
    assert describe_database("host=h dbname=orders password=pw") == "PostgreSQL h/orders schema public"
    assert describe_database("sqlite:////var/lib/app.db") == "SQLite /var/lib/app.db"
