"""The sync trigger: one BEFORE INSERT OR UPDATE trigger per table keeps old and new columns in step.

Which version wrote a row is decided by the writer's ``search_path``: a session whose effective path
(``current_schemas(false)``) contains the new version's schema of views is the new version; every
other session (the old version's schema, the base schema, the backfill) is the old version. The
search_path is what puts an application on a schema version in the first place, so it cannot disagree
with the views the application uses, and it costs one array lookup per row. (Deciding by "which
column changed" fails on INSERT, where every column is new, and when both versions write the same
value.)

Expressions see columns as PL/pgSQL variables: ``up`` rules see the old shape's columns under their
old names, ``down`` rules the new shape's columns under their new names (the column being changed
means its new value). ``#variable_conflict use_column`` keeps subqueries in expressions meaning what
they would mean in SQL. NEW and TG_OP are reached through ``_gapless_*`` aliases, so a column named
``new`` or ``tg_op`` cannot shadow them. The backfill sets ``gapless.backfill`` for its transaction:
then every rule only fills NULL targets, so a row the trigger already converted is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from gapless.migrations.actions import CreateSyncTrigger
from gapless.migrations.ddl import Query
from gapless.migrations.shape import ColumnSync, old_shape_columns, view_columns

__all__ = ["BACKFILL_SETTING", "TRIGGER_NAME", "create_sync_trigger", "drop_sync_trigger"]

TRIGGER_NAME = "_gapless_sync"
BACKFILL_SETTING = "gapless.backfill"


def _declare(schema: str, table: str, variables: Sequence[tuple[str, str]]) -> sql.Composed:
    """DECLARE "name" schema.table."physical"%TYPE := _gapless_row."physical"; ..."""
    return sql.SQL("").join(
        sql.SQL("    {} {}%TYPE := _gapless_row.{};\n").format(
            sql.Identifier(name), sql.Identifier(schema, table, physical), sql.Identifier(physical)
        )
        for name, physical in variables
    )


def _rule(rule: ColumnSync) -> sql.Composed:
    target = sql.SQL("_gapless_row.{}").format(sql.Identifier(rule.target))
    if rule.mode == "fill":
        condition = sql.SQL("_gapless_op = 'INSERT' OR {} IS NULL").format(target)
    else:
        condition = sql.SQL("NOT _gapless_backfill OR {} IS NULL").format(target)
    return sql.SQL("      IF {} THEN\n        {} := (\n{}\n        );\n      END IF;\n").format(
        condition, target, sql.SQL(rule.expression)
    )


def _branch(
    schema: str, table: str, variables: Sequence[tuple[str, str]], rules: Sequence[ColumnSync]
) -> sql.Composed:
    return sql.SQL("    DECLARE\n{}    BEGIN\n{}    END;\n").format(
        _declare(schema, table, variables), sql.SQL("").join(_rule(r) for r in rules)
    )


def function_body(schema: str, a: CreateSyncTrigger, physical_columns: Sequence[str]) -> sql.Composed:
    """The PL/pgSQL body of the sync function of one table."""
    ups = [r for r in a.shape.syncs if r.direction == "up"]
    downs = [r for r in a.shape.syncs if r.direction == "down"]
    old_vars = [(c, c) for c in old_shape_columns(a.shape, physical_columns)]
    new_vars = [(exposed, physical) for physical, exposed in view_columns(a.shape, physical_columns)]
    new_branch = _branch(schema, a.table, new_vars, downs) if downs else sql.SQL("    NULL;\n")
    old_branch = _branch(schema, a.table, old_vars, ups) if ups else sql.SQL("    NULL;\n")
    return sql.SQL(
        "#variable_conflict use_column\n"
        "DECLARE\n"
        "  _gapless_row ALIAS FOR NEW;\n"
        "  _gapless_op text := TG_OP;\n"
        "  _gapless_backfill boolean := coalesce(current_setting({setting}, true), '') = 'on';\n"
        "  _gapless_new boolean := {version} = ANY (current_schemas(false));\n"
        "BEGIN\n"
        "  IF _gapless_new THEN\n{new}"
        "  ELSE\n{old}"
        "  END IF;\n"
        "  RETURN NEW;\n"
        "END\n"
    ).format(
        setting=sql.Literal(BACKFILL_SETTING),
        version=sql.Literal(a.version_schema),
        new=new_branch,
        old=old_branch,
    )


def create_sync_trigger(schema: str, state_schema: str, a: CreateSyncTrigger, body: str) -> list[Query]:
    """CREATE FUNCTION (in the state schema) and its trigger; ``body`` is ``function_body`` as text."""
    function = sql.Identifier(state_schema, a.function)
    table = sql.Identifier(schema, a.table)
    return [
        sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS {}").format(
            function, sql.Literal(body)
        ),
        sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(TRIGGER_NAME), table),
        sql.SQL("CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()").format(
            sql.Identifier(TRIGGER_NAME), table, function
        ),
    ]


def drop_sync_trigger(
    schema: str, state_schema: str, table: str, function: str, *, table_exists: bool
) -> list[Query]:
    statements: list[Query] = []
    if table_exists:
        statements.append(
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                sql.Identifier(TRIGGER_NAME), sql.Identifier(schema, table)
            )
        )
    statements.append(sql.SQL("DROP FUNCTION IF EXISTS {}()").format(sql.Identifier(state_schema, function)))
    return statements
