"""SQL text for the SQLite actions, including the sync triggers and the backfill's statements.

**Triggers.** SQLite has no views an application version can be pointed at, and a trigger cannot
change the row being written (no ``NEW.col := ...``), so the sync triggers are ``AFTER INSERT`` and
``AFTER UPDATE`` triggers that update the row they fired for, found by rowid:

- a ``fill`` rule (``add_column``'s ``up``, ``drop_column``'s ``down``, ``alter_column``'s ``up`` for
  NOT NULL) writes its target when the target is NULL after an insert or update: a value either version
  wrote is kept, a NULL is filled;
- a ``mirror`` rule (``rename_column``) keeps two columns equal: on insert, a row whose new column is
  NULL was written by the old version (the old version cannot know the new column), so the new column
  gets the old one's value, otherwise the old column gets the new one's; on update, whichever column the
  statement changed is copied to the other, and when a statement changed both, the new column wins.

**Loop prevention.** A trigger's own UPDATE fires the table's other triggers (and, with
``PRAGMA recursive_triggers`` on, itself), so every trigger writes only when the write changes
something: a fill rule only when its target is NULL *and* the value it would write is not NULL; a mirror
rule only when the two columns differ (``WHEN NEW.a IS NOT NEW.b``, compared with ``BINARY`` collation).
After one copy the two sides agree, so the next trigger in the chain finds nothing to do: a chain ends
after at most two updates whatever ``recursive_triggers`` says. (With it off, SQLite's default, a
trigger never re-enters itself anyway.)

The backfill applies the same rules to existing rows, a rowid range per statement, filling only NULL
targets, so a row the triggers already handled is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from gapless.migrations.model import Column, ColumnReference
from gapless.migrations.sqlite.actions import AddColumn, CreateIndex, CreateTable, SyncRule
from gapless.migrations.sqlite.text import is_literal, quote

__all__ = [
    "TRIGGER_PREFIX",
    "add_column",
    "backfill_updates",
    "column_definition",
    "create_index",
    "create_table",
    "rowid_name",
    "sync_triggers",
]

TRIGGER_PREFIX = "_gapless_sync_"


def rowid_name(columns: Sequence[str]) -> str:
    """A name for the rowid that no column shadows (SQLite accepts three)."""
    taken = {c.lower() for c in columns}
    for name in ("rowid", "_rowid_", "oid"):
        if name not in taken:
            return name
    raise ValueError("the table has columns named rowid, _rowid_ and oid: its rowid cannot be named")


def _default(expression: str) -> str:
    return expression.strip() if is_literal(expression) else f"({expression})"


def _check_and_reference(check: str | None, r: ColumnReference | None) -> list[str]:
    """A column's CHECK and REFERENCES clauses, the same in CREATE TABLE and ADD COLUMN."""
    parts = [f"CHECK ({check})"] if check is not None else []
    if r is not None:
        parts.append(f"REFERENCES {quote(r.table)} ({quote(r.column)}) ON DELETE {r.on_delete}")
    return parts


def column_definition(c: Column, *, inline_primary_key: bool) -> str:
    parts = [quote(c.name), c.type]
    if c.primary_key and inline_primary_key:
        parts.append("PRIMARY KEY")
    if (not c.nullable or c.primary_key) and not (inline_primary_key and c.type.lower() == "integer"):
        parts.append("NOT NULL")
    if c.unique:
        parts.append("UNIQUE")
    if c.default is not None:
        parts.append(f"DEFAULT {_default(c.default)}")
    return " ".join(parts + _check_and_reference(c.check, c.references))


def create_table(a: CreateTable) -> str:
    keys = [c.name for c in a.columns if c.primary_key]
    inline = len(keys) == 1
    items = [column_definition(c, inline_primary_key=inline) for c in a.columns]
    if len(keys) > 1:
        items.append(f"PRIMARY KEY ({', '.join(quote(k) for k in keys)})")
    return f"CREATE TABLE {quote(a.table)} (\n  " + ",\n  ".join(items) + "\n)"


def add_column(a: AddColumn) -> str:
    parts = [f"ALTER TABLE {quote(a.table)} ADD COLUMN {quote(a.column)}"]
    if a.type:
        parts.append(a.type)
    if a.not_null:
        parts.append("NOT NULL")
    if a.default is not None:
        parts.append(f"DEFAULT {a.default.strip()}")
    return " ".join(parts + _check_and_reference(a.check, a.references))


def create_index(a: CreateIndex) -> str:
    unique = "UNIQUE " if a.unique else ""
    cols = ", ".join(quote(c) for c in a.columns)
    where = f" WHERE {a.where}" if a.where else ""
    return f"CREATE {unique}INDEX {quote(a.name)} ON {quote(a.table)} ({cols}){where}"


def _trigger(name: str, event: str, table: str, when: str | None, body: Sequence[str]) -> str:
    condition = f" WHEN {when}" if when else ""
    statements = "".join(f"\n  {s};" for s in body)
    return f"CREATE TRIGGER {quote(name)} AFTER {event} ON {quote(table)} FOR EACH ROW{condition}\nBEGIN{statements}\nEND"


def sync_triggers(table: str, rules: Sequence[SyncRule], rowid: str) -> list[str]:
    """The CREATE TRIGGER statements that keep ``table``'s old and new columns in step (see the module doc)."""
    t = quote(table)
    row = f"{rowid} = NEW.{rowid}"
    out: list[str] = []
    for k, rule in enumerate(rules):
        base = f"{TRIGGER_PREFIX}{table}_{k}"
        target = quote(rule.target)
        if rule.kind == "fill":
            body = [
                f"UPDATE {t} SET {target} = ({rule.source}) "  # noqa: S608 -- identifiers quoted by quote(), expressions from the validated migration file
                f"WHERE {row} AND {target} IS NULL AND ({rule.source}) IS NOT NULL"
            ]
            out.append(_trigger(f"{base}_insert", "INSERT", table, f"NEW.{target} IS NULL", body))
            out.append(_trigger(f"{base}_update", "UPDATE", table, f"NEW.{target} IS NULL", body))
            continue
        source = quote(rule.source)
        differ = f"NEW.{source} COLLATE BINARY IS NOT NEW.{target}"
        out.append(
            _trigger(
                f"{base}_insert",
                "INSERT",
                table,
                differ,
                [
                    f"UPDATE {t} SET {target} = {source} WHERE {row} AND NEW.{target} IS NULL",  # noqa: S608 -- identifiers quoted by quote(), expressions from the validated migration file
                    f"UPDATE {t} SET {source} = {target} WHERE {row} AND NEW.{target} IS NOT NULL",  # noqa: S608 -- identifiers quoted by quote(), expressions from the validated migration file
                ],
            )
        )
        out.append(
            _trigger(
                f"{base}_old",
                f"UPDATE OF {source}",
                table,
                f"{differ} AND OLD.{target} IS NEW.{target}",
                [f"UPDATE {t} SET {target} = {source} WHERE {row}"],  # noqa: S608 -- identifiers quoted by quote(), expressions from the validated migration file
            )
        )
        out.append(
            _trigger(
                f"{base}_new",
                f"UPDATE OF {target}",
                table,
                differ,
                [f"UPDATE {t} SET {source} = {target} WHERE {row}"],  # noqa: S608 -- identifiers quoted by quote(), expressions from the validated migration file
            )
        )
    return out


def backfill_updates(table: str, rules: Sequence[SyncRule], rowid: str, *, first: bool) -> list[str]:
    """One UPDATE per rule for the rowid range ``(:after, :last]`` (``first``: up to ``:last``).

    Each fills only NULL targets, so rows the triggers already handled are not written again.
    """
    t = quote(table)
    bounds = f"{rowid} <= :last" if first else f"{rowid} > :after AND {rowid} <= :last"
    out = []
    for rule in rules:
        target = quote(rule.target)
        if rule.kind == "mirror":
            source = quote(rule.source)
            out.append(
                f"UPDATE {t} SET {target} = {source} WHERE {bounds} AND {target} IS NULL AND {source} IS NOT NULL"  # noqa: S608 -- identifiers quoted by quote(), expressions from the validated migration file
            )
        else:
            fill = f"UPDATE {t} SET {target} = ({rule.source}) WHERE {bounds} AND {target} IS NULL"  # noqa: S608 -- identifiers quoted by quote(), expressions from the validated migration file
            out.append(fill)
    return out
