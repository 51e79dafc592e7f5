"""SQLite backfill: a `gapless migrate start` killed with SIGKILL resumes from its checkpoint, every row filled once."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

ROWS = 20_000

MIGRATION = """
name: m1
operations:
  - add_column: {table: items, column: {name: label, type: text, nullable: false}, up: "'item-' || qty"}
"""


def make_items(path: Path) -> None:
    """``items`` with ROWS rows, and a log of every update of a row (the backfill's included)."""
    with closing(sqlite3.connect(path, isolation_level=None)) as c:
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL)")
        c.execute("BEGIN")
        c.executemany("INSERT INTO items (qty) VALUES (?)", ((i,) for i in range(ROWS)))
        c.execute("COMMIT")
        c.execute("CREATE TABLE touched (id INTEGER NOT NULL)")
        c.execute(
            "CREATE TRIGGER zz_log AFTER UPDATE ON items BEGIN INSERT INTO touched VALUES (NEW.id); END"
        )


def scalar(path: Path, query: str) -> Any:
    with closing(sqlite3.connect(path, timeout=5)) as c:
        row = c.execute(query).fetchone()
    return None if row is None else row[0]


def gapless(*args: str) -> list[str]:
    return [sys.executable, "-m", "gapless", "migrate", *args]


def test_backfill_resumes_after_sigkill_filling_every_row_exactly_once(tmp_path: Path) -> None:
    """Kill start mid-backfill: the checkpoint commits with its batch, so the resumed run fills each row once."""
    path = tmp_path / "app.db"
    make_items(path)
    file = tmp_path / "m1.yaml"
    file.write_text(MIGRATION)
    url = f"sqlite:///{path}"
    log_path = tmp_path / "first.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            gapless(
                "start", str(file), "--database-url", url, "--batch-size", "200", "--batch-delay", "0.01"
            ),
            stdout=log,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 30
            done = 0
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    done = int(
                        scalar(path, "SELECT coalesce(max(rows_done), 0) FROM _gapless_backfills") or 0
                    )
                except sqlite3.OperationalError:  # the state tables do not exist yet
                    done = 0
                if done >= 2_000:
                    break
                time.sleep(0.01)
            assert proc.poll() is None, log_path.read_text()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    at_kill = scalar(path, "SELECT rows_done FROM _gapless_backfills")
    assert 0 < at_kill < ROWS
    assert scalar(path, "SELECT count(*) FROM items WHERE label IS NOT NULL") == at_kill
    assert scalar(path, "SELECT count(*) FROM touched") == at_kill  # the batch in flight rolled back
    assert scalar(path, "SELECT phase FROM _gapless_migrations") == "starting"

    resumed = subprocess.run(
        gapless("start", str(file), "--database-url", url, "--batch-size", "1000"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the start of m1" in resumed.stderr
    assert scalar(path, "SELECT count(*) FROM touched") == ROWS
    assert scalar(path, "SELECT count(DISTINCT id) FROM touched") == ROWS
    assert scalar(path, "SELECT count(*) FROM items WHERE label IS NOT 'item-' || qty") == 0
    status = subprocess.run(
        gapless("status", "--database-url", url, "-o", "json"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    active = json.loads(status.stdout)["active"]
    assert active["phase"] == "started"
    assert active["backfills"][0]["rowsDone"] == ROWS
    assert active["backfills"][0]["done"] is True
