"""The steps a plan is made of, as frozen data: what to do, on which table, under which lock.

Each action knows the PostgreSQL lock it takes (the level of the documentation's "Table-Level Locks"
table), how long it holds it (``brief``: a catalog change; ``scan``: reads the table but lets writes
through; ``batched``: many short transactions) and whether it rewrites the table. The engine renders
actions to SQL (``ddl.py``); nothing here touches a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from gapless.migrations.model import Column
from gapless.migrations.shape import TableShape

__all__ = [
    "ACCESS_EXCLUSIVE",
    "ACCESS_SHARE",
    "ROW_EXCLUSIVE",
    "SHARE_ROW_EXCLUSIVE",
    "SHARE_UPDATE_EXCLUSIVE",
    "Action",
    "AddCheck",
    "AddColumn",
    "AddForeignKey",
    "AttachUnique",
    "Backfill",
    "CreateIndex",
    "CreateSyncTrigger",
    "CreateTable",
    "CreateVersionSchema",
    "DropColumn",
    "DropConstraint",
    "DropIndex",
    "DropSyncTrigger",
    "DropTable",
    "DropVersionSchema",
    "Duration",
    "OnTable",
    "RenameColumn",
    "RenameTable",
    "ReplaceColumn",
    "RunSql",
    "SetDefault",
    "SetNotNull",
    "ValidateConstraint",
    "describe_index",
    "describe_sql",
]

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
ROW_EXCLUSIVE = "ROW EXCLUSIVE"
ACCESS_SHARE = "ACCESS SHARE"

Duration = Literal["brief", "scan", "batched", "unknown"]


class OnTable:
    """An action on one table: the tables it touches are that one (shared with the SQLite actions)."""

    table: str

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)


class _Action:
    """What most actions take: ACCESS EXCLUSIVE, held briefly, no rewrite; a subclass names what differs."""

    lock: ClassVar[str] = ACCESS_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites: ClassVar[bool] = False


class _TableAction(_Action, OnTable):
    """An action on one table with the defaults of ``_Action``."""


def describe_index(
    name: str, table: str, columns: tuple[str, ...], *, unique: bool, where: str | None, how: str = ""
) -> str:
    """``create [unique] index NAME[ how] on TABLE(COLUMNS)[ where ...]`` (both engines' wording)."""
    kind = "unique index" if unique else "index"
    where_ = f" where {where}" if where else ""
    return f"create {kind} {name}{how} on {table}({', '.join(columns)}){where_}"


def describe_sql(label: str, sql: str) -> str:
    """``run sql LABEL: ...`` with the first 70 characters of the statement(s), white space folded."""
    first = " ".join(sql.split())
    return f"run sql {label}: {first[:70]}{'...' if len(first) > 70 else ''}"


@dataclass(frozen=True)
class CreateTable(_Action):
    table: str
    columns: tuple[Column, ...]
    references: tuple[str, ...] = ()
    """Physical names of the tables its foreign keys reference."""

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table, *self.references)

    def describe(self) -> str:
        extra = f" (+ {SHARE_ROW_EXCLUSIVE} on {', '.join(self.references)})" if self.references else ""
        return f"create table {self.table}{extra}"


@dataclass(frozen=True)
class AddColumn(_TableAction):
    """ADD COLUMN without a table rewrite: no default, or a constant one (stored in the catalog)."""

    table: str
    column: str
    type: str | None
    """None: the type of ``like`` (an alter_column that changes only nullability), read at start."""
    like: str | None = None
    default: str | None = None
    not_null: bool = False

    def describe(self) -> str:
        typ = self.type or f"the type of {self.like}"
        extra = f" default {self.default}" if self.default is not None else ""
        extra += " not null" if self.not_null else ""
        return f"add column {self.table}.{self.column} {typ}{extra}"


@dataclass(frozen=True)
class SetDefault(_TableAction):
    table: str
    column: str
    default: str | None

    def describe(self) -> str:
        what = f"set default {self.default}" if self.default is not None else "drop default"
        return f"{what} on {self.table}.{self.column}"


@dataclass(frozen=True)
class AddCheck(_TableAction):
    """CHECK ... NOT VALID: enforced for new writes at once, existing rows are checked by ValidateConstraint."""

    table: str
    name: str
    expression: str

    def describe(self) -> str:
        return f"add check {self.name} on {self.table} NOT VALID: {self.expression}"


@dataclass(frozen=True)
class AddForeignKey(_Action):
    table: str
    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str = "NO ACTION"
    lock = SHARE_ROW_EXCLUSIVE

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table, self.ref_table)

    def describe(self) -> str:
        return (
            f"add foreign key {self.name} {self.table}({', '.join(self.columns)}) -> "
            f"{self.ref_table}({', '.join(self.ref_columns)}) NOT VALID (both tables)"
        )


@dataclass(frozen=True)
class CreateIndex(_TableAction):
    """CREATE INDEX CONCURRENTLY; an invalid leftover of a failed build is dropped and the build retried."""

    name: str
    table: str
    columns: tuple[str, ...]
    unique: bool = False
    method: str = "btree"
    where: str | None = None
    lock = SHARE_UPDATE_EXCLUSIVE
    duration: ClassVar[Duration] = "scan"

    def describe(self) -> str:
        return describe_index(
            self.name, self.table, self.columns, unique=self.unique, where=self.where, how=" concurrently"
        )


@dataclass(frozen=True)
class CreateSyncTrigger(_TableAction):
    """The BEFORE INSERT OR UPDATE trigger that keeps the old and the new columns of one table in step."""

    table: str
    function: str
    version_schema: str
    shape: TableShape
    lock = SHARE_ROW_EXCLUSIVE

    def describe(self) -> str:
        cols = ", ".join(f"{s.target} ({s.direction})" for s in self.shape.syncs)
        return f"create sync trigger on {self.table}: {cols}"


@dataclass(frozen=True)
class Backfill(_TableAction):
    """Touch every existing row once, in primary-key order and short transactions, so the trigger fills it."""

    table: str
    lock = ROW_EXCLUSIVE
    duration: ClassVar[Duration] = "batched"

    def describe(self) -> str:
        return f"backfill {self.table} in batches (row locks only, checkpointed)"


@dataclass(frozen=True)
class CreateVersionSchema(_Action):
    """The schema of views that exposes the new shape of every table of the base schema."""

    schema: str
    shapes: tuple[TableShape, ...]
    lock = ACCESS_SHARE

    @property
    def tables(self) -> tuple[str, ...]:
        return ()

    def describe(self) -> str:
        return f"create schema {self.schema} with a view per table exposing the new shape"


@dataclass(frozen=True)
class ValidateConstraint(_TableAction):
    table: str
    name: str
    lock = SHARE_UPDATE_EXCLUSIVE
    duration: ClassVar[Duration] = "scan"

    def describe(self) -> str:
        return f"validate constraint {self.name} on {self.table}"


@dataclass(frozen=True)
class DropVersionSchema(_Action):
    schema: str

    @property
    def tables(self) -> tuple[str, ...]:
        return ()

    def describe(self) -> str:
        return f"drop schema {self.schema} and its views (locks the views only)"


@dataclass(frozen=True)
class DropSyncTrigger(_TableAction):
    table: str
    function: str

    def describe(self) -> str:
        return f"drop sync trigger on {self.table}"


@dataclass(frozen=True)
class DropColumn(_TableAction):
    table: str
    column: str

    def describe(self) -> str:
        return f"drop column {self.table}.{self.column} (catalog only, no rewrite)"


@dataclass(frozen=True)
class ReplaceColumn(_TableAction):
    """Drop the old column and give the shadow column its name, in one transaction."""

    table: str
    column: str
    shadow: str

    def describe(self) -> str:
        return f"drop column {self.table}.{self.column}, rename {self.shadow} to {self.column}"


@dataclass(frozen=True)
class RenameColumn(_TableAction):
    table: str
    column: str
    to: str

    def describe(self) -> str:
        return f"rename column {self.table}.{self.column} to {self.to}"


@dataclass(frozen=True)
class RenameTable(_TableAction):
    table: str
    to: str

    def describe(self) -> str:
        return f"rename table {self.table} to {self.to}"


@dataclass(frozen=True)
class DropTable(_TableAction):
    table: str

    def describe(self) -> str:
        return f"drop table {self.table}"


@dataclass(frozen=True)
class DropIndex(_Action):
    name: str
    table: str | None = None
    lock = SHARE_UPDATE_EXCLUSIVE

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,) if self.table else ()

    def describe(self) -> str:
        return f"drop index {self.name} concurrently"


@dataclass(frozen=True)
class DropConstraint(_TableAction):
    table: str
    name: str

    def describe(self) -> str:
        return f"drop constraint {self.name} on {self.table}"


@dataclass(frozen=True)
class SetNotNull(_TableAction):
    """SET NOT NULL after a validated CHECK (col IS NOT NULL): PostgreSQL skips the scan, then the check goes."""

    table: str
    column: str
    check: str

    def describe(self) -> str:
        return f"set not null on {self.table}.{self.column} (proved by validated {self.check}), drop {self.check}"


@dataclass(frozen=True)
class AttachUnique(_TableAction):
    table: str
    name: str
    index: str

    def describe(self) -> str:
        return f"add unique constraint {self.name} on {self.table} using index {self.index}"


@dataclass(frozen=True)
class RunSql:
    """Raw SQL of a ``sql`` operation, run in one transaction with lock_timeout."""

    sql: str
    tables: tuple[str, ...] = ()
    lock_level: str = "as written"
    duration: Duration = "unknown"
    rewrites_table: bool = False
    label: str = "up"

    @property
    def lock(self) -> str:
        return self.lock_level

    @property
    def rewrites(self) -> bool:
        return self.rewrites_table

    def describe(self) -> str:
        return describe_sql(self.label, self.sql)


Action = (
    CreateTable
    | AddColumn
    | SetDefault
    | AddCheck
    | AddForeignKey
    | CreateIndex
    | CreateSyncTrigger
    | Backfill
    | CreateVersionSchema
    | ValidateConstraint
    | DropVersionSchema
    | DropSyncTrigger
    | DropColumn
    | ReplaceColumn
    | RenameColumn
    | RenameTable
    | DropTable
    | DropIndex
    | DropConstraint
    | SetNotNull
    | AttachUnique
    | RunSql
)
