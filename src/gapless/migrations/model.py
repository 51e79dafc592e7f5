"""The migration file: one YAML document per migration, a name and a list of operations.

Field names are snake_case, unlike the camelCase Rollout spec: a migration file speaks SQL's vocabulary
(``primary_key``, ``on_delete``, ``add_column``) and matches the files of pgroll, which many readers
already know. Everything else follows the spec models: strict (an unknown key is an error), frozen,
every problem reported with its field path (``operations.2.alter_column.up: required when the type
changes``).

Identifiers (tables, columns, indexes, constraints) are validated here and always quoted as written when
SQL is generated, so ``Orders`` and ``orders`` are different tables. SQL fragments that cannot be
identifiers (types, defaults, ``up``/``down`` expressions, checks) are checked to be one balanced
expression each, so none of them can end the statement it is placed in.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from gapless.migrations.sqltext import expression_problem

__all__ = [
    "MAX_MIGRATION_NAME",
    "OPERATION_KINDS",
    "RESERVED_PREFIX",
    "AddColumn",
    "AddConstraint",
    "AlterColumn",
    "CheckConstraint",
    "Column",
    "ColumnReference",
    "CreateIndex",
    "CreateTable",
    "DropColumn",
    "DropIndex",
    "DropTable",
    "ForeignKeyConstraint",
    "Migration",
    "Operation",
    "OperationBody",
    "RawSql",
    "RenameColumn",
    "RenameTable",
    "TableReference",
    "UniqueConstraint",
    "check_identifier",
    "field_problem",
]

RESERVED_PREFIX = "_gapless"
"""Names starting with this belong to gapless (shadow columns, trigger variables) and are refused."""

MAX_MIGRATION_NAME = 30
"""A migration's name is its schema version: it must fit in ``application_name`` (63 bytes) with an app
and an instance name, and in a schema name with its prefix."""

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
_WORD = r"[A-Za-z_][A-Za-z0-9_]*"
_TYPE_RE = re.compile(
    rf"^{_WORD}(\.{_WORD})?(\s+{_WORD})*"  # name, maybe schema-qualified or several words
    r"(\s*\(\s*\d+\s*(,\s*-?\d+\s*)?\))?"  # (n) or (p, s)
    r"(\s+with(out)?\s+time\s+zone)?"
    r"(\s*\[\s*\d*\s*\])*$",  # array dimensions
    re.IGNORECASE,
)


def field_problem(field: str, message: str) -> PydanticCustomError:
    """A model-level error that belongs to one field; the loader appends ``field`` to the path."""
    return PydanticCustomError("gapless_field", "{message}", {"field": field, "message": message})


def check_identifier(value: str) -> str:
    """A PostgreSQL identifier gapless will quote as written: letters, digits, _ and $, at most 63 bytes."""
    if not _IDENT_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid identifier: use letters, digits, _ and $, starting with a letter or _"
        )
    if len(value.encode()) > 63:
        raise ValueError(f"{value!r} is longer than PostgreSQL's 63-byte identifier limit")
    if value.lower().startswith(RESERVED_PREFIX):
        raise ValueError(f"names starting with {RESERVED_PREFIX!r} are reserved for gapless")
    return value


def _check_expression(value: str) -> str:
    problem = expression_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _check_type(value: str) -> str:
    if not _TYPE_RE.match(value.strip()):
        raise ValueError(
            f"{value!r} is not a type gapless can place safely: write a type name such as integer, "
            "text, numeric(12,2), varchar(80), timestamp with time zone, uuid[] or myschema.mytype"
        )
    return value.strip()


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(f"{value!r} may contain only letters, digits and _")
    if len(value) > MAX_MIGRATION_NAME:
        raise ValueError(f"must be at most {MAX_MIGRATION_NAME} characters (it names a schema version)")
    return value


Ident = Annotated[
    str,
    AfterValidator(check_identifier),
    Field(json_schema_extra={"pattern": _IDENT_RE.pattern, "maxLength": 63}),
]
SqlExpr = Annotated[str, AfterValidator(_check_expression), Field(json_schema_extra={"minLength": 1})]
SqlType = Annotated[str, AfterValidator(_check_type), Field(json_schema_extra={"minLength": 1})]
MigrationName = Annotated[
    str,
    AfterValidator(_check_name),
    Field(json_schema_extra={"pattern": _NAME_RE.pattern, "maxLength": MAX_MIGRATION_NAME}),
]
OnDelete = Literal["NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT"]
IndexMethod = Literal["btree", "hash", "gist", "gin", "brin", "spgist"]


class MigrationModel(BaseModel):
    """Strict and frozen, field names as written (snake_case)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _unique(values: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{what} {v!r} appears twice")
        seen.add(v)
    return values


class ColumnReference(MigrationModel):
    """A foreign key from one column: ``references: {table: users, column: id}``."""

    table: Ident
    column: Ident
    on_delete: OnDelete = "NO ACTION"


class Column(MigrationModel):
    """A column of ``create_table`` or ``add_column``."""

    name: Ident
    type: SqlType
    nullable: bool = True
    default: SqlExpr | None = Field(default=None, description="SQL expression, e.g. 0, 'x', now()")
    primary_key: bool = False
    unique: bool = False
    references: ColumnReference | None = None
    check: SqlExpr | None = Field(
        default=None, description="SQL boolean expression over this table's columns"
    )

    @model_validator(mode="after")
    def _primary_key_is_not_null(self) -> Column:
        if self.primary_key and self.nullable and "nullable" in self.model_fields_set:
            raise field_problem("nullable", "a primary key column cannot be nullable")
        return self


class CreateTable(MigrationModel):
    """A new table; the old version never sees it, so nothing needs to be kept in step."""

    table: Ident
    columns: list[Column] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct_columns(self) -> CreateTable:
        seen: set[str] = set()
        for i, c in enumerate(self.columns):
            if c.name in seen:
                raise field_problem(f"columns.{i}.name", f"column {c.name!r} appears twice")
            seen.add(c.name)
        return self


class AddColumn(MigrationModel):
    """A new column; ``up`` computes it from the old columns for rows the old version writes."""

    table: Ident
    column: Column
    up: SqlExpr | None = Field(
        default=None,
        description="SQL expression over the table's existing columns that fills the new column for "
        "existing rows (the backfill) and for rows written by the old version",
    )

    @model_validator(mode="after")
    def _fillable(self) -> AddColumn:
        if self.column.primary_key:
            raise field_problem("column.primary_key", "a primary key cannot be added to an existing table")
        if not self.column.nullable and self.column.default is None and self.up is None:
            raise field_problem(
                "up",
                "required when the column is NOT NULL without a default: existing rows and rows "
                "written by the old version need a value",
            )
        return self


class DropColumn(MigrationModel):
    """Hidden from the new version at start, dropped at complete."""

    table: Ident
    column: Ident
    down: SqlExpr | None = Field(
        default=None,
        description="SQL expression over the new version's columns that fills the dropped column for "
        "rows the new version writes (needed when it is NOT NULL without a default)",
    )


class RenameColumn(MigrationModel):
    """The new version sees the new name through its views; the column is renamed at complete."""

    table: Ident
    from_: Ident = Field(alias="from")
    to: Ident

    @model_validator(mode="after")
    def _differs(self) -> RenameColumn:
        if self.from_ == self.to:
            raise field_problem("to", "is the same as from")
        return self


class AlterColumn(MigrationModel):
    """Change a column's type, nullability or default.

    A type or nullability change writes a new column next to the old one, kept in step by triggers
    (``up`` converts old to new, ``down`` new to old); complete swaps them. A default-only change is
    visible to the new version at once and applied to the table at complete.
    """

    table: Ident
    column: Ident
    type: SqlType | None = None
    nullable: bool | None = None
    default: SqlExpr | None = None
    drop_default: bool = False
    up: SqlExpr | None = Field(
        default=None, description="SQL expression over the old columns that gives the new value"
    )
    down: SqlExpr | None = Field(
        default=None,
        description="SQL expression over the new version's columns (this column's name means its new "
        "value) that gives the old value",
    )

    @property
    def needs_new_column(self) -> bool:
        return self.type is not None or self.nullable is not None

    @model_validator(mode="after")
    def _consistent(self) -> AlterColumn:
        if not (self.needs_new_column or self.default is not None or self.drop_default):
            raise field_problem("", "nothing to change: give type, nullable, default or drop_default")
        if self.default is not None and self.drop_default:
            raise field_problem("drop_default", "cannot be combined with default")
        if self.type is not None:
            if self.up is None:
                raise field_problem("up", "required when the type changes (old value -> new value)")
            if self.down is None:
                raise field_problem("down", "required when the type changes (new value -> old value)")
        if self.nullable is False and self.up is None:
            raise field_problem("up", "required when setting NOT NULL: it must map NULL to a value")
        if self.nullable is True and self.down is None:
            raise field_problem(
                "down",
                "required when dropping NOT NULL: it must map NULL back to a value the old version accepts",
            )
        if not self.needs_new_column:
            for name in ("up", "down"):
                if getattr(self, name) is not None:
                    raise field_problem(name, "not used when only the default changes")
        return self


class CreateIndex(MigrationModel):
    """Built with CREATE INDEX CONCURRENTLY; an invalid index left by a failed build is dropped and retried."""

    name: Ident
    table: Ident
    columns: list[Ident] = Field(min_length=1)
    unique: bool = False
    method: IndexMethod = "btree"
    where: SqlExpr | None = None

    @model_validator(mode="after")
    def _distinct(self) -> CreateIndex:
        try:
            _unique(self.columns, "column")
        except ValueError as e:
            raise field_problem("columns", str(e)) from None
        return self


class DropIndex(MigrationModel):
    """Dropped (CONCURRENTLY) at complete: the old version may still depend on it until then."""

    name: Ident


class CheckConstraint(MigrationModel):
    expression: SqlExpr


class UniqueConstraint(MigrationModel):
    columns: list[Ident] = Field(min_length=1)


class TableReference(MigrationModel):
    table: Ident
    columns: list[Ident] = Field(min_length=1)


class ForeignKeyConstraint(MigrationModel):
    columns: list[Ident] = Field(min_length=1)
    references: TableReference
    on_delete: OnDelete = "NO ACTION"

    @model_validator(mode="after")
    def _arity(self) -> ForeignKeyConstraint:
        if len(self.columns) != len(self.references.columns):
            raise field_problem("references.columns", "must name as many columns as columns")
        return self


class AddConstraint(MigrationModel):
    """A check or foreign key added NOT VALID and validated at complete; a unique one built concurrently."""

    table: Ident
    name: Ident
    check: CheckConstraint | None = None
    unique: UniqueConstraint | None = None
    foreign_key: ForeignKeyConstraint | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> AddConstraint:
        given = [k for k in ("check", "unique", "foreign_key") if getattr(self, k) is not None]
        if len(given) != 1:
            raise field_problem("", f"needs exactly one of check, unique, foreign_key (found {len(given)})")
        return self


class RenameTable(MigrationModel):
    """The new version sees the new name through its views; the table is renamed at complete."""

    from_: Ident = Field(alias="from")
    to: Ident

    @model_validator(mode="after")
    def _differs(self) -> RenameTable:
        if self.from_ == self.to:
            raise field_problem("to", "is the same as from")
        return self


class DropTable(MigrationModel):
    """Hidden from the new version at start, dropped at complete."""

    table: Ident


class RawSql(MigrationModel):
    """Raw SQL, linted; ``up`` runs in one transaction with lock_timeout, ``down`` undoes it at rollback.

    With ``phase: complete`` it runs during complete, after the old version's schema is gone (the
    place for drops); it then never runs at rollback and needs no ``down``.
    """

    up: str = Field(min_length=1)
    down: str | None = None
    phase: Literal["start", "complete"] = "start"
    ignore_lint: list[str] = Field(
        default_factory=list, description="lint rules acknowledged for this statement, by name"
    )

    @model_validator(mode="after")
    def _down_given(self) -> RawSql:
        if self.phase == "start" and self.down is None:
            raise field_problem("down", "required: how to undo up at rollback (an empty string if nothing)")
        return self


OperationBody = (
    CreateTable
    | AddColumn
    | DropColumn
    | RenameColumn
    | AlterColumn
    | CreateIndex
    | DropIndex
    | AddConstraint
    | RenameTable
    | DropTable
    | RawSql
)

OPERATION_KINDS: tuple[str, ...] = (
    "create_table",
    "add_column",
    "drop_column",
    "rename_column",
    "alter_column",
    "create_index",
    "drop_index",
    "add_constraint",
    "rename_table",
    "drop_table",
    "sql",
)


class Operation(MigrationModel):
    """One item of ``operations``: a mapping with exactly one key naming the operation."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    create_table: CreateTable | None = None
    add_column: AddColumn | None = None
    drop_column: DropColumn | None = None
    rename_column: RenameColumn | None = None
    alter_column: AlterColumn | None = None
    create_index: CreateIndex | None = None
    drop_index: DropIndex | None = None
    add_constraint: AddConstraint | None = None
    rename_table: RenameTable | None = None
    drop_table: DropTable | None = None
    sql: RawSql | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = [k for k in data if k in OPERATION_KINDS]
            unknown = [k for k in data if k not in OPERATION_KINDS]
            if unknown and not known:
                raise PydanticCustomError(
                    "gapless_field",
                    "{message}",
                    {
                        "field": str(unknown[0]),
                        "message": f"unknown operation; expected one of {', '.join(OPERATION_KINDS)}",
                    },
                )
            if not data:
                raise ValueError(f"needs one operation: {', '.join(OPERATION_KINDS)}")
            if len(known) > 1:
                raise ValueError(f"has {len(known)} operations ({', '.join(known)}); write one per list item")
        elif data is not None:
            raise ValueError(f"must be a mapping with one operation: {', '.join(OPERATION_KINDS)}")
        return data

    @property
    def kind(self) -> str:
        return next(k for k in OPERATION_KINDS if getattr(self, k) is not None)

    @property
    def body(self) -> OperationBody:
        value: OperationBody = getattr(self, self.kind)
        return value


class Migration(MigrationModel):
    """A named, ordered list of operations applied together: ``start`` expands, ``complete`` contracts."""

    model_config = ConfigDict(title="gapless migration")

    name: MigrationName = Field(
        description="the schema version this migration creates; default: the file name"
    )
    operations: list[Operation] = Field(min_length=1)
