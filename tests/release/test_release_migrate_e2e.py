"""Releases with ``migrate`` and ``complete`` steps on a real control plane and a real PostgreSQL.

Each test starts ``gapless up`` (one rollout, so the control plane runs), fills a table in a throwaway
database, and applies a release whose steps start the migration (expand + backfill) through the
migration engine, and complete it. An abort before ``complete`` rolls the migration back (rows written
through the new version kept); after it, status says what could not be undone; a SIGKILL of the
control plane mid-backfill resumes the engine's start at its checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from gapless.migrations.gate import connect_kwargs
from tests.e2e.harness import Gapless, Load, api, rollout_doc
from tests.ports import free_port
from tests.release.test_release_e2e import _start_control_plane

pytestmark = pytest.mark.slow

MIGRATION = """\
name: 0001_qty_bigint
operations:
  - alter_column: {table: items, column: qty, type: bigint, up: "qty::bigint * 10", down: "(qty / 10)::integer"}
"""


def _fill(url: str, rows: int) -> int:
    """Table ``items`` with ``rows`` rows; the sum of ``qty``."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE items (id bigserial PRIMARY KEY, qty integer NOT NULL)")
        c.execute("INSERT INTO items (qty) SELECT (g %% 97) + 1 FROM generate_series(1, %s) g", (rows,))
        row = c.execute("SELECT sum(qty) FROM items").fetchone()
        assert row is not None
        return int(row[0])


def _column(url: str) -> tuple[str, int, int]:
    """(type of items.qty in public, rows, sum of qty)."""
    with psycopg.connect(url, autocommit=True) as c:
        t = c.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = 'items' AND column_name = 'qty'"
        ).fetchone()
        n = c.execute("SELECT count(*), sum(qty) FROM items").fetchone()
        assert t is not None
        assert n is not None
        return str(t[0]), int(n[0]), int(n[1])


def _migration_phase(url: str) -> str | None:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute(
            "SELECT phase FROM gapless_migrations.migrations WHERE name = '0001_qty_bigint'"
        ).fetchone()
        return None if row is None else str(row[0])


async def _setup(g: Gapless) -> int:
    """``shop`` v1 up (so the control plane runs) and the migration file; the router port."""
    port = free_port()
    code, out, err = await g.acli("up", "-f", str(g.write(rollout_doc("shop", port, "v1", replicas=1))))
    assert code == 0, out + err
    (g.specs / "0001_qty_bigint.yaml").write_text(MIGRATION)
    return port


def _release(g: Gapless, url: str, steps: list[dict[str, Any]], name: str = "qty") -> Path:
    doc = {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": name},
        "spec": {"databases": {"shop": {"url": url}}, "steps": steps},
    }
    path = g.specs / f"release-{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _expand(**pace: Any) -> dict[str, Any]:
    return {"name": "expand", "migrate": {"file": "0001_qty_bigint.yaml", "database": "shop", **pace}}


def _no_nulls(url: str) -> dict[str, Any]:
    """A verify step (argv, no shell): exit 0 when the new version's view of items has no NULL qty."""
    code = (
        "import sys, psycopg; c = psycopg.connect(sys.argv[1]); "
        "n = c.execute('SELECT count(*) FROM public_0001_qty_bigint.items WHERE qty IS NULL').fetchone()[0]; "
        "print(n, 'NULL rows'); sys.exit(1 if n else 0)"
    )
    return {"name": "no-nulls", "verify": {"exec": {"command": [sys.executable, "-c", code, url]}}}


CONTRACT = {"name": "contract", "complete": {"migration": "0001_qty_bigint", "database": "shop"}}
GATE = {"name": "sign-off", "approve": {"message": "looks fine"}}


async def _status(g: Gapless, name: str = "qty") -> dict[str, Any]:
    return dict(await api(g, "GET", f"/api/v1/releases/{name}"))


async def _until(g: Gapless, predicate: Any, timeout: float = 90, name: str = "qty") -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = await _status(g, name)
        if predicate(st):
            return st
        assert time.monotonic() < deadline, json.dumps(st, indent=1)
        await asyncio.sleep(0.1)


async def _events(g: Gapless, name: str = "qty") -> list[dict[str, Any]]:
    code, out, err = await g.acli("events", "-o", "json")
    assert code == 0, err
    return [e for e in map(json.loads, out.splitlines()) if e["rollout"] == f"release:{name}"]


async def test_an_abort_before_complete_rolls_the_migration_back_keeping_new_rows(
    g: Gapless, postgres_url: str
) -> None:
    """expand + backfill, an httpGet check, a row written through the new version, abort: old schema has every row."""
    port = await _setup(g)
    total = _fill(postgres_url, 3000)
    health = {
        "name": "healthy",
        "verify": {"url": f"http://127.0.0.1:{port}", "httpGet": {"path": "/healthz"}},
    }
    path = _release(g, postgres_url, [_expand(batchSize=500), health, GATE])
    plan = subprocess.run(
        [sys.executable, "-m", "gapless", "release", "plan", "-f", str(path), "-o", "json"],
        capture_output=True, text=True, check=False, env=g.env(),
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["pointOfNoRollback"] is None
    code, out, err = await g.acli("release", "apply", "-f", str(path))
    assert code == 0, out + err
    st = await _until(g, lambda s: s["steps"][2]["phase"] == "running")
    assert st["steps"][0]["phase"] == "succeeded"
    assert st["steps"][0]["record"]["engine"]["phase"] == "started"
    assert st["steps"][1]["message"].endswith("200 (expected 200)")
    assert _migration_phase(postgres_url) == "started"
    new = psycopg.connect(postgres_url, autocommit=True, **connect_kwargs("shop", "0001_qty_bigint", "t1"))
    with new:
        new.execute("INSERT INTO items (qty) VALUES (70)")  # written by the new version: 70 -> 7 in the old
    code, out, err = await g.acli("release", "abort", "qty", "--wait")
    assert code == 0, out + err
    st = await _status(g)
    assert st["phase"] == "RolledBack"
    assert [s["phase"] for s in st["steps"]] == ["undone"] * 3
    assert _migration_phase(postgres_url) == "rolled_back"
    assert _column(postgres_url) == ("integer", 3001, total + 7)
    types = [e["type"] for e in await _events(g)]
    assert types.count("StepUndone") == 3
    # The watcher, not on a terminal, prints one line per change and exits 0 on an ended release.
    code, out, err = await g.acli("release", "status", "qty", "--watch")
    assert code == 0, out + err
    assert out.splitlines()[0] == "release qty: RolledBack - rolled back", out
    assert "step 0 expand: undone - migration 0001_qty_bigint rolled back" in out, out
    code, out, err = await g.acli("release", "history", "qty", "-o", "json")
    assert code == 0, out + err
    [run] = json.loads(out)
    assert (run["began"], run["outcome"], run["aborted"]) == ("apply", "RolledBack", True)
    assert (run["stepsStarted"], run["stepsUndone"]) == (3, 3)
    code, out, err = await g.acli("release", "history", "nope")
    assert code == 2, out + err


async def test_complete_is_the_point_of_no_rollback_and_status_says_what_was_not_undone(
    g: Gapless, postgres_url: str
) -> None:
    """expand, contract, then an abort at the gate: the release ends Failed, naming both migration steps and why."""
    await _setup(g)
    total = _fill(postgres_url, 2000)
    path = _release(g, postgres_url, [_expand(), _no_nulls(postgres_url), CONTRACT, GATE])
    code, out, err = await g.acli("release", "apply", "-f", str(path))
    assert code == 0, out + err
    st = await _until(g, lambda s: s["steps"][3]["phase"] == "running")
    assert st["pointOfNoRollback"] == 2
    assert st["steps"][1]["phase"] == "succeeded"
    assert _migration_phase(postgres_url) == "completed"
    assert _column(postgres_url) == ("bigint", 2000, total * 10)  # every row converted, once
    code, out, err = await g.acli("release", "abort", "qty", "--wait")
    assert code == 1, out + err  # ended, but not RolledBack
    flat = " ".join(out.split())
    assert "step 2 cannot be undone: migration 0001_qty_bigint is completed" in flat, out
    assert "step 0 cannot be undone: migration 0001_qty_bigint was completed at step 2" in flat, out
    st = await _status(g)
    assert st["phase"] == "Failed"
    assert [s["phase"] for s in st["steps"]] == ["succeeded", "undone", "succeeded", "undone"]
    assert _migration_phase(postgres_url) == "completed"
    code, out, err = await g.acli("release", "status", "qty")
    assert code == 0, out + err
    assert "cannot be undone" in out


async def test_sigkill_mid_backfill_resumes_at_the_checkpoint_without_repeating_the_expand(
    g: Gapless, postgres_url: str
) -> None:
    """Killed while the backfill runs, the restarted control plane resumes the engine's start; each step starts once."""
    await _setup(g)
    total = _fill(postgres_url, 20000)
    path = _release(g, postgres_url, [_expand(batchSize=200, batchDelay="50ms"), CONTRACT])
    code, out, err = await g.acli("release", "apply", "-f", str(path))
    assert code == 0, out + err

    def backfilled(st: dict[str, Any]) -> int:
        engine = (st["steps"][0]["record"] or {}).get("engine") or {}
        return sum(int(b["rowsDone"]) for b in engine.get("backfills") or [])

    st = await _until(g, lambda s: backfilled(s) >= 2000)
    assert st["steps"][0]["phase"] == "running"
    [cp] = g.processes("control-plane")
    os.kill(cp.pid, signal.SIGKILL)
    await asyncio.sleep(1)
    with psycopg.connect(postgres_url, autocommit=True) as c:
        row = c.execute("SELECT sum(rows_done) FROM gapless_migrations.backfills").fetchone()
        assert row is not None
        at_kill = int(row[0])
    assert at_kill >= 2000
    await _start_control_plane(g)
    st = await _until(g, lambda s: s["phase"] == "Succeeded", timeout=120)
    assert _column(postgres_url) == ("bigint", 20000, total * 10)
    events = await _events(g)
    started = [e["revision"] for e in events if e["type"] == "StepStarted"]
    assert sorted(started) == sorted(set(started))
    assert len(started) == 2
    notices = [e["message"] for e in events if e["type"] == "MigrationNotice"]
    assert any("resuming the start of 0001_qty_bigint at step" in n for n in notices), notices


async def test_a_failed_verify_rolls_the_migration_back_and_says_why(g: Gapless, postgres_url: str) -> None:
    """A check that exits 1 fails its step: the release rolls the migration back and keeps the check's words."""
    await _setup(g)
    total = _fill(postgres_url, 500)
    failing = {
        "name": "fails",
        "verify": {
            "exec": {"command": [sys.executable, "-c", "import sys; print('3 rows left'); sys.exit(1)"]}
        },
    }
    path = _release(g, postgres_url, [_expand(), failing, CONTRACT])
    code, out, err = await g.acli("release", "apply", "-f", str(path), "--wait")
    assert code == 1, out + err
    st = await _status(g)
    assert st["phase"] == "RolledBack"
    assert [s["phase"] for s in st["steps"]] == ["undone", "undone", "pending"]
    events = await _events(g)
    failed = [e["message"] for e in events if e["type"] == "StepFailed"]
    assert len(failed) == 1
    assert "3 rows left" in failed[0], failed
    assert _migration_phase(postgres_url) == "rolled_back"
    assert _column(postgres_url) == ("integer", 500, total)


async def test_a_rollout_requiring_the_new_schema_follows_the_migrate_step_and_abort_undoes_both(
    g: Gapless, postgres_url: str
) -> None:
    """v2 requiresSchema the migration: it rolls out after expand (the events gate it), abort puts v1 and the schema back."""
    port = await _setup(g)
    _fill(postgres_url, 1000)
    v2 = rollout_doc("shop", port, "v2", replicas=1, extra_template={"requiresSchema": "0001_qty_bigint"})
    g.write(v2, "shop-v2.yaml")
    load = Load(f"http://127.0.0.1:{port}/", rps=50)
    path = _release(
        g, postgres_url, [_expand(), {"name": "ship-v2", "rollout": {"file": "shop-v2.yaml"}}, GATE]
    )
    code, out, err = await g.acli("release", "apply", "-f", str(path))
    assert code == 0, out + err
    await _until(g, lambda s: s["steps"][2]["phase"] == "running")
    assert await _serving(port) == {"v2"}
    database = postgres_url.rsplit("/", 1)[1]
    code, out, err = await g.acli("events", "-o", "json")
    stream = [json.loads(line) for line in out.splitlines()]
    told = [(e["revision"], e["type"]) for e in stream if e["rollout"] == f"migrations:{database}"]
    assert told == [("0001_qty_bigint", "MigrationStarted"), ("0001_qty_bigint", "BackfillDone")], told
    code, out, err = await g.acli("release", "abort", "qty", "--wait")
    assert code == 0, out + err
    report = await load.stop()
    assert report.failed == 0, report.failures
    assert await _serving(port) == {"v1"}
    assert _migration_phase(postgres_url) == "rolled_back"
    code, out, err = await g.acli("events", "-o", "json")
    stream = [json.loads(line) for line in out.splitlines()]
    assert [e["type"] for e in stream if e["rollout"] == f"migrations:{database}"][
        -1
    ] == "MigrationRolledBack"


async def _serving(port: int) -> set[str]:
    async with httpx.AsyncClient(timeout=5) as c:
        return {(await c.get(f"http://127.0.0.1:{port}/")).headers.get("x-version", "") for _ in range(20)}


async def test_bad_migration_and_analysis_steps_exit_2_naming_the_step_and_change_nothing(
    g: Gapless, postgres_url: str
) -> None:
    """A broken migration file, analysis with no rollout to measure, an unknown template: exit 2, nothing stored."""
    await _setup(g)
    _fill(postgres_url, 10)
    (g.specs / "0002_bad.yaml").write_text("name: 0002_bad\noperations:\n  - drop_everything: {}\n")
    window = {
        "name": "watch",
        "wait": {"duration": "1s"},
        "analysis": {"templates": [{"templateName": "nope"}]},
    }
    check = {"name": "check", "verify": {"analysis": {"templates": [{"templateName": "nope"}]}}}
    cases = [
        ([{"name": "expand", "migrate": {"file": "0002_bad.yaml", "database": "shop"}}], "steps.0"),
        ([_expand(), window], "steps.1 (watch).analysis"),
        ([_expand(), window], "no rollout step comes before it"),
        ([_expand(), check], "steps.1 (check).verify.analysis.templates.0"),
        (
            [_expand(), {**CONTRACT, "complete": {"migration": "0009_other", "database": "shop"}}],
            "steps.1 (contract)",
        ),
    ]
    for i, (steps, expected) in enumerate(cases):
        path = _release(g, postgres_url, steps, name=f"bad{i}")
        code, out, err = await g.acli("release", "apply", "-f", str(path))
        assert code == 2, (i, out, err)
        assert expected in " ".join(err.split()), (i, err)
    assert (await api(g, "GET", "/api/v1/releases"))["items"] == []
    with psycopg.connect(postgres_url, autocommit=True) as c:
        row = c.execute("SELECT to_regclass('gapless_migrations.migrations')").fetchone()
    assert row is not None
    assert row[0] is None  # no migration ever started


async def test_a_failure_after_the_contract_undoes_what_it_can_and_names_the_rest(
    g: Gapless, postgres_url: str
) -> None:
    """A check failing after complete: the release ends Failed, the check is undone, both migration steps named."""
    await _setup(g)
    total = _fill(postgres_url, 1000)
    failing = {
        "name": "after",
        "verify": {
            "exec": {"command": [sys.executable, "-c", "import sys; print('p99 too high'); sys.exit(1)"]}
        },
    }
    path = _release(g, postgres_url, [_expand(), CONTRACT, failing])
    code, out, err = await g.acli("release", "apply", "-f", str(path), "--wait")
    assert code == 1, out + err
    flat = " ".join(out.split())
    assert "step 2 failed: " in flat, out
    assert "p99 too high" in flat, out
    assert "step 1 cannot be undone: migration 0001_qty_bigint is completed" in flat, out
    assert "step 0 cannot be undone: migration 0001_qty_bigint was completed at step 1" in flat, out
    st = await _status(g)
    assert st["phase"] == "Failed"
    assert st["pointOfNoRollback"] == 1
    assert st["failure"]["step"] == 2
    assert [s["phase"] for s in st["steps"]] == ["succeeded", "succeeded", "undone"]
    assert _migration_phase(postgres_url) == "completed"
    assert _column(postgres_url) == ("bigint", 1000, total * 10)
    code, out, err = await g.acli("release", "status", "qty")
    assert code == 0, out + err
    assert "step 2 failed" in out, out
    assert "cannot be undone" in out, out


async def test_sigkill_in_a_verify_and_in_a_waiting_complete_resumes_and_completes_once(
    g: Gapless, postgres_url: str, tmp_path: Path
) -> None:
    """Killed while a check runs and while complete waits for an old-schema client, the release finishes once."""
    await _setup(g)
    total = _fill(postgres_url, 2000)
    runs = tmp_path / "check-runs"
    slow_check = "import sys, time; open(sys.argv[1], 'a').write('run\\n'); time.sleep(3); print('checked'); sys.exit(0)"
    check = {"name": "check", "verify": {"exec": {"command": [sys.executable, "-c", slow_check, str(runs)]}}}
    old = psycopg.connect(postgres_url, autocommit=True, **connect_kwargs("shop", None, "old-1"))
    try:
        path = _release(g, postgres_url, [_expand(), check, CONTRACT])
        code, out, err = await g.acli("release", "apply", "-f", str(path))
        assert code == 0, out + err
        await _until(g, lambda s: s["steps"][1]["phase"] == "running")
        cp = min(
            g.processes("control-plane"), key=lambda p: p.started_at
        )  # a running check carries its markers
        os.kill(cp.pid, signal.SIGKILL)
        await asyncio.sleep(1)
        await _start_control_plane(g)
        st = await _until(
            g, lambda s: s["steps"][2]["phase"] == "running" and "old-1" in s["steps"][2]["message"]
        )
        assert st["steps"][1]["phase"] == "succeeded"
        assert _migration_phase(postgres_url) == "started"  # held by the old-schema client
        cp = min(
            g.processes("control-plane"), key=lambda p: p.started_at
        )  # a running check carries its markers
        os.kill(cp.pid, signal.SIGKILL)
        await asyncio.sleep(1)
        await _start_control_plane(g)
        await asyncio.sleep(1)
        assert (await _status(g))["steps"][2]["phase"] == "running"
    finally:
        old.close()
    st = await _until(g, lambda s: s["phase"] == "Succeeded", timeout=120)
    assert _migration_phase(postgres_url) == "completed"
    assert _column(postgres_url) == ("bigint", 2000, total * 10)
    assert (
        1 <= len(runs.read_text().splitlines()) <= 2
    )  # a check interrupted by the kill runs again; it changes nothing
    events = await _events(g)
    started = [e["revision"] for e in events if e["type"] == "StepStarted"]
    assert sorted(started) == sorted(set(started))
    assert len(started) == 3
    database = postgres_url.rsplit("/", 1)[1]
    code, out, err = await g.acli("events", "-o", "json")
    stream = [json.loads(line) for line in out.splitlines()]
    done = [
        e for e in stream if e["rollout"] == f"migrations:{database}" and e["type"] == "MigrationCompleted"
    ]
    assert len(done) == 1, done
