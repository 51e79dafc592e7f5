"""Read what a SQLite database holds, and measure how fast it copies rows.

Everything here reads only (``measure_rates`` writes to the connection's private TEMP database, never
to ``main``), so ``plan`` can run against a live database without taking its write lock.
"""

from __future__ import annotations

import sqlite3
import time

from gapless.migrations.sqlite.render import TRIGGER_PREFIX
from gapless.migrations.sqlite.schema import CopyRates, SqliteColumn, SqliteIndex, SqliteSchema, SqliteTable
from gapless.migrations.sqlite.text import parse_create_table, quote, tokenize

__all__ = [
    "GAPLESS_PREFIX",
    "gapless_triggers",
    "indexes_using",
    "live_columns",
    "measure_rates",
    "read_schema",
    "table_sql",
]

GAPLESS_PREFIX = "_gapless"
PROBE = "_gapless_probe"


def _internal(name: str) -> bool:
    return name.lower().startswith(("sqlite_", GAPLESS_PREFIX))


def live_columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, bool]]:
    """(name, generated) of the table's columns in order (hidden columns of virtual tables left out)."""
    rows = conn.execute(f"PRAGMA table_xinfo({quote(table)})").fetchall()
    return [(str(r[1]), int(r[6]) in (2, 3)) for r in rows if int(r[6]) != 1]


def table_sql(conn: sqlite3.Connection, table: str) -> str:
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE", (table,)
    ).fetchone()
    if row is None or row[0] is None:
        raise LookupError(f"table {table!r} does not exist")
    return str(row[0])


def gapless_triggers(conn: sqlite3.Connection, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? COLLATE NOCASE "
        "AND substr(name, 1, ?) = ?",
        (table, len(TRIGGER_PREFIX), TRIGGER_PREFIX),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _index_columns(conn: sqlite3.Connection, index: str) -> tuple[str, ...]:
    rows = conn.execute(f"PRAGMA index_info({quote(index)})").fetchall()
    return tuple(str(r[2]) for r in rows if r[2] is not None)


def indexes_using(conn: sqlite3.Connection, table: str, column: str) -> list[tuple[str, str | None]]:
    """(name, SQL) of the indexes of ``table`` that use ``column`` (as a key, in an expression or a WHERE)."""
    out = []
    for row in conn.execute(f"PRAGMA index_list({quote(table)})").fetchall():
        name = str(row[1])
        sql_row = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
        ).fetchone()
        sql = None if sql_row is None or sql_row[0] is None else str(sql_row[0])
        uses = column.lower() in {c.lower() for c in _index_columns(conn, name)}
        if uses or (sql is not None and _mentions_after_on(sql, column)):
            out.append((name, sql))
    return out


def _mentions_after_on(sql: str, column: str) -> bool:
    """Whether an index's SQL uses ``column`` after ``ON table`` (its name or the table's do not count)."""
    tokens = [t for t in tokenize(sql) if t.significant]
    for i, t in enumerate(tokens):
        if t.upper == "ON":
            rest = tokens[i + 2 :]
            return any(x.kind in ("word", "ident") and (x.name or "").lower() == column.lower() for x in rest)
    return False


def _without_rowid(sql: str) -> bool:
    try:
        tail = parse_create_table(sql).tail
    except ValueError:
        return False
    words = [t.upper for t in tokenize(tail) if t.significant]
    return any(words[i : i + 2] == ["WITHOUT", "ROWID"] for i in range(len(words)))


def read_schema(conn: sqlite3.Connection) -> SqliteSchema:
    """The tables, indexes, views and triggers of ``main``; gapless's own objects left out (no row is read)."""
    objects = conn.execute(
        "SELECT type, name, tbl_name, sql FROM main.sqlite_master ORDER BY rowid"
    ).fetchall()
    tables: dict[str, SqliteTable] = {}
    indexes: dict[str, SqliteIndex] = {}
    views: dict[str, str] = {}
    triggers: dict[str, tuple[str, str]] = {}
    for kind, name, table, sql in objects:
        if _internal(str(name)):
            continue
        if kind == "table":
            text = str(sql or "")
            virtual = text.upper().lstrip().startswith("CREATE VIRTUAL")
            columns = tuple(
                SqliteColumn(
                    name=str(r[1]),
                    type=str(r[2] or ""),
                    not_null=bool(r[3]),
                    default=None if r[4] is None else str(r[4]),
                    primary_key=int(r[5]),
                    generated=int(r[6]) in (2, 3),
                )
                for r in conn.execute(f"PRAGMA table_xinfo({quote(str(name))})").fetchall()
                if int(r[6]) != 1
            )
            refs = tuple(
                dict.fromkeys(
                    str(r[2]) for r in conn.execute(f"PRAGMA foreign_key_list({quote(str(name))})").fetchall()
                )
            )
            tables[str(name)] = SqliteTable(str(name), text, columns, _without_rowid(text), virtual, refs)
        elif kind == "view":
            views[str(name)] = str(sql or "")
        elif kind == "trigger":
            triggers[str(name)] = (str(table), str(sql or ""))
    for t in tables.values():
        if t.virtual:
            continue
        for row in conn.execute(f"PRAGMA index_list({quote(t.name)})").fetchall():
            name = str(row[1])
            sql_row = conn.execute(
                "SELECT sql FROM main.sqlite_master WHERE type = 'index' AND name = ?", (name,)
            ).fetchone()
            indexes[name] = SqliteIndex(
                name=name,
                table=t.name,
                columns=_index_columns(conn, name),
                unique=bool(row[2]),
                sql=None if sql_row is None or sql_row[0] is None else str(sql_row[0]),
            )
    return SqliteSchema(tables=tables, indexes=indexes, views=views, triggers=triggers)


def measure_rates(conn: sqlite3.Connection, table: str, *, sample_rows: int = 20_000) -> CopyRates:
    """Count ``table``'s rows, copy up to ``sample_rows`` of them into a TEMP table and index them.

    The TEMP database is private to the connection, so this takes no lock that the application waits
    for. A table without rows measures no rates (zero: nothing to estimate).
    """
    source = f"main.{quote(table)}"
    counted = conn.execute(f"SELECT count(*) FROM {source}").fetchone()  # noqa: S608 -- identifiers quoted by quote()
    rows = int(counted[0]) if counted else 0
    if rows == 0:
        return CopyRates(rows=0, copy=0.0, index=0.0, sample_rows=0)
    conn.execute(f"DROP TABLE IF EXISTS temp.{quote(PROBE)}")
    try:
        conn.execute(f"CREATE TEMP TABLE {quote(PROBE)} AS SELECT * FROM {source} WHERE 0")  # noqa: S608 -- identifiers quoted by quote()
        t0 = time.perf_counter()
        cursor = conn.execute(
            f"INSERT INTO temp.{quote(PROBE)} SELECT * FROM {source} LIMIT ?",  # noqa: S608 -- identifiers quoted by quote()
            (sample_rows,),
        )
        copied = cursor.rowcount
        t1 = time.perf_counter()
        first = conn.execute(f"PRAGMA temp.table_info({quote(PROBE)})").fetchone()
        t2 = t3 = time.perf_counter()
        if first is not None:
            conn.execute(
                f"CREATE INDEX temp.{quote(PROBE + '_i')} ON {quote(PROBE)} ({quote(str(first[1]))})"
            )
            t3 = time.perf_counter()
    finally:
        conn.execute(f"DROP TABLE IF EXISTS temp.{quote(PROBE)}")
    if copied <= 0:
        return CopyRates(rows=rows, copy=0.0, index=0.0, sample_rows=0)
    return CopyRates(
        rows=rows, copy=copied / max(t1 - t0, 1e-6), index=copied / max(t3 - t2, 1e-6), sample_rows=copied
    )
