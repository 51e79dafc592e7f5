"""Carry out one plan step against PostgreSQL: render it, run it under lock_timeout, record it.

Transactional steps run with their record in one transaction; CONCURRENTLY steps and the backfill are
idempotent and recorded right after. Steps that need the live catalog (views, triggers, a shadow
column of the current type) read it here, at execution time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from gapless.core.errors import GaplessError
from gapless.migrations import catalog, ddl
from gapless.migrations.actions import (
    AddColumn,
    Backfill,
    CreateIndex,
    CreateSyncTrigger,
    CreateVersionSchema,
    DropIndex,
    DropSyncTrigger,
    DropVersionSchema,
    RunSql,
)
from gapless.migrations.backfill import run_backfill
from gapless.migrations.ddl import Query
from gapless.migrations.locks import run_with_lock_timeout
from gapless.migrations.policy import BatchPolicy, LockPolicy
from gapless.migrations.reports import EngineEvent, Notice
from gapless.migrations.state import STATE_SCHEMA, StateStore
from gapless.migrations.steps import Step
from gapless.migrations.triggers import create_sync_trigger, drop_sync_trigger, function_body

__all__ = ["RunnerSettings", "StepRunner"]

Conn = psycopg.Connection[TupleRow]


class RunnerSettings(Protocol):
    """What a step needs to know: the schema and how hard to push."""

    @property
    def schema(self) -> str: ...
    @property
    def lock(self) -> LockPolicy: ...
    @property
    def batch(self) -> BatchPolicy: ...


def _execute_one(conn: Conn, statement: Query) -> None:
    conn.execute(statement)


class StepRunner:
    """Runs steps through one connection (in autocommit mode) and one state store."""

    def __init__(
        self, conn: Conn, store: StateStore, settings: RunnerSettings, emit: Callable[[EngineEvent], None]
    ) -> None:
        self.conn = conn
        self.store = store
        self.settings = settings
        self.emit = emit

    def _in_transaction(self, name: str, step: Step, index: int, statements: list[Query]) -> None:
        def work(c: Conn) -> None:
            for s in statements:
                c.execute(s)
            self.store.advance(name, index + 1)

        self._under_lock_timeout(step, work)

    def _concurrently(self, step: Step, work: Callable[[Conn], None]) -> None:
        self._under_lock_timeout(step, work, transactional=False)

    def _under_lock_timeout(
        self, step: Step, work: Callable[[Conn], None], *, transactional: bool = True
    ) -> None:
        run_with_lock_timeout(
            self.conn,
            work,
            policy=self.settings.lock,
            what=step.describe(),
            schema=self.settings.schema,
            tables=step.action.tables,
            transactional=transactional,
            on_retry=self.emit,
        )

    def _advance(self, name: str, index: int) -> None:
        with self.conn.transaction():
            self.store.advance(name, index + 1)

    def run(self, name: str, step: Step, index: int) -> None:
        """Carry out one step and record it as done (in its own transaction when it can be)."""
        a = step.action
        schema = self.settings.schema
        match a:
            case CreateIndex():
                self._concurrently(step, lambda c: self._create_index(c, a))
                self._advance(name, index)
            case DropIndex():
                statement = ddl.drop_index(schema, a)
                self._concurrently(step, lambda c: _execute_one(c, statement))
                self._advance(name, index)
            case Backfill():
                run_backfill(
                    self.conn,
                    self.store,
                    schema=schema,
                    migration=name,
                    table=a.table,
                    batch=self.settings.batch,
                    lock=self.settings.lock,
                    on_progress=self.emit,
                    on_retry=self.emit,
                )
                self._advance(name, index)
            case CreateSyncTrigger():
                columns = [c for c, _ in catalog.table_columns(self.conn, schema, a.table)]
                body = function_body(schema, a, columns).as_string(self.conn)
                self._in_transaction(name, step, index, create_sync_trigger(schema, STATE_SCHEMA, a, body))
            case DropSyncTrigger():
                exists = catalog.relation_exists(self.conn, schema, a.table)
                drops = drop_sync_trigger(schema, STATE_SCHEMA, a.table, a.function, table_exists=exists)
                self._in_transaction(name, step, index, drops)
            case CreateVersionSchema():
                tables = {
                    name: [c for c, _ in catalog.table_columns(self.conn, schema, name)]
                    for name in catalog.read_schema(self.conn, schema).tables
                }
                invoker = self.conn.info.server_version >= 150000
                if not invoker:
                    self.emit(
                        Notice(
                            "PostgreSQL before 15 has no security_invoker views: the version schema's views "
                            "check the privileges of the migration's role, not the application's"
                        )
                    )
                views = ddl.create_version_schema(
                    schema,
                    a,
                    tables,
                    security_invoker=invoker,
                    migration=name,
                    grants=catalog.table_grants(self.conn, schema),
                    usage=catalog.schema_usage(self.conn, schema),
                )
                self._in_transaction(name, step, index, views)
            case DropVersionSchema():
                self._in_transaction(name, step, index, self._drop_version_schema(a))
            case RunSql():
                raw: list[Query] = [
                    sql.SQL("SELECT set_config('search_path', {}, true)").format(
                        sql.Literal(sql.Identifier(schema).as_string(self.conn))
                    ),
                    sql.SQL(a.sql),  # raw SQL of a sql operation, linted at plan time
                ]
                self._in_transaction(name, step, index, raw)
            case AddColumn() if a.type is None:
                types = dict(catalog.table_columns(self.conn, schema, a.table))
                like = a.like or ""
                if like not in types:
                    raise GaplessError(f"column {a.table}.{like} disappeared since the migration was planned")
                resolved = AddColumn(a.table, a.column, types[like], default=a.default, not_null=a.not_null)
                self._in_transaction(name, step, index, ddl.render(schema, resolved))
            case _:
                self._in_transaction(name, step, index, ddl.render(schema, a))

    def _create_index(self, c: Conn, a: CreateIndex) -> None:
        valid = catalog.index_state(c, self.settings.schema, a.name)
        if valid is True:
            return  # built by an earlier run that stopped before recording it
        if valid is False:
            self.emit(
                Notice(f"dropping invalid index {a.name} left by a failed build, then building it again")
            )
            c.execute(ddl.drop_index(self.settings.schema, a))
        c.execute(ddl.create_index(self.settings.schema, a))

    def _drop_version_schema(self, a: DropVersionSchema) -> list[Query]:
        views, others = catalog.views_in_schema(self.conn, a.schema)
        if others:
            raise GaplessError(
                f"schema {a.schema} holds objects gapless did not create ({', '.join(others)}); "
                "move them elsewhere, then run the command again"
            )
        statements: list[Query] = [
            sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(a.schema, v)) for v in views
        ]
        statements.append(sql.SQL("DROP SCHEMA IF EXISTS {}").format(sql.Identifier(a.schema)))
        return statements
