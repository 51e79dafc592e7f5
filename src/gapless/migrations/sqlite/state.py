"""Where SQLite migrations are, kept in the migrated database itself.

Two tables in ``main`` (SQLite has no schemas; the ``_gapless`` prefix is reserved in migration files):
``_gapless_migrations`` (per migration: phase, next step, the migration document and the schema
snapshot it was planned from, the last error) and ``_gapless_backfills`` (checkpoint, bound, rows done).
The store runs no transactions of its own: each write belongs to the transaction of the step or batch
it records, so a step and its record commit together.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gapless.migrations.state import MigrationPhase

__all__ = ["BACKFILLS_TABLE", "MIGRATIONS_TABLE", "SqliteBackfill", "SqliteRecord", "SqliteStateStore"]

MIGRATIONS_TABLE = "_gapless_migrations"
BACKFILLS_TABLE = "_gapless_backfills"

_DDL = [
    """CREATE TABLE IF NOT EXISTS _gapless_migrations (
        name TEXT PRIMARY KEY,
        phase TEXT NOT NULL,
        step INTEGER NOT NULL DEFAULT 0,
        start_steps_applied INTEGER NOT NULL DEFAULT 0,
        previous TEXT,
        document TEXT NOT NULL,
        catalog TEXT NOT NULL,
        error TEXT,
        started_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        completed_at TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS _gapless_backfills (
        migration TEXT NOT NULL,
        table_name TEXT NOT NULL,
        checkpoint INTEGER,
        upper_bound INTEGER,
        rows_done INTEGER NOT NULL DEFAULT 0,
        rows_estimate INTEGER,
        done INTEGER NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (migration, table_name)
    )""",
]


_SELECT_MIGRATIONS = (
    "SELECT name, phase, step, start_steps_applied, previous, document, catalog, error, started_at, "
    "updated_at, completed_at FROM _gapless_migrations"
)
_SELECT_BACKFILLS = "SELECT table_name, checkpoint, upper_bound, rows_done, rows_estimate, done, updated_at FROM _gapless_backfills"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


@dataclass(frozen=True)
class SqliteRecord:
    name: str
    phase: MigrationPhase
    step: int
    start_steps_applied: int
    previous: str | None
    document: dict[str, Any]
    catalog: dict[str, Any]
    error: str | None
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None

    @property
    def version_schema(self) -> str:
        """SQLite has no version schemas; the schema version is the migration's name."""
        return self.name

    @property
    def previous_schema(self) -> str | None:
        return self.previous


@dataclass(frozen=True)
class SqliteBackfill:
    table: str
    checkpoint: int | None
    upper_bound: int | None
    rows_done: int
    rows_estimate: int | None
    done: bool
    updated_at: datetime


class SqliteStateStore:
    """Reads and writes the state tables through the engine's connection (no transactions of its own)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def exists(self) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)
        ).fetchone()
        return row is not None

    def ensure(self) -> None:
        for statement in _DDL:
            self.conn.execute(statement)

    def _record(self, row: tuple[Any, ...]) -> SqliteRecord:
        started = _time(row[8])
        updated = _time(row[9])
        if started is None or updated is None:  # pragma: no cover - NOT NULL columns
            raise ValueError("migration record without timestamps")
        return SqliteRecord(
            name=str(row[0]),
            phase=row[1],
            step=int(row[2]),
            start_steps_applied=int(row[3]),
            previous=None if row[4] is None else str(row[4]),
            document=json.loads(row[5]),
            catalog=json.loads(row[6]),
            error=None if row[7] is None else str(row[7]),
            started_at=started,
            updated_at=updated,
            completed_at=_time(row[10]),
        )

    def _records(self, clause: str, params: tuple[Any, ...] = ()) -> list[SqliteRecord]:
        """The records a constant ``clause`` (WHERE / ORDER BY / LIMIT, values as ``?``) selects."""
        rows = self.conn.execute(_SELECT_MIGRATIONS + clause, params).fetchall()
        return [self._record(r) for r in rows]

    def get(self, name: str) -> SqliteRecord | None:
        return next(iter(self._records(" WHERE name = ?", (name,))), None)

    def active(self) -> SqliteRecord | None:
        found = self._records(
            " WHERE phase IN ('starting', 'started', 'completing', 'rolling_back') ORDER BY started_at LIMIT 1"
        )
        return next(iter(found), None)

    def all(self) -> list[SqliteRecord]:
        return self._records(" ORDER BY started_at, name")

    def current(self) -> SqliteRecord | None:
        """The last completed migration: the schema version the running code uses."""
        return next(
            iter(self._records(" WHERE phase = 'completed' ORDER BY completed_at DESC LIMIT 1")), None
        )

    def create(
        self, name: str, *, previous: str | None, document: dict[str, Any], catalog: dict[str, Any]
    ) -> None:
        now = _now()
        self.conn.execute("DELETE FROM _gapless_backfills WHERE migration = ?", (name,))
        self.conn.execute("DELETE FROM _gapless_migrations WHERE name = ?", (name,))
        self.conn.execute(
            "INSERT INTO _gapless_migrations (name, phase, previous, document, catalog, started_at, updated_at) "
            "VALUES (?, 'starting', ?, ?, ?, ?, ?)",
            (name, previous, json.dumps(document), json.dumps(catalog), now, now),
        )

    def advance(self, name: str, step: int) -> None:
        """Record that the steps before ``step`` of the current phase are done (inside the step's transaction)."""
        self.conn.execute(
            "UPDATE _gapless_migrations SET step = ?, error = NULL, updated_at = ? WHERE name = ?",
            (step, _now(), name),
        )

    def set_phase(self, name: str, phase: MigrationPhase, *, start_steps_applied: int | None = None) -> None:
        now = _now()
        self.conn.execute(
            "UPDATE _gapless_migrations SET phase = ?, step = 0, error = NULL, updated_at = ?, "
            "start_steps_applied = coalesce(?, start_steps_applied), "
            "completed_at = CASE WHEN ? = 'completed' THEN ? ELSE completed_at END WHERE name = ?",
            (phase, now, start_steps_applied, phase, now, name),
        )

    def record_error(self, name: str, error: str) -> None:
        self.conn.execute(
            "UPDATE _gapless_migrations SET error = ?, updated_at = ? WHERE name = ?",
            (error[:2000], _now(), name),
        )

    def _backfill(self, row: tuple[Any, ...]) -> SqliteBackfill:
        updated = _time(row[6])
        if updated is None:  # pragma: no cover - NOT NULL column
            raise ValueError("backfill record without a timestamp")
        return SqliteBackfill(
            table=str(row[0]),
            checkpoint=None if row[1] is None else int(row[1]),
            upper_bound=None if row[2] is None else int(row[2]),
            rows_done=int(row[3]),
            rows_estimate=None if row[4] is None else int(row[4]),
            done=bool(row[5]),
            updated_at=updated,
        )

    def _backfills(self, clause: str, params: tuple[Any, ...]) -> list[SqliteBackfill]:
        rows = self.conn.execute(_SELECT_BACKFILLS + clause, params).fetchall()
        return [self._backfill(r) for r in rows]

    def backfill(self, migration: str, table: str) -> SqliteBackfill | None:
        return next(
            iter(self._backfills(" WHERE migration = ? AND table_name = ?", (migration, table))), None
        )

    def backfills(self, migration: str) -> list[SqliteBackfill]:
        return self._backfills(" WHERE migration = ? ORDER BY table_name", (migration,))

    def begin_backfill(self, migration: str, table: str, estimate: int, upper_bound: int | None) -> None:
        """Record a backfill's bound (the largest rowid when it began) unless it began before."""
        self.conn.execute(
            "INSERT OR IGNORE INTO _gapless_backfills "
            "(migration, table_name, rows_estimate, upper_bound, done, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (migration, table, estimate, upper_bound, int(upper_bound is None), _now()),
        )

    def checkpoint(self, migration: str, table: str, key: int | None, rows: int, *, done: bool) -> None:
        """Move a backfill's checkpoint (inside the transaction that filled the rows)."""
        self.conn.execute(
            "UPDATE _gapless_backfills SET checkpoint = coalesce(?, checkpoint), rows_done = rows_done + ?, "
            "done = ?, updated_at = ? WHERE migration = ? AND table_name = ?",
            (key, rows, int(done), _now(), migration, table),
        )

    def forget_backfills(self, migration: str) -> None:
        self.conn.execute("DELETE FROM _gapless_backfills WHERE migration = ?", (migration,))
