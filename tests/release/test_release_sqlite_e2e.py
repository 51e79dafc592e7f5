"""Releases whose ``migrate`` and ``complete`` steps run on a real SQLite file, through a real control plane.

The release picks the SQLite engine from the database's ``sqlite:///PATH`` URL. On SQLite both
versions use the real table: the new version writes the new column, triggers fill it for the old one.
An abort before ``complete`` rolls the migration back (the column dropped, every row kept, the new
version's too); ``complete`` makes the column NOT NULL, judged by the control plane's revisions since
SQLite cannot list its clients; a schema other than ``public`` is refused (SQLite has none).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.harness import Gapless, rollout_doc
from tests.ports import free_port
from tests.release.test_release_migrate_e2e import GATE, _events, _status, _until

pytestmark = pytest.mark.slow

MIGRATION = """\
name: 0001_full_name
operations:
  - add_column:
      table: users
      column: {name: full_name, type: text, nullable: false}
      up: name
"""
CONTRACT = {"name": "contract", "complete": {"migration": "0001_full_name", "database": "shop"}}


def _fill(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        c.executemany("INSERT INTO users (name) VALUES (?)", [(f"user {i}",) for i in range(rows)])
    c.close()


def _table(path: Path) -> dict[str, Any]:
    """The columns of ``users`` (name -> NOT NULL), its rows, rows without full_name, and the migration's phase."""
    c = sqlite3.connect(path)
    try:
        columns = {row[1]: bool(row[3]) for row in c.execute("PRAGMA table_info(users)")}
        (rows,) = c.execute("SELECT count(*) FROM users").fetchone()
        missing = (
            c.execute("SELECT count(*) FROM users WHERE full_name IS NULL").fetchone()[0]
            if "full_name" in columns
            else None
        )
        phase = c.execute("SELECT phase FROM _gapless_migrations WHERE name = '0001_full_name'").fetchone()
    finally:
        c.close()
    return {
        "columns": columns,
        "rows": rows,
        "missing": missing,
        "phase": None if phase is None else phase[0],
    }


async def _setup(g: Gapless, rows: int) -> Path:
    """``shop`` v1 up (so the control plane runs), the migration file, and the SQLite file filled."""
    code, out, err = await g.acli(
        "up", "-f", str(g.write(rollout_doc("shop", free_port(), "v1", replicas=1)))
    )
    assert code == 0, out + err
    (g.specs / "0001_full_name.yaml").write_text(MIGRATION)
    db = g.specs / "shop.db"
    _fill(db, rows)
    return db


def _release(g: Gapless, database: dict[str, Any], steps: list[dict[str, Any]]) -> Path:
    doc = {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "qty"},
        "spec": {"databases": {"shop": database}, "steps": steps},
    }
    path = g.specs / "release.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


EXPAND = {"name": "expand", "migrate": {"file": "0001_full_name.yaml", "database": "shop", "batchSize": 500}}


async def test_an_abort_rolls_the_sqlite_migration_back_keeping_every_row(g: Gapless) -> None:
    """expand + backfill on SQLite, a row written by the new version, abort: the column is gone, every row kept."""
    db = await _setup(g, 3000)
    path = _release(g, {"url": f"sqlite:///{db}"}, [EXPAND, GATE])
    code, out, err = await g.acli("release", "apply", "-f", str(path))
    assert code == 0, out + err
    st = await _until(g, lambda s: s["steps"][1]["phase"] == "running" or s["phase"] != "Progressing")
    assert st["steps"][0]["phase"] == "succeeded", json.dumps(st, indent=1)
    assert st["steps"][0]["record"]["engine"]["phase"] == "started"
    table = _table(db)
    assert table == {
        "columns": {"id": False, "name": True, "full_name": False},
        "rows": 3000,
        "missing": 0,
        "phase": "started",
    }
    with sqlite3.connect(db) as c:  # the new version writes both columns; the old one only name
        c.execute("INSERT INTO users (name, full_name) VALUES ('new', 'new')")
        c.execute("INSERT INTO users (name) VALUES ('old')")
    c.close()
    assert _table(db)["missing"] == 0  # the trigger filled the old version's row
    code, out, err = await g.acli("release", "abort", "qty", "--wait")
    assert code == 0, out + err
    st = await _status(g)
    assert st["phase"] == "RolledBack"
    assert [s["phase"] for s in st["steps"]] == ["undone", "undone"]
    assert _table(db) == {
        "columns": {"id": False, "name": True},
        "rows": 3002,
        "missing": None,
        "phase": "rolled_back",
    }
    types = [e["type"] for e in await _events(g)]
    assert types.count("StepUndone") == 2


async def test_complete_on_sqlite_makes_the_column_not_null_and_cannot_be_undone(g: Gapless) -> None:
    """expand then contract on SQLite: the column is NOT NULL, and an abort after it says what stays."""
    db = await _setup(g, 2000)
    path = _release(g, {"url": f"sqlite:///{db}"}, [EXPAND, CONTRACT, GATE])
    code, out, err = await g.acli("release", "apply", "-f", str(path))
    assert code == 0, out + err
    st = await _until(g, lambda s: s["steps"][2]["phase"] == "running" or s["phase"] != "Progressing")
    assert [s["phase"] for s in st["steps"][:2]] == ["succeeded", "succeeded"], json.dumps(st, indent=1)
    assert st["pointOfNoRollback"] == 1
    assert _table(db) == {
        "columns": {"id": False, "name": True, "full_name": True},
        "rows": 2000,
        "missing": 0,
        "phase": "completed",
    }
    code, out, err = await g.acli("release", "abort", "qty", "--wait")
    assert code == 1, out + err
    assert "migration 0001_full_name is completed" in " ".join(out.split()), out
    assert _table(db)["phase"] == "completed"


def test_a_schema_on_a_sqlite_database_is_refused_at_plan(tmp_path: Path) -> None:
    """SQLite has no schemas: ``schema`` on a sqlite URL is exit 2 naming the database, before anything runs."""
    (tmp_path / "0001_full_name.yaml").write_text(MIGRATION)
    doc = {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "qty"},
        "spec": {"databases": {"shop": {"url": "sqlite:///shop.db", "schema": "app"}}, "steps": [EXPAND]},
    }
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(doc))
    run = subprocess.run(
        [sys.executable, "-m", "gapless", "release", "plan", "-f", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    assert "spec.databases.shop" in run.stderr, run.stderr
    assert "SQLite database has no schemas" in run.stderr, run.stderr


async def test_a_rollback_that_keeps_failing_ends_the_release_failed_and_a_second_abort_retries_it(
    g: Gapless,
) -> None:
    """A migration rollback the database refuses every time (a view uses the new column) is given up
    after its attempts: the abort ends, the release is Failed naming the error, and nothing is lost;
    once the view is gone, a second abort rolls the migration back."""
    db = await _setup(g, 500)
    path = _release(g, {"url": f"sqlite:///{db}"}, [EXPAND, GATE])
    code, out, err = await g.acli("release", "apply", "-f", str(path))
    assert code == 0, out + err
    await _until(g, lambda s: s["steps"][1]["phase"] == "running" or s["phase"] != "Progressing")
    with sqlite3.connect(db) as c:
        c.execute("CREATE VIEW full_names AS SELECT full_name FROM users")
    c.close()
    code, out, err = await g.acli("release", "abort", "qty", "--wait", "--timeout", "90s")
    assert code == 1, out + err
    st = await _status(g)
    assert st["phase"] == "Failed", json.dumps(st, indent=1)
    assert [s["phase"] for s in st["steps"]] == ["undoing", "undone"], json.dumps(st, indent=1)
    [(step, reason)] = st["notUndoable"]
    assert step == 0
    assert "the rollback of 0001_full_name failed 3 times" in reason, reason
    assert "full_name" in reason, reason  # the database's own error names the view's column
    # The engine recorded the rollback it began; the column and every row are still there.
    assert _table(db) == {
        "columns": {"id": False, "name": True, "full_name": False},
        "rows": 500,
        "missing": 0,
        "phase": "rolling_back",
    }
    types = [e["type"] for e in await _events(g)]
    assert types.count("StepUndoFailed") == 1, types

    with sqlite3.connect(db) as c:
        c.execute("DROP VIEW full_names")
    c.close()
    code, out, err = await g.acli("release", "abort", "qty", "--wait", "--timeout", "60s")
    assert code == 0, out + err
    st = await _status(g)
    assert st["phase"] == "RolledBack", json.dumps(st, indent=1)
    assert [s["phase"] for s in st["steps"]] == ["undone", "undone"]
    assert _table(db) == {
        "columns": {"id": False, "name": True},
        "rows": 500,
        "missing": None,
        "phase": "rolled_back",
    }
