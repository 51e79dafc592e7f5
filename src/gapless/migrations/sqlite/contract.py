"""Complete on SQLite: swap renamed columns, drop columns, and rebuild a table whose column definitions change.

All of it runs inside the caller's write transaction, so it is all or nothing.

- **Rename.** The new name exists as a second column since start. Complete drops that copy and renames
  the old column (SQLite's ``RENAME COLUMN`` also rewrites indexes, triggers and views that use it),
  so the column keeps its constraints, collation, indexes and position. Indexes the migration built on
  the copy are dropped first and built again on the renamed column.
- **Drop.** ``ALTER TABLE DROP COLUMN`` (SQLite 3.35+), after dropping the indexes that use the
  column (as PostgreSQL's DROP COLUMN does). SQLite refuses when the column is in a UNIQUE or
  foreign-key constraint, a CHECK, a view or another trigger; ``plan`` rehearses this on a copy of
  the schema, so that refusal comes at plan time.
- **Rebuild.** SQLite's documented procedure for other schema changes: create the table from edited
  ``CREATE TABLE`` text under a temporary name, copy the rows, drop the old table, rename the new one,
  and create its indexes, triggers and the views that use it again. ``foreign_keys`` is off on the
  engine's connection (DROP TABLE would otherwise delete or check child rows); ``foreign_key_check``
  afterwards proves nothing dangles, or the transaction rolls back.
"""

from __future__ import annotations

import sqlite3

from gapless.core.errors import GaplessError
from gapless.migrations.sqlite.actions import ColumnEdit, ContractTable
from gapless.migrations.sqlite.catalog import gapless_triggers, indexes_using, live_columns, table_sql
from gapless.migrations.sqlite.text import KEEP, edit_column, mentions, parse_create_table, quote

__all__ = ["contract_table", "drop_column", "drop_sync_triggers", "rebuild_table"]


def drop_sync_triggers(conn: sqlite3.Connection, table: str) -> None:
    for name in gapless_triggers(conn, table):
        conn.execute(f"DROP TRIGGER IF EXISTS {quote(name)}")


def _has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return column.lower() in {c.lower() for c, _ in live_columns(conn, table)}


def drop_column(conn: sqlite3.Connection, table: str, column: str) -> None:
    """Drop a column and the indexes that use it; nothing to do when it is gone already."""
    if not _has_column(conn, table, column):
        return
    for name, sql in indexes_using(conn, table, column):
        if sql is not None:
            conn.execute(f"DROP INDEX {quote(name)}")
    conn.execute(f"ALTER TABLE {quote(table)} DROP COLUMN {quote(column)}")


def _swap(conn: sqlite3.Connection, table: str, old: str, new: str) -> None:
    if not _has_column(conn, table, old):
        return  # swapped already
    rebuilt = [sql for _, sql in indexes_using(conn, table, new) if sql is not None]
    for name, sql in indexes_using(conn, table, new):
        if sql is not None:
            conn.execute(f"DROP INDEX {quote(name)}")
    conn.execute(f"ALTER TABLE {quote(table)} DROP COLUMN {quote(new)}")
    conn.execute(f"ALTER TABLE {quote(table)} RENAME COLUMN {quote(old)} TO {quote(new)}")
    for sql in rebuilt:
        conn.execute(sql)


def rebuild_table(conn: sqlite3.Connection, table: str, edits: tuple[ColumnEdit, ...]) -> None:
    """Recreate ``table`` with edited column definitions, keeping its rows, indexes, triggers and views."""
    create = parse_create_table(table_sql(conn, table))
    for e in edits:
        index = create.column_index(e.column)
        if index is None:
            raise GaplessError(f"column {table}.{e.column} is not in the table's definition")
        default = e.default if e.default is not None else (None if e.drop_default else KEEP)
        create = create.replace_item(
            index, edit_column(create.items[index], type=e.type, not_null=e.not_null, default=default)
        )
    for e in edits:
        if e.not_null:
            nulls = f"SELECT count(*) FROM {quote(table)} WHERE {quote(e.column)} IS NULL"  # noqa: S608 -- identifiers quoted by quote()
            row = conn.execute(nulls).fetchone()
            if row is not None and row[0]:
                raise GaplessError(
                    f"{row[0]} row(s) of {table} still have NULL in {e.column}, which becomes NOT NULL: the "
                    "up expression gives NULL for them; fix those rows, then run complete again"
                )
    temporary = f"_gapless_rebuild_{table}"
    dependents = conn.execute(
        "SELECT type, name, sql FROM main.sqlite_master WHERE sql IS NOT NULL AND "
        "((type IN ('index', 'trigger') AND tbl_name = ? COLLATE NOCASE) OR type = 'view') ORDER BY rowid",
        (table,),
    ).fetchall()
    dependents = [(k, n, s) for k, n, s in dependents if k != "view" or mentions(str(s), table)]
    sequence = None
    if conn.execute("SELECT 1 FROM main.sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
        row = conn.execute("SELECT seq FROM main.sqlite_sequence WHERE name = ?", (table,)).fetchone()
        sequence = None if row is None else row[0]
    columns = ", ".join(quote(c) for c, generated in live_columns(conn, table) if not generated)
    conn.execute(f"DROP TABLE IF EXISTS {quote(temporary)}")
    conn.execute(create.render(temporary))
    conn.execute(f"INSERT INTO {quote(temporary)} ({columns}) SELECT {columns} FROM {quote(table)}")  # noqa: S608 -- identifiers quoted by quote(), expressions from the validated migration file
    for kind, name, _ in dependents:
        if kind == "view":
            conn.execute(f"DROP VIEW {quote(str(name))}")
    conn.execute(f"DROP TABLE {quote(table)}")
    conn.execute("PRAGMA legacy_alter_table = ON")  # rename this table only; nothing else refers to it
    try:
        conn.execute(f"ALTER TABLE {quote(temporary)} RENAME TO {quote(table)}")
    finally:
        conn.execute("PRAGMA legacy_alter_table = OFF")
    for _, _, sql in dependents:
        conn.execute(str(sql))
    if sequence is not None:
        conn.execute("UPDATE main.sqlite_sequence SET seq = max(seq, ?) WHERE name = ?", (sequence, table))
    dangling = conn.execute(f"PRAGMA foreign_key_check({quote(table)})").fetchall()
    if dangling:
        raise GaplessError(
            f"rebuilding {table} would leave {len(dangling)} row(s) whose foreign key points nowhere; "
            "nothing was changed"
        )


def contract_table(conn: sqlite3.Connection, a: ContractTable) -> None:
    """Everything complete does to one table (see the module docstring), in the caller's transaction."""
    drop_sync_triggers(conn, a.table)
    for old, new in a.renames:
        _swap(conn, a.table, old, new)
    for column in a.drops:
        drop_column(conn, a.table, column)
    if a.edits:
        rebuild_table(conn, a.table, a.edits)
