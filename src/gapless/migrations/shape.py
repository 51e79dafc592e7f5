"""How the new schema version sees each physical table while a migration is in progress.

Between ``start`` and ``complete`` the physical tables hold both shapes at once: a renamed column still
has its old name, a column whose type changes exists twice (the old one and a shadow column
``_gapless_new_<name>``), a dropped column is still there. A ``TableShape`` records, for one table, what
the new version's view exposes under which name and which columns the sync trigger keeps in step. The
views and triggers are built from it and from the table's columns as read from the catalog after the
expand steps ran (``view_columns``, ``old_shape_columns``), so raw ``sql`` operations that add columns are
reflected too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from gapless.migrations.model import RESERVED_PREFIX

__all__ = ["SHADOW_PREFIX", "ColumnSync", "TableShape", "old_shape_columns", "shadow_name", "view_columns"]

SHADOW_PREFIX = "_gapless_new_"


def shadow_name(column: str) -> str:
    """The physical name of the column that holds ``column``'s new type until complete swaps them."""
    name = SHADOW_PREFIX + column
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha256(column.encode()).hexdigest()[:8]
    return f"{SHADOW_PREFIX}{column.encode()[:40].decode(errors='ignore')}_{digest}"


@dataclass(frozen=True)
class ColumnSync:
    """One column the sync trigger writes.

    ``up`` rules run for writes of the old version (and the backfill) and see the old shape's columns;
    ``down`` rules run for writes of the new version and see the new shape's columns. A ``fill`` rule
    writes only on INSERT or when the target is NULL, so it never overwrites a value the other version
    wrote (new data the other side cannot know about); a ``convert`` rule writes on every write, because
    both columns hold the same data in two representations. The backfill applies every rule as
    ``fill``: a row the trigger already converted is never converted again.
    """

    target: str
    expression: str
    direction: Literal["up", "down"]
    mode: Literal["fill", "convert"]


@dataclass(frozen=True)
class TableShape:
    """The new version's view of one physical table (by its physical name at start)."""

    physical: str
    exposed: str | None
    """The table's name in the new version; None when the migration drops it."""
    created: bool = False
    renamed: dict[str, str] = field(default_factory=dict)
    """physical column -> its name in the new version"""
    hidden: frozenset[str] = frozenset()
    """physical columns the new version does not see (dropped)"""
    replaced: dict[str, str] = field(default_factory=dict)
    """old physical column -> the shadow column that takes its place (and its name) in the new version"""
    added: tuple[str, ...] = ()
    view_defaults: dict[str, str | None] = field(default_factory=dict)
    """new-version column -> default the new version's view gives it (None: no default)"""
    syncs: tuple[ColumnSync, ...] = ()

    @property
    def needs_backfill(self) -> bool:
        return any(s.direction == "up" for s in self.syncs)

    @property
    def needs_trigger(self) -> bool:
        return bool(self.syncs)


def view_columns(shape: TableShape | None, physical_columns: Sequence[str]) -> list[tuple[str, str]]:
    """(physical column, name in the new version) for the new version's view, in table order.

    A shadow column takes the place of the column it replaces; columns gapless owns are never exposed.
    """
    if shape is None:
        return [(c, c) for c in physical_columns if not c.lower().startswith(RESERVED_PREFIX)]
    shadows = set(shape.replaced.values())
    out: list[tuple[str, str]] = []
    for c in physical_columns:
        if c in shape.replaced:
            out.append((shape.replaced[c], c))
        elif c in shape.hidden or c in shadows or c.lower().startswith(RESERVED_PREFIX):
            continue
        else:
            out.append((c, shape.renamed.get(c, c)))
    return out


def old_shape_columns(shape: TableShape, physical_columns: Sequence[str]) -> list[str]:
    """The physical columns the old version knows: everything but what this migration added."""
    new = set(shape.added) | set(shape.replaced.values())
    return [c for c in physical_columns if c not in new and not c.lower().startswith(RESERVED_PREFIX)]
