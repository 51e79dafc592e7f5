"""SQLite planning: steps and write-lock estimates, refusals at plan (exit 2, nothing changed), text edits, triggers."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from gapless.cli.migrate_cmd import migrate_app
from gapless.core.errors import SpecError
from gapless.migrations.files import parse_migration
from gapless.migrations.sqlite import sqlite_path
from gapless.migrations.sqlite.actions import SqlitePlan, SyncRule
from gapless.migrations.sqlite.estimate import estimate
from gapless.migrations.sqlite.plan import plan_sqlite
from gapless.migrations.sqlite.render import sync_triggers
from gapless.migrations.sqlite.schema import CopyRates, SqliteColumn, SqliteIndex, SqliteSchema, SqliteTable
from gapless.migrations.sqlite.text import affinity, edit_column, is_identity, is_literal, parse_create_table

USERS = SqliteTable(
    name="users",
    sql="CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER, note TEXT DEFAULT 'n')",
    columns=(
        SqliteColumn("id", "INTEGER", primary_key=1),
        SqliteColumn("name", "TEXT", not_null=True),
        SqliteColumn("age", "INTEGER"),
        SqliteColumn("note", "TEXT", default="'n'"),
    ),
)
SCHEMA = SqliteSchema(
    tables={"users": USERS},
    indexes={
        "users_age": SqliteIndex("users_age", "users", ("age",), sql="CREATE INDEX users_age ON users (age)")
    },
)


def planned(operations: str, schema: SqliteSchema = SCHEMA) -> SqlitePlan:
    return plan_sqlite(parse_migration(f"name: m1\noperations:\n{operations}"), schema)


def rows(p: SqlitePlan, phase: str) -> list[tuple[str, str]]:
    """(description, hold kind) of one phase's steps."""
    return [(s.describe(), s.action.hold) for s in p.steps if s.phase == phase]


def test_add_column_with_up_is_filled_by_triggers_and_made_not_null_at_complete() -> None:
    """The column comes in nullable, triggers and a batched backfill fill it, complete rebuilds with NOT NULL."""
    p = planned(
        "  - add_column: {table: users, column: {name: email, type: text, nullable: false}, up: lower(name)}"
    )
    assert rows(p, "start") == [
        ("add column users.email text", "brief"),
        ("create sync triggers on users: email (up)", "brief"),
        ("backfill users in batches (checkpointed): email", "batched"),
    ]
    assert rows(p, "complete") == [
        ("contract users: drop sync triggers, rebuild with email: not null", "rewrite")
    ]
    assert rows(p, "rollback") == [
        ("drop sync triggers on users", "brief"),
        ("drop column users.email (rewrites every row)", "rewrite"),
    ]
    assert {s.lock for s in p.steps} == {"database write lock", "database write lock, per batch"}
    assert [serves for _, serves in p.states()] == [("old",), ("old", "new"), ("new",), ("old",)]


def test_a_literal_default_needs_no_trigger_and_no_backfill() -> None:
    """ADD COLUMN takes a literal default (and NOT NULL with it) as a schema change only."""
    p = planned(
        "  - add_column: {table: users, column: {name: flag, type: integer, nullable: false, default: '0'}}"
    )
    assert rows(p, "start") == [("add column users.flag integer default 0 not null", "brief")]
    assert rows(p, "complete") == []


def test_rename_is_a_mirrored_column_swapped_at_complete() -> None:
    """The new name is a second column kept equal by triggers; complete drops it and renames the old column."""
    p = planned("  - rename_column: {table: users, from: age, to: years}")
    assert rows(p, "start") == [
        ("add column users.years INTEGER", "brief"),
        ("create sync triggers on users: age <-> years", "brief"),
        ("backfill users in batches (checkpointed): years", "batched"),
    ]
    assert rows(p, "complete") == [
        (
            "contract users: drop sync triggers, rename age to years (drop the new copy, rename the old)",
            "rewrite",
        )
    ]


def test_estimates_come_from_rows_and_measured_rates() -> None:
    """Hold times scale with the row count; a step over the limit is marked, and batches are counted."""
    p = planned(
        "  - drop_column: {table: users, column: note}\n"
        "  - add_column: {table: users, column: {name: email, type: text}, up: lower(name)}\n"
        "  - create_index: {name: users_email, table: users, columns: [email]}"
    )
    rates = {"users": CopyRates(rows=100_000, copy=100_000.0, index=200_000.0, sample_rows=20_000)}
    e = estimate(p, SCHEMA, rates, batch_size=500, max_write_lock=0.9)
    by_step = {s.describe(): s for s in e.steps}
    backfill = by_step["backfill users in batches (checkpointed): email"]
    assert backfill.batches == 200
    assert backfill.hold_seconds == pytest.approx(500 / 100_000 * 5)
    index = by_step["create index users_email on users(email)"]
    assert index.hold_seconds is not None
    assert index.hold_seconds > 0.5
    contract = next(s for s in e.phase("complete"))
    assert contract.hold_seconds == pytest.approx(1.0)  # one rewrite of 100,000 rows at 100,000 rows/s
    assert contract.over_limit
    assert not backfill.over_limit
    assert "OVER LIMIT" in contract.duration
    assert any("100,000 rows/s" in note for note in e.notes)


@pytest.mark.parametrize(
    ("operation", "path", "reason"),
    [
        (
            "add_constraint: {table: users, name: fk, foreign_key: {columns: [age], references: {table: users, columns: [id]}}}",
            "operations.0.add_constraint.foreign_key",
            "rebuilding it under the write lock",
        ),
        (
            "add_constraint: {table: users, name: ck, check: {expression: age > 0}}",
            "operations.0.add_constraint.check",
            "no NOT VALID",
        ),
        ("rename_table: {from: users, to: people}", "operations.0.rename_table", "no views"),
        (
            "sql: {up: CREATE TABLE t (a int), down: ''}",
            "operations.0.sql.down",
            "rollback could not undo it",
        ),
        (
            "alter_column: {table: users, column: age, type: bigint, up: age * 10, down: age / 10}",
            "operations.0.alter_column.up",
            "two representations",
        ),
        (
            "alter_column: {table: users, column: age, type: text, up: age, down: age}",
            "operations.0.alter_column.type",
            "INTEGER affinity and text TEXT",
        ),
        (
            "alter_column: {table: users, column: age, nullable: true, down: 'coalesce(age, 0)'}",
            "operations.0.alter_column.nullable",
            "NULL writes would fail",
        ),
        (
            "drop_column: {table: users, column: name}",
            "operations.0.drop_column.column",
            "NOT NULL without a default",
        ),
        (
            "rename_column: {table: users, from: id, to: key}",
            "operations.0.rename_column.from",
            "primary key",
        ),
        (
            "create_index: {name: i, table: users, columns: [age], method: hash}",
            "operations.0.create_index.method",
            "B-tree indexes only",
        ),
        (
            "drop_column: {table: users, column: note, down: \"'x'\"}",
            "operations.0.drop_column.down",
            "down would never be used",
        ),
    ],
)
def test_unsafe_operations_are_refused_at_plan(operation: str, path: str, reason: str) -> None:
    """Each refusal names the operation's field and says why SQLite cannot do it safely."""
    with pytest.raises(SpecError) as caught:
        planned(f"  - {operation}")
    [problem] = caught.value.problems
    assert problem.path == path
    assert reason in problem.message


@pytest.mark.parametrize(
    ("expression", "column", "identity"),
    [
        ("age", "age", True),
        ('"age"', "age", True),
        ("CAST(age AS bigint)", "age", True),
        ("age::bigint", "age", True),
        ("CAST(age AS numeric(10, 2))", "age", True),
        ("CAST(age AS int) * (2)", "age", False),
        ("age + 1", "age", False),
        ("other", "age", False),
    ],
)
def test_identity_expressions(expression: str, column: str, identity: bool) -> None:
    """Only expressions that return the stored value unchanged count as a same-representation type change."""
    assert is_identity(expression, column) is identity


def test_create_table_text_is_edited_in_place() -> None:
    """A rebuild changes only the clauses it must, keeping constraints, quoting and the table options."""
    sql = (
        'CREATE TABLE "t" (id INTEGER PRIMARY KEY, "a b" varchar(10) DEFAULT -1 CHECK ("a b" <> \'x, y\'), '
        "c text COLLATE NOCASE, CONSTRAINT u UNIQUE (c)) WITHOUT ROWID"
    )
    create = parse_create_table(sql)
    assert create.name == "t"
    assert create.tail == " WITHOUT ROWID"
    assert create.column_index("A B") == 1
    assert create.column_index("u") is None
    edited = edit_column(create.items[1], type="text", not_null=True, default="'z'")
    assert edited == "\"a b\" text CHECK (\"a b\" <> 'x, y') NOT NULL DEFAULT ('z')"
    assert edit_column(create.items[2], default=None) == "c text COLLATE NOCASE"
    assert affinity("varchar(10)") == affinity("text") == "TEXT"
    assert affinity("bigint") == "INTEGER"
    assert is_literal("-1.5e3")
    assert not is_literal("CURRENT_TIMESTAMP")


def test_sync_triggers_end_their_chains_even_with_recursive_triggers() -> None:
    """With recursive_triggers on, a mirror pair and a fill rule settle after one copy instead of looping."""
    with closing(sqlite3.connect(":memory:", isolation_level=None)) as c:
        c.execute("PRAGMA recursive_triggers = ON")
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, full_name TEXT, email TEXT)")
        rules = (SyncRule("mirror", "full_name", "name"), SyncRule("fill", "email", "lower(name) || '@x'"))
        for statement in sync_triggers("t", rules, "rowid"):
            c.execute(statement)
        c.execute("INSERT INTO t (name) VALUES ('Old')")  # the old version
        c.execute("INSERT INTO t (full_name, email) VALUES ('New', 'n@y')")  # the new version
        c.execute("UPDATE t SET name = 'Old2' WHERE id = 1")
        c.execute("UPDATE t SET full_name = 'New2' WHERE id = 2")
        c.execute("UPDATE t SET name = 'a', full_name = 'b' WHERE id = 1")  # both: the new column wins
        assert c.execute("SELECT id, name, full_name, email FROM t ORDER BY id").fetchall() == [
            (1, "b", "b", "old@x"),
            (2, "New2", "New2", "n@y"),
        ]


def cli(*args: str) -> Result:
    root = typer.Typer()
    root.add_typer(migrate_app, name="migrate")
    return CliRunner().invoke(root, ["migrate", *args], env={"GAPLESS_DATABASE_URL": "", "COLUMNS": "200"})


@pytest.fixture
def app_db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as c:
        c.execute("PRAGMA journal_mode = WAL")
        c.execute(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE, age INTEGER)"
        )
        c.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users (id))")
        c.executemany("INSERT INTO users (name, age) VALUES (?, ?)", ((f"u{i}", i) for i in range(500)))
    return path


def dump(path: Path) -> list[tuple[str, str]]:
    with closing(sqlite3.connect(path)) as c:
        return c.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        (
            "add_constraint: {table: orders, name: fk, foreign_key: {columns: [user_id], references: {table: users, columns: [id]}}}",
            "operations.0.add_constraint.foreign_key: add_constraint fk (foreign key on orders) cannot be done safely on SQLite",
        ),
        (
            "drop_table: {table: users}",
            "operations.0.drop_table.table: drop_table users cannot be done safely on SQLite: table orders (foreign key)",
        ),
        (
            "drop_column: {table: users, column: email}",
            "operations.0.drop_column: complete step 'contract users: drop column email' is refused by SQLite",
        ),
        (
            "add_column: {table: users, column: {name: nick, type: text}, up: lower(nosuch)}",
            "no such column: nosuch",
        ),
        (
            "sql: {up: CREATE TABLE audit (id integer), down: DROP TABLE nosuch_table}",
            "no such table: nosuch_table",
        ),
    ],
)
def test_plan_refuses_with_exit_2_and_changes_nothing(
    app_db: Path, tmp_path: Path, operation: str, expected: str
) -> None:
    """A refused operation exits 2 naming it and why (SQLite's own error when rehearsed); the file is untouched."""
    before = dump(app_db)
    file = tmp_path / "m1.yaml"
    file.write_text(f"name: m1\noperations:\n  - {operation}\n")
    for command in ("plan", "start"):
        result = cli(command, str(file), "--database-url", f"sqlite:///{app_db}")
        assert result.exit_code == 2, result.output
        assert expected in " ".join(result.stderr.split())
        assert "nothing was changed" in result.stderr
    after = dump(app_db)
    assert after == before


def test_plan_prints_the_write_lock_and_estimates(app_db: Path, tmp_path: Path) -> None:
    """plan -o json shows each step's lock and estimated hold; an index over --max-write-lock exits 1."""
    file = tmp_path / "m1.yaml"
    file.write_text(
        "name: m1\noperations:\n"
        "  - rename_column: {table: users, from: age, to: years}\n"
        "  - create_index: {name: users_years, table: users, columns: [years]}\n"
    )
    url = f"sqlite:///{app_db}"
    result = cli("plan", str(file), "--database-url", url, "-o", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["engine"] == "sqlite"
    steps = {s["step"]: s for s in data["steps"]}
    assert steps["create index users_years on users(years)"]["lock"] == "database write lock"
    assert steps["create index users_years on users(years)"]["holdSeconds"] > 0
    assert steps["backfill users in batches (checkpointed): years"]["batches"] == 1
    assert any("rows/s" in note for note in data["notes"])
    strict = cli("plan", str(file), "--database-url", url, "--max-write-lock", "0.0000001")
    assert strict.exit_code == 1
    assert "OVER LIMIT" in strict.stdout
    assert not any("_gapless" in name for name, _ in dump(app_db))


def test_cli_lifecycle_needs_force_to_complete(app_db: Path, tmp_path: Path) -> None:
    """start, status, complete (refused, then --force) through the CLI on a sqlite:/// URL."""
    file = tmp_path / "m1.yaml"
    file.write_text(
        "name: m1\noperations:\n  - add_column: {table: users, column: {name: bio, type: text}, up: name}\n"
    )
    env_url = ["--database-url", f"sqlite:///{app_db}"]
    started = cli("start", str(file), *env_url)
    assert started.exit_code == 0, started.output
    status = cli("status", *env_url, "-o", "json")
    assert json.loads(status.stdout)["active"]["backfills"][0]["rowsDone"] == 500
    assert "not visible on SQLite" in cli("status", *env_url).stdout
    refused = cli("complete", *env_url)
    assert refused.exit_code == 1
    assert "pg_stat_activity" in refused.stderr
    completed = cli("complete", *env_url, "--force")
    assert completed.exit_code == 0, completed.output
    assert "SKIPPED by --force" in completed.stderr
    assert json.loads(cli("status", *env_url, "-o", "json").stdout)["currentVersion"] == "m1"


def test_sqlite_urls() -> None:
    """sqlite:/// takes a relative path, a fourth slash makes it absolute; :memory: is refused."""
    assert sqlite_path("sqlite:///app.db") == Path("app.db")
    assert sqlite_path("sqlite:////var/db/app.db") == Path("/var/db/app.db")
    with pytest.raises(ValueError, match="needs a database file"):
        sqlite_path("sqlite:///:memory:")
