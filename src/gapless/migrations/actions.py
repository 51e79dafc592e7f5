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
    "RenameColumn",
    "RenameTable",
    "ReplaceColumn",
    "RunSql",
    "SetDefault",
    "SetNotNull",
    "ValidateConstraint",
]

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
ROW_EXCLUSIVE = "ROW EXCLUSIVE"
ACCESS_SHARE = "ACCESS SHARE"

Duration = Literal["brief", "scan", "batched", "unknown"]


@dataclass(frozen=True)
class CreateTable:
    table: str
    columns: tuple[Column, ...]
    references: tuple[str, ...] = ()
    """Physical names of the tables its foreign keys reference."""
    lock = ACCESS_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table, *self.references)

    def describe(self) -> str:
        extra = f" (+ {SHARE_ROW_EXCLUSIVE} on {', '.join(self.references)})" if self.references else ""
        return f"create table {self.table}{extra}"


@dataclass(frozen=True)
class AddColumn:
    """ADD COLUMN without a table rewrite: no default, or a constant one (stored in the catalog)."""

    table: str
    column: str
    type: str | None
    """None: the type of ``like`` (an alter_column that changes only nullability), read at start."""
    like: str | None = None
    default: str | None = None
    not_null: bool = False
    lock = ACCESS_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

    def describe(self) -> str:
        typ = self.type or f"the type of {self.like}"
        extra = f" default {self.default}" if self.default is not None else ""
        extra += " not null" if self.not_null else ""
        return f"add column {self.table}.{self.column} {typ}{extra}"


@dataclass(frozen=True)
class SetDefault:
    table: str
    column: str
    default: str | None
    lock = ACCESS_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

    def describe(self) -> str:
        what = f"set default {self.default}" if self.default is not None else "drop default"
        return f"{what} on {self.table}.{self.column}"


@dataclass(frozen=True)
class AddCheck:
    """CHECK ... NOT VALID: enforced for new writes at once, existing rows are checked by ValidateConstraint."""

    table: str
    name: str
    expression: str
    lock = ACCESS_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

    def describe(self) -> str:
        return f"add check {self.name} on {self.table} NOT VALID: {self.expression}"


@dataclass(frozen=True)
class AddForeignKey:
    table: str
    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: str = "NO ACTION"
    lock = SHARE_ROW_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table, self.ref_table)

    def describe(self) -> str:
        return (
            f"add foreign key {self.name} {self.table}({', '.join(self.columns)}) -> "
            f"{self.ref_table}({', '.join(self.ref_columns)}) NOT VALID (both tables)"
        )


@dataclass(frozen=True)
class CreateIndex:
    """CREATE INDEX CONCURRENTLY; an invalid leftover of a failed build is dropped and the build retried."""

    name: str
    table: str
    columns: tuple[str, ...]
    unique: bool = False
    method: str = "btree"
    where: str | None = None
    lock = SHARE_UPDATE_EXCLUSIVE
    duration: ClassVar[Duration] = "scan"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

    def describe(self) -> str:
        kind = "unique index" if self.unique else "index"
        where = f" where {self.where}" if self.where else ""
        return f"create {kind} {self.name} concurrently on {self.table}({', '.join(self.columns)}){where}"


@dataclass(frozen=True)
class CreateSyncTrigger:
    """The BEFORE INSERT OR UPDATE trigger that keeps the old and the new columns of one table in step."""

    table: str
    function: str
    version_schema: str
    shape: TableShape
    lock = SHARE_ROW_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

    def describe(self) -> str:
        cols = ", ".join(f"{s.target} ({s.direction})" for s in self.shape.syncs)
        return f"create sync trigger on {self.table}: {cols}"


@dataclass(frozen=True)
class Backfill:
    """Touch every existing row once, in primary-key order and short transactions, so the trigger fills it."""

    table: str
    lock = ROW_EXCLUSIVE
    duration: ClassVar[Duration] = "batched"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

    def describe(self) -> str:
        return f"backfill {self.table} in batches (row locks only, checkpointed)"


@dataclass(frozen=True)
class CreateVersionSchema:
    """The schema of views that exposes the new shape of every table of the base schema."""

    schema: str
    shapes: tuple[TableShape, ...]
    lock = ACCESS_SHARE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return ()

    def describe(self) -> str:
        return f"create schema {self.schema} with a view per table exposing the new shape"


@dataclass(frozen=True)
class ValidateConstraint:
    table: str
    name: str
    lock = SHARE_UPDATE_EXCLUSIVE
    duration: ClassVar[Duration] = "scan"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

    def describe(self) -> str:
        return f"validate constraint {self.name} on {self.table}"


@dataclass(frozen=True)
class DropVersionSchema:
    schema: str
    lock = ACCESS_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return ()

    def describe(self) -> str:
        return f"drop schema {self.schema} and its views (locks the views only)"


@dataclass(frozen=True)
class DropSyncTrigger:
    table: str
    function: str
    lock = ACCESS_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

    def describe(self) -> str:
        return f"drop sync trigger on {self.table}"


@dataclass(frozen=True)
class DropColumn:
    table: str
    column: str
    lock = ACCESS_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

    def describe(self) -> str:
        return f"drop column {self.table}.{self.column} (catalog only, no rewrite)"


@dataclass(frozen=True)
class ReplaceColumn:
    """Drop the old column and give the shadow column its name, in one transaction."""

    table: str
    column: str
    shadow: str
    lock = ACCESS_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

    def describe(self) -> str:
        return f"drop column {self.table}.{self.column}, rename {self.shadow} to {self.column}"


@dataclass(frozen=True)
class RenameColumn:
    table: str
    column: str
    to: str
    lock = ACCESS_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

    def describe(self) -> str:
        return f"rename column {self.table}.{self.column} to {self.to}"


@dataclass(frozen=True)
class RenameTable:
    table: str
    to: str
    lock = ACCESS_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

    def describe(self) -> str:
        return f"rename table {self.table} to {self.to}"


@dataclass(frozen=True)
class DropTable:
    table: str
    lock = ACCESS_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

    def describe(self) -> str:
        return f"drop table {self.table}"


@dataclass(frozen=True)
class DropIndex:
    name: str
    table: str | None = None
    lock = SHARE_UPDATE_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,) if self.table else ()

    def describe(self) -> str:
        return f"drop index {self.name} concurrently"


@dataclass(frozen=True)
class DropConstraint:
    table: str
    name: str
    lock = ACCESS_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

    def describe(self) -> str:
        return f"drop constraint {self.name} on {self.table}"


@dataclass(frozen=True)
class SetNotNull:
    """SET NOT NULL after a validated CHECK (col IS NOT NULL): PostgreSQL skips the scan, then the check goes."""

    table: str
    column: str
    check: str
    lock = ACCESS_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

    def describe(self) -> str:
        return f"set not null on {self.table}.{self.column} (proved by validated {self.check}), drop {self.check}"


@dataclass(frozen=True)
class AttachUnique:
    table: str
    name: str
    index: str
    lock = ACCESS_EXCLUSIVE
    duration: ClassVar[Duration] = "brief"
    rewrites = False

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table,)

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
        first = " ".join(self.sql.split())
        return f"run sql {self.label}: {first[:70]}{'...' if len(first) > 70 else ''}"


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
