"""Plan a migration for SQLite: what start, complete and rollback do, and what SQLite cannot do safely.

``plan_sqlite(migration, schema)`` is pure. SQLite has no views an application version can be pointed
at, so both versions use the real tables: the old version reads and writes the old columns, the new
version the new ones, and triggers on the table copy between them. Everything follows from that and
from SQLite's own limits:

- A new column is added without a default or NOT NULL when it must be filled (``up``), because a row
  the old version inserts must arrive with the column NULL for the trigger to fill it; the default and
  NOT NULL are applied at complete by rebuilding the table.
- A rename adds the new name as a second column kept equal to the old one; complete drops that copy and
  renames the old column, which keeps its constraints, indexes and position.
- A type change is a change of one column's declared type, applied at complete. When ``up``/``down``
  convert the value, or the type's affinity changes, the two versions would need two representations
  under one name, which only views can give: refused.
- SQLite checks NOT NULL before any trigger runs and a trigger cannot change the row being inserted, so
  a version that leaves out a NOT NULL column without a default cannot insert at all: operations that
  would put a version in that position are refused.
- Nothing else can be done without holding the database's write lock for a whole copy of the table
  (foreign keys and renamed tables are refused; indexes, DROP COLUMN and rebuilds are estimated, and the
  engine refuses them above its limit unless forced).

Start order: structure (tables, columns, raw ``sql``), triggers, backfill, indexes. Complete: drop
indexes, then one transaction per table (triggers, swaps, drops, rebuild), dropped tables, ``sql`` with
``phase: complete``. Rollback undoes start in reverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gapless.migrations import model
from gapless.migrations.model import Migration
from gapless.migrations.planner import OperationPlanner
from gapless.migrations.sqlite.actions import (
    AddColumn,
    Backfill,
    ColumnEdit,
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
    SyncRule,
)
from gapless.migrations.sqlite.schema import SqliteSchema, SqliteTable
from gapless.migrations.sqlite.text import affinity, is_identity, is_literal, mentions
from gapless.migrations.steps import BOTH, NEW, OLD, constraint_name

__all__ = ["plan_sqlite"]

_SERIAL_TYPES = {"serial", "bigserial", "smallserial", "serial4", "serial8", "serial2"}


@dataclass
class _Table:
    name: str
    info: SqliteTable | None
    created_by: int | None = None
    columns: dict[str, str] = field(default_factory=dict)
    """lower-cased name in the new version -> column name"""
    gone: set[str] = field(default_factory=set)
    touched: dict[str, int] = field(default_factory=dict)
    rules: list[SyncRule] = field(default_factory=list)
    renames: list[tuple[str, str]] = field(default_factory=list)
    drops: list[str] = field(default_factory=list)
    edits: list[ColumnEdit] = field(default_factory=list)
    added: set[str] = field(default_factory=set)


class _Planner(OperationPlanner[_Table]):
    fold_case = True

    def __init__(self, migration: Migration, schema: SqliteSchema) -> None:
        super().__init__(migration)
        self.schema = schema
        self.notes: list[str] = []
        self.tables: dict[str, _Table] = {}
        self.new_names: set[str] = set()
        self.structure: list[tuple[int, SqliteAction]] = []
        self.indexes: list[tuple[int, SqliteAction]] = []
        self.complete_first: list[tuple[int, SqliteAction]] = []
        self.drop_tables: list[tuple[int, SqliteAction]] = []
        self.complete_sql: list[tuple[int, SqliteAction]] = []

    # -- helpers -------------------------------------------------------------------------------
    def refuse(self, path: str, what: str, why: str) -> None:
        self.problem(path, f"{what} cannot be done safely on SQLite: {why}")

    def find_table(self, name: str, path: str) -> _Table | None:
        key = name.lower()
        if key in self.tables:
            return self.tables[key]
        info = self.schema.table(name)
        if info is None:
            if name.lower() in {v.lower() for v in self.schema.views}:
                self.problem(path, f"{name!r} is a view, not a table")
            else:
                self.problem(path, f"table {name!r} does not exist in this database")
            return None
        if info.virtual:
            self.problem(path, f"table {name!r} is a virtual table; gapless migrates ordinary tables only")
            return None
        st = _Table(info.name, info, columns={c.name.lower(): c.name for c in info.columns})
        self.tables[key] = st
        return st

    def column(self, st: _Table, name: str, path: str) -> str | None:
        found = st.columns.get(name.lower())
        if found is None:
            self.problem(path, f"column {name!r} does not exist in table {st.name!r} of the new version")
        return found

    def free_column(self, st: _Table, name: str, path: str) -> bool:
        physical = st.info is not None and st.info.column(name) is not None
        if name.lower() in st.columns or name.lower() in st.added or physical:
            why = "" if name.lower() in st.columns else " (it still exists until complete)"
            self.problem(path, f"column {name!r} already exists in table {st.name!r}{why}")
            return False
        return True

    def free_name(self, name: str, path: str, what: str) -> bool:
        if self.schema.taken(name) or name.lower() in self.new_names:
            self.problem(path, f"{what} {name!r}: a table, view, index or trigger of that name exists")
            return False
        self.new_names.add(name.lower())
        return True

    def needs_rowid(self, st: _Table, path: str, what: str) -> bool:
        if st.info is not None and st.info.without_rowid:
            self.refuse(
                path,
                what,
                f"table {st.name!r} is WITHOUT ROWID; the triggers and the batched backfill find rows by rowid",
            )
            return False
        return True

    # -- operations ------------------------------------------------------------------------------
    def create_table(self, i: int, op: model.CreateTable) -> None:
        p = f"operations.{i}.create_table"
        if not self.free_name(op.table, f"{p}.table", "cannot create table"):
            return
        for j, c in enumerate(op.columns):
            if c.type.lower() in _SERIAL_TYPES:
                self.problem(
                    f"{p}.columns.{j}.type",
                    f"SQLite has no {c.type} type: write integer with primary_key: true (the rowid)",
                )
            if c.references is not None:
                ref = self.table(c.references.table, f"{p}.columns.{j}.references.table")
                if ref is not None:
                    self.column(ref, c.references.column, f"{p}.columns.{j}.references.column")
        st = _Table(op.table, None, created_by=i, columns={c.name.lower(): c.name for c in op.columns})
        self.tables[op.table.lower()] = st
        self.structure.append((i, CreateTable(op.table, tuple(op.columns))))

    def add_column(self, i: int, op: model.AddColumn) -> None:
        p = f"operations.{i}.add_column"
        st = self.table(op.table, f"{p}.table", for_column_change=i)
        if st is None or not self.free_column(st, op.column.name, f"{p}.column.name"):
            return
        c = op.column
        self.touch(st, c.name, i, f"{p}.column.name")
        not_null = not c.nullable
        fill = op.up
        if fill is None and c.default is not None and not is_literal(c.default):
            fill = c.default  # ADD COLUMN takes literal defaults only: fill by trigger, set it at complete
        if fill is None:
            action = AddColumn(
                st.name, c.name, c.type, c.default, not_null, check=c.check, references=c.references
            )
        else:
            if not self.needs_rowid(st, f"{p}.table", f"add_column {op.table}.{c.name} with up"):
                return
            action = AddColumn(st.name, c.name, c.type, check=c.check, references=c.references)
            st.rules.append(SyncRule("fill", c.name, fill))
            if not_null or c.default is not None:
                st.edits.append(ColumnEdit(c.name, not_null=not_null, default=c.default))
                applied = " and ".join(
                    [*(["NOT NULL"] if not_null else []), *(["the default"] if c.default is not None else [])]
                )
                self.notes.append(
                    f"{st.name}.{c.name}: {applied} apply from complete on (a table rebuild); until then "
                    f"the trigger fills NULLs from {'up' if op.up is not None else 'the default'}"
                )
        self.structure.append((i, action))
        st.columns[c.name.lower()] = c.name
        st.added.add(c.name.lower())
        if c.unique:
            name = constraint_name(st.name, c.name, "key")
            if self.free_name(name, f"{p}.column.unique", "cannot create the unique index"):
                self.indexes.append((i, CreateIndex(name, st.name, (c.name,), unique=True)))

    def _droppable(self, st: _Table, name: str, path: str, what: str) -> bool:
        """The checks shared by drop_column and rename_column: what the new version's inserts can do."""
        info = st.info.column(name) if st.info else None
        if info is None:
            return True
        if info.primary_key:
            self.refuse(path, what, f"{st.name}.{name} is part of the primary key, which identifies rows")
            return False
        if info.generated:
            self.refuse(path, what, f"{st.name}.{name} is a generated column")
            return False
        if info.not_null and info.default is None:
            self.refuse(
                path,
                what,
                f"{st.name}.{name} is NOT NULL without a default, so every insert of the new version (which "
                "leaves it out) would fail: SQLite checks NOT NULL before any trigger runs, and a trigger "
                "cannot change the row being inserted. Give it a default first (alter_column with "
                "default, applied at complete), then run this in a later migration",
            )
            return False
        return True

    def drop_column(self, i: int, op: model.DropColumn) -> None:
        p = f"operations.{i}.drop_column"
        changed = self.changed_column(i, p, op.table, op.column)
        if changed is None:
            return
        st, name = changed
        if not self._droppable(st, name, f"{p}.column", f"drop_column {op.table}.{op.column}"):
            return
        info = st.info.column(name) if st.info else None
        if op.down is not None:
            if info is not None and info.default is not None:
                self.problem(
                    f"{p}.down",
                    f"{op.table}.{op.column} has a default, which SQLite gives the new version's inserts "
                    "before any trigger runs, so down would never be used: leave it out",
                )
                return
            if not self.needs_rowid(st, f"{p}.table", f"drop_column {op.table}.{op.column} with down"):
                return
            st.rules.append(SyncRule("fill", name, op.down, "down"))
        del st.columns[name.lower()]
        st.gone.add(name.lower())
        st.drops.append(name)

    def rename_column(self, i: int, op: model.RenameColumn) -> None:
        p = f"operations.{i}.rename_column"
        what = f"rename_column {op.table}.{op.from_} -> {op.to}"
        st = self.table(op.table, f"{p}.table", for_column_change=i)
        if st is None:
            return
        name = self.column(st, op.from_, f"{p}.from")
        if name is None or not self.free_column(st, op.to, f"{p}.to"):
            return
        if not self.touch(st, name, i, f"{p}.from"):
            return
        if not self._droppable(st, name, f"{p}.from", what) or not self.needs_rowid(st, f"{p}.table", what):
            return
        info = st.info.column(name) if st.info else None
        self.structure.append((i, AddColumn(st.name, op.to, info.type if info else "")))
        st.rules.append(SyncRule("mirror", op.to, name))
        st.renames.append((name, op.to))
        del st.columns[name.lower()]
        st.gone.add(name.lower())
        st.columns[op.to.lower()] = op.to
        st.added.add(op.to.lower())

    def alter_column(self, i: int, op: model.AlterColumn) -> None:
        p = f"operations.{i}.alter_column"
        what = f"alter_column {op.table}.{op.column}"
        changed = self.changed_column(i, p, op.table, op.column)
        if changed is None:
            return
        st, name = changed
        info = st.info.column(name) if st.info else None
        if info is not None and info.primary_key:
            self.refuse(f"{p}.column", what, "the column is part of the primary key")
            return
        if info is not None and info.generated:
            self.refuse(f"{p}.column", what, "the column is generated")
            return
        if op.nullable is True:
            self.refuse(
                f"{p}.nullable",
                what,
                "the old NOT NULL stays in force until a table rebuild, so the new version's NULL writes "
                "would fail while both versions run; SQLite cannot relax NOT NULL without rebuilding the "
                "table",
            )
            return
        if op.type is not None:
            old_type = info.type if info else ""
            if info is not None and affinity(old_type) != affinity(op.type):
                self.refuse(
                    f"{p}.type",
                    what,
                    f"{old_type or '(no type)'} has {affinity(old_type)} affinity and {op.type} "
                    f"{affinity(op.type)}: the two versions would store different representations under one "
                    "column name, which needs views; add a new column with add_column (and up) instead "
                    "and drop the old one later",
                )
                return
            if not (is_identity(op.up or "", name) and is_identity(op.down or "", name)):
                self.refuse(
                    f"{p}.up",
                    what,
                    "up/down convert the stored value, so the old and the new version would need two "
                    "representations under one column name, which needs views; add a new column with "
                    "add_column (and up) instead and drop the old one later",
                )
                return
        if op.nullable is False:
            if is_identity(op.up or "", name):
                self.problem(f"{p}.up", "must turn NULL into a value (e.g. coalesce(col, 0))")
                return
            if not self.needs_rowid(st, f"{p}.table", what):
                return
            st.rules.append(SyncRule("fill", name, op.up or ""))
            self.notes.append(
                f"{st.name}.{name}: up fills NULLs only (SQLite keeps one column, so other values are not "
                "converted); NOT NULL applies from complete on (a table rebuild)"
            )
        if op.default is not None or op.drop_default:
            self.notes.append(f"{st.name}.{name}: the new default applies from complete on (a table rebuild)")
        st.edits.append(
            ColumnEdit(
                name,
                type=op.type,
                not_null=op.nullable is False,
                default=op.default,
                drop_default=op.drop_default,
            )
        )

    def create_index(self, i: int, op: model.CreateIndex) -> None:
        p = f"operations.{i}.create_index"
        st = self.table(op.table, f"{p}.table")
        if st is None:
            return
        if op.method != "btree":
            self.refuse(
                f"{p}.method", f"create_index {op.name}", f"SQLite has B-tree indexes only, not {op.method}"
            )
            return
        cols = [self.column(st, c, f"{p}.columns.{j}") for j, c in enumerate(op.columns)]
        if not self.free_name(op.name, f"{p}.name", "cannot create index") or any(c is None for c in cols):
            return
        physical = tuple(c for c in cols if c is not None)
        self.indexes.append((i, CreateIndex(op.name, st.name, physical, op.unique, op.where)))

    def drop_index(self, i: int, op: model.DropIndex) -> None:
        p = f"operations.{i}.drop_index.name"
        if op.name.lower() in self.new_names:
            self.problem(p, f"index {op.name!r} is created by this migration")
            return
        index = self.schema.index(op.name)
        if index is None:
            self.problem(p, f"index {op.name!r} does not exist in this database")
            return
        if index.sql is None:
            self.refuse(
                p,
                f"drop_index {op.name}",
                "SQLite made it for a UNIQUE or PRIMARY KEY constraint of the table and drops it only with "
                "the constraint (a table rebuild)",
            )
            return
        self.complete_first.append((i, DropIndex(index.name, index.table)))

    def add_constraint(self, i: int, op: model.AddConstraint) -> None:
        p = f"operations.{i}.add_constraint"
        st = self.table(op.table, f"{p}.table")
        if st is None:
            return
        if op.foreign_key is not None:
            self.refuse(
                f"{p}.foreign_key",
                f"add_constraint {op.name} (foreign key on {op.table})",
                "SQLite adds a foreign key to an existing table only by rebuilding it under the write lock, "
                "and has no NOT VALID to add it without checking every row in the same transaction; add "
                "the reference with a new column (add_column with references) or in create_table",
            )
            return
        if op.check is not None:
            self.refuse(
                f"{p}.check",
                f"add_constraint {op.name} (check on {op.table})",
                "SQLite adds a CHECK constraint to an existing table only by rebuilding it, and has no NOT "
                "VALID to enforce it for new writes while old rows are checked later; put the check on a "
                "new column (add_column with check) or in create_table",
            )
            return
        if op.unique is not None:
            cols = [self.column(st, c, f"{p}.unique.columns.{j}") for j, c in enumerate(op.unique.columns)]
            if not self.free_name(op.name, f"{p}.name", "cannot create index") or any(
                c is None for c in cols
            ):
                return
            physical = tuple(c for c in cols if c is not None)
            self.indexes.append((i, CreateIndex(op.name, st.name, physical, unique=True)))

    def rename_table(self, i: int, op: model.RenameTable) -> None:
        self.refuse(
            f"operations.{i}.rename_table",
            f"rename_table {op.from_} -> {op.to}",
            "SQLite has no views to show the new version the table under its new name while the old version "
            "still uses the old one; a table has one name, and renaming it breaks whichever version uses "
            "the other",
        )

    def drop_table(self, i: int, op: model.DropTable) -> None:
        p = f"operations.{i}.drop_table.table"
        st = self.table(op.table, p)
        if st is None:
            return
        if st.created_by is not None:
            self.problem(p, f"table {op.table!r} is created by this migration")
            return
        referencing = sorted(
            t.name
            for t in self.schema.tables.values()
            if st.name.lower() in {r.lower() for r in t.references}
        )
        views = sorted(v for v, sql in self.schema.views.items() if mentions(sql, st.name))
        if referencing or views:
            users = ", ".join(
                [*(f"table {t} (foreign key)" for t in referencing), *(f"view {v}" for v in views)]
            )
            self.refuse(
                p, f"drop_table {op.table}", f"{users} still use it; change them in an earlier migration"
            )
            return
        self.notes.append(
            f"{st.name}: dropped at complete; SQLite cannot hide it from the new version before that"
        )
        self.drop_tables.append((i, DropTable(st.name)))

    def sql(self, i: int, op: model.RawSql) -> None:
        p = f"operations.{i}.sql"
        if op.phase == "complete":
            self.complete_sql.append((i, RunSql(op.up)))
            return
        if op.down is None or not op.down.strip():
            self.refuse(
                f"{p}.down",
                "sql without a down",
                "rollback could not undo it; write the statements that undo up (or use phase: complete, "
                "which runs once the old version is gone and never rolls back)",
            )
            return
        self.structure.append((i, RunSql(op.up)))

    # -- assembly -------------------------------------------------------------------------------
    def build(self, database: str, previous: str | None) -> SqlitePlan:
        self.plan_operations()
        self.raise_problems(f"migration {self.m.name} (SQLite)")
        start = self._start_steps()
        complete = self._complete_steps()
        rollback = self._rollback_steps(start)
        return SqlitePlan(
            migration=self.m.name,
            database=database,
            previous_schema=previous,
            steps=(*start, *complete, *rollback),
            notes=tuple(self.notes),
        )

    def _start_steps(self) -> list[SqliteStep]:
        steps = [SqliteStep("start", a, i, OLD) for i, a in self.structure]
        steps += [
            SqliteStep("start", CreateTriggers(st.name, tuple(st.rules)), None, OLD)
            for st in self.tables.values()
            if st.rules
        ]
        for st in self.tables.values():
            up = tuple(r for r in st.rules if r.direction == "up")
            if up:
                steps.append(SqliteStep("start", Backfill(st.name, up), None, OLD))
        steps += [SqliteStep("start", a, i, OLD) for i, a in self.indexes]
        if steps:
            steps[-1] = replace(steps[-1], serves=BOTH)
        return steps

    def _complete_steps(self) -> list[SqliteStep]:
        actions: list[tuple[int | None, SqliteAction]] = list(self.complete_first)
        for st in self.tables.values():
            if st.rules or st.renames or st.drops or st.edits:
                action = ContractTable(
                    st.name,
                    triggers=bool(st.rules),
                    renames=tuple(st.renames),
                    drops=tuple(st.drops),
                    edits=tuple(st.edits),
                )
                operation = min(st.touched.values()) if st.touched else None
                actions.append((operation, action))
        actions += self.drop_tables
        actions += self.complete_sql
        return [SqliteStep("complete", a, i, NEW, reversible=False) for i, a in actions]

    def _rollback_steps(self, start: list[SqliteStep]) -> list[SqliteStep]:
        steps: list[SqliteStep] = []
        for s in reversed(start):
            a = s.action
            inverse: SqliteAction | None = None
            match a:
                case CreateIndex():
                    inverse = DropIndex(a.name, a.table)
                case CreateTriggers():
                    inverse = DropTriggers(a.table)
                case AddColumn():
                    inverse = DropColumn(a.table, a.column)
                case CreateTable():
                    inverse = DropTable(a.table)
                case RunSql():
                    if down := self.down_sql(s.operation):
                        inverse = RunSql(down, label="down")
                case _:
                    inverse = None
            if inverse is not None:
                steps.append(SqliteStep("rollback", inverse, s.operation, OLD))
        return steps


def plan_sqlite(
    migration: Migration, schema: SqliteSchema, *, database: str = "", previous: str | None = None
) -> SqlitePlan:
    """Plan ``migration`` against ``schema``; raise ``SpecError`` naming every operation SQLite cannot do safely.

    The plan has no lock estimates yet: ``estimate.estimate`` adds them from measurements.
    """
    return _Planner(migration, schema).build(database, previous)
