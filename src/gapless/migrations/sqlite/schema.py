"""What the SQLite planner knows about a database: tables, columns, indexes, views and triggers.

Plain frozen data, read by ``catalog.py`` and passed to the pure planner, so a plan can be computed
(and tested) without a database. SQLite compares names case-insensitively, so lookups here do too.
A snapshot is stored with a started migration (``schema_to_json``) so that complete and rollback
re-plan exactly what start planned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "CopyRates",
    "SqliteColumn",
    "SqliteIndex",
    "SqliteSchema",
    "SqliteTable",
    "schema_from_json",
    "schema_to_json",
]


@dataclass(frozen=True)
class SqliteColumn:
    """One column as ``PRAGMA table_xinfo`` describes it."""

    name: str
    type: str
    not_null: bool = False
    default: str | None = None
    """The default's SQL text, as stored."""
    primary_key: int = 0
    """Position in the primary key (1-based), 0 when not part of it."""
    generated: bool = False


@dataclass(frozen=True)
class SqliteIndex:
    """An index; ``sql`` is None for the ones SQLite creates for UNIQUE and PRIMARY KEY constraints."""

    name: str
    table: str
    columns: tuple[str, ...]
    unique: bool = False
    sql: str | None = None


@dataclass(frozen=True)
class SqliteTable:
    name: str
    sql: str
    columns: tuple[SqliteColumn, ...]
    without_rowid: bool = False
    virtual: bool = False
    references: tuple[str, ...] = ()
    """Tables this table's foreign keys point to."""

    def column(self, name: str) -> SqliteColumn | None:
        wanted = name.lower()
        return next((c for c in self.columns if c.name.lower() == wanted), None)

    @property
    def rowid_alias(self) -> str | None:
        """The column that is the rowid (``INTEGER PRIMARY KEY``), if any."""
        pk = [c for c in self.columns if c.primary_key]
        if len(pk) == 1 and pk[0].type.upper() == "INTEGER" and not self.without_rowid:
            return pk[0].name
        return None


@dataclass(frozen=True)
class SqliteSchema:
    """The ``main`` database: everything a migration may touch or collide with."""

    tables: Mapping[str, SqliteTable] = field(default_factory=dict)
    indexes: Mapping[str, SqliteIndex] = field(default_factory=dict)
    views: Mapping[str, str] = field(default_factory=dict)
    """view name -> its SQL"""
    triggers: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """trigger name -> (table, SQL); gapless's own triggers are left out"""

    def table(self, name: str) -> SqliteTable | None:
        wanted = name.lower()
        return next((t for n, t in self.tables.items() if n.lower() == wanted), None)

    def index(self, name: str) -> SqliteIndex | None:
        wanted = name.lower()
        return next((i for n, i in self.indexes.items() if n.lower() == wanted), None)

    def taken(self, name: str) -> bool:
        """Whether a table, view, index or trigger already has this name (SQLite shares one namespace)."""
        wanted = name.lower()
        return any(n.lower() == wanted for n in (*self.tables, *self.indexes, *self.views, *self.triggers))


@dataclass(frozen=True)
class CopyRates:
    """What was measured of one table: its rows, and the rows per second this database copies and indexes."""

    rows: int
    copy: float
    index: float
    sample_rows: int


def schema_to_json(schema: SqliteSchema) -> dict[str, Any]:
    return {
        "tables": [
            {
                "name": t.name,
                "sql": t.sql,
                "columns": [asdict(c) for c in t.columns],
                "without_rowid": t.without_rowid,
                "virtual": t.virtual,
                "references": list(t.references),
            }
            for t in schema.tables.values()
        ],
        "indexes": [{**asdict(i), "columns": list(i.columns)} for i in schema.indexes.values()],
        "views": dict(schema.views),
        "triggers": {name: list(v) for name, v in schema.triggers.items()},
    }


def schema_from_json(data: dict[str, Any]) -> SqliteSchema:
    tables = {
        t["name"]: SqliteTable(
            name=t["name"],
            sql=t["sql"],
            columns=tuple(SqliteColumn(**c) for c in t["columns"]),
            without_rowid=bool(t["without_rowid"]),
            virtual=bool(t["virtual"]),
            references=tuple(t["references"]),
        )
        for t in data["tables"]
    }
    indexes = {i["name"]: SqliteIndex(**{**i, "columns": tuple(i["columns"])}) for i in data["indexes"]}
    triggers = {name: (v[0], v[1]) for name, v in data["triggers"].items()}
    return SqliteSchema(tables=tables, indexes=indexes, views=dict(data["views"]), triggers=triggers)
