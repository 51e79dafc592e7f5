"""Carry out one SQLite plan step inside a write transaction, and rehearse a plan on a copy of the schema.

``apply_action`` does the work of every step except the backfill (which is many transactions, see
``backfill.py``); the engine calls it inside ``write_transaction`` together with the step's record.

``rehearse`` answers "would SQLite accept this?" before anything changes: it copies the database's
schema (no rows) into a private in-memory database and runs start, complete and rollback there with the
same code. SQLite's own checks then decide: an expression naming a missing column, a DROP COLUMN on a
column a UNIQUE constraint or a view uses, a default ADD COLUMN cannot take, a raw ``sql`` that does not
parse. Each refusal is reported against the operation that asked for the step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from gapless.core.errors import Problem
from gapless.migrations.sqlite import render
from gapless.migrations.sqlite.actions import (
    AddColumn,
    Backfill,
    ContractTable,
    CreateIndex,
    CreateTable,
    CreateTriggers,
    DropColumn,
    DropIndex,
    DropTable,
    DropTriggers,
    RunSql,
    SqliteAction,
    SqlitePlan,
    SqliteStep,
)
from gapless.migrations.sqlite.catalog import GAPLESS_PREFIX, live_columns
from gapless.migrations.sqlite.contract import contract_table, drop_column, drop_sync_triggers
from gapless.migrations.sqlite.text import quote
from gapless.migrations.steps import Phase

__all__ = ["apply_action", "rehearse", "split_statements"]


def split_statements(script: str) -> list[str]:
    """The statements of a script, split where SQLite says a statement is complete (triggers included)."""
    out: list[str] = []
    current = ""
    for piece in script.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \t\r\n;"):
                out.append(current.strip())
            current = ""
    if current.strip(" \t\r\n;"):
        out.append(current.strip().rstrip(";"))
    return out


def apply_action(conn: sqlite3.Connection, a: SqliteAction) -> None:
    """Do one step's work in the caller's write transaction (not the backfill)."""
    match a:
        case CreateTable():
            conn.execute(render.create_table(a))
        case AddColumn():
            conn.execute(render.add_column(a))
        case CreateTriggers():
            drop_sync_triggers(conn, a.table)
            rowid = render.rowid_name([c for c, _ in live_columns(conn, a.table)])
            for statement in render.sync_triggers(a.table, a.rules, rowid):
                conn.execute(statement)
        case DropTriggers():
            drop_sync_triggers(conn, a.table)
        case CreateIndex():
            conn.execute(render.create_index(a))
        case DropIndex():
            conn.execute(f"DROP INDEX IF EXISTS {quote(a.name)}")
        case DropColumn():
            drop_column(conn, a.table, a.column)
        case ContractTable():
            contract_table(conn, a)
        case DropTable():
            conn.execute(f"DROP TABLE IF EXISTS {quote(a.table)}")
        case RunSql():
            for statement in split_statements(a.sql):
                conn.execute(statement)
        case Backfill():
            raise TypeError("the backfill runs in batches, not in one transaction")


def _compile_triggers(conn: sqlite3.Connection, a: CreateTriggers) -> None:
    """Prepare statements that fire the new triggers (on no rows), so SQLite resolves their expressions."""
    t = quote(a.table)
    writable = [quote(c) for c, generated in live_columns(conn, a.table) if not generated]
    conn.execute(f"INSERT INTO {t} ({', '.join(writable)}) SELECT {', '.join(writable)} FROM {t} WHERE 0")  # noqa: S608 -- identifiers quoted by quote(), expressions from the validated migration file
    for column in {c for r in a.rules for c in (r.target, r.source if r.kind == "mirror" else r.target)}:
        conn.execute(f"UPDATE {t} SET {quote(column)} = {quote(column)} WHERE 0")  # noqa: S608 -- identifiers quoted by quote(), expressions from the validated migration file


def _run_on_copy(conn: sqlite3.Connection, step: SqliteStep) -> None:
    a = step.action
    conn.execute("BEGIN")
    try:
        if isinstance(a, Backfill):
            rowid = render.rowid_name([c for c, _ in live_columns(conn, a.table)])
            for first in (True, False):
                for statement in render.backfill_updates(a.table, a.rules, rowid, first=first):
                    conn.execute(statement, {"after": 0, "last": 0})
        else:
            apply_action(conn, a)
            if isinstance(a, CreateTriggers):
                _compile_triggers(conn, a)
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()
        raise


def _copy_schema(objects: Sequence[tuple[str, str, str]]) -> sqlite3.Connection:
    copy = sqlite3.connect(":memory:", isolation_level=None)
    order = {"table": 0, "index": 1, "view": 2, "trigger": 3}
    for _kind, name, sql in sorted(objects, key=lambda o: order.get(o[0], 4)):
        if name.lower().startswith(("sqlite_", GAPLESS_PREFIX)):
            continue
        try:
            copy.execute(sql)
        except sqlite3.Error:
            continue  # e.g. a virtual table whose module this process lacks; gapless does not touch those
    return copy


def _path(plan: SqlitePlan, step: SqliteStep, kinds: Sequence[str]) -> str:
    if step.operation is None:
        return "operations"
    return f"operations.{step.operation}.{kinds[step.operation]}"


def rehearse(conn: sqlite3.Connection, plan: SqlitePlan, kinds: Sequence[str]) -> list[Problem]:
    """Run the plan's start, complete and (separately) start and rollback on copies of the schema.

    ``kinds`` are the operations' kinds, for naming them in problems. Returns what SQLite refused.
    """
    objects = [
        (str(k), str(n), str(s))
        for k, n, s in conn.execute(
            "SELECT type, name, sql FROM main.sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
        ).fetchall()
    ]
    problems: list[Problem] = []
    passes: tuple[tuple[Phase, Phase], ...] = (("start", "complete"), ("start", "rollback"))
    for phases in passes:
        copy = _copy_schema(objects)
        try:
            copy.execute("PRAGMA foreign_keys = ON")  # as strict as an application that enforces them
            for phase in phases:
                if phase != "start":
                    copy.execute("PRAGMA foreign_keys = OFF")  # as the engine runs complete and rollback
                for step in plan.phase(phase):
                    try:
                        _run_on_copy(copy, step)
                    except sqlite3.Error as e:
                        problem = Problem(
                            _path(plan, step, kinds),
                            f"{phase} step '{step.describe()}' is refused by SQLite (rehearsed on a copy of "
                            f"this database's schema): {e}",
                        )
                        if problem not in problems:
                            problems.append(problem)
                        return problems
        finally:
            copy.close()
    return problems
