"""How long each step of a SQLite plan holds the database's write lock, estimated from measurements.

Pure: the engine measures (row counts, and the rows per second this database copies and indexes, see
``catalog.measure_rates``) and this module turns the measurements into per-step estimates. A copy or
``DROP COLUMN`` rewrites every row once; a rebuild rewrites them and builds the table's indexes again;
an index build sorts, so its rate is scaled by log(n) / log(sample); a backfill batch updates rows in
place and fires the triggers, measured at about ``UPDATE_SLOWDOWN`` times slower per row than a copy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

from gapless.migrations.sqlite.actions import (
    AddColumn,
    Backfill,
    ContractTable,
    CreateIndex,
    DropColumn,
    SqlitePlan,
    SqliteStep,
    format_seconds,
)
from gapless.migrations.sqlite.schema import CopyRates, SqliteSchema

__all__ = ["UPDATE_SLOWDOWN", "estimate"]

UPDATE_SLOWDOWN = 5.0
"""A backfill batch's rows cost about this many times a copied row (measured: an UPDATE plus the triggers)."""


def _index_seconds(rows: int, rates: CopyRates) -> float:
    """An index build sorts: scale the measured rate by log(n) / log(sample)."""
    if rows <= 0 or rates.index <= 0:
        return 0.0
    factor = max(1.0, math.log2(max(rows, 2)) / math.log2(max(rates.sample_rows, 2)))
    return rows / rates.index * factor


def estimate(
    plan: SqlitePlan,
    schema: SqliteSchema,
    rates: Mapping[str, CopyRates],
    *,
    batch_size: int,
    max_write_lock: float | None,
) -> SqlitePlan:
    """The plan with each step's estimated write-lock hold, from row counts and measured copy rates.

    ``rates`` is keyed by table name (lower case); a table without a measurement (created by this
    migration) is empty. A step whose estimate is above ``max_write_lock`` is marked ``over_limit``.
    """

    def rows_of(table: str) -> int:
        r = rates.get(table.lower())
        return r.rows if r else 0

    def rate_of(table: str) -> CopyRates | None:
        return rates.get(table.lower())

    def index_count(table: str) -> int:
        return sum(1 for i in schema.indexes.values() if i.table.lower() == table.lower())

    steps: list[SqliteStep] = []
    for s in plan.steps:
        a = s.action
        seconds: float | None = None
        batches: int | None = None
        r = rate_of(a.tables[0]) if a.tables else None
        n = rows_of(a.tables[0]) if a.tables else 0
        copy = r.copy if r is not None and r.copy > 0 else None
        match a:
            case AddColumn() if a.hold == "scan":
                seconds = n / copy if copy else 0.0
            case CreateIndex():
                seconds = _index_seconds(n, r) if r is not None else 0.0
            case DropColumn():
                seconds = n / copy if copy else 0.0
            case ContractTable() if a.rewrites:
                seconds = a.rewrite_count * n / copy if copy else 0.0
                if a.rebuild and r is not None:
                    seconds += index_count(a.table) * _index_seconds(n, r)
            case Backfill():
                size = min(batch_size, n)
                seconds = size / copy * UPDATE_SLOWDOWN if copy else 0.0
                batches = math.ceil(n / batch_size) if n else 0
            case _:
                seconds = None
        over = seconds is not None and max_write_lock is not None and seconds > max_write_lock
        steps.append(replace(s, hold_seconds=seconds, batches=batches, over_limit=over))
    notes = list(plan.notes)
    for name, r in sorted(rates.items()):
        info = schema.table(name)
        measured = (
            f"; measured here: copy {r.copy:,.0f} rows/s, index build {r.index:,.0f} rows/s "
            f"(sample of {r.sample_rows} rows)"
            if r.sample_rows
            else ""
        )
        notes.append(f"{info.name if info else name}: {r.rows} rows{measured}")
    if max_write_lock is not None and any(s.over_limit for s in steps):
        notes.append(
            f"steps marked OVER LIMIT would hold the write lock longer than {format_seconds(max_write_lock)}: "
            "start and complete refuse them unless --force"
        )
    return replace(plan, steps=tuple(steps), notes=tuple(notes), max_write_lock=max_write_lock)
