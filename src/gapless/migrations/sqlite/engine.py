"""The SQLite migration engine: start, complete and rollback of a migration on one database file.

The lifecycle, the state it keeps and the way it resumes are those of the PostgreSQL engine; what
differs is what SQLite allows (see ``plan.py``) and what can be checked:

- ``plan`` reads the schema, plans purely, rehearses the plan on a copy of the schema (no rows) so
  SQLite itself refuses what it would refuse later, and estimates from the copy rate it measures how
  long each step holds the database's write lock.
- Every step is one ``BEGIN IMMEDIATE`` transaction with its record (the backfill: one per batch with
  its checkpoint), so a crash leaves each step done and recorded or not done; running the command again
  resumes.
- A step estimated to hold the write lock longer than ``max_write_lock`` (an index build, a table
  rebuild, DROP COLUMN on a big table) is refused unless forced: SQLite has no CONCURRENTLY, and every
  writer waits while it runs.
- SQLite cannot list the connections of a database (there is no ``pg_stat_activity``), so complete
  cannot see whether the old version still runs. It says so and asks for an explicit ``force``, or
  checks the control plane's instances through ``running_revisions`` (the seam the PostgreSQL engine
  exposes). Rollback likewise needs ``force`` once the new version may be running.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from gapless.core.errors import GaplessError, Problem, SpecError
from gapless.migrations.backfill import BackfillProgress
from gapless.migrations.files import validate_migration
from gapless.migrations.gate import RunningRevisions, blocking_revisions
from gapless.migrations.lifecycle import Lifecycle
from gapless.migrations.model import Migration
from gapless.migrations.policy import BatchPolicy, LockPolicy
from gapless.migrations.reports import (
    ClientsConnectedError,
    CompleteReport,
    MigrationStateError,
    Notice,
    Status,
)
from gapless.migrations.sqlite import sqlite_path
from gapless.migrations.sqlite.actions import Backfill, RunSql, SqlitePlan, SqliteStep, format_seconds
from gapless.migrations.sqlite.apply import apply_action, rehearse
from gapless.migrations.sqlite.backfill import run_backfill
from gapless.migrations.sqlite.catalog import measure_rates, read_schema
from gapless.migrations.sqlite.estimate import estimate
from gapless.migrations.sqlite.locks import migration_lock, write_transaction
from gapless.migrations.sqlite.plan import plan_sqlite
from gapless.migrations.sqlite.schema import CopyRates, SqliteSchema, schema_from_json, schema_to_json
from gapless.migrations.sqlite.state import SqliteRecord, SqliteStateStore
from gapless.migrations.steps import Phase

__all__ = [
    "MIN_SQLITE_VERSION",
    "SqliteEvent",
    "SqliteMigrationEngine",
    "SqliteSettings",
    "SqliteStatus",
    "SqliteStepEvent",
]

MIN_SQLITE_VERSION = (3, 35, 0)
"""ALTER TABLE DROP COLUMN arrived in 3.35.0."""

NO_CLIENT_LIST = (
    "clients of the old version: SQLite cannot list the connections of a database (there is no "
    "pg_stat_activity)"
)


@dataclass(frozen=True)
class SqliteSettings:
    """How long to wait for the write lock, how to batch the backfill, and the longest acceptable lock."""

    lock: LockPolicy = field(default_factory=LockPolicy)
    batch: BatchPolicy = field(default_factory=BatchPolicy)
    max_write_lock: float = 1.0
    """Seconds; a step estimated to hold the write lock longer is refused unless forced."""


@dataclass(frozen=True)
class SqliteStepEvent:
    """A step starts (``done`` False) or has finished (``done`` True)."""

    phase: Phase
    index: int
    total: int
    step: SqliteStep
    done: bool


SqliteEvent = SqliteStepEvent | BackfillProgress | Notice


@dataclass(frozen=True)
class SqliteStatus(Status):
    """Status of a SQLite database: the same fields, and the fact that clients cannot be seen."""

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "engine": "sqlite", "clientsVisible": False}


class SqliteMigrationEngine(Lifecycle[SqliteRecord, SqliteStep]):
    """Runs migrations against one SQLite database; use as a context manager (it opens the file on enter)."""

    sql_action = RunSql
    recording_errors = (sqlite3.Error, GaplessError)
    backfill_checkpoints = True

    def __init__(
        self,
        database_url: str,
        settings: SqliteSettings | None = None,
        *,
        on_event: Callable[[SqliteEvent], None] | None = None,
    ) -> None:
        self.database_url = database_url
        self.settings = settings or SqliteSettings()
        self.on_event = on_event
        self._conn: sqlite3.Connection | None = None
        self._stack = ExitStack()
        self._locked = False
        self.path = Path()

    # -- connection -------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        try:
            self.path = sqlite_path(self.database_url)
        except ValueError as e:
            raise SpecError("--database-url", [Problem("", str(e))]) from e
        if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
            raise GaplessError(
                f"SQLite {sqlite3.sqlite_version} is too old: gapless needs 3.35 or later (ALTER TABLE DROP COLUMN)"
            )
        if not self.path.is_file():
            raise GaplessError(f"cannot open the database: {self.path} does not exist")
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.settings.lock.timeout)
        conn.execute("PRAGMA foreign_keys = OFF")  # a table rebuild must not delete or check child rows
        self._conn = conn
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._stack.close()
        self._locked = False

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("use SqliteMigrationEngine as a context manager")
        return self._conn

    @property
    def store(self) -> SqliteStateStore:
        return SqliteStateStore(self.conn)

    def _emit(self, event: SqliteEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def _notice(self, text: str) -> None:
        self._emit(Notice(text))

    def _has_state(self) -> bool:
        return self.store.exists()

    def _lock_for_changes(self) -> None:
        """Hold the one-migrate-per-database lock until exit.

        The state tables are created with the first migration's record, so a start that is refused
        leaves the database exactly as it was.
        """
        if self._locked:
            return
        self._stack.enter_context(migration_lock(self.path, wait=self.settings.lock.timeout))
        self._locked = True

    # -- planning ---------------------------------------------------------------------------------
    def _previous(self) -> str | None:
        if not self._has_state():
            return None
        current = self.store.current()
        return current.name if current else None

    def _estimated(self, p: SqlitePlan, schema: SqliteSchema) -> SqlitePlan:
        heavy = {s.action.tables[0].lower() for s in p.steps if s.action.tables and s.action.hold != "brief"}
        rates: dict[str, CopyRates] = {}
        for name in sorted(heavy):
            table = schema.table(name)
            if table is not None and not table.virtual:
                rates[name] = measure_rates(self.conn, table.name)
        p = estimate(
            p, schema, rates, batch_size=self.settings.batch.size, max_write_lock=self.settings.max_write_lock
        )
        mode = str(self.conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if mode != "wal":
            note = (
                f"journal_mode is {mode}: readers block each step's commit and the commit blocks readers; "
                "WAL (PRAGMA journal_mode=WAL, kept in the file) lets reads run through every step"
            )
            p = replace(p, notes=(*p.notes, note))
        return p

    def plan(self, migration: Migration) -> SqlitePlan:
        """Plan ``migration`` against the live database, rehearse it on a copy of the schema, estimate its locks.

        Raises ``SpecError`` naming each operation SQLite cannot do safely or refuses; changes nothing.
        """
        return self._plan(migration, read_schema(self.conn))

    def _plan(self, migration: Migration, schema: SqliteSchema) -> SqlitePlan:
        p = plan_sqlite(migration, schema, database=str(self.path), previous=self._previous())
        problems = rehearse(self.conn, p, [op.kind for op in migration.operations])
        if problems:
            raise SpecError(f"migration {migration.name} (SQLite)", problems)
        return self._estimated(p, schema)

    def _plan_of(self, record: SqliteRecord) -> SqlitePlan:
        migration = validate_migration(record.document, source=f"stored migration {record.name}")
        return plan_sqlite(
            migration, schema_from_json(record.catalog), database=str(self.path), previous=record.previous
        )

    def _check_limits(
        self, p: SqlitePlan, phase: Phase, first: int, *, force: bool
    ) -> tuple[SqlitePlan, list[str]]:
        """Refuse (unless ``force``) the steps from ``first`` on whose estimated lock hold is over the limit.

        ``p`` is estimated here from the live row counts unless it carries estimates already. Returns
        the estimated plan and what ``force`` accepted.
        """
        estimated = p if p.max_write_lock is not None else self._estimated(p, read_schema(self.conn))
        over = [s for s in estimated.phase(phase)[first:] if s.over_limit]
        lines = [
            f"{s.describe()}: estimated to hold the database write lock for {format_seconds(s.hold_seconds or 0)} "
            f"(limit {format_seconds(self.settings.max_write_lock)}); writers wait that long"
            for s in over
        ]
        if lines and not force:
            raise SpecError(
                f"migration {p.migration} (SQLite {phase})",
                [
                    Problem(
                        f"operations.{s.operation}" if s.operation is not None else "",
                        f"{line}. Pass --force to accept it, or run it when writes can wait",
                    )
                    for s, line in zip(over, lines, strict=True)
                ],
            )
        for line in lines:
            self._emit(Notice(f"--force: {line}", loud=True))
        return estimated, lines

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, migration: Migration, *, force: bool = False) -> SqlitePlan:
        """Expand: apply every start step, or resume a start that stopped; return the plan."""
        self._lock_for_changes()
        document = migration.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        record = self._resumable(migration, document)
        if record is not None and record.phase == "started":
            self._notice(f"{migration.name} is already started; next: complete or rollback")
            return self._plan_of(record)
        if record is not None:
            self._notice(f"resuming the start of {migration.name} at step {record.step + 1}")
            p, _ = self._check_limits(self._plan_of(record), "start", record.step, force=force)
        else:
            schema = read_schema(self.conn)
            p, _ = self._check_limits(self._plan(migration, schema), "start", 0, force=force)
            previous = self._previous()

            def record_it(c: sqlite3.Connection) -> None:
                self.store.ensure()
                self.store.create(
                    migration.name, previous=previous, document=document, catalog=schema_to_json(schema)
                )

            write_transaction(
                self.conn,
                record_it,
                policy=self.settings.lock,
                what="record the migration",
                on_retry=self._notice,
            )
            record = self._created(migration.name)
        self._finish_start(record, p)
        return p

    def complete(
        self, *, force: bool = False, running_revisions: RunningRevisions | None = None
    ) -> CompleteReport:
        """Contract the migration in progress once the old version is gone (confirmed, see the module doc)."""
        record = self._completable()
        p = self._plan_of(record)
        skipped: list[str] = []
        unchecked: list[str] = []
        if running_revisions is None:
            unchecked.append("instances of a gapless control plane (none is connected to this command)")
            if not force:
                raise MigrationStateError(
                    f"cannot prove that the old version is gone: {NO_CLIENT_LIST}, and no control plane is "
                    f"connected to this command. Once every instance of the old version has stopped, run "
                    f"complete --force to confirm it"
                )
            skipped.append(f"{NO_CLIENT_LIST}; you confirmed with --force that the old version is gone")
        else:
            unchecked.append(f"{NO_CLIENT_LIST}; only the control plane's instances were checked")
            revisions = blocking_revisions(record.name, running_revisions())
            if revisions and not force:
                raise ClientsConnectedError("complete", record.name, [], revisions)
            skipped += [
                f"revision {r.revision} of {r.app} (schema version {r.schema_version})" for r in revisions
            ]
        first = record.step if record.phase == "completing" else 0
        p, accepted = self._check_limits(p, "complete", first, force=force)
        skipped += accepted
        for line in skipped:
            self._emit(Notice(f"--force: completing although {line}", loud=True))
        self._finish_complete(record, p)
        return CompleteReport(skipped, unchecked)

    def rollback(self, *, force: bool = False) -> None:
        """Undo the start of the migration in progress; rows the new version wrote stay, in the old columns."""
        record = self._active("roll back")
        p = self._plan_of(record)
        self._check_rollback(record, p)
        if record.phase in ("started", "completing"):
            if not force:
                raise MigrationStateError(
                    f"cannot prove that the new version ({record.name}) is gone: SQLite cannot list the "
                    "connections of a database (there is no pg_stat_activity). Rolling back drops the columns "
                    "it uses; once it has stopped, run rollback --force to confirm it"
                )
            self._emit(
                Notice(
                    f"--force: rolling back although SQLite cannot show whether {record.name} still runs",
                    loud=True,
                )
            )
        first = record.step if record.phase == "rolling_back" else 0
        p, _ = self._check_limits(p, "rollback", first, force=force)
        self._finish_rollback(record, p)

    def status(self) -> SqliteStatus:
        """Where every migration of the database is (reads only); connected clients cannot be seen on SQLite."""
        current, active, statuses = self._migrations()
        return SqliteStatus(
            schema="main",
            current_version=current,
            active=active,
            migrations=statuses,
            clients=[],
            unidentified_clients=[],
        )

    # -- internals --------------------------------------------------------------------------------
    def _transaction(self, what: str, work: Callable[[], object]) -> None:
        write_transaction(
            self.conn, lambda c: work(), policy=self.settings.lock, what=what, on_retry=self._notice
        )

    @property
    def _where(self) -> str:
        return str(self.path)

    def _do_step(self, record: SqliteRecord, step: SqliteStep, index: int) -> None:
        a = step.action
        if isinstance(a, Backfill):
            run_backfill(
                self.conn,
                self.store,
                migration=record.name,
                table=a.table,
                rules=a.rules,
                batch=self.settings.batch,
                lock=self.settings.lock,
                on_progress=self._emit,
                on_retry=self._notice,
            )
            self._advance(record.name, index + 1)
            return

        def work(c: sqlite3.Connection) -> None:
            apply_action(c, a)
            self.store.advance(record.name, index + 1)

        write_transaction(
            self.conn, work, policy=self.settings.lock, what=step.describe(), on_retry=self._notice
        )

    def _step_event(self, step: SqliteStep, index: int, total: int, *, done: bool) -> None:
        self._emit(SqliteStepEvent(step.phase, index, total, step, done=done))
