"""Migration files: what parses, every problem reported by field path, the published JSON schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gapless.core.errors import SpecError
from gapless.migrations.files import (
    load_migration,
    load_migration_dir,
    migration_json_schema,
    parse_migration,
)

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "migration.schema.json"

FULL = """
name: "0002_everything"
operations:
  - create_table:
      table: orders
      columns:
        - {name: id, type: bigserial, primary_key: true}
        - {name: user_id, type: bigint, references: {table: users, column: id, on_delete: CASCADE}}
        - {name: total, type: "numeric(12,2)", nullable: false, default: "0", check: total >= 0}
        - {name: placed_at, type: timestamp with time zone, default: now()}
        - {name: tags, type: "text[]"}
  - add_column: {table: users, column: {name: email, type: varchar(320), unique: true}, up: lower(name)}
  - drop_column: {table: users, column: legacy, down: "'x'"}
  - rename_column: {table: users, from: name, to: full_name}
  - alter_column: {table: users, column: age, type: bigint, up: age::bigint, down: age::integer}
  - alter_column: {table: users, column: city, drop_default: true}
  - create_index: {name: users_email_idx, table: users, columns: [email], method: btree, where: email IS NOT NULL}
  - drop_index: {name: users_old_idx}
  - add_constraint: {table: users, name: age_ok, check: {expression: age >= 0}}
  - add_constraint: {table: orders, name: o_u, foreign_key: {columns: [user_id], references: {table: users, columns: [id]}}}
  - add_constraint: {table: users, name: u_email, unique: {columns: [email]}}
  - rename_table: {from: carts, to: baskets}
  - drop_table: {table: scratch}
  - sql: {up: "CREATE INDEX CONCURRENTLY x ON t (a)", down: "DROP INDEX x", ignore_lint: [concurrently-in-transaction]}
  - sql: {up: "ALTER TABLE t DROP COLUMN z", phase: complete}
"""


def test_every_operation_parses() -> None:
    """A file using every operation kind parses into operations in file order."""
    m = parse_migration(FULL)
    assert m.name == "0002_everything"
    assert [o.kind for o in m.operations] == [
        "create_table",
        "add_column",
        "drop_column",
        "rename_column",
        "alter_column",
        "alter_column",
        "create_index",
        "drop_index",
        "add_constraint",
        "add_constraint",
        "add_constraint",
        "rename_table",
        "drop_table",
        "sql",
        "sql",
    ]


@pytest.mark.parametrize(
    ("operation", "path", "fragment"),
    [
        (
            "alter_column: {table: t, column: c, type: bigint, down: c}",
            "operations.0.alter_column.up",
            "type changes",
        ),
        (
            "alter_column: {table: t, column: c, type: bigint, up: c}",
            "operations.0.alter_column.down",
            "type changes",
        ),
        ("alter_column: {table: t, column: c, nullable: false}", "operations.0.alter_column.up", "NOT NULL"),
        (
            "alter_column: {table: t, column: c, default: '1', up: c}",
            "operations.0.alter_column.up",
            "only the default",
        ),
        ("alter_column: {table: t, column: c}", "operations.0.alter_column", "nothing to change"),
        (
            "add_column: {table: t, column: {name: c, type: int, nullable: false}}",
            "operations.0.add_column.up",
            "NOT NULL",
        ),
        (
            "add_column: {table: t, column: {name: c, type: 'int; drop table x'}}",
            "operations.0.add_column.column.type",
            "type",
        ),
        (
            "add_column: {table: t, column: {name: c, type: int, default: '1); select (1'}}",
            "operations.0.add_column.column.default",
            "matching",
        ),
        (
            "add_column: {table: t, column: {name: c, type: int, default: '1; drop table x'}}",
            "operations.0.add_column.column.default",
            "';'",
        ),
        (
            "add_column: {table: 'bad name', column: {name: c, type: int}}",
            "operations.0.add_column.table",
            "identifier",
        ),
        (
            "add_column: {table: t, column: {name: _gapless_x, type: int}}",
            "operations.0.add_column.column.name",
            "reserved",
        ),
        (
            "add_column: {table: t, column: {name: c, type: int, colour: red}}",
            "operations.0.add_column.column.colour",
            "unknown field",
        ),
        ("create_index: {name: i, table: t, columns: [a, a]}", "operations.0.create_index.columns", "twice"),
        (
            "create_index: {name: i, table: t, columns: [a], where: 'a > (1'}",
            "operations.0.create_index.where",
            "'('",
        ),
        (
            "create_index: {name: i, table: t, columns: [a], method: bogus}",
            "operations.0.create_index.method",
            "btree",
        ),
        ("add_constraint: {table: t, name: c}", "operations.0.add_constraint", "exactly one"),
        ("rename_column: {table: t, from: a, to: a}", "operations.0.rename_column.to", "same"),
        ("sql: {up: select 1}", "operations.0.sql.down", "required"),
        ("frobnicate: {table: t}", "operations.0.frobnicate", "unknown operation"),
        ("{drop_table: {table: a}, drop_index: {name: b}}", "operations.0", "one per list item"),
        (
            "create_table: {table: t, columns: [{name: a, type: int}, {name: a, type: int}]}",
            "operations.0.create_table.columns.1.name",
            "twice",
        ),
    ],
)
def test_problems_name_the_field(operation: str, path: str, fragment: str) -> None:
    """Each invalid operation is reported at the path of the offending field, with a message saying why."""
    with pytest.raises(SpecError) as e:
        parse_migration(f"name: m\noperations:\n  - {operation}\n")
    found = {p.path: p.message for p in e.value.problems}
    assert path in found, found
    assert fragment in found[path]


def test_all_problems_are_reported_at_once() -> None:
    """A file with several mistakes lists every one of them, not only the first."""
    text = """
name: "bad name"
operations:
  - add_column: {table: t}
  - drop_table: {}
"""
    with pytest.raises(SpecError) as e:
        parse_migration(text, source="m.yaml")
    assert sorted(p.path for p in e.value.problems) == [
        "name",
        "operations.0.add_column.column",
        "operations.1.drop_table.table",
    ]
    assert str(e.value).startswith("m.yaml: 3 problem(s)")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "expected a mapping"),
        ("[1, 2]", "expected a mapping"),
        ("name: [", "invalid YAML"),
        ("name: m", "is required"),
    ],
)
def test_malformed_documents(text: str, fragment: str) -> None:
    """Documents that are not a migration at all fail with one clear problem."""
    with pytest.raises(SpecError) as e:
        parse_migration(text)
    assert fragment in str(e.value)


def test_name_defaults_to_the_file_name_and_a_directory_is_ordered(tmp_path: Path) -> None:
    """A file without name is named after the file; a directory's migrations come in file-name order."""
    (tmp_path / "0002_b.yaml").write_text("operations:\n  - drop_table: {table: b}\n")
    (tmp_path / "0001_a.yaml").write_text("operations:\n  - drop_table: {table: a}\n")
    (tmp_path / "notes.txt").write_text("ignored")
    assert load_migration(tmp_path / "0001_a.yaml").name == "0001_a"
    assert [m.name for m in load_migration_dir(tmp_path)] == ["0001_a", "0002_b"]


def test_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    """A missing file is reported like any other problem of the input."""
    with pytest.raises(SpecError, match="cannot read file"):
        load_migration(tmp_path / "missing.yaml")


def test_published_json_schema_is_up_to_date() -> None:
    """schemas/migration.schema.json is exactly what the model generates (regenerate it when the model changes)."""
    assert SCHEMA_FILE.read_text() == migration_json_schema()
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["required"] == ["name", "operations"]
    assert schema["$defs"]["Operation"]["maxProperties"] == 1
