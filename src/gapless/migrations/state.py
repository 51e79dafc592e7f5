"""Where each migration is, kept in the database it migrates (schema ``gapless_migrations``).

The state lives next to the data so that a step and its record commit in the same transaction: after a
crash the record says exactly which steps are done. One row per (base schema, migration) holds the
phase, the index of the next step of that phase, the migration document and the catalog snapshot the
plan was made from (so complete and rollback re-plan exactly what start planned). One row per
backfilled table holds the checkpoint: the primary key of the last row converted, written in the
transaction that converted it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

__all__ = [
    "ACTIVE_PHASES",
    "STATE_SCHEMA",
    "BackfillRecord",
    "MigrationRecord",
    "StateStore",
    "advisory_key",
]

STATE_SCHEMA = "gapless_migrations"

MigrationPhase = Literal["starting", "started", "completing", "completed", "rolling_back", "rolled_back"]
ACTIVE_PHASES: tuple[MigrationPhase, ...] = ("starting", "started", "completing", "rolling_back")

Conn = psycopg.Connection[TupleRow]

_DDL = [
    "CREATE SCHEMA IF NOT EXISTS {s}",
    """CREATE TABLE IF NOT EXISTS {s}.migrations (
        schema_name text NOT NULL,
        name text NOT NULL,
        phase text NOT NULL,
        step integer NOT NULL DEFAULT 0,
        start_steps_applied integer NOT NULL DEFAULT 0,
        version_schema text NOT NULL,
        previous_schema text,
        document jsonb NOT NULL,
        catalog jsonb NOT NULL,
        error text,
        started_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        completed_at timestamptz,
        PRIMARY KEY (schema_name, name)
    )""",
    """CREATE TABLE IF NOT EXISTS {s}.backfills (
        schema_name text NOT NULL,
        migration text NOT NULL,
        table_name text NOT NULL,
        checkpoint text[],
        upper_bound text[],
        rows_done bigint NOT NULL DEFAULT 0,
        rows_estimate bigint,
        done boolean NOT NULL DEFAULT false,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (schema_name, migration, table_name)
    )""",
]


def advisory_key(schema: str) -> int:
    """The session advisory lock that lets one ``gapless migrate`` at a time work on a schema."""
    digest = hashlib.sha256(f"gapless migrate {schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class MigrationRecord:
    schema: str
    name: str
    phase: MigrationPhase
    step: int
    start_steps_applied: int
    version_schema: str
    previous_schema: str | None
    document: dict[str, Any]
    catalog: dict[str, Any]
    error: str | None
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class BackfillRecord:
    table: str
    checkpoint: list[str] | None
    upper_bound: list[str] | None
    rows_done: int
    rows_estimate: int | None
    done: bool
    updated_at: datetime


_COLUMNS = (
    "schema_name, name, phase, step, start_steps_applied, version_schema, previous_schema, document, catalog, "
    "error, started_at, updated_at, completed_at"
)


class StateStore:
    """Reads and writes the state tables through the engine's connection (no transactions of its own)."""

    def __init__(self, conn: Conn, schema: str) -> None:
        self.conn = conn
        self.schema = schema

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=sql.Identifier(STATE_SCHEMA), cols=sql.SQL(_COLUMNS))

    def ensure(self) -> None:
        with self.conn.transaction():
            for statement in _DDL:
                self.conn.execute(self._q(statement))

    def _record(self, row: tuple[Any, ...]) -> MigrationRecord:
        return MigrationRecord(*row)

    def get(self, name: str) -> MigrationRecord | None:
        row = self.conn.execute(
            self._q("SELECT {cols} FROM {s}.migrations WHERE schema_name = %s AND name = %s"),
            (self.schema, name),
        ).fetchone()
        return None if row is None else self._record(row)

    def active(self) -> MigrationRecord | None:
        row = self.conn.execute(
            self._q(
                "SELECT {cols} FROM {s}.migrations WHERE schema_name = %s AND phase = ANY(%s) "
                "ORDER BY started_at LIMIT 1"
            ),
            (self.schema, list(ACTIVE_PHASES)),
        ).fetchone()
        return None if row is None else self._record(row)

    def all(self) -> list[MigrationRecord]:
        rows = self.conn.execute(
            self._q("SELECT {cols} FROM {s}.migrations WHERE schema_name = %s ORDER BY started_at, name"),
            (self.schema,),
        ).fetchall()
        return [self._record(r) for r in rows]

    def current(self) -> MigrationRecord | None:
        """The last completed migration: its schema is the version the running code uses."""
        row = self.conn.execute(
            self._q(
                "SELECT {cols} FROM {s}.migrations WHERE schema_name = %s AND phase = 'completed' "
                "ORDER BY completed_at DESC LIMIT 1"
            ),
            (self.schema,),
        ).fetchone()
        return None if row is None else self._record(row)

    def create(
        self,
        name: str,
        *,
        version_schema: str,
        previous_schema: str | None,
        document: dict[str, Any],
        catalog: dict[str, Any],
    ) -> None:
        with self.conn.transaction():
            self.conn.execute(
                self._q("DELETE FROM {s}.backfills WHERE schema_name = %s AND migration = %s"),
                (self.schema, name),
            )
            self.conn.execute(
                self._q("DELETE FROM {s}.migrations WHERE schema_name = %s AND name = %s"),
                (self.schema, name),
            )
            self.conn.execute(
                self._q(
                    "INSERT INTO {s}.migrations (schema_name, name, phase, version_schema, previous_schema, "
                    "document, catalog) VALUES (%s, %s, 'starting', %s, %s, %s, %s)"
                ),
                (self.schema, name, version_schema, previous_schema, Jsonb(document), Jsonb(catalog)),
            )

    def advance(self, name: str, step: int) -> None:
        """Record that the steps before ``step`` of the current phase are done (call inside the step's transaction)."""
        self.conn.execute(
            self._q(
                "UPDATE {s}.migrations SET step = %s, error = NULL, updated_at = now() "
                "WHERE schema_name = %s AND name = %s"
            ),
            (step, self.schema, name),
        )

    def set_phase(self, name: str, phase: MigrationPhase, *, start_steps_applied: int | None = None) -> None:
        self.conn.execute(
            self._q(
                "UPDATE {s}.migrations SET phase = %s, step = 0, error = NULL, updated_at = now(), "
                "start_steps_applied = coalesce(%s, start_steps_applied), "
                "completed_at = CASE WHEN %s = 'completed' THEN now() ELSE completed_at END "
                "WHERE schema_name = %s AND name = %s"
            ),
            (phase, start_steps_applied, phase, self.schema, name),
        )

    def record_error(self, name: str, error: str) -> None:
        self.conn.execute(
            self._q(
                "UPDATE {s}.migrations SET error = %s, updated_at = now() WHERE schema_name = %s AND name = %s"
            ),
            (error[:2000], self.schema, name),
        )

    def backfill(self, migration: str, table: str) -> BackfillRecord | None:
        row = self.conn.execute(
            self._q(
                "SELECT table_name, checkpoint, upper_bound, rows_done, rows_estimate, done, updated_at FROM {s}.backfills "
                "WHERE schema_name = %s AND migration = %s AND table_name = %s"
            ),
            (self.schema, migration, table),
        ).fetchone()
        return None if row is None else BackfillRecord(*row)

    def backfills(self, migration: str) -> list[BackfillRecord]:
        rows = self.conn.execute(
            self._q(
                "SELECT table_name, checkpoint, upper_bound, rows_done, rows_estimate, done, updated_at FROM {s}.backfills "
                "WHERE schema_name = %s AND migration = %s ORDER BY table_name"
            ),
            (self.schema, migration),
        ).fetchall()
        return [BackfillRecord(*r) for r in rows]

    def begin_backfill(
        self, migration: str, table: str, estimate: int, upper_bound: list[str] | None
    ) -> None:
        """Record a backfill's bound (the largest key when it began) unless it began before; nothing to do if None."""
        self.conn.execute(
            self._q(
                "INSERT INTO {s}.backfills (schema_name, migration, table_name, rows_estimate, upper_bound, done) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
            ),
            (self.schema, migration, table, estimate, upper_bound, upper_bound is None),
        )

    def checkpoint(self, migration: str, table: str, key: list[str] | None, rows: int, *, done: bool) -> None:
        """Move a backfill's checkpoint (call inside the transaction that converted the rows)."""
        self.conn.execute(
            self._q(
                "UPDATE {s}.backfills SET checkpoint = coalesce(%s, checkpoint), rows_done = rows_done + %s, "
                "done = %s, updated_at = now() WHERE schema_name = %s AND migration = %s AND table_name = %s"
            ),
            (key, rows, done, self.schema, migration, table),
        )

    def forget_backfills(self, migration: str) -> None:
        self.conn.execute(
            self._q("DELETE FROM {s}.backfills WHERE schema_name = %s AND migration = %s"),
            (self.schema, migration),
        )
