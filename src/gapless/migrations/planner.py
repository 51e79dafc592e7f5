"""What the PostgreSQL and the SQLite planners share: walking a migration's operations, collecting problems.

Each planner (``plan.py``, ``sqlite/plan.py``) has one method per operation kind, named as the kind is
in the file (``create_table``, ``add_column``, ... ``sql``: ``model.OPERATION_KINDS``); what a method
does is the dialect's own. Pure: nothing here touches a database.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, Protocol, TypeVar

from gapless.core.errors import Problem, SpecError
from gapless.migrations.model import OPERATION_KINDS, Migration

__all__ = ["OperationPlanner"]


class TableState(Protocol):
    created_by: int | None
    """The operation of this migration that creates the table; None: it exists already."""
    touched: dict[str, int]
    """column -> the operation that changes it (one column operation per column)"""


T = TypeVar("T", bound=TableState)


class OperationPlanner(Generic[T]):
    """The base of a planner: ``plan_operations`` calls the method named after each operation's kind.

    ``T`` is the planner's state of one table; ``table`` and ``column`` look tables and columns up the
    dialect's way.
    """

    fold_case: ClassVar[bool] = False
    """Whether the dialect's column names are case-insensitive (SQLite): ``touch`` keys them lower-cased."""

    def __init__(self, migration: Migration) -> None:
        self.m = migration
        self.problems: list[Problem] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        missing = [kind for kind in OPERATION_KINDS if not callable(getattr(cls, kind, None))]
        if missing:
            raise TypeError(f"{cls.__qualname__} does not plan {', '.join(missing)}")

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def plan_operations(self) -> None:
        """Plan every operation in order, each by the method named after its kind."""
        for i, operation in enumerate(self.m.operations):
            getattr(self, operation.kind)(i, operation.body)

    def raise_problems(self, label: str) -> None:
        """Raise ``SpecError`` (naming ``label``) with every problem found, if there is any."""
        if self.problems:
            raise SpecError(label, self.problems)

    def find_table(self, name: str, path: str) -> T | None:
        """The table the new version calls ``name``, or None (a problem is recorded)."""
        raise NotImplementedError

    def table(self, name: str, path: str, *, for_column_change: int | None = None) -> T | None:
        """The table the new version calls ``name``, or None (a problem is recorded).

        ``for_column_change``: that operation changes one of its columns, which a table this migration
        creates cannot take (its columns are described where it is created).
        """
        st = self.find_table(name, path)
        if st is not None and for_column_change is not None and st.created_by is not None:
            self.problem(
                path,
                f"table {name!r} is created by operation {st.created_by} of this migration: "
                "describe the column there instead",
            )
            return None
        return st

    def column(self, st: T, name: str, path: str) -> str | None:
        """The column behind the new version's ``name``, or None (a problem is recorded)."""
        raise NotImplementedError

    def touch(self, st: T, column: str, i: int, path: str) -> bool:
        """Claim ``column`` for operation ``i``: one column operation per column."""
        key = column.lower() if self.fold_case else column
        if key in st.touched:
            self.problem(
                path,
                f"column {column!r} is already changed by operation {st.touched[key]}: "
                "one column operation per column per migration",
            )
            return False
        st.touched[key] = i
        return True

    def changed_column(self, i: int, p: str, table: str, column: str) -> tuple[T, str] | None:
        """The table and the column operation ``i`` (at path ``p``) changes, claimed for it; or None."""
        st = self.table(table, f"{p}.table", for_column_change=i)
        if st is None:
            return None
        name = self.column(st, column, f"{p}.column")
        if name is None or not self.touch(st, name, i, f"{p}.column"):
            return None
        return st, name

    def down_sql(self, operation: int | None) -> str | None:
        """The ``down`` of the ``sql`` operation at index ``operation``, if it has one."""
        op = self.m.operations[operation or 0].sql
        return op.down if op is not None and op.down else None
