"""What the planner knows about the live database: tables, columns, keys and indexes of one schema.

Plain frozen data, read from the catalog by the engine (``catalog.py``) and passed to the pure planner,
so a plan can be computed (and tested) without a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["ColumnInfo", "IndexInfo", "SchemaInfo", "TableInfo", "info_from_json", "info_to_json"]


@dataclass(frozen=True)
class ColumnInfo:
    """One column as the catalog describes it."""

    name: str
    type: str
    not_null: bool = False
    default: str | None = None
    identity: bool = False
    generated: bool = False


@dataclass(frozen=True)
class TableInfo:
    """One table: its columns in order, primary key, and the columns some index or constraint uses."""

    name: str
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...] = ()
    constrained: frozenset[str] = frozenset()
    """Columns used by an index or by a constraint other than NOT NULL."""
    estimated_rows: int = 0

    def column(self, name: str) -> ColumnInfo | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass(frozen=True)
class IndexInfo:
    """An index of the schema; ``constraint`` names the constraint it backs, if any."""

    name: str
    table: str
    valid: bool = True
    constraint: str | None = None


@dataclass(frozen=True)
class SchemaInfo:
    """The tables, indexes and constraint names of one schema."""

    schema: str
    tables: Mapping[str, TableInfo] = field(default_factory=dict)
    indexes: Mapping[str, IndexInfo] = field(default_factory=dict)
    constraints: frozenset[tuple[str, str]] = frozenset()
    """(table, constraint name) pairs."""
    relations: frozenset[str] = frozenset()
    """Every relation name in the schema (tables, views, indexes, sequences): names that are taken."""


def info_to_json(info: SchemaInfo) -> dict[str, Any]:
    """A JSON-able snapshot, stored with a started migration so complete and rollback re-plan identically."""
    return {
        "schema": info.schema,
        "tables": [
            {
                "name": t.name,
                "columns": [asdict(c) for c in t.columns],
                "primary_key": list(t.primary_key),
                "constrained": sorted(t.constrained),
                "estimated_rows": t.estimated_rows,
            }
            for t in info.tables.values()
        ],
        "indexes": [asdict(i) for i in info.indexes.values()],
        "constraints": sorted([list(c) for c in info.constraints]),
        "relations": sorted(info.relations),
    }


def info_from_json(data: dict[str, Any]) -> SchemaInfo:
    """The inverse of ``info_to_json``."""
    tables = {
        t["name"]: TableInfo(
            name=t["name"],
            columns=tuple(ColumnInfo(**c) for c in t["columns"]),
            primary_key=tuple(t["primary_key"]),
            constrained=frozenset(t["constrained"]),
            estimated_rows=int(t["estimated_rows"]),
        )
        for t in data["tables"]
    }
    return SchemaInfo(
        schema=data["schema"],
        tables=tables,
        indexes={i["name"]: IndexInfo(**i) for i in data["indexes"]},
        constraints=frozenset((c[0], c[1]) for c in data["constraints"]),
        relations=frozenset(data["relations"]),
    )
