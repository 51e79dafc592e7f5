"""The controller's side of ``requiresSchema``, against a real control plane, instances and PostgreSQL.

A revision whose migration has not started is held (no instance of it starts, the status and an event
say why) and rolls out by itself once ``gapless migrate start`` has run; after ``complete`` the
revisions that need the old schema are marked as gone for good and ``gapless undo`` to them is refused.
Both sources of migration state are covered: the database itself (``gapless up --database-url``) and,
without it, the events ``gapless migrate`` reports to the control plane.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.e2e.harness import Gapless, api, rollout_doc
from tests.e2e.test_migration_gating import ADD
from tests.e2e.test_migration_gating import _events as events_of
from tests.migrations.conftest import BASE, db, engine, migration  # noqa: F401 - fixtures
from tests.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def _status(g: Gapless) -> dict[str, Any]:
    """The status through the API (a CLI call per poll costs a Python start-up)."""
    return dict((await api(g, "GET", "/api/v1/rollouts/shop"))["status"])


async def wait_for(g: Gapless, _: str, predicate: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = await _status(g)
        if predicate(st):
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last status: {st.get('phase')} {st.get('message')}")
        await asyncio.sleep(0.1)


def _revisions_running(status: dict[str, Any]) -> set[int]:
    return {i["revision"] for i in status["instances"] if i["state"] not in ("stopped", "terminating")}


def _base(url: str) -> None:
    with engine(url) as e:
        e.start(migration(BASE))
        e.complete()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("INSERT INTO users (name) SELECT 'User' || g FROM generate_series(1, 30) g")


async def test_held_until_the_migration_starts_then_no_way_back(g: Gapless, db: str, tmp_path: Path) -> None:  # noqa: F811
    _base(db)
    port = free_port()
    v1 = g.write(rollout_doc("shop", port, "v1", replicas=2, extra_template={"requiresSchema": "m0"}))
    up = g.cli("up", "-f", str(v1), "--database-url", db)
    assert up.returncode == 0, up.stdout + up.stderr

    v2 = g.write(rollout_doc("shop", port, "v2", replicas=2, extra_template={"requiresSchema": "m1"}))
    assert g.cli("apply", "-f", str(v2)).returncode == 0
    held = await wait_for(g, "shop", lambda s: "m1 has not started" in (s.get("message") or ""))
    assert f"PostgreSQL 127.0.0.1:{urlsplit(db).port}/" in held["message"]
    assert held["schemaHold"] == held["message"]
    assert held["schema"]["requires"] == "m1"
    # Held, not failed: for a while no instance of revision 2 starts and revision 1 keeps serving.
    for _ in range(10):
        st = await _status(g)
        assert _revisions_running(st) == {1}, st["instances"]
        assert st["phase"] == "Progressing"
        await asyncio.sleep(0.2)

    add = tmp_path / "m1.yaml"
    add.write_text(ADD)
    started = g.cli("migrate", "start", str(add), "--database-url", db)
    assert started.returncode == 0, started.stderr
    done = await wait_for(
        g, "shop", lambda s: s["phase"] == "Healthy" and s["currentRevision"] == 2, timeout=60
    )
    assert done["schemaHold"] == ""
    assert _revisions_running(done) == {2}
    types = [e["type"] for e in events_of(g, "shop")]
    assert types.index("SchemaWait") < types.index("SchemaReady")
    assert "PointOfNoRollback" not in types

    # Revision 1 can still come back while m1 is only started (its schema m0 is still served) ...
    assert done["schema"]["pointOfNoRollback"]["migration"] == "m0"
    assert done["schema"]["unrunnableRevisions"] == []
    # ... but not once m1 is completed.
    completed = g.cli("migrate", "complete", "--database-url", db)
    assert completed.returncode == 0, completed.stderr
    marked = await wait_for(g, "shop", lambda s: s["schema"]["unrunnableRevisions"] == [1])
    assert marked["schema"]["pointOfNoRollback"]["migration"] == "m1"
    first = next(r for r in marked["revisions"] if r["number"] == 1)
    assert first["requiresSchema"] == "m0"
    assert "schema version m0 is gone: migration m1 was completed" in first["schemaGone"]
    point = [e for e in events_of(g, "shop") if e["type"] == "PointOfNoRollback"]
    assert len(point) == 1
    assert "revisions 1 (schema m0) can no longer be rolled back to" in point[0]["message"]

    shown = g.cli("status", "shop")
    assert shown.returncode == 0, shown.stderr
    assert "schema m1  no rollback past m1 (completed): revisions 1 cannot run again" in shown.stdout

    undo = g.cli("undo", "shop")
    assert undo.returncode == 1, undo.stdout + undo.stderr
    text = " ".join(undo.stderr.split())
    assert "cannot go back to revision 1 of 'shop'" in text
    assert "schema version m0 is gone" in text
    st = await _status(g)
    assert st["currentRevision"] == 2
    assert st["phase"] == "Healthy"


async def test_without_a_database_the_reported_events_decide(g: Gapless, db: str, tmp_path: Path) -> None:  # noqa: F811
    _base(db)
    spec = g.write(
        rollout_doc("shop", free_port(), "v1", replicas=1, extra_template={"requiresSchema": "m1"})
    )
    up = g.cli("up", "-f", str(spec), "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    held = await wait_for(g, "shop", lambda s: "m1 has not started" in (s.get("message") or ""))
    assert "as reported to this control plane by gapless migrate" in held["message"]
    await asyncio.sleep(1.0)
    assert (await _status(g))["instances"] == []  # the first revision too: nothing starts

    add = tmp_path / "m1.yaml"
    add.write_text(ADD)
    assert g.cli("migrate", "start", str(add), "--database-url", db).returncode == 0  # reports to us
    await wait_for(g, "shop", lambda s: s["phase"] == "Healthy" and s["currentRevision"] == 1, timeout=60)

    refused = g.cli("migrate", "rollback", "--database-url", db)
    assert refused.returncode == 1, refused.stderr
    assert "refusing to roll back m1: rollout shop revision 1 (1 instance(s))" in " ".join(
        refused.stderr.split()
    )
    rolled = g.cli("migrate", "rollback", "--database-url", db, "--force")
    assert rolled.returncode == 0, rolled.stderr
    assert "SKIPPED by --force: rollout shop revision 1" in " ".join(rolled.stderr.split())
    # Revision 1 is already complete: a rolled-back migration does not stop what runs, it is reported.
    st = await wait_for(
        g, "shop", lambda s: any(m["phase"] == "rolled_back" for m in s["schema"]["migrations"])
    )
    assert st["phase"] == "Healthy"


def test_bad_database_url_exits_2(g: Gapless) -> None:
    spec = g.write(rollout_doc("shop", free_port(), "v1", replicas=1))
    bad = g.cli("up", "-f", str(spec), "--database-url", "sqlite://nope.db")
    assert bad.returncode == 2
    assert "--database-url" in bad.stderr
    worse = g.cli("up", "-f", str(spec), "--database-url", "postgresql://a b")
    assert worse.returncode == 2, worse.stderr
    assert not g.processes()  # nothing was started


async def test_a_migration_run_before_the_control_plane_is_known_to_it(
    g: Gapless,
    db: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Without a control plane, gapless migrate keeps its events; the next control plane takes them in."""
    _base(db)
    add = tmp_path / "m1.yaml"
    add.write_text(ADD)
    started = g.cli("migrate", "start", str(add), "--database-url", db)
    assert started.returncode == 0, started.stderr
    assert "events kept in" in " ".join(started.stderr.split())
    spec = g.write(
        rollout_doc("shop", free_port(), "v1", replicas=1, extra_template={"requiresSchema": "m1"})
    )
    up = g.cli("up", "-f", str(spec), "--timeout", "60")
    assert up.returncode == 0, up.stdout + up.stderr
    types = [(e["revision"], e["type"]) for e in events_of(g, "migrations:" + conninfo_to_dict(db)["dbname"])]
    assert types == [("m1", "MigrationStarted"), ("m1", "BackfillDone")]
    assert not (g.state_dir / "migration-events.jsonl").exists()
