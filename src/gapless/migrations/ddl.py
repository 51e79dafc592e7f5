"""Render plan actions as SQL with ``psycopg.sql``: identifiers are always ``sql.Identifier``, never formatted.

SQL fragments from the migration file that are not identifiers (types, defaults, expressions) were
checked by the model to be one balanced expression each and are placed inside parentheses. Drops are
rendered with IF EXISTS so that rollback can run after a start that stopped anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from psycopg import sql

from gapless.migrations.actions import (
    AddCheck,
    AddColumn,
    AddForeignKey,
    AttachUnique,
    CreateIndex,
    CreateTable,
    CreateVersionSchema,
    DropColumn,
    DropConstraint,
    DropIndex,
    DropTable,
    RenameColumn,
    RenameTable,
    ReplaceColumn,
    SetDefault,
    SetNotNull,
    ValidateConstraint,
)
from gapless.migrations.model import Column
from gapless.migrations.shape import TableShape, view_columns

__all__ = [
    "Query",
    "create_index",
    "create_table",
    "create_version_schema",
    "drop_index",
    "render",
]

Query = sql.SQL | sql.Composed
"""A statement ready to execute."""

Transactional = (
    AddCheck
    | AddColumn
    | AddForeignKey
    | AttachUnique
    | CreateTable
    | DropColumn
    | DropConstraint
    | DropTable
    | RenameColumn
    | RenameTable
    | ReplaceColumn
    | SetDefault
    | SetNotNull
    | ValidateConstraint
)


_VIEW_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})


def _role(role: str | None) -> sql.Composable:
    return sql.SQL("PUBLIC") if role is None else sql.Identifier(role)


def _t(schema: str, table: str) -> sql.Identifier:
    return sql.Identifier(schema, table)


def _cols(columns: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def _expr(text: str) -> sql.Composed:
    return sql.SQL("({})").format(sql.SQL(text))


def _column_definition(schema: str, c: Column) -> sql.Composed:
    parts: list[sql.Composable] = [sql.Identifier(c.name), sql.SQL(c.type)]
    if not c.nullable or c.primary_key:
        parts.append(sql.SQL("NOT NULL"))
    if c.default is not None:
        parts.append(sql.SQL("DEFAULT {}").format(_expr(c.default)))
    if c.check is not None:
        parts.append(sql.SQL("CHECK {}").format(_expr(c.check)))
    if c.unique:
        parts.append(sql.SQL("UNIQUE"))
    if c.references is not None:
        parts.append(
            sql.SQL("REFERENCES {} ({}) ON DELETE {}").format(
                _t(schema, c.references.table),
                sql.Identifier(c.references.column),
                sql.SQL(c.references.on_delete),
            )
        )
    return sql.SQL(" ").join(parts)


def create_table(schema: str, a: CreateTable) -> sql.Composed:
    items: list[sql.Composable] = [_column_definition(schema, c) for c in a.columns]
    keys = [c.name for c in a.columns if c.primary_key]
    if keys:
        items.append(sql.SQL("PRIMARY KEY ({})").format(_cols(keys)))
    return sql.SQL("CREATE TABLE {} ({})").format(_t(schema, a.table), sql.SQL(", ").join(items))


def render(schema: str, a: Transactional) -> list[Query]:
    """The statements of an action that runs inside one transaction."""
    alter = sql.SQL("ALTER TABLE {}").format(_t(schema, a.table))
    alter_if = sql.SQL("ALTER TABLE IF EXISTS {}").format(_t(schema, a.table))
    match a:
        case CreateTable():
            return [create_table(schema, a)]
        case AddColumn():
            if a.type is None:
                raise ValueError(f"the type of {a.table}.{a.column} was not resolved")
            parts: list[sql.Composable] = [
                alter,
                sql.SQL("ADD COLUMN {} {}").format(sql.Identifier(a.column), sql.SQL(a.type)),
            ]
            if a.default is not None:
                parts.append(sql.SQL("DEFAULT {}").format(_expr(a.default)))
            if a.not_null:
                parts.append(sql.SQL("NOT NULL"))
            return [sql.SQL(" ").join(parts)]
        case SetDefault():
            what = (
                sql.SQL("DROP DEFAULT")
                if a.default is None
                else sql.SQL("SET DEFAULT {}").format(_expr(a.default))
            )
            return [sql.SQL("{} ALTER COLUMN {} {}").format(alter, sql.Identifier(a.column), what)]
        case AddCheck():
            return [
                sql.SQL("{} ADD CONSTRAINT {} CHECK {} NOT VALID").format(
                    alter, sql.Identifier(a.name), _expr(a.expression)
                )
            ]
        case AddForeignKey():
            return [
                sql.SQL(
                    "{} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {} NOT VALID"
                ).format(
                    alter,
                    sql.Identifier(a.name),
                    _cols(a.columns),
                    _t(schema, a.ref_table),
                    _cols(a.ref_columns),
                    sql.SQL(a.on_delete),
                )
            ]
        case ValidateConstraint():
            return [sql.SQL("{} VALIDATE CONSTRAINT {}").format(alter, sql.Identifier(a.name))]
        case DropColumn():
            return [sql.SQL("{} DROP COLUMN IF EXISTS {}").format(alter_if, sql.Identifier(a.column))]
        case ReplaceColumn():
            return [
                sql.SQL("{} DROP COLUMN {}").format(alter, sql.Identifier(a.column)),
                sql.SQL("{} RENAME COLUMN {} TO {}").format(
                    alter, sql.Identifier(a.shadow), sql.Identifier(a.column)
                ),
            ]
        case RenameColumn():
            return [
                sql.SQL("{} RENAME COLUMN {} TO {}").format(
                    alter, sql.Identifier(a.column), sql.Identifier(a.to)
                )
            ]
        case RenameTable():
            return [sql.SQL("{} RENAME TO {}").format(alter, sql.Identifier(a.to))]
        case DropTable():
            return [sql.SQL("DROP TABLE IF EXISTS {}").format(_t(schema, a.table))]
        case DropConstraint():
            return [sql.SQL("{} DROP CONSTRAINT IF EXISTS {}").format(alter_if, sql.Identifier(a.name))]
        case SetNotNull():
            return [
                sql.SQL("{} ALTER COLUMN {} SET NOT NULL").format(alter, sql.Identifier(a.column)),
                sql.SQL("{} DROP CONSTRAINT IF EXISTS {}").format(alter, sql.Identifier(a.check)),
            ]
        case AttachUnique():
            return [
                sql.SQL("{} ADD CONSTRAINT {} UNIQUE USING INDEX {}").format(
                    alter, sql.Identifier(a.name), sql.Identifier(a.index)
                )
            ]


def create_index(schema: str, a: CreateIndex) -> sql.Composed:
    """CREATE INDEX CONCURRENTLY (outside any transaction)."""
    where = sql.SQL(" WHERE {}").format(_expr(a.where)) if a.where else sql.SQL("")
    return sql.SQL("CREATE {}INDEX CONCURRENTLY {} ON {} USING {} ({}){}").format(
        sql.SQL("UNIQUE ") if a.unique else sql.SQL(""),
        sql.Identifier(a.name),
        _t(schema, a.table),
        sql.SQL(a.method),
        _cols(a.columns),
        where,
    )


def drop_index(schema: str, a: DropIndex | CreateIndex) -> sql.Composed:
    """DROP INDEX CONCURRENTLY IF EXISTS (outside any transaction)."""
    return sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(_t(schema, a.name))


def create_version_schema(
    schema: str,
    a: CreateVersionSchema,
    tables: Mapping[str, Sequence[str]],
    *,
    security_invoker: bool,
    migration: str,
    grants: Mapping[str, Sequence[tuple[str | None, str]]] = {},
    usage: Sequence[str | None] = (),
) -> list[Query]:
    """The version schema and one view per table of ``schema`` (``tables``: physical table -> columns).

    Views are simple (one table, plain columns), so PostgreSQL makes them updatable: the application
    inserts, updates and deletes through them. With ``security_invoker`` (PostgreSQL 15+) a view checks
    the privileges of the querying role, not of the migration's role. The roles that may use the base
    schema may use the version schema, and each view carries its table's SELECT/INSERT/UPDATE/DELETE
    grants (``grants``: table -> (role or None for PUBLIC, privilege)), so an application role that is
    not the owner works through the views as it did on the tables.
    """
    shapes: dict[str, TableShape] = {s.physical: s for s in a.shapes}
    statements: list[Query] = [
        sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(a.schema)),
        sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
            sql.Identifier(a.schema),
            sql.Literal(f"gapless schema version {migration} of {schema}: views, managed by gapless migrate"),
        ),
    ]
    statements += [
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(a.schema), _role(role))
        for role in usage
    ]
    options = sql.SQL(" WITH (security_invoker = true)") if security_invoker else sql.SQL("")
    for table, physical_columns in sorted(tables.items()):
        shape = shapes.get(table)
        exposed = table if shape is None else shape.exposed
        if exposed is None:
            continue
        columns = view_columns(shape, physical_columns)
        if not columns:
            continue
        select = sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(sql.Identifier(p), sql.Identifier(e)) for p, e in columns
        )
        view = sql.Identifier(a.schema, exposed)
        statements.append(
            sql.SQL("CREATE VIEW {}{} AS SELECT {} FROM {}").format(view, options, select, _t(schema, table))
        )
        statements += [
            sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privilege), view, _role(role))
            for role, privilege in grants.get(table, ())
            if privilege in _VIEW_PRIVILEGES
        ]
        if shape is not None:
            for column, default in shape.view_defaults.items():
                what = (
                    sql.SQL("DROP DEFAULT")
                    if default is None
                    else sql.SQL("SET DEFAULT {}").format(_expr(default))
                )
                statements.append(
                    sql.SQL("ALTER VIEW {} ALTER COLUMN {} {}").format(view, sql.Identifier(column), what)
                )
    return statements
