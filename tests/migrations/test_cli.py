"""``gapless migrate`` through typer's CliRunner: exit codes 0/1/2, plan and status output, rollout gating."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
import typer
from typer.testing import CliRunner, Result

from gapless.cli.migrate_cmd import migrate_app
from gapless.migrations.engine import ClientsConnectedError
from gapless.migrations.gate import RevisionSchema
from tests.migrations.conftest import Versions, engine

ADD = """
name: m1
operations:
  - add_column: {table: users, column: {name: email, type: text, nullable: false}, up: lower(name) || '@x'}
  - create_index: {name: users_email_idx, table: users, columns: [email]}
"""


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``gapless migrate ...`` on a throwaway root app, so the test does not depend on other commands."""
    root = typer.Typer()
    root.add_typer(migrate_app, name="migrate")
    environment = {"GAPLESS_DATABASE_URL": "", "COLUMNS": "200", **(env or {})}
    return CliRunner().invoke(root, ["migrate", *args], env=environment)


@pytest.fixture
def add_file(tmp_path: Path) -> Path:
    path = tmp_path / "m1.yaml"
    path.write_text(ADD)
    return path


def test_bad_file_exits_2_listing_every_problem(tmp_path: Path) -> None:
    """A malformed file exits 2 and names each offending field; nothing is changed."""
    path = tmp_path / "m1.yaml"
    path.write_text(
        "name: m1\noperations:\n  - alter_column: {table: t, column: c, type: bigint}\n  - explode: {}\n"
    )
    result = cli("start", str(path), "--database-url", "postgresql://nowhere.invalid/db")
    assert result.exit_code == 2
    assert "2 problem(s)" in result.stderr
    assert "operations.0.alter_column.up: required when the type changes" in result.stderr
    assert "operations.1.explode: unknown operation" in result.stderr
    assert "nothing was changed" in result.stderr


def test_no_database_url_exits_2(add_file: Path) -> None:
    """Without --database-url or GAPLESS_DATABASE_URL, start says so and exits 2."""
    result = cli("start", str(add_file))
    assert result.exit_code == 2
    assert "GAPLESS_DATABASE_URL" in result.stderr


def test_unreachable_database_exits_1(add_file: Path) -> None:
    """A database that cannot be reached is an operational failure (exit 1) with the reason."""
    result = cli(
        "status", env={"GAPLESS_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2"}
    )
    assert result.exit_code == 1
    assert "cannot connect to the database" in result.stderr


def test_plan_json_shows_locks_phases_and_serving_versions(add_file: Path) -> None:
    """plan -o json lists every step with its lock level, whether it rewrites, and which versions it serves."""
    result = cli("plan", str(add_file), "-o", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    steps = {(s["phase"], s["step"]): s for s in data["steps"]}
    assert steps[("start", "add column users.email text")]["lock"] == "ACCESS EXCLUSIVE"
    index = steps[("start", "create index users_email_idx concurrently on users(email)")]
    assert (index["lock"], index["duration"], index["rewrites"]) == ("SHARE UPDATE EXCLUSIVE", "scan", False)
    assert (
        steps[("complete", "validate constraint users_email_not_null on users")]["lock"]
        == "SHARE UPDATE EXCLUSIVE"
    )
    assert data["steps"][-1]["serves"] == ["old"]
    assert [s["serves"] for s in data["states"]] == [["old"], ["old", "new"], ["new"], ["old"]]


def test_plan_text_and_lint_findings(tmp_path: Path) -> None:
    """The text plan is a table with lock levels; a blocking lint finding in a sql operation makes it exit 1."""
    path = tmp_path / "m2.yaml"
    path.write_text("operations:\n  - sql: {up: CREATE INDEX i ON users (a), down: DROP INDEX i}\n")
    result = cli("plan", str(path))
    assert result.exit_code == 1
    assert "migration m2" in result.stdout
    assert "index-not-concurrent" in result.stdout
    assert "CREATE INDEX CONCURRENTLY" in result.stdout


def test_lint_sql_files(tmp_path: Path) -> None:
    """lint exits 1 with findings (text or JSON) and 0 on a clean script."""
    dangerous = tmp_path / "upgrade.sql"
    dangerous.write_text("ALTER TABLE users ALTER COLUMN age TYPE bigint;\nCREATE INDEX i ON users (age);\n")
    safe = tmp_path / "safe.sql"
    safe.write_text("SET lock_timeout = '2s';\nCREATE INDEX CONCURRENTLY i ON users (age);\n")
    result = cli("lint", str(dangerous), "-o", "json")
    assert result.exit_code == 1
    assert [f["rule"] for f in json.loads(result.stdout)] == [
        "missing-lock-timeout",
        "column-type-change",
        "index-not-concurrent",
    ]
    clean = cli("lint", str(safe))
    assert clean.exit_code == 0
    assert "no findings" in clean.stdout


def test_lifecycle_through_the_cli(versions: Versions, add_file: Path) -> None:
    """start, status -o json, complete: exit 0 each, status shows the phase and the backfill's progress."""
    env = {"GAPLESS_DATABASE_URL": versions.url}
    started = cli("start", str(add_file), "--batch-size", "100", env=env)
    assert started.exit_code == 0, started.output
    assert "m1 started" in started.stderr
    status = cli("status", "-o", "json", env=env)
    assert status.exit_code == 0, status.output
    data = json.loads(status.stdout)
    assert data["currentVersion"] == "m0"
    assert data["active"]["phase"] == "started"
    assert data["active"]["backfills"][0]["rowsDone"] == 300
    completed = cli("complete", env=env)
    assert completed.exit_code == 0, completed.output
    assert "not checked: instances of a gapless control plane" in completed.stderr
    assert json.loads(cli("status", "-o", "json", env=env).stdout)["currentVersion"] == "m1"
    nothing = cli("complete", env=env)
    assert nothing.exit_code == 1
    assert "nothing to complete" in nothing.stderr


def test_complete_refuses_while_an_old_version_client_is_connected(
    versions: Versions, add_file: Path
) -> None:
    """complete exits 1 listing a connected m0 client; --force completes and says loudly what it skipped."""
    env = {"GAPLESS_DATABASE_URL": versions.url}
    assert cli("start", str(add_file), env=env).exit_code == 0
    with versions.old(app="shop", instance="web-1") as old, versions.new(instance="web-2") as new:
        old.execute("SELECT 1")
        new.execute("SELECT 1")
        refused = cli("complete", env=env)
        assert refused.exit_code == 1
        assert "refusing to complete m1: 1 client(s)" in refused.stderr
        assert "shop/web-1 (schema version m0" in refused.stderr
        assert "web-2" not in refused.stderr
        with versions.admin() as c:
            assert c.execute(
                "SELECT phase FROM gapless_migrations.migrations WHERE name = 'm1'"
            ).fetchone() == ("started",)
        forced = cli("complete", "--force", env=env)
        assert forced.exit_code == 0, forced.output
        assert "SKIPPED by --force" in forced.stderr
        assert "shop/web-1" in forced.stderr


def test_complete_proceeds_once_the_old_client_disconnects(versions: Versions, add_file: Path) -> None:
    """The same refusal lifts when the old version's connection goes away."""
    env = {"GAPLESS_DATABASE_URL": versions.url}
    assert cli("start", str(add_file), env=env).exit_code == 0
    old = versions.old(instance="web-1")
    pid = old.info.backend_pid
    assert cli("complete", env=env).exit_code == 1
    old.close()
    with versions.admin() as c:
        while c.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() != (0,):
            time.sleep(0.02)
    assert cli("complete", env=env).exit_code == 0


RENAME = "name: m1\noperations:\n  - rename_column: {table: users, from: name, to: full_name}\n"


def test_complete_refuses_while_an_unidentified_writer_is_connected(
    versions: Versions, tmp_path: Path
) -> None:
    """An old-version writer without application_name blocks complete (listed by pid); it sees 0 errors."""
    file = tmp_path / "m1.yaml"
    file.write_text(RENAME)
    env = {"GAPLESS_DATABASE_URL": versions.url}
    assert cli("start", str(file), env=env).exit_code == 0
    errors: list[BaseException] = []
    written = [0]
    stop = threading.Event()
    writer = psycopg.connect(
        versions.url, autocommit=True
    )  # the base schema, no identity: a forgotten worker

    def write() -> None:
        while not stop.is_set():
            try:
                writer.execute("INSERT INTO users (name, age) VALUES ('w', 1)")
                writer.execute("UPDATE users SET name = 'v' WHERE id = 1")
                written[0] += 1
            except psycopg.Error as e:
                errors.append(e)
            time.sleep(0.002)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        time.sleep(0.2)
        refused = cli("complete", env=env)
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join(10)
        writer_pid = writer.info.backend_pid
        writer.close()
    assert refused.exit_code == 1, refused.output
    assert "refusing to complete m1: 1 client(s)" in refused.stderr
    assert f"unidentified connection (no application_name, pid {writer_pid}" in " ".join(
        refused.stderr.split()
    )
    assert errors == []
    assert written[0] > 10
    with versions.admin() as c:
        while c.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (writer_pid,)).fetchone() != (
            0,
        ):
            time.sleep(0.02)
    assert cli("complete", env=env).exit_code == 0


def test_complete_force_names_the_unidentified_connection_it_skips(
    versions: Versions, add_file: Path
) -> None:
    """--force completes under an unidentified connection and names it among what it skipped."""
    env = {"GAPLESS_DATABASE_URL": versions.url}
    assert cli("start", str(add_file), env=env).exit_code == 0
    with psycopg.connect(versions.url, autocommit=True, application_name="nightly-report") as c:
        c.execute("SELECT 1")
        forced = cli("complete", "--force", env=env)
    assert forced.exit_code == 0, forced.output
    assert "SKIPPED by --force" in forced.stderr
    assert "unidentified connection (application_name 'nightly-report'" in " ".join(forced.stderr.split())


def test_control_plane_revisions_gate_complete(versions: Versions) -> None:
    """A running revision that needs the old schema version blocks complete through the running_revisions seam."""
    versions.start(ADD)
    with engine(versions.url) as e, pytest.raises(ClientsConnectedError, match="revision r7 of shop"):
        e.complete(running_revisions=lambda: [RevisionSchema("shop", "r7", "m0", instances=2)])
    with engine(versions.url) as e:
        report = e.complete(running_revisions=lambda: [RevisionSchema("shop", "r8", "m1")])
    assert report.unchecked == []
    assert report.skipped == []


def test_rollback_refuses_while_new_version_clients_are_connected(versions: Versions, add_file: Path) -> None:
    """Rolling back under a connected new-version client needs --force; then the old shape is back."""
    env = {"GAPLESS_DATABASE_URL": versions.url}
    assert cli("start", str(add_file), env=env).exit_code == 0
    with versions.new(instance="web-2") as new:
        new.execute("SELECT 1")
        assert cli("rollback", env=env).exit_code == 1
        forced = cli("rollback", "--force", env=env)
    assert forced.exit_code == 0, forced.output
    with versions.admin() as c:
        assert c.execute(
            "SELECT to_regclass('public.users_email_idx'), to_regnamespace('public_m1')"
        ).fetchone() == (None, None)


def test_the_gapless_cli_registers_migrate() -> None:
    """`gapless migrate --help` explains the lifecycle."""
    result = subprocess.run(
        [sys.executable, "-m", "gapless", "migrate", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for word in ("start", "complete", "rollback", "lock_timeout", "application_name"):
        assert word in result.stdout
