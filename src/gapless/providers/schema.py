"""Where the database's migrations are, for schema gating of rollouts (``gapless.strategies.schema``).

Two sources, one answer (a ``SchemaSnapshot``):

- ``DatabaseMigrations``: the migration state that ``gapless migrate`` keeps in the migrated database
  itself (PostgreSQL: ``gapless_migrations.migrations`` rows of one base schema; SQLite: the
  ``_gapless_migrations`` table). This is the truth; the control plane reads it when started with
  ``--database-url``. Reads block (a connection, a query): call them from a thread.
- ``EventMigrations``: without a database URL, the migration events that ``gapless migrate`` posted to
  this control plane (``MigrationStarted``, ``BackfillDone``, ``MigrationCompleted``,
  ``MigrationRolledBack``), latest first. A migration run while no control plane was up is missing
  from it; the message of a held revision says so and names ``--database-url``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from gapless.store.outbox import STREAM_PREFIX
from gapless.store.records import EventRecord
from gapless.strategies.schema import MigrationPhase, MigrationState, SchemaSnapshot

__all__ = [
    "MIGRATION_EVENT_PHASES",
    "MIGRATION_STREAM_PREFIX",
    "DatabaseMigrations",
    "describe_database",
    "snapshot_from_events",
]

MIGRATION_STREAM_PREFIX = STREAM_PREFIX
"""Events of a database's migrations are recorded under the rollout name ``migrations:<database>``."""

MIGRATION_EVENT_PHASES: dict[str, MigrationPhase] = {
    "MigrationStarted": "starting",
    "BackfillDone": "started",  # posted when start has returned: both versions are served
    "MigrationCompleted": "completed",
    "MigrationRolledBack": "rolled_back",
}

_PHASES: frozenset[str] = frozenset(
    {"starting", "started", "completing", "completed", "rolling_back", "rolled_back"}
)


def describe_database(url: str, schema: str = "public") -> str:
    """The database of ``url`` for messages, without its password."""
    if url.startswith("sqlite:"):
        from gapless.migrations.sqlite import sqlite_path

        try:
            return f"SQLite {sqlite_path(url)}"
        except ValueError:
            return "SQLite (unparsable URL)"
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(url)
    except Exception:  # any unparsable URL is described, not raised
        return "PostgreSQL (unparsable URL)"
    host = info.get("host") or "localhost"
    port = f":{info['port']}" if info.get("port") else ""
    return f"PostgreSQL {host}{port}/{info.get('dbname') or info.get('user') or ''} schema {schema}"


def _epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _phase(value: str) -> MigrationPhase:
    if value not in _PHASES:
        raise ValueError(f"unknown migration phase {value!r}")
    return cast(MigrationPhase, value)


class DatabaseMigrations:
    """Reads the migration state of one database (and, on PostgreSQL, one base schema).

    Keeps one connection between reads and opens a new one after an error. Not thread-safe: one reader.
    """

    def __init__(self, url: str, schema: str = "public", *, timeout: float = 3.0) -> None:
        self.url = url
        self.schema = schema
        self.timeout = timeout
        self.source = describe_database(url, schema)
        self._pg: Any = None

    def read(self) -> SchemaSnapshot:
        try:
            if self.url.startswith("sqlite:"):
                states = self._read_sqlite()
            else:
                states = self._read_postgres()
        except Exception as e:  # the snapshot carries the failure; gating then holds
            self.close()
            text = " ".join(str(e).split()) or type(e).__name__
            return SchemaSnapshot(self.source, error=text)
        return SchemaSnapshot(self.source, tuple(states))

    def _read_postgres(self) -> list[MigrationState]:
        import psycopg

        from gapless.migrations.gate import CONTROL_PLANE_APPLICATION_NAME
        from gapless.migrations.state import STATE_SCHEMA

        if self._pg is None or self._pg.closed:
            self._pg = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, round(self.timeout)),
                application_name=CONTROL_PLANE_APPLICATION_NAME,
            )
        conn = self._pg
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false)", (f"{round(self.timeout * 1000)}ms",)
        )
        exists = conn.execute("SELECT to_regclass(%s)", (f"{STATE_SCHEMA}.migrations",)).fetchone()
        if exists is None or exists[0] is None:
            return []
        rows = conn.execute(
            psycopg.sql.SQL(
                "SELECT name, phase, updated_at, completed_at FROM {}.migrations WHERE schema_name = %s"
            ).format(psycopg.sql.Identifier(STATE_SCHEMA)),
            (self.schema,),
        ).fetchall()
        return [MigrationState(str(r[0]), _phase(str(r[1])), _epoch(r[3] or r[2])) for r in rows]

    def _read_sqlite(self) -> list[MigrationState]:
        from gapless.migrations.sqlite import sqlite_path
        from gapless.migrations.sqlite.state import MIGRATIONS_TABLE

        path = sqlite_path(self.url)
        if not path.exists():
            raise FileNotFoundError(f"no database file {path}")
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=self.timeout)
        try:
            table = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)
            ).fetchone()
            if table is None:
                return []
            rows = conn.execute(
                f"SELECT name, phase, updated_at, completed_at FROM {MIGRATIONS_TABLE}"  # noqa: S608 - a constant
            ).fetchall()
        finally:
            conn.close()
        return [
            MigrationState(str(r[0]), _phase(str(r[1])), _epoch(datetime.fromisoformat(str(r[3] or r[2]))))
            for r in rows
        ]

    def close(self) -> None:
        if self._pg is not None:
            try:
                self._pg.close()
            finally:
                self._pg = None


def snapshot_from_events(events: Iterable[EventRecord]) -> SchemaSnapshot:
    """The migrations as this control plane heard of them: per migration name, the last event's phase."""
    latest: dict[str, MigrationState] = {}
    for e in events:
        phase = MIGRATION_EVENT_PHASES.get(e.type)
        if phase is None or not e.rollout.startswith(MIGRATION_STREAM_PREFIX) or not e.revision:
            continue
        latest[e.revision] = MigrationState(e.revision, phase, e.time)
    return SchemaSnapshot(
        "as reported to this control plane by gapless migrate; start it with --database-url to read the "
        "database itself",
        tuple(sorted(latest.values(), key=lambda m: m.name)),
    )
