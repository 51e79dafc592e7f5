"""Plan a migration: the expand, contract and rollback steps, each with its lock and who it serves.

``plan(migration, info)`` is pure. Given what the catalog says about the schema (``info``), it also checks
that the operations fit the database (the table exists, the column is free, a NOT NULL column dropped
by the new version has a ``down``); without ``info`` it plans from the file alone, which is what
``gapless migrate plan FILE`` shows before a database is involved.

Start (expand) runs in this order, so that every state in between is one the old version tolerates and
the new version never sees a half-filled column:

1. structure: new tables, new and shadow columns (no rewrite), raw ``sql`` operations;
2. sync triggers, before any constraint that needs them to fill new columns for old-version writes;
3. constraints NOT VALID (enforced for new writes, existing rows unchecked);
4. backfill of existing rows in batches;
5. indexes, built CONCURRENTLY;
6. the new version's schema of views: from here both versions can run.

Complete (contract) validates first (still reversible), then passes the point of no return: it drops
the old version's schema, the triggers, dropped columns and tables, swaps shadow columns in, renames,
and sets NOT NULL through validated checks. Rollback undoes start in reverse; every step of it is
idempotent, so it also cleans up after a start that failed half-way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gapless.core.errors import Problem, SpecError
from gapless.migrations import model
from gapless.migrations.actions import (
    Action,
    AddCheck,
    AddColumn,
    AddForeignKey,
    AttachUnique,
    Backfill,
    CreateIndex,
    CreateSyncTrigger,
    CreateTable,
    CreateVersionSchema,
    DropColumn,
    DropConstraint,
    DropIndex,
    DropSyncTrigger,
    DropTable,
    DropVersionSchema,
    RenameColumn,
    RenameTable,
    ReplaceColumn,
    RunSql,
    SetDefault,
    SetNotNull,
    ValidateConstraint,
)
from gapless.migrations.info import SchemaInfo, TableInfo
from gapless.migrations.lint import lint_sql
from gapless.migrations.model import ColumnReference, Migration
from gapless.migrations.planner import OperationPlanner
from gapless.migrations.shape import ColumnSync, TableShape, shadow_name
from gapless.migrations.sqlsummary import summarize_sql
from gapless.migrations.steps import (
    BOTH,
    NEW,
    OLD,
    OperationFinding,
    Plan,
    Step,
    constraint_name,
    is_constant,
    trigger_function_name,
    version_schema_name,
)

__all__ = ["plan"]


@dataclass
class _TableState:
    physical: str
    exposed: str | None
    created: bool = False
    info: TableInfo | None = None
    columns: dict[str, str] = field(default_factory=dict)
    """new-version column name -> physical column (complete when ``info`` or ``created`` is known)"""
    gone: set[str] = field(default_factory=set)
    """names that no longer exist in the new version (renamed away, dropped, replaced)"""
    touched: dict[str, int] = field(default_factory=dict)
    """physical column -> operation that changes it (one column operation per column)"""
    renamed: dict[str, str] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)
    replaced: dict[str, str] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    view_defaults: dict[str, str | None] = field(default_factory=dict)
    syncs: list[ColumnSync] = field(default_factory=list)
    created_by: int | None = None
    reshaped_by: int | None = None
    """An operation that renamed or replaced a column: check expressions cannot be translated after it."""

    def shape(self) -> TableShape:
        return TableShape(
            physical=self.physical,
            exposed=self.exposed,
            created=self.created,
            renamed=dict(self.renamed),
            hidden=frozenset(self.hidden),
            replaced=dict(self.replaced),
            added=tuple(self.added),
            view_defaults=dict(self.view_defaults),
            syncs=tuple(self.syncs),
        )


class _Planner(OperationPlanner[_TableState]):
    def __init__(self, migration: Migration, info: SchemaInfo | None, schema: str, prefix: str) -> None:
        super().__init__(migration)
        self.info = info
        self.schema = schema
        self.version_schema = version_schema_name(prefix, migration.name)
        self.findings: list[OperationFinding] = []
        self.tables: dict[str, _TableState] = {}
        """physical name -> state, for tables an operation touched"""
        self.names: dict[str, str] = {}
        """table name in the new version -> physical name (tables touched so far)"""
        self.dropped_names: set[str] = set()
        self.new_relations: set[str] = set()
        # start buckets
        self.structure: list[tuple[int, Action]] = []
        self.constraints: list[tuple[int, Action]] = []
        self.indexes: list[tuple[int, Action]] = []
        # complete buckets
        self.validations: list[tuple[int, Action]] = []
        self.drops: list[tuple[int, Action]] = []
        self.replaces: list[tuple[int, Action]] = []
        self.finishing: list[tuple[int, Action]] = []
        self.column_renames: list[tuple[int, Action]] = []
        self.table_renames: list[tuple[int, Action]] = []
        self.complete_sql: list[tuple[int, Action]] = []

    # -- helpers -------------------------------------------------------------------------------

    def not_null_check(self, table: str, column: str) -> str:
        """The name of the CHECK (col IS NOT NULL) that proves NOT NULL before SET NOT NULL.

        PostgreSQL's own name (``t_c_not_null``), unless the catalog the plan is made from already
        has a constraint of that name: PostgreSQL 18 records a column's NOT NULL as a constraint with
        exactly that name, so an altered NOT NULL column needs another. The choice depends only on
        the stored catalog, so complete and rollback re-plan the same name.
        """
        name = constraint_name(table, column, "not_null")
        if self.info is not None and (table, name) in self.info.constraints:
            return constraint_name(table, column, "not_null_check")
        return name

    def find_table(self, name: str, path: str) -> _TableState | None:
        """The state of the table the new version calls ``name``, or None (a problem is recorded)."""
        if name in self.names:
            return self.tables[self.names[name]]
        if name in self.dropped_names or (name in self.tables and self.tables[name].exposed != name):
            self.problem(
                path, f"table {name!r} no longer exists in the new version (an earlier operation changed it)"
            )
            return None
        if self.info is not None and name not in self.info.tables:
            self.problem(path, f"table {name!r} does not exist in schema {self.schema!r}")
            return None
        info = self.info.tables[name] if self.info is not None else None
        st = _TableState(physical=name, exposed=name, info=info)
        if info is not None:
            st.columns = {c.name: c.name for c in info.columns}
        self.tables[name] = st
        self.names[name] = name
        return st

    def column(self, st: _TableState, name: str, path: str) -> str | None:
        """The physical column behind the new version's ``name``, or None (a problem is recorded)."""
        if name in st.columns:
            return st.columns[name]
        if name in st.gone or st.info is not None or st.created:
            self.problem(path, f"column {name!r} does not exist in table {st.exposed!r} of the new version")
            return None
        st.columns[name] = name  # no catalog: assume it exists
        return name

    def free_column(self, st: _TableState, name: str, path: str) -> bool:
        physical_taken = st.info is not None and st.info.column(name) is not None
        if name in st.columns or physical_taken or name in st.added:
            why = "" if name in st.columns else " (it still exists until complete drops or renames it)"
            self.problem(path, f"column {name!r} already exists in table {st.exposed!r}{why}")
            return False
        return True

    def free_relation(self, name: str, path: str, what: str) -> bool:
        taken = name in self.new_relations or (self.info is not None and name in self.info.relations)
        if taken:
            self.problem(path, f"{what} {name!r}: a table, view, index or sequence of that name exists")
            return False
        self.new_relations.add(name)
        return True

    # -- operations ------------------------------------------------------------------------------
    def create_table(self, i: int, op: model.CreateTable) -> None:
        p = f"operations.{i}.create_table"
        if op.table in self.names or not self.free_relation(op.table, f"{p}.table", "cannot create table"):
            if op.table in self.names:
                self.problem(f"{p}.table", f"table {op.table!r} already exists")
            return
        st = _TableState(physical=op.table, exposed=op.table, created=True, created_by=i)
        st.columns = {c.name: c.name for c in op.columns}
        self.tables[op.table] = st
        self.names[op.table] = op.table
        refs: list[str] = []
        columns = []
        for j, c in enumerate(op.columns):
            column = c
            if c.references is not None:
                ref = self.table(c.references.table, f"{p}.columns.{j}.references.table")
                if ref is None:
                    continue
                ref_col = self.column(ref, c.references.column, f"{p}.columns.{j}.references.column")
                if ref_col is None:
                    continue
                refs.append(ref.physical)
                physical_ref = c.references.model_copy(update={"table": ref.physical, "column": ref_col})
                column = c.model_copy(update={"references": physical_ref})
            columns.append(column)
        self.structure.append((i, CreateTable(op.table, tuple(columns), tuple(dict.fromkeys(refs)))))

    def add_column(self, i: int, op: model.AddColumn) -> None:
        p = f"operations.{i}.add_column"
        st = self.table(op.table, f"{p}.table", for_column_change=i)
        if st is None or not self.free_column(st, op.column.name, f"{p}.column.name"):
            return
        c = op.column
        name = c.name
        self.touch(st, name, i, f"{p}.column.name")
        st.columns[name] = name
        st.added.append(name)
        t = st.physical
        not_null = not c.nullable or c.primary_key
        if op.up is None and c.default is not None and is_constant(c.default):
            # PostgreSQL 11+ stores a constant default in the catalog: no rewrite, no scan, no backfill.
            self.structure.append((i, AddColumn(t, name, c.type, default=c.default, not_null=not_null)))
        else:
            self.structure.append((i, AddColumn(t, name, c.type)))
            if c.default is not None:
                self.structure.append((i, SetDefault(t, name, c.default)))
            fill = op.up if op.up is not None else c.default
            if fill is not None:
                st.syncs.append(ColumnSync(name, fill, "up", "fill"))
            if not_null:
                check = self.not_null_check(t, name)
                self.constraints.append((i, AddCheck(t, check, f'"{name}" IS NOT NULL')))
                self.validations.append((i, ValidateConstraint(t, check)))
                self.finishing.append((i, SetNotNull(t, name, check)))
        self._column_constraints(i, p, st, name, c.unique, c.references, c.check)

    def _column_constraints(
        self,
        i: int,
        p: str,
        st: _TableState,
        name: str,
        unique: bool,
        references: ColumnReference | None,
        check: str | None,
    ) -> None:
        t = st.physical
        if unique:
            index = constraint_name(t, name, "key")
            if self.free_relation(index, f"{p}.column.unique", "cannot create the unique index"):
                self.indexes.append((i, CreateIndex(index, t, (name,), unique=True)))
                self.finishing.append((i, AttachUnique(t, index, index)))
        if references is not None:
            ref = self.table(references.table, f"{p}.column.references.table")
            ref_col = self.column(ref, references.column, f"{p}.column.references.column") if ref else None
            if ref is not None and ref_col is not None:
                fk = constraint_name(t, name, "fkey")
                self.constraints.append(
                    (i, AddForeignKey(t, fk, (name,), ref.physical, (ref_col,), references.on_delete))
                )
                self.validations.append((i, ValidateConstraint(t, fk)))
        if check is not None:
            name_ = constraint_name(t, name, "check")
            self.constraints.append((i, AddCheck(t, name_, check)))
            self.validations.append((i, ValidateConstraint(t, name_)))

    def drop_column(self, i: int, op: model.DropColumn) -> None:
        p = f"operations.{i}.drop_column"
        changed = self.changed_column(i, p, op.table, op.column)
        if changed is None:
            return
        st, physical = changed
        info = st.info.column(physical) if st.info else None
        if st.info is not None and physical in st.info.primary_key:
            self.problem(f"{p}.column", f"column {op.column!r} is part of the primary key of {st.exposed!r}")
            return
        if (
            info is not None
            and info.not_null
            and info.default is None
            and not info.identity
            and op.down is None
        ):
            self.problem(
                f"{p}.down",
                f"required: {op.table}.{op.column} is NOT NULL without a default, so rows the new version "
                "inserts need a value for the old version",
            )
        del st.columns[op.column]
        st.gone.add(op.column)
        st.hidden.add(physical)
        if op.down is not None:
            st.syncs.append(ColumnSync(physical, op.down, "down", "fill"))
        self.drops.append((i, DropColumn(st.physical, physical)))

    def rename_column(self, i: int, op: model.RenameColumn) -> None:
        p = f"operations.{i}.rename_column"
        st = self.table(op.table, f"{p}.table", for_column_change=i)
        if st is None:
            return
        physical = self.column(st, op.from_, f"{p}.from")
        if physical is None or not self.free_column_name(st, op.to, f"{p}.to"):
            return
        if not self.touch(st, physical, i, f"{p}.from"):
            return
        del st.columns[op.from_]
        st.gone.add(op.from_)
        st.columns[op.to] = physical
        st.renamed[physical] = op.to
        st.reshaped_by = i
        self.column_renames.append((i, RenameColumn(st.physical, physical, op.to)))

    def free_column_name(self, st: _TableState, name: str, path: str) -> bool:
        if name in st.columns:
            self.problem(path, f"column {name!r} already exists in table {st.exposed!r}")
            return False
        if st.info is not None and (c := st.info.column(name)) is not None and c.name not in st.hidden:
            self.problem(path, f"column {name!r} still exists in table {st.exposed!r} until complete")
            return False
        return True

    def alter_column(self, i: int, op: model.AlterColumn) -> None:
        p = f"operations.{i}.alter_column"
        changed = self.changed_column(i, p, op.table, op.column)
        if changed is None:
            return
        st, physical = changed
        info = st.info.column(physical) if st.info else None
        t = st.physical
        if not op.needs_new_column:
            st.view_defaults[op.column] = op.default
            self.finishing.append((i, SetDefault(t, physical, op.default)))
            return
        if st.info is not None and (physical in st.info.primary_key or physical in st.info.constrained):
            self.problem(
                f"{p}.column",
                f"{op.table}.{op.column} is used by an index or constraint; those are not carried over to "
                "the new column yet: drop them in an earlier migration and recreate them in a later one",
            )
            return
        if info is not None and (info.identity or info.generated):
            self.problem(f"{p}.column", f"{op.table}.{op.column} is an identity or generated column")
            return
        shadow = shadow_name(physical)
        default = op.default
        if default is None and not op.drop_default and op.type is None and info is not None:
            default = info.default
        not_null = op.nullable is False or (op.nullable is None and info is not None and info.not_null)
        self.structure.append((i, AddColumn(t, shadow, op.type, like=None if op.type else physical)))
        if default is not None:
            self.structure.append((i, SetDefault(t, shadow, default)))
        quoted = '"' + op.column.replace('"', '""') + '"'
        st.syncs.append(ColumnSync(shadow, op.up or quoted, "up", "convert"))
        st.syncs.append(ColumnSync(physical, op.down or quoted, "down", "convert"))
        st.replaced[physical] = shadow
        st.columns[op.column] = shadow
        st.reshaped_by = i
        check = self.not_null_check(t, physical)
        if not_null:
            self.constraints.append((i, AddCheck(t, check, f'"{shadow}" IS NOT NULL')))
            self.validations.append((i, ValidateConstraint(t, check)))
        self.replaces.append((i, ReplaceColumn(t, physical, shadow)))
        if not_null:
            self.finishing.append((i, SetNotNull(t, physical, check)))

    def create_index(self, i: int, op: model.CreateIndex) -> None:
        p = f"operations.{i}.create_index"
        st = self.table(op.table, f"{p}.table")
        if st is None:
            return
        cols = [self.column(st, c, f"{p}.columns.{j}") for j, c in enumerate(op.columns)]
        if op.where is not None and st.reshaped_by is not None:
            self.problem(
                f"{p}.where",
                f"operation {st.reshaped_by} renames or replaces a column of {op.table!r}; a where clause "
                "cannot be translated to the physical columns: create the index in a later migration",
            )
            return
        if not self.free_relation(op.name, f"{p}.name", "cannot create index"):
            return
        if any(c is None for c in cols):
            return
        physical = tuple(c for c in cols if c is not None)
        self.indexes.append((i, CreateIndex(op.name, st.physical, physical, op.unique, op.method, op.where)))

    def drop_index(self, i: int, op: model.DropIndex) -> None:
        p = f"operations.{i}.drop_index.name"
        table = None
        if op.name in self.new_relations:
            self.problem(p, f"index {op.name!r} is created by this migration")
            return
        if self.info is not None:
            index = self.info.indexes.get(op.name)
            if index is None:
                self.problem(p, f"index {op.name!r} does not exist in schema {self.schema!r}")
                return
            if index.constraint is not None:
                self.problem(
                    p,
                    f"index {op.name!r} backs constraint {index.constraint!r}: drop the constraint with sql",
                )
                return
            table = index.table
        self.drops.append((i, DropIndex(op.name, table)))

    def add_constraint(self, i: int, op: model.AddConstraint) -> None:
        p = f"operations.{i}.add_constraint"
        st = self.table(op.table, f"{p}.table")
        if st is None:
            return
        if self.info is not None and (st.physical, op.name) in self.info.constraints:
            self.problem(f"{p}.name", f"constraint {op.name!r} already exists on {op.table!r}")
            return
        t = st.physical
        if op.check is not None:
            if st.reshaped_by is not None:
                self.problem(
                    f"{p}.check.expression",
                    f"operation {st.reshaped_by} renames or replaces a column of {op.table!r}; a check "
                    "expression cannot be translated to the physical columns: add it in a later migration",
                )
                return
            self.constraints.append((i, AddCheck(t, op.name, op.check.expression)))
            self.validations.append((i, ValidateConstraint(t, op.name)))
        elif op.unique is not None:
            cols = [self.column(st, c, f"{p}.unique.columns.{j}") for j, c in enumerate(op.unique.columns)]
            if any(c is None for c in cols) or not self.free_relation(
                op.name, f"{p}.name", "cannot create index"
            ):
                return
            self.indexes.append((i, CreateIndex(op.name, t, tuple(c for c in cols if c), unique=True)))
            self.finishing.append((i, AttachUnique(t, op.name, op.name)))
        elif op.foreign_key is not None:
            fk = op.foreign_key
            cols = [self.column(st, c, f"{p}.foreign_key.columns.{j}") for j, c in enumerate(fk.columns)]
            ref = self.table(fk.references.table, f"{p}.foreign_key.references.table")
            if ref is None:
                return
            ref_cols = [
                self.column(ref, c, f"{p}.foreign_key.references.columns.{j}")
                for j, c in enumerate(fk.references.columns)
            ]
            if any(c is None for c in [*cols, *ref_cols]):
                return
            self.constraints.append(
                (
                    i,
                    AddForeignKey(
                        t,
                        op.name,
                        tuple(c for c in cols if c),
                        ref.physical,
                        tuple(c for c in ref_cols if c),
                        fk.on_delete,
                    ),
                )
            )
            self.validations.append((i, ValidateConstraint(t, op.name)))

    def rename_table(self, i: int, op: model.RenameTable) -> None:
        p = f"operations.{i}.rename_table"
        st = self.table(op.from_, f"{p}.from")
        if st is None:
            return
        if st.created:
            self.problem(
                f"{p}.from", f"table {op.from_!r} is created by this migration: create it as {op.to!r}"
            )
            return
        if op.to in self.names or not self.free_relation(op.to, f"{p}.to", "cannot rename to"):
            if op.to in self.names:
                self.problem(f"{p}.to", f"table {op.to!r} already exists")
            return
        del self.names[op.from_]
        self.names[op.to] = st.physical
        st.exposed = op.to
        self.table_renames.append((i, RenameTable(st.physical, op.to)))

    def drop_table(self, i: int, op: model.DropTable) -> None:
        p = f"operations.{i}.drop_table"
        st = self.table(op.table, f"{p}.table")
        if st is None:
            return
        if st.created:
            self.problem(f"{p}.table", f"table {op.table!r} is created by this migration")
            return
        del self.names[op.table]
        self.dropped_names.add(op.table)
        st.exposed = None
        self.drops.append((i, DropTable(st.physical)))

    def sql(self, i: int, op: model.RawSql) -> None:
        ignored = set(op.ignore_lint)
        for f in lint_sql(op.up, context=op.phase):
            self.findings.append(OperationFinding(i, f, f.rule in ignored))
        summary = summarize_sql(op.up)
        action = RunSql(op.up, summary.tables, summary.lock, rewrites_table=summary.rewrites)
        if op.phase == "complete":
            self.complete_sql.append((i, action))
        else:
            self.structure.append((i, action))

    # -- assembly -------------------------------------------------------------------------------
    def build(self, previous_schema: str | None) -> Plan:
        self.plan_operations()
        for st in self.tables.values():
            if st.syncs and not st.created and st.info is not None and not st.info.primary_key:
                self.problem(
                    f"operations.{min(st.touched.values(), default=0)}",
                    f"table {st.physical!r} has no primary key: the batched backfill walks the table by it",
                )
        self.raise_problems(f"migration {self.m.name}")
        shapes = tuple(st.shape() for st in self.tables.values())
        start = self._start_steps(shapes)
        complete = self._complete_steps(previous_schema, shapes)
        rollback = self._rollback_steps(start)
        return Plan(
            migration=self.m.name,
            schema=self.schema,
            version_schema=self.version_schema,
            previous_schema=previous_schema,
            steps=(*start, *complete, *rollback),
            shapes=shapes,
            findings=tuple(self.findings),
        )

    def _start_steps(self, shapes: tuple[TableShape, ...]) -> list[Step]:
        steps = [Step("start", a, i, OLD) for i, a in self.structure]
        for shape in shapes:
            if shape.needs_trigger:
                fn = trigger_function_name(self.m.name, shape.physical)
                steps.append(
                    Step(
                        "start", CreateSyncTrigger(shape.physical, fn, self.version_schema, shape), None, OLD
                    )
                )
        steps += [Step("start", a, i, OLD) for i, a in self.constraints]
        steps += [Step("start", Backfill(s.physical), None, OLD) for s in shapes if s.needs_backfill]
        steps += [Step("start", a, i, OLD) for i, a in self.indexes]
        steps.append(Step("start", CreateVersionSchema(self.version_schema, shapes), None, BOTH))
        return steps

    def _complete_steps(self, previous_schema: str | None, shapes: tuple[TableShape, ...]) -> list[Step]:
        steps = [Step("complete", a, i, BOTH) for i, a in self.validations]

        def contract(items: Iterable[tuple[int | None, Action]]) -> None:
            steps.extend(Step("complete", a, i, NEW, reversible=False) for i, a in items)

        gapless_steps: list[tuple[int | None, Action]] = []
        if previous_schema is not None:
            gapless_steps.append((None, DropVersionSchema(previous_schema)))
        gapless_steps += [
            (None, DropSyncTrigger(s.physical, trigger_function_name(self.m.name, s.physical)))
            for s in shapes
            if s.needs_trigger
        ]
        contract(gapless_steps)
        for bucket in (
            self.drops,
            self.replaces,
            self.finishing,
            self.column_renames,
            self.table_renames,
            self.complete_sql,
        ):
            contract(bucket)
        return steps

    def _rollback_steps(self, start: list[Step]) -> list[Step]:
        steps: list[Step] = []
        for s in reversed(start):
            inverse: Action | None = None
            a = s.action
            match a:
                case CreateVersionSchema():
                    inverse = DropVersionSchema(a.schema)
                case CreateIndex():
                    inverse = DropIndex(a.name, a.table)
                case AddCheck() | AddForeignKey():
                    inverse = DropConstraint(a.table, a.name)
                case CreateSyncTrigger():
                    inverse = DropSyncTrigger(a.table, a.function)
                case AddColumn():
                    inverse = DropColumn(a.table, a.column)
                case CreateTable():
                    inverse = DropTable(a.table)
                case RunSql():
                    if down := self.down_sql(s.operation):
                        inverse = RunSql(down, a.tables, summarize_sql(down).lock, label="down")
                case _:
                    inverse = None
            if inverse is not None:
                steps.append(Step("rollback", inverse, s.operation, OLD))
        return steps


def plan(
    migration: Migration,
    info: SchemaInfo | None = None,
    *,
    schema: str = "public",
    prefix: str | None = None,
    previous_schema: str | None = None,
) -> Plan:
    """Plan ``migration`` against ``info`` (the live schema) or, without it, from the file alone.

    ``prefix`` names the version schemas (``<prefix>_<migration name>``, default: the base schema's
    name); ``previous_schema`` is the old version's schema of views (None: the base schema itself).
    Raise ``SpecError`` naming every operation that does not fit the database.
    """
    if info is not None:
        schema = info.schema
    planner = _Planner(migration, info, schema, prefix or schema)
    if len(planner.version_schema.encode()) > 63:
        raise SpecError(
            f"migration {migration.name}",
            [Problem("name", f"the schema name {planner.version_schema!r} is longer than 63 bytes")],
        )
    return planner.build(previous_schema)
