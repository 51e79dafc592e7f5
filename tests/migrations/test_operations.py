"""Each operation through start -> both versions read and write -> complete (or rollback), on real PostgreSQL."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gapless.core.errors import SpecError
from gapless.migrations.gate import connect_kwargs
from tests.migrations.conftest import Versions


def columns(v: Versions, schema: str, table: str = "users") -> list[str]:
    with v.admin() as c:
        rows = c.execute(
            "SELECT a.attname FROM pg_attribute a JOIN pg_class r ON r.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = r.relnamespace WHERE n.nspname = %s AND r.relname = %s "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (schema, table),
        ).fetchall()
    return [r[0] for r in rows]


def not_null(v: Versions, column: str, table: str = "users") -> bool:
    with v.admin() as c:
        row = c.execute(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s",
            (f"public.{table}", column),
        ).fetchone()
    assert row is not None
    return bool(row[0])


def test_add_column_not_null_with_up(versions: Versions) -> None:
    """Old writes get the column from up, new writes set it, existing rows are backfilled; complete makes it NOT NULL."""
    versions.start(
        """
name: m1
operations:
  - add_column:
      table: users
      column: {name: email, type: text, nullable: false}
      up: lower(name) || '@example.com'
""",
        size=70,
    )
    with versions.old() as old, versions.new() as new:
        old.execute("INSERT INTO users (name, age) VALUES ('Olga', 40)")
        new.execute("INSERT INTO users (name, age, email) VALUES ('Nina', 30, 'nina@new')")
        assert "email" not in [d.name for d in old.execute("SELECT * FROM users LIMIT 1").description or []]
        emails = dict(new.execute("SELECT name, email FROM users").fetchall())
        assert emails["User7"] == "user7@example.com"
        assert emails["Olga"] == "olga@example.com"
        assert emails["Nina"] == "nina@new"
        assert new.execute("SELECT count(*) FROM users WHERE email IS NULL").fetchone() == (0,)
        old.execute(
            "UPDATE users SET age = 41 WHERE name = 'Nina'"
        )  # the old version cannot clobber new data
        assert new.execute("SELECT email FROM users WHERE name = 'Nina'").fetchone() == ("nina@new",)
    assert not not_null(versions, "email")
    versions.complete()
    assert not_null(versions, "email")
    with versions.new() as new:
        assert new.execute("SELECT count(*) FROM users").fetchone() == (302,)
        with pytest.raises(psycopg.errors.NotNullViolation):
            new.execute("INSERT INTO users (name, email) VALUES ('x', NULL)")
    with versions.admin() as c:
        assert c.execute("SELECT to_regnamespace('public_m0')").fetchone() == (None,)


def test_add_column_with_constant_default_needs_no_backfill(versions: Versions) -> None:
    """A constant default is stored in the catalog: no trigger, no backfill, both versions see consistent rows."""
    versions.start(
        """
name: m1
operations:
  - add_column: {table: users, column: {name: score, type: integer, nullable: false, default: "0"}}
"""
    )
    with versions.admin() as c:
        assert c.execute("SELECT count(*) FROM gapless_migrations.backfills").fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM pg_trigger WHERE tgname = '_gapless_sync'").fetchone() == (0,)
    with versions.old() as old, versions.new() as new:
        old.execute("INSERT INTO users (name) VALUES ('Olga')")
        assert new.execute("SELECT min(score), max(score), count(*) FROM users").fetchone() == (0, 0, 301)
    versions.complete()
    assert not_null(versions, "score")


def test_drop_column_fills_the_old_column_for_new_writes(versions: Versions) -> None:
    """The new version no longer sees the column; its inserts get down's value so the old version's NOT NULL holds."""
    versions.start(
        """
name: m1
operations:
  - drop_column: {table: users, column: age, down: "length(name)"}
"""
    )
    assert columns(versions, "public_m1") == ["id", "name", "legacy"]
    with versions.old() as old, versions.new() as new:
        new.execute("INSERT INTO users (name) VALUES ('Nina')")
        assert old.execute("SELECT age FROM users WHERE name = 'Nina'").fetchone() == (4,)
        old.execute("INSERT INTO users (name, age) VALUES ('Olga', 99)")
        assert old.execute("SELECT age FROM users WHERE name = 'Olga'").fetchone() == (99,)
    versions.complete()
    assert columns(versions, "public") == ["id", "name", "legacy"]


def test_drop_column_of_not_null_column_without_default_requires_down(versions: Versions) -> None:
    """Dropping a NOT NULL column without a default and without down is refused at plan time, naming the field."""
    with versions.admin() as c:
        c.execute("ALTER TABLE users ALTER COLUMN legacy DROP DEFAULT")
    with pytest.raises(SpecError) as e:
        versions.start("name: m1\noperations:\n  - drop_column: {table: users, column: legacy}\n")
    assert [p.path for p in e.value.problems] == ["operations.0.drop_column.down"]


def test_rename_column_serves_both_names(versions: Versions) -> None:
    """The old version reads and writes name, the new version full_name: the same column until complete renames it."""
    versions.start("name: m1\noperations:\n  - rename_column: {table: users, from: name, to: full_name}\n")
    with versions.old() as old, versions.new() as new:
        new.execute("INSERT INTO users (full_name) VALUES ('Nina')")
        old.execute("INSERT INTO users (name) VALUES ('Olga')")
        new.execute("UPDATE users SET full_name = 'Nina2' WHERE full_name = 'Nina'")
        assert old.execute("SELECT count(*) FROM users WHERE name IN ('Nina2', 'Olga')").fetchone() == (2,)
        assert new.execute("SELECT count(*) FROM users WHERE full_name IN ('Nina2', 'Olga')").fetchone() == (
            2,
        )
    assert "name" in columns(versions, "public")
    versions.complete()
    assert columns(versions, "public") == ["id", "full_name", "age", "legacy"]
    with versions.new() as new:
        assert new.execute("SELECT full_name FROM users WHERE id = 1").fetchone() == ("User1",)


def test_alter_column_set_not_null_maps_old_nulls(versions: Versions) -> None:
    """Setting NOT NULL: old writes of NULL become up's value in the new column; complete leaves a NOT NULL column."""
    with versions.old() as old:
        old.execute("UPDATE users SET age = NULL WHERE id <= 10")
    versions.start(
        """
name: m1
operations:
  - alter_column: {table: users, column: age, nullable: false, up: "coalesce(age, 0)"}
"""
    )
    with versions.old() as old, versions.new() as new:
        old.execute("INSERT INTO users (name, age) VALUES ('Olga', NULL)")
        assert new.execute("SELECT count(*) FROM users WHERE age = 0").fetchone() == (11,)
        with pytest.raises(psycopg.errors.CheckViolation):
            new.execute("INSERT INTO users (name, age) VALUES ('Nina', NULL)")
        new.execute("INSERT INTO users (name, age) VALUES ('Nina', 5)")
        assert old.execute("SELECT age FROM users WHERE name = 'Nina'").fetchone() == (5,)
    versions.complete()
    assert not_null(versions, "age")
    assert columns(versions, "public") == ["id", "name", "legacy", "age"]


def check_constraints(v: Versions, table: str = "users") -> set[str]:
    with v.admin() as c:
        rows = c.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'", (table,)
        ).fetchall()
    return {r[0] for r in rows}


@pytest.mark.parametrize("finish", ["complete", "rollback"])
def test_alter_column_type_of_a_not_null_column(versions: Versions, finish: str) -> None:
    """A NOT NULL column changes type (PostgreSQL 18 names its NOT NULL a constraint); it stays NOT NULL, no check is left."""
    versions.start(
        "name: m1\noperations:\n  - alter_column: {table: users, column: name, type: varchar(200), "
        "up: name, down: name}\n"
    )
    with versions.new() as new, pytest.raises(psycopg.errors.IntegrityError):
        new.execute("INSERT INTO users (name) VALUES (NULL)")
    getattr(versions, finish)()
    assert not_null(versions, "name")
    assert check_constraints(versions) == set()
    with versions.admin() as c:
        kind = c.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'users'::regclass AND attname = 'name'"
        ).fetchone()
    assert kind == (("character varying(200)",) if finish == "complete" else ("text",))


def test_alter_column_default_only_changes_the_new_version(versions: Versions) -> None:
    """A new default applies to the new version's inserts at once and to the table at complete."""
    versions.start("name: m1\noperations:\n  - alter_column: {table: users, column: age, default: '18'}\n")
    with versions.old() as old, versions.new() as new:
        old.execute("INSERT INTO users (name) VALUES ('Olga')")
        new.execute("INSERT INTO users (name) VALUES ('Nina')")
        assert dict(new.execute("SELECT name, age FROM users WHERE id > 300").fetchall()) == {
            "Olga": None,
            "Nina": 18,
        }
    versions.complete()
    with versions.old(instance="after") as c:
        c.execute("SET search_path = public")
        c.execute("INSERT INTO users (name) VALUES ('Paul')")
        assert c.execute("SELECT age FROM users WHERE name = 'Paul'").fetchone() == (18,)


def test_create_index_is_valid_and_rollback_drops_it(versions: Versions) -> None:
    """create_index builds a valid index CONCURRENTLY at start; rollback drops it again."""
    versions.start(
        "name: m1\noperations:\n  - create_index: {name: users_age_idx, table: users, columns: [age]}\n"
    )
    with versions.admin() as c:
        assert c.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.users_age_idx'::regclass"
        ).fetchone() == (True,)
    versions.rollback()
    with versions.admin() as c:
        assert c.execute("SELECT to_regclass('public.users_age_idx')").fetchone() == (None,)
        assert c.execute("SELECT to_regnamespace('public_m1')").fetchone() == (None,)


def test_failed_unique_index_build_is_dropped_and_retried_on_resume(versions: Versions) -> None:
    """A CONCURRENTLY build that fails leaves an invalid index; start run again drops it and builds it anew."""
    text = "name: m1\noperations:\n  - create_index: {name: users_name_key, table: users, columns: [name], unique: true}\n"
    with versions.old() as old:
        old.execute("INSERT INTO users (name) VALUES ('User1')")
    with pytest.raises(psycopg.errors.UniqueViolation):
        versions.start(text)
    with versions.admin() as c:
        assert c.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.users_name_key'::regclass"
        ).fetchone() == (False,)
        assert c.execute(
            "SELECT phase, error IS NOT NULL FROM gapless_migrations.migrations WHERE name = 'm1'"
        ).fetchone() == (
            "starting",
            True,
        )
        c.execute("DELETE FROM users WHERE id = 301")
    versions.start(text)
    with versions.admin() as c:
        assert c.execute(
            "SELECT indisvalid, indisunique FROM pg_index WHERE indexrelid = 'public.users_name_key'::regclass"
        ).fetchone() == (True, True)


def test_drop_index_waits_for_complete(versions: Versions) -> None:
    """drop_index leaves the index to the old version until complete drops it."""
    with versions.admin() as c:
        c.execute("CREATE INDEX users_age_idx ON users (age)")
    versions.start("name: m1\noperations:\n  - drop_index: {name: users_age_idx}\n")
    with versions.admin() as c:
        assert c.execute("SELECT to_regclass('public.users_age_idx') IS NOT NULL").fetchone() == (True,)
    versions.complete()
    with versions.admin() as c:
        assert c.execute("SELECT to_regclass('public.users_age_idx')").fetchone() == (None,)


def test_add_check_constraint_not_valid_then_validated(versions: Versions) -> None:
    """A check is enforced for new writes at start (NOT VALID) and validated at complete."""
    versions.start(
        "name: m1\noperations:\n  - add_constraint: {table: users, name: age_positive, check: {expression: age > 0}}\n"
    )
    with versions.admin() as c:
        assert c.execute(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'age_positive'"
        ).fetchone() == (False,)
    with versions.new() as new, pytest.raises(psycopg.errors.CheckViolation):
        new.execute("INSERT INTO users (name, age) VALUES ('x', -1)")
    versions.complete()
    with versions.admin() as c:
        assert c.execute(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'age_positive'"
        ).fetchone() == (True,)


def test_add_foreign_key_and_unique_constraints(versions: Versions) -> None:
    """A foreign key is added NOT VALID then validated; a unique constraint is built as an index then attached."""
    versions.start(
        """
name: m1
operations:
  - create_table:
      table: orders
      columns:
        - {name: id, type: bigserial, primary_key: true}
        - {name: user_id, type: bigint, nullable: false}
  - add_constraint:
      table: orders
      name: orders_user_fk
      foreign_key: {columns: [user_id], references: {table: users, columns: [id]}}
  - add_constraint: {table: users, name: users_name_unique, unique: {columns: [name]}}
"""
    )
    with versions.new() as new:
        new.execute("INSERT INTO orders (user_id) VALUES (1)")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            new.execute("INSERT INTO orders (user_id) VALUES (100000)")
    with versions.old() as old, pytest.raises(psycopg.errors.UndefinedTable):
        old.execute("SELECT * FROM orders")
    versions.complete()
    with versions.admin() as c:
        kinds = dict(
            c.execute(
                "SELECT conname, contype FROM pg_constraint WHERE conname IN ('orders_user_fk', 'users_name_unique')"
            ).fetchall()
        )
        assert kinds == {"orders_user_fk": "f", "users_name_unique": "u"}
        assert c.execute(
            "SELECT bool_and(convalidated) FROM pg_constraint WHERE conrelid = 'orders'::regclass"
        ).fetchone() == (True,)


def test_rename_and_drop_table(versions: Versions) -> None:
    """The new version sees people (renamed users) and not scratch (dropped); complete applies both physically."""
    with versions.admin() as c:
        c.execute("CREATE TABLE scratch (id int PRIMARY KEY)")
    versions.start(
        """
name: m1
operations:
  - rename_table: {from: users, to: people}
  - drop_table: {table: scratch}
"""
    )
    with versions.new() as new:
        new.execute("INSERT INTO people (name) VALUES ('Nina')")
        with pytest.raises(psycopg.errors.UndefinedTable):
            new.execute("SELECT * FROM scratch")
    with versions.old() as old:
        assert old.execute("SELECT count(*) FROM users").fetchone() == (301,)
    versions.complete()
    with versions.admin() as c:
        assert c.execute(
            "SELECT to_regclass('public.people') IS NOT NULL, to_regclass('public.scratch')"
        ).fetchone() == (
            True,
            None,
        )
    with versions.new() as new:
        assert new.execute("SELECT count(*) FROM people").fetchone() == (301,)


def test_raw_sql_runs_up_and_rollback_runs_down(versions: Versions) -> None:
    """A sql operation's up runs at start (and its column shows in the new version); rollback runs its down."""
    versions.start(
        """
name: m1
operations:
  - sql:
      up: ALTER TABLE users ADD COLUMN note text
      down: ALTER TABLE users DROP COLUMN note
"""
    )
    assert "note" in columns(versions, "public_m1")
    assert "note" not in columns(versions, "public_m0")
    versions.rollback()
    assert "note" not in columns(versions, "public")


def test_raw_sql_that_breaks_the_old_version_is_refused(versions: Versions) -> None:
    """A DROP COLUMN in a start-phase sql operation is a lint error: start refuses and changes nothing."""
    text = "name: m1\noperations:\n  - sql: {up: ALTER TABLE users DROP COLUMN legacy, down: ''}\n"
    with pytest.raises(SpecError) as e:
        versions.start(text)
    assert e.value.problems[0].path == "operations.0.sql.up"
    assert "drop-outside-complete" in e.value.problems[0].message
    assert "legacy" in columns(versions, "public")
    with versions.admin() as c:
        assert c.execute(
            "SELECT count(*) FROM gapless_migrations.migrations WHERE name = 'm1'"
        ).fetchone() == (0,)


def test_rollback_after_a_failed_start_cleans_up(versions: Versions) -> None:
    """A start that failed half-way (a unique index on duplicates) is rolled back to the exact old shape."""
    with versions.old() as old:
        old.execute("INSERT INTO users (name) VALUES ('User1')")
    with pytest.raises(psycopg.errors.UniqueViolation):
        versions.start(
            """
name: m1
operations:
  - add_column: {table: users, column: {name: nick, type: text}, up: lower(name)}
  - create_index: {name: users_name_key, table: users, columns: [name], unique: true}
"""
        )
    versions.rollback()
    assert columns(versions, "public") == ["id", "name", "age", "legacy"]
    with versions.admin() as c:
        assert c.execute("SELECT to_regclass('public.users_name_key')").fetchone() == (None,)
        assert c.execute("SELECT count(*) FROM pg_trigger WHERE tgname = '_gapless_sync'").fetchone() == (0,)


def test_application_role_keeps_its_privileges_through_the_views(versions: Versions) -> None:
    """A non-owner role granted on the table can read and write through the new version's views."""
    role = f"gapless_app_{uuid.uuid4().hex[:8]}"
    with versions.admin() as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        c.execute(sql.SQL("GRANT SELECT, INSERT ON users TO {}").format(sql.Identifier(role)))
        c.execute(sql.SQL("GRANT USAGE ON SEQUENCE users_id_seq TO {}").format(sql.Identifier(role)))
    try:
        versions.start(
            "name: m1\noperations:\n  - rename_column: {table: users, from: name, to: full_name}\n"
        )
        url = make_conninfo(versions.url, user=role)
        with psycopg.connect(url, autocommit=True, **connect_kwargs("shop", "m1", "app")) as app:
            app.execute("INSERT INTO users (full_name) VALUES ('Role')")
            assert app.execute("SELECT count(*) FROM users WHERE full_name = 'Role'").fetchone() == (1,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute("DELETE FROM users")
    finally:
        with versions.admin() as c:
            c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
