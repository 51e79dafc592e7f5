"""Rollout gating and migration events against a real control plane and a real PostgreSQL database.

A rollout whose template declares the old ``requiresSchema`` keeps ``gapless migrate complete`` from
dropping the old schema; once the rollout runs the new version, complete goes through. Every step of the
migration shows up as an event of the stream ``migrations:<database>``.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.e2e.harness import Gapless, rollout_doc
from tests.migrations.conftest import BASE, db, engine, migration  # noqa: F401 - fixtures
from tests.ports import free_port

pytestmark = pytest.mark.slow

ADD = """
name: m1
operations:
  - add_column: {table: users, column: {name: email, type: text, nullable: false}, up: lower(name) || '@x'}
"""


def _events(g: Gapless, stream: str) -> list[dict[str, str]]:
    result = g.cli("events", stream, "-o", "json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_complete_waits_for_the_rollout_to_leave_the_old_schema(g: Gapless, db: str, tmp_path: Path) -> None:  # noqa: F811
    with engine(db) as e:
        e.start(migration(BASE))
        e.complete()
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("INSERT INTO users (name) SELECT 'User' || g FROM generate_series(1, 50) g")
    stream = f"migrations:{conninfo_to_dict(db)['dbname']}"
    port = free_port()
    v1 = g.write(rollout_doc("shop", port, "v1", replicas=2, extra_template={"requiresSchema": "m0"}))
    up = g.cli("up", "-f", str(v1), "--database-url", db)
    assert up.returncode == 0, up.stdout + up.stderr

    add = tmp_path / "m1.yaml"
    add.write_text(ADD)
    started = g.cli("migrate", "start", str(add), "--database-url", db)
    assert started.returncode == 0, started.stderr

    refused = g.cli("migrate", "complete", "--database-url", db)
    assert refused.returncode == 1, refused.stderr
    text = " ".join(refused.stderr.split())
    assert "refusing to complete m1" in text
    assert "revision 1 (" in text
    assert "of rollout shop (2 instance(s), schema version m0)" in text

    v2 = g.write(rollout_doc("shop", port, "v2", replicas=2, extra_template={"requiresSchema": "m1"}))
    applied = g.cli("apply", "-f", str(v2), "--wait")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    completed = g.cli("migrate", "complete", "--database-url", db)
    assert completed.returncode == 0, completed.stderr
    assert "m1 completed" in completed.stderr
    assert "SKIPPED" not in completed.stderr

    events = _events(g, stream)
    assert [(e["revision"], e["type"]) for e in events] == [
        ("m1", "MigrationStarted"),
        ("m1", "BackfillDone"),
        ("m1", "MigrationCompleted"),
    ]
    assert "backfill users 50/50" in events[1]["message"]
    assert all(e["rollout"] == stream for e in events)


def test_force_skips_the_control_plane_check_loudly(g: Gapless, db: str, tmp_path: Path) -> None:  # noqa: F811
    with engine(db) as e:
        e.start(migration(BASE))
        e.complete()
    port = free_port()
    v1 = g.write(rollout_doc("shop", port, "v1", replicas=1, extra_template={"requiresSchema": "m0"}))
    up = g.cli("up", "-f", str(v1), "--database-url", db)
    assert up.returncode == 0, up.stdout + up.stderr
    add = tmp_path / "m1.yaml"
    add.write_text(ADD)
    assert g.cli("migrate", "start", str(add), "--database-url", db).returncode == 0

    forced = g.cli("migrate", "complete", "--database-url", db, "--force")
    assert forced.returncode == 0, forced.stderr
    text = " ".join(forced.stderr.split())
    assert "SKIPPED by --force: revision 1" in text
    assert "of rollout shop (schema version m0)" in text

    rolled = g.cli("migrate", "rollback", "--database-url", db)
    assert rolled.returncode == 1  # nothing left to roll back once completed
    types = [e["type"] for e in _events(g, f"migrations:{conninfo_to_dict(db)['dbname']}")]
    assert types == ["MigrationStarted", "BackfillDone", "MigrationCompleted"]


def test_without_a_control_plane_migrations_say_so_and_go_on(g: Gapless, db: str, tmp_path: Path) -> None:  # noqa: F811
    with engine(db) as e:
        e.start(migration(BASE))
        e.complete()
    add = tmp_path / "m1.yaml"
    add.write_text(ADD)
    started = g.cli("migrate", "start", str(add), "--database-url", db)
    assert started.returncode == 0, started.stderr
    assert "no control plane runs for" in started.stderr
    rolled = g.cli("migrate", "rollback", "--database-url", db)
    assert rolled.returncode == 0, rolled.stderr
    assert g.cli("migrate", "start", str(add), "--database-url", db).returncode == 0
    completed = g.cli("migrate", "complete", "--database-url", db)
    assert completed.returncode == 0, completed.stderr
    assert "not checked: instances of a gapless control plane (none runs for" in " ".join(
        completed.stderr.split()
    )


def test_dashboard_migrations_view_shows_status_and_backfill(g: Gapless, db: str, tmp_path: Path) -> None:  # noqa: F811
    """Chromium on the Migrations view: backfill progress after start, then "completed" arrives live."""
    from selenium.webdriver.common.by import By

    from gapless.server.auth import read_token
    from tests.e2e.test_dashboard import _browser, _require_chromium, _screenshot, _wait_js

    _require_chromium()
    with engine(db) as e:
        e.start(migration(BASE))
        e.complete()
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("INSERT INTO users (name) SELECT 'User' || g FROM generate_series(1, 40) g")
    listen = f"127.0.0.1:{free_port()}"
    spec = g.write(
        rollout_doc("shop", free_port(), "v1", replicas=1, extra_template={"requiresSchema": "m1"})
    )
    # Detached: the revision waits for m1, which starts below.
    up = g.cli("up", "-f", str(spec), "--dashboard-listen", listen, "--database-url", db, "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    add = tmp_path / "m1.yaml"
    add.write_text(ADD)
    assert g.cli("migrate", "start", str(add), "--database-url", db).returncode == 0
    database = conninfo_to_dict(db)["dbname"]
    row = f'#migration-rows tr[data-migration="{database}/m1"]'
    driver = _browser()
    try:
        driver.get(f"http://{listen}/")
        _wait_js(driver, "!document.getElementById('login').hidden")
        driver.find_element(By.ID, "token").send_keys(read_token(g.state_dir.resolve()))
        driver.find_element(By.ID, "login-button").click()
        _wait_js(driver, "document.querySelector('#rollouts tr[data-rollout=\"shop\"]')")
        driver.execute_script("location.hash = '#/rollouts/shop'")
        schema = "document.getElementById('r-schema').textContent"
        assert _wait_js(driver, f"{schema}.startsWith('schema m1') && {schema}").startswith("schema m1")
        driver.find_element(By.ID, "nav-migrations").click()
        assert _wait_js(driver, f"document.querySelector('{row}')?.dataset.status") == "BackfillDone"
        backfill = f'{row} .backfill[data-table="users"]'
        assert _wait_js(driver, f"document.querySelector('{backfill}')?.dataset.done") == "40"
        status_text = _wait_js(driver, f"document.querySelector('{row} .migration-status').textContent")
        assert status_text.startswith("both versions served (backfill done: 40 rows)"), status_text
        _screenshot(driver, tmp_path, "migrations-started")
        completed = g.cli("migrate", "complete", "--database-url", db)
        assert completed.returncode == 0, completed.stderr
        _wait_js(driver, f"document.querySelector('{row}')?.dataset.status === 'MigrationCompleted'", 10)
        status_text = _wait_js(driver, f"document.querySelector('{row} .migration-status').textContent")
        assert status_text.startswith("completed"), status_text
        types = (
            "Array.from(document.querySelectorAll('#migration-events li')).map(li => li.dataset.type).join()"
        )
        assert _wait_js(driver, types) == "MigrationCompleted,BackfillDone,MigrationStarted"
        _screenshot(driver, tmp_path, "migrations-completed")
    finally:
        driver.quit()
