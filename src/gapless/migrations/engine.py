"""The PostgreSQL migration engine: carries out a plan's start, complete and rollback steps.

The engine decides nothing itself: ``plan()`` (pure) says what to do, the engine does one step at a
time, each in its own short transaction with ``lock_timeout`` and retries, and records the step in the
same transaction, so a crash leaves every step either done and recorded or not done at all. Steps
that cannot run in a transaction (CREATE/DROP INDEX CONCURRENTLY) and the backfill (checkpointed per
batch) are idempotent instead. Running the same command again after a crash resumes where it stopped.

Only one ``gapless migrate`` works on a schema at a time (a session advisory lock), and only one
migration per schema is in progress at a time (start -> complete, or start -> rollback).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import psycopg
from psycopg import errors
from psycopg.rows import TupleRow

from gapless.core.errors import GaplessError, Problem, SpecError
from gapless.migrations import catalog
from gapless.migrations.actions import (
    RunSql,
)
from gapless.migrations.apply import StepRunner
from gapless.migrations.files import validate_migration
from gapless.migrations.gate import (
    ENGINE_APPLICATION_NAME,
    RevisionSchema,
    RunningRevisions,
    blocking_clients,
    blocking_revisions,
)
from gapless.migrations.info import info_from_json, info_to_json
from gapless.migrations.lifecycle import Lifecycle
from gapless.migrations.model import Migration
from gapless.migrations.plan import plan
from gapless.migrations.policy import BatchPolicy, LockPolicy
from gapless.migrations.reports import (
    ClientsConnectedError,
    CompleteReport,
    EngineEvent,
    MigrationStateError,
    MigrationStatus,
    Notice,
    Status,
    StepEvent,
)
from gapless.migrations.state import STATE_SCHEMA, MigrationRecord, StateStore, advisory_key
from gapless.migrations.steps import Plan, Step

__all__ = [
    "ClientsConnectedError",
    "CompleteReport",
    "EngineEvent",
    "EngineSettings",
    "MigrationEngine",
    "MigrationStateError",
    "MigrationStatus",
    "Notice",
    "Status",
    "StepEvent",
]

Conn = psycopg.Connection[TupleRow]


@dataclass(frozen=True)
class EngineSettings:
    """Which schema to migrate, how version schemas are named, and how hard to push."""

    schema: str = "public"
    prefix: str | None = None
    """Version schemas are ``<prefix>_<migration>``; default: the schema's name."""
    lock: LockPolicy = field(default_factory=LockPolicy)
    batch: BatchPolicy = field(default_factory=BatchPolicy)


class MigrationEngine(Lifecycle[MigrationRecord, Step]):
    """Runs migrations against one database schema; use as a context manager (it connects on enter)."""

    sql_action = RunSql
    recording_errors = (psycopg.Error,)

    def __init__(
        self,
        database_url: str,
        settings: EngineSettings | None = None,
        *,
        on_event: Callable[[EngineEvent], None] | None = None,
    ) -> None:
        self.database_url = database_url
        self.settings = settings or EngineSettings()
        self.on_event = on_event
        self._conn: Conn | None = None
        self._locked = False

    # -- connection -------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        try:
            conn = psycopg.connect(
                self.database_url, autocommit=True, application_name=ENGINE_APPLICATION_NAME
            )
        except psycopg.Error as e:
            raise GaplessError(f"cannot connect to the database: {str(e).strip()}") from e
        try:
            exists = catalog.schema_exists(conn, self.settings.schema)
        except BaseException:
            conn.close()
            raise
        if not exists:
            conn.close()
            raise MigrationStateError(f"schema {self.settings.schema!r} does not exist in this database")
        self._conn = conn
        return self

    def _lock_for_changes(self) -> None:
        """Take the schema's advisory lock (held until disconnect) and create the state tables if needed."""
        if self._locked:
            return
        conn = self.conn
        # Wait up to one lock timeout: a run killed a moment ago may still have a backend holding it.
        timeout = f"{max(1, round(self.settings.lock.timeout * 1000))}ms"
        try:
            with conn.transaction():
                conn.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))
                conn.execute("SELECT pg_advisory_lock(%s)", (advisory_key(self.settings.schema),))
        except errors.LockNotAvailable as e:
            raise MigrationStateError(
                f"another gapless migrate is working on schema {self.settings.schema!r}; try again when it is done"
            ) from e
        StateStore(conn, self.settings.schema).ensure()
        self._locked = True

    def _has_state(self) -> bool:
        return self._locked or catalog.relation_exists(self.conn, STATE_SCHEMA, "migrations")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._locked = False

    @property
    def conn(self) -> Conn:
        if self._conn is None:
            raise RuntimeError("use MigrationEngine as a context manager")
        return self._conn

    @property
    def store(self) -> StateStore:
        return StateStore(self.conn, self.settings.schema)

    @property
    def schema(self) -> str:
        return self.settings.schema

    @property
    def prefix(self) -> str:
        return self.settings.prefix or self.settings.schema

    def _emit(self, event: EngineEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # -- planning ---------------------------------------------------------------------------------
    def _previous_schema(self) -> str | None:
        if not self._has_state():
            return None
        current = self.store.current()
        if current is None or not catalog.schema_exists(self.conn, current.version_schema):
            return None
        return current.version_schema

    def plan(self, migration: Migration) -> Plan:
        """Plan ``migration`` against the live schema (raises ``SpecError`` if it does not fit)."""
        info = catalog.read_schema(self.conn, self.schema)
        return plan(migration, info, prefix=self.prefix, previous_schema=self._previous_schema())

    def _plan_of(self, record: MigrationRecord) -> Plan:
        migration = validate_migration(record.document, source=f"stored migration {record.name}")
        prefix = record.version_schema.removesuffix(f"_{record.name}")
        return plan(
            migration,
            info_from_json(record.catalog),
            prefix=prefix,
            previous_schema=record.previous_schema,
        )

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, migration: Migration) -> Plan:
        """Expand: apply every start step, or resume a start that stopped; return the plan."""
        self._lock_for_changes()
        document = migration.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        record = self._resumable(migration, document)
        if record is not None and record.phase == "started":
            self._emit(Notice(f"{migration.name} is already started; next: complete or rollback"))
            return self._plan_of(record)
        if record is not None:
            self._emit(Notice(f"resuming the start of {migration.name} at step {record.step + 1}"))
        else:
            info = catalog.read_schema(self.conn, self.schema)
            previous = self._previous_schema()
            p = plan(migration, info, prefix=self.prefix, previous_schema=previous)
            if p.blocking_findings:
                raise SpecError(
                    f"migration {migration.name}",
                    [
                        Problem(
                            f.path,
                            f"{f.finding.rule}: {f.finding.message}; fix: {f.finding.fix} "
                            f"(or acknowledge it with ignore_lint: [{f.finding.rule}])",
                        )
                        for f in p.blocking_findings
                    ],
                )
            self.store.create(
                migration.name,
                version_schema=p.version_schema,
                previous_schema=previous,
                document=document,
                catalog=info_to_json(info),
            )
            record = self._created(migration.name)
        p = self._plan_of(record)
        self._finish_start(record, p)
        return p

    def complete(
        self, *, force: bool = False, running_revisions: RunningRevisions | None = None
    ) -> CompleteReport:
        """Contract the migration in progress, once no client of another schema version remains.

        ``running_revisions`` is the seam for a control plane: a callable that lists the revisions
        with running instances and the schema version each needs. Without it only database
        connections are checked, and the report says so.
        """
        record = self._completable()
        p = self._plan_of(record)
        skipped: list[str] = []
        unchecked: list[str] = []
        clients = blocking_clients(record.name, catalog.database_clients(self.conn))
        revisions: list[RevisionSchema] = []
        if running_revisions is None:
            unchecked.append("instances of a gapless control plane (none is connected to this command)")
        else:
            revisions = blocking_revisions(record.name, running_revisions())
        if clients or revisions:
            if not force:
                raise ClientsConnectedError("complete", record.name, clients, revisions)
            skipped += [f"client {c.describe()}" for c in clients]
            skipped += [
                f"revision {r.revision} of {r.app} (schema version {r.schema_version})" for r in revisions
            ]
            for line in skipped:
                self._emit(
                    Notice(f"--force: completing although {line} still needs the old schema", loud=True)
                )
        self._finish_complete(record, p)
        return CompleteReport(skipped, unchecked)

    def rollback(self, *, force: bool = False) -> None:
        """Undo the start of the migration in progress; the old version's schema is untouched."""
        record = self._active("roll back")
        p = self._plan_of(record)
        self._check_rollback(record, p)
        if record.phase in ("started", "completing"):
            clients = [c for c in catalog.gapless_clients(self.conn) if c.version == record.name]
            if clients and not force:
                raise ClientsConnectedError("roll back", record.name, clients)
            for c in clients:
                self._emit(
                    Notice(f"--force: rolling back although {c.describe()} uses the new schema", loud=True)
                )
        self._finish_rollback(record, p)

    def status(self) -> Status:
        """Where every migration of the schema is, and which clients are connected (reads only)."""
        current, active, statuses = self._migrations()
        return Status(
            schema=self.schema,
            current_version=current,
            active=active,
            migrations=statuses,
            clients=catalog.gapless_clients(self.conn),
            unidentified_clients=catalog.unidentified_clients(self.conn),
        )

    # -- internals --------------------------------------------------------------------------------
    @property
    def _where(self) -> str:
        return f"schema {self.schema!r}"

    def _transaction(self, what: str, work: Callable[[], object]) -> None:
        with self.conn.transaction():
            work()

    def _do_step(self, record: MigrationRecord, step: Step, index: int) -> None:
        StepRunner(self.conn, self.store, self.settings, self._emit).run(record.name, step, index)

    def _step_event(self, step: Step, index: int, total: int, *, done: bool) -> None:
        self._emit(StepEvent(step.phase, index, total, step, done=done))
