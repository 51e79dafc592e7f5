"""A SQLite plan as data: actions, steps with the write lock each takes and how long, and the plan.

SQLite has one lock that matters to writers: the database's write lock (``BEGIN IMMEDIATE``). Every
step that changes the database takes it, for one transaction, so what the plan shows per step is how
long that transaction holds it: ``brief`` (a schema change, no row is read), ``scan`` (reads every row,
e.g. a CHECK on a new column), ``rewrite`` (copies or rewrites every row: a table rebuild,
``DROP COLUMN``, an index build), ``batched`` (many short transactions). For the last three the plan
estimates the seconds from the table's row count and the copy rate measured on this database.

The step and plan types mirror the PostgreSQL ones (``gapless.migrations.steps``) attribute by
attribute, so the CLI renders both the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from gapless.migrations.actions import OnTable, describe_index, describe_sql
from gapless.migrations.model import Column, ColumnReference
from gapless.migrations.steps import BOTH, NEW, OLD, OperationFinding, Phase, PhasedSteps, Serves, step_dict

__all__ = [
    "WRITE_LOCK",
    "AddColumn",
    "Backfill",
    "ColumnEdit",
    "ContractTable",
    "CreateIndex",
    "CreateTable",
    "CreateTriggers",
    "DropColumn",
    "DropIndex",
    "DropTable",
    "DropTriggers",
    "HoldKind",
    "RunSql",
    "SqliteAction",
    "SqlitePlan",
    "SqliteStep",
    "SyncRule",
    "format_seconds",
]

WRITE_LOCK = "database write lock"
HoldKind = Literal["brief", "scan", "rewrite", "batched", "unknown"]


class _TableAction(OnTable):
    """What most actions are: a brief hold of the write lock on one table, no rewrite."""

    hold: ClassVar[HoldKind] = "brief"
    rewrites: ClassVar[bool] = False


@dataclass(frozen=True)
class SyncRule:
    """One column a gapless trigger writes, and from what.

    ``fill`` writes ``target`` from an SQL expression over the row when ``target`` is NULL (after an
    insert or update, and in the backfill). ``mirror`` keeps two columns holding the same value under
    two names (a rename): ``source`` is the old column, ``target`` the new one, and whichever of the
    two a statement wrote is copied to the other.
    """

    kind: Literal["fill", "mirror"]
    target: str
    source: str
    direction: Literal["up", "down"] = "up"

    def describe(self) -> str:
        if self.kind == "mirror":
            return f"{self.source} <-> {self.target}"
        return f"{self.target} ({self.direction})"


@dataclass(frozen=True)
class CreateTable(_TableAction):
    table: str
    columns: tuple[Column, ...]

    def describe(self) -> str:
        return f"create table {self.table}"


@dataclass(frozen=True)
class AddColumn(OnTable):
    """``ALTER TABLE ADD COLUMN``: a schema change only, no row is rewritten."""

    table: str
    column: str
    type: str
    default: str | None = None
    """A literal (the only defaults ADD COLUMN accepts); None: no default."""
    not_null: bool = False
    check: str | None = None
    references: ColumnReference | None = None

    rewrites: ClassVar[bool] = False

    @property
    def hold(self) -> HoldKind:
        # SQLite checks a new column's CHECK constraint against every existing row.
        return "scan" if self.check is not None else "brief"

    def describe(self) -> str:
        extra = f" default {self.default}" if self.default is not None else ""
        extra += " not null" if self.not_null else ""
        extra += f" check ({self.check})" if self.check else ""
        if self.references is not None:
            extra += f" references {self.references.table}({self.references.column})"
        return f"add column {self.table}.{self.column} {self.type}{extra}"


@dataclass(frozen=True)
class CreateTriggers(_TableAction):
    """The AFTER INSERT / AFTER UPDATE triggers that keep the old and the new columns of a table in step."""

    table: str
    rules: tuple[SyncRule, ...]

    def describe(self) -> str:
        return f"create sync triggers on {self.table}: {', '.join(r.describe() for r in self.rules)}"


@dataclass(frozen=True)
class DropTriggers(_TableAction):
    table: str

    def describe(self) -> str:
        return f"drop sync triggers on {self.table}"


@dataclass(frozen=True)
class Backfill(_TableAction):
    """Fill the new columns of existing rows in rowid order, one short write transaction per batch."""

    table: str
    rules: tuple[SyncRule, ...]

    hold: ClassVar[HoldKind] = "batched"

    def describe(self) -> str:
        return f"backfill {self.table} in batches (checkpointed): {', '.join(r.target for r in self.rules)}"


@dataclass(frozen=True)
class CreateIndex(_TableAction):
    """``CREATE INDEX``: SQLite has no CONCURRENTLY, so the build holds the write lock from start to end."""

    name: str
    table: str
    columns: tuple[str, ...]
    unique: bool = False
    where: str | None = None

    hold: ClassVar[HoldKind] = "rewrite"

    def describe(self) -> str:
        return describe_index(self.name, self.table, self.columns, unique=self.unique, where=self.where)


@dataclass(frozen=True)
class DropIndex(_TableAction):
    name: str
    table: str

    def describe(self) -> str:
        return f"drop index {self.name}"


@dataclass(frozen=True)
class DropColumn(_TableAction):
    """``ALTER TABLE DROP COLUMN``: SQLite rewrites every row of the table to remove the value."""

    table: str
    column: str

    hold: ClassVar[HoldKind] = "rewrite"
    rewrites: ClassVar[bool] = True

    def describe(self) -> str:
        return f"drop column {self.table}.{self.column} (rewrites every row)"


@dataclass(frozen=True)
class ColumnEdit:
    """A change to one column's definition, made by rebuilding the table."""

    column: str
    type: str | None = None
    not_null: bool = False
    default: str | None = None
    drop_default: bool = False

    def describe(self) -> str:
        parts = []
        if self.type is not None:
            parts.append(f"type {self.type}")
        if self.not_null:
            parts.append("not null")
        if self.default is not None:
            parts.append(f"default {self.default}")
        if self.drop_default:
            parts.append("no default")
        return f"{self.column}: {', '.join(parts)}"


@dataclass(frozen=True)
class ContractTable(OnTable):
    """Everything complete does to one table, in one write transaction.

    Drop the sync triggers; for each rename drop the new column and rename the old one to its name (so
    it keeps its constraints, indexes and position); drop dropped columns; rebuild the table when a
    column definition changes. One transaction, so no write of the new version can fall between the
    triggers going away and the columns being swapped.
    """

    table: str
    triggers: bool = True
    renames: tuple[tuple[str, str], ...] = ()
    drops: tuple[str, ...] = ()
    edits: tuple[ColumnEdit, ...] = ()

    @property
    def rebuild(self) -> bool:
        return bool(self.edits)

    @property
    def rewrites(self) -> bool:
        return bool(self.renames or self.drops or self.edits)

    @property
    def hold(self) -> HoldKind:
        return "rewrite" if self.rewrites else "brief"

    @property
    def rewrite_count(self) -> int:
        """How many times the rows are rewritten: once per dropped column, once for a rebuild."""
        return len(self.renames) + len(self.drops) + (1 if self.rebuild else 0)

    def describe(self) -> str:
        parts = ["drop sync triggers"] if self.triggers else []
        parts += [f"rename {a} to {b} (drop the new copy, rename the old)" for a, b in self.renames]
        parts += [f"drop column {c}" for c in self.drops]
        if self.edits:
            parts.append("rebuild with " + "; ".join(e.describe() for e in self.edits))
        return f"contract {self.table}: {', '.join(parts)}"


@dataclass(frozen=True)
class DropTable(_TableAction):
    table: str

    def describe(self) -> str:
        return f"drop table {self.table}"


@dataclass(frozen=True)
class RunSql:
    """Raw SQL of a ``sql`` operation, in one write transaction."""

    sql: str
    label: str = "up"

    hold: ClassVar[HoldKind] = "unknown"
    rewrites: ClassVar[bool] = False

    @property
    def tables(self) -> tuple[str, ...]:
        return ()

    def describe(self) -> str:
        return describe_sql(self.label, self.sql)


SqliteAction = (
    CreateTable
    | AddColumn
    | CreateTriggers
    | DropTriggers
    | Backfill
    | CreateIndex
    | DropIndex
    | DropColumn
    | ContractTable
    | DropTable
    | RunSql
)


def format_seconds(seconds: float) -> str:
    if seconds < 0.001:
        return "<1 ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s"


@dataclass(frozen=True)
class SqliteStep:
    """One step: an action, its phase, the versions that can run once it is done, and its lock estimate."""

    phase: Phase
    action: SqliteAction
    operation: int | None
    serves: Serves
    reversible: bool = True
    hold_seconds: float | None = None
    """Estimated seconds the write lock is held (per batch for a backfill); None: not estimated."""
    batches: int | None = None
    over_limit: bool = False
    """The estimate is above the engine's limit: start or complete refuses it unless forced."""

    @property
    def lock(self) -> str:
        return WRITE_LOCK if self.action.hold != "batched" else f"{WRITE_LOCK}, per batch"

    @property
    def rewrites(self) -> bool:
        return self.action.rewrites

    @property
    def duration(self) -> str:
        kind = self.action.hold
        if kind == "brief" or self.hold_seconds is None:
            return kind
        estimate = format_seconds(self.hold_seconds)
        estimate = estimate if estimate.startswith("<") else f"~{estimate}"
        if kind == "batched":
            return f"{estimate} per batch" + (f" x {self.batches}" if self.batches is not None else "")
        return f"{estimate} ({kind})" + (" OVER LIMIT" if self.over_limit else "")

    def describe(self) -> str:
        return self.action.describe()

    def as_dict(self) -> dict[str, object]:
        return step_dict(
            self,
            {
                "holdKind": self.action.hold,
                "holdSeconds": self.hold_seconds,
                "batches": self.batches,
                "overLimit": self.over_limit,
            },
        )


@dataclass(frozen=True)
class SqlitePlan(PhasedSteps[SqliteStep]):
    """The whole lifecycle of one migration on a SQLite database, as data."""

    migration: str
    database: str
    previous_schema: str | None
    """The previous completed migration (the old version's schema version); None: none yet."""
    steps: tuple[SqliteStep, ...]
    notes: tuple[str, ...] = ()
    """What the operator should know: measured copy rates, the journal mode, what is not enforced."""
    max_write_lock: float | None = None
    findings: tuple[OperationFinding, ...] = ()
    """Always empty: the linter knows PostgreSQL's locks, not SQLite's."""

    @property
    def schema(self) -> str:
        return "main"

    @property
    def version_schema(self) -> str:
        """SQLite has no version schemas; the schema version is the migration's name."""
        return self.migration

    @property
    def blocking_findings(self) -> list[OperationFinding]:
        return []

    @property
    def over_limit(self) -> list[SqliteStep]:
        """Steps whose estimated write-lock hold is above the limit."""
        return [s for s in self.steps if s.over_limit]

    def states(self) -> list[tuple[str, Serves]]:
        old = self.previous_schema or "the schema before any migration"
        return [
            (f"before start: the old version ({old}) reads and writes the old columns", OLD),
            (
                f"after start: the old version writes the old columns, the new version ({self.migration}) "
                "the new ones; triggers copy between them",
                BOTH,
            ),
            (f"after complete: only the new version ({self.migration})", NEW),
            (f"after rollback: the old version ({old})", OLD),
        ]
