"""Planning is pure: steps, their phase, lock, rewrite and the versions each state serves, and plan-time problems."""

from __future__ import annotations

import pytest

from gapless.core.errors import SpecError
from gapless.migrations.files import parse_migration
from gapless.migrations.info import ColumnInfo, IndexInfo, SchemaInfo, TableInfo, info_from_json, info_to_json
from gapless.migrations.plan import plan
from gapless.migrations.steps import Plan, is_constant

USERS = TableInfo(
    name="users",
    columns=(
        ColumnInfo("id", "bigint", not_null=True, default="nextval('users_id_seq'::regclass)"),
        ColumnInfo("name", "text", not_null=True),
        ColumnInfo("age", "integer"),
        ColumnInfo("email", "text"),
    ),
    primary_key=("id",),
    constrained=frozenset({"id", "email"}),
)
NOKEY = TableInfo(name="events", columns=(ColumnInfo("payload", "text"),))
INFO = SchemaInfo(
    schema="public",
    tables={"users": USERS, "events": NOKEY},
    indexes={
        "users_pkey": IndexInfo("users_pkey", "users", constraint="users_pkey"),
        "users_email_idx": IndexInfo("users_email_idx", "users"),
    },
    constraints=frozenset({("users", "users_pkey")}),
    relations=frozenset({"users", "events", "users_pkey", "users_email_idx", "users_id_seq"}),
)


def planned(operations: str, info: SchemaInfo | None = INFO, previous: str | None = "public_m0") -> Plan:
    return plan(parse_migration(f"name: m1\noperations:\n{operations}"), info, previous_schema=previous)


def rows(p: Plan, phase: str) -> list[tuple[str, str, bool]]:
    """(description, lock, rewrites) of one phase's steps."""
    return [(s.describe(), s.lock, s.rewrites) for s in p.steps if s.phase == phase]


@pytest.mark.parametrize(
    ("operation", "phase", "description", "lock"),
    [
        (
            "add_column: {table: users, column: {name: bio, type: text}}",
            "start",
            "add column users.bio text",
            "ACCESS EXCLUSIVE",
        ),
        (
            "create_index: {name: users_age_idx, table: users, columns: [age]}",
            "start",
            "create index users_age_idx concurrently on users(age)",
            "SHARE UPDATE EXCLUSIVE",
        ),
        (
            "add_constraint: {table: users, name: age_ok, check: {expression: age > 0}}",
            "complete",
            "validate constraint age_ok on users",
            "SHARE UPDATE EXCLUSIVE",
        ),
        (
            "add_constraint: {table: users, name: fk, foreign_key: {columns: [age], references: {table: users, columns: [id]}}}",
            "start",
            "add foreign key fk users(age) -> users(id) NOT VALID (both tables)",
            "SHARE ROW EXCLUSIVE",
        ),
        (
            "drop_column: {table: users, column: age}",
            "complete",
            "drop column users.age (catalog only, no rewrite)",
            "ACCESS EXCLUSIVE",
        ),
        (
            "drop_index: {name: users_email_idx}",
            "complete",
            "drop index users_email_idx concurrently",
            "SHARE UPDATE EXCLUSIVE",
        ),
        (
            "alter_column: {table: users, column: age, type: bigint, up: age, down: age}",
            "start",
            "backfill users in batches (row locks only, checkpointed)",
            "ROW EXCLUSIVE",
        ),
        (
            "rename_table: {from: users, to: people}",
            "complete",
            "rename table users to people",
            "ACCESS EXCLUSIVE",
        ),
    ],
)
def test_lock_levels(operation: str, phase: str, description: str, lock: str) -> None:
    """Each operation's steps carry PostgreSQL's lock level for what they do, and none rewrites the table."""
    p = planned(f"  - {operation}\n")
    found = {d: (lk, rw) for d, lk, rw in rows(p, phase)}
    assert found[description] == (lock, False)
    assert not any(s.rewrites for s in p.steps)


def test_start_order_lets_old_writes_succeed_and_hides_new_shape_until_ready() -> None:
    """Structure, then triggers, then NOT VALID constraints, backfill, indexes, and the views last."""
    p = planned(
        """  - add_column: {table: users, column: {name: nick, type: text, nullable: false, unique: true}, up: lower(name)}
  - rename_column: {table: users, from: name, to: full_name}
"""
    )
    kinds = [type(s.action).__name__ for s in p.phase("start")]
    assert kinds == [
        "AddColumn",
        "CreateSyncTrigger",
        "AddCheck",
        "Backfill",
        "CreateIndex",
        "CreateVersionSchema",
    ]
    assert [s.serves for s in p.phase("start")] == [("old",)] * 5 + [("old", "new")]


def test_complete_validates_before_the_point_of_no_return() -> None:
    """Validation steps are reversible and serve both versions; from dropping the old schema on, only the new."""
    p = planned(
        """  - add_column: {table: users, column: {name: nick, type: text, nullable: false}, up: lower(name)}
  - drop_column: {table: users, column: age}
"""
    )
    complete = p.phase("complete")
    assert [type(s.action).__name__ for s in complete] == [
        "ValidateConstraint",
        "DropVersionSchema",
        "DropSyncTrigger",
        "DropColumn",
        "SetNotNull",
    ]
    assert p.point_of_no_return == 1
    assert [s.reversible for s in complete] == [True, False, False, False, False]
    assert [s.serves for s in complete] == [("old", "new")] + [("new",)] * 4


def test_first_migration_has_no_old_schema_to_drop() -> None:
    """Without a previous version schema the old version uses the base schema, and complete drops no schema."""
    p = planned("  - drop_column: {table: users, column: age}\n", previous=None)
    assert "DropVersionSchema" not in [type(s.action).__name__ for s in p.phase("complete")]
    assert p.states()[1] == (
        "after start: the old version uses public, the new version uses public_m1",
        ("old", "new"),
    )


def test_rollback_is_start_undone_in_reverse() -> None:
    """Rollback drops the new schema first and what start added after, in reverse order."""
    p = planned(
        """  - add_column: {table: users, column: {name: nick, type: text}, up: lower(name)}
  - create_index: {name: users_nick_idx, table: users, columns: [nick]}
  - sql: {up: CREATE TABLE notes (id int), down: DROP TABLE notes}
"""
    )
    assert [s.describe() for s in p.phase("rollback")] == [
        "drop schema public_m1 and its views (locks the views only)",
        "drop index users_nick_idx concurrently",
        "drop sync trigger on users",
        "run sql down: DROP TABLE notes",
        "drop column users.nick (catalog only, no rewrite)",
    ]


def test_constant_default_takes_the_fast_path() -> None:
    """A constant default is one ADD COLUMN (no trigger, no backfill); an expression default is backfilled."""
    constant = planned(
        "  - add_column: {table: users, column: {name: n, type: int, nullable: false, default: '0'}}\n"
    )
    assert [type(s.action).__name__ for s in constant.phase("start")] == ["AddColumn", "CreateVersionSchema"]
    expression = planned(
        "  - add_column: {table: users, column: {name: t, type: timestamptz, default: now()}}\n"
    )
    assert [type(s.action).__name__ for s in expression.phase("start")] == [
        "AddColumn",
        "SetDefault",
        "CreateSyncTrigger",
        "Backfill",
        "CreateVersionSchema",
    ]


@pytest.mark.parametrize(
    ("expression", "constant"),
    [
        ("0", True),
        ("-1.5", True),
        ("'x'", True),
        ("'{}'::jsonb", True),
        ("true", True),
        ("now()", False),
        ("1 + 1", False),
    ],
)
def test_is_constant(expression: str, constant: bool) -> None:
    """Only literals (optionally cast) count as constants."""
    assert is_constant(expression) is constant


def test_shadow_column_and_view_shape() -> None:
    """A type change writes a shadow column exposed under the real name; the trigger converts both ways."""
    p = planned("  - alter_column: {table: users, column: age, type: bigint, up: age * 10, down: age / 10}\n")
    (shape,) = p.shapes
    assert shape.replaced == {"age": "_gapless_new_age"}
    assert [(s.target, s.direction, s.mode) for s in shape.syncs] == [
        ("_gapless_new_age", "up", "convert"),
        ("age", "down", "convert"),
    ]


@pytest.mark.parametrize(
    ("operation", "path", "fragment"),
    [
        (
            "add_column: {table: nope, column: {name: a, type: int}}",
            "operations.0.add_column.table",
            "does not exist",
        ),
        (
            "add_column: {table: users, column: {name: age, type: int}}",
            "operations.0.add_column.column.name",
            "already exists",
        ),
        ("drop_column: {table: users, column: nope}", "operations.0.drop_column.column", "does not exist"),
        (
            "drop_column: {table: users, column: name}",
            "operations.0.drop_column.down",
            "NOT NULL without a default",
        ),
        ("drop_column: {table: users, column: id}", "operations.0.drop_column.column", "primary key"),
        (
            "rename_column: {table: users, from: age, to: name}",
            "operations.0.rename_column.to",
            "already exists",
        ),
        (
            "alter_column: {table: users, column: email, type: varchar(9), up: email, down: email}",
            "operations.0.alter_column.column",
            "index or constraint",
        ),
        (
            "create_index: {name: users_email_idx, table: users, columns: [age]}",
            "operations.0.create_index.name",
            "exists",
        ),
        ("drop_index: {name: users_pkey}", "operations.0.drop_index.name", "backs constraint"),
        ("drop_index: {name: nope}", "operations.0.drop_index.name", "does not exist"),
        (
            "create_table: {table: users, columns: [{name: a, type: int}]}",
            "operations.0.create_table.table",
            "exists",
        ),
        (
            "add_column: {table: events, column: {name: a, type: int}, up: '1'}",
            "operations.0",
            "no primary key",
        ),
    ],
)
def test_plan_problems_against_the_live_schema(operation: str, path: str, fragment: str) -> None:
    """With the catalog, operations that do not fit the database are refused by field path before anything runs."""
    with pytest.raises(SpecError) as e:
        planned(f"  - {operation}\n")
    found = {p.path: p.message for p in e.value.problems}
    assert path in found, found
    assert fragment in found[path]


def test_operations_compose_in_order() -> None:
    """Later operations see earlier ones: a renamed column is indexed by its new name, a dropped table is gone."""
    p = planned(
        """  - rename_column: {table: users, from: age, to: years}
  - create_index: {name: users_years_idx, table: users, columns: [years]}
"""
    )
    index = next(s.action for s in p.phase("start") if type(s.action).__name__ == "CreateIndex")
    assert index.columns == ("age",)  # type: ignore[union-attr]
    with pytest.raises(SpecError) as e:
        planned(
            "  - drop_table: {table: users}\n  - add_column: {table: users, column: {name: a, type: int}}\n"
        )
    assert "no longer exists" in e.value.problems[0].message
    with pytest.raises(SpecError) as e:
        planned(
            "  - drop_column: {table: users, column: age}\n  - alter_column: {table: users, column: age, default: '1'}\n"
        )
    assert e.value.problems[0].path == "operations.1.alter_column.column"


def test_lint_findings_in_sql_operations_block_unless_acknowledged() -> None:
    """A dangerous statement in a sql operation is a blocking finding unless ignore_lint names its rule."""
    p = planned("  - sql: {up: CREATE INDEX i ON users (age), down: DROP INDEX i}\n", info=None)
    assert [f.finding.rule for f in p.blocking_findings] == ["index-not-concurrent"]
    acknowledged = planned(
        "  - sql: {up: CREATE INDEX i ON users (age), down: DROP INDEX i, ignore_lint: [index-not-concurrent]}\n",
        info=None,
    )
    assert acknowledged.blocking_findings == []
    assert acknowledged.findings[0].ignored


def test_schema_info_round_trips_through_json() -> None:
    """The catalog snapshot stored with a started migration re-plans identically."""
    assert info_from_json(info_to_json(INFO)) == INFO
