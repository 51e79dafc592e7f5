"""Regression tests of issue 14: a lost ``state.db`` never kills what serves, and the rollout can be adopted.

Before, a control plane started next to a deleted or emptied ``state.db`` SIGKILLed the router and every
instance as orphans (no drain), ``gapless up`` exited 0 and started everything anew. Now the processes
are left serving, ``up`` refuses naming them and the way out, and ``up --adopt`` rebuilds the records.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from gapless.store.records import RolloutRecord
from gapless.store.sqlite import Store
from tests.e2e.harness import Gapless, Load, rollout_doc
from tests.ports import free_port

pytestmark = pytest.mark.slow


SURGE = {"rollingUpdate": {"maxSurge": 2, "maxUnavailable": 0}}


def _lose_state(state_dir: Path, how: str, doc: dict[str, Any]) -> None:
    """Delete or empty state.db, or put another installation's database (knowing ``doc``) in its place."""
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{state_dir / 'state.db'}{suffix}")
        if how == "emptied" and path.exists():
            path.write_bytes(b"")
        else:
            path.unlink(missing_ok=True)
    if how == "elsewhere":
        store = Store(state_dir / "state.db").open()
        store.put_rollout(RolloutRecord(name="web", spec=doc, generation=4, created_at=1.0, updated_at=1.0))
        store.close()


async def _kill_control_plane_and_lose_state(g: Gapless, how: str, doc: dict[str, Any]) -> None:
    [cp] = g.processes("control-plane")
    os.kill(cp.pid, signal.SIGKILL)
    await asyncio.sleep(0.3)
    _lose_state(g.state_dir, how, doc)


async def _refused_and_untouched(g: Gapless, spec: Path, instances: set[int], router: int) -> None:
    code, out, err = await g.acli("up", "-f", str(spec))
    assert code == 1, out + err
    assert "no record of them in state.db" in err
    assert "--adopt" in err
    assert f"router pid {router}" in err
    await asyncio.sleep(0.5)  # a control plane that killed them would have done so by now
    assert {p.pid for p in g.processes("instance")} == instances
    assert [p.pid for p in g.processes("router")] == [router]


async def test_deleted_state_db_keeps_serving_refuses_up_and_adopts(g: Gapless) -> None:
    """With state.db deleted under a live rollout, `up` refuses and kills nothing (0 failed requests); `up --adopt` restores it and `apply` updates it."""
    port = free_port()
    v1_doc = rollout_doc("web", port, "v1", replicas=2, strategy=SURGE)
    v1 = g.write(v1_doc)
    code, out, err = await g.acli("up", "-f", str(v1))
    assert code == 0, out + err
    before = {p.pid for p in g.processes("instance")}
    [router] = g.processes("router")
    load = Load(f"http://127.0.0.1:{port}/", rps=200)
    try:
        await _kill_control_plane_and_lose_state(g, "deleted", v1_doc)
        await _refused_and_untouched(g, v1, before, router.pid)

        code, out, err = await g.acli("up", "--adopt", "-f", str(v1))
        assert code == 0, out + err
        assert "adopted 2 running instance(s), 2 of them in traffic" in err
        st = await g.status("web")
        assert st["phase"] == "Healthy", st
        assert {i["pid"] for i in st["instances"]} == before
        assert st["currentRevision"] == 1

        v2 = g.write(rollout_doc("web", port, "v2", replicas=2, strategy=SURGE))
        code, out, err = await g.acli("apply", "-f", str(v2), "--wait", "--timeout", "60")
        assert code == 0, out + err
        st = await g.status("web")
    finally:
        report = await load.stop()
    assert report.failed == 0, report.failures
    assert report.ok > 0
    assert (st["phase"], st["currentRevision"]) == ("Healthy", 2)
    assert {i["pid"] for i in st["instances"]}.isdisjoint(before)
    assert [p.pid for p in g.processes("router")] == [router.pid]  # the same router throughout
    code, out, err = await g.acli("history", "web", "-o", "json")
    assert code == 0, err
    assert [r["number"] for r in json.loads(out)] == [1, 2]


@pytest.mark.parametrize("how", ["emptied", "elsewhere"])
async def test_emptied_or_foreign_state_db_is_refused_then_adopted(g: Gapless, how: str) -> None:
    """An emptied state.db, or one of another installation naming the same rollout, kills nothing; `up --adopt` takes the processes over."""
    port = free_port()
    doc = rollout_doc("web", port, "v1", replicas=2, strategy=SURGE)
    spec = g.write(doc)
    code, out, err = await g.acli("up", "-f", str(spec))
    assert code == 0, out + err
    before = {p.pid for p in g.processes("instance")}
    [router] = g.processes("router")
    load = Load(f"http://127.0.0.1:{port}/", rps=200)
    try:
        await _kill_control_plane_and_lose_state(g, how, doc)
        await _refused_and_untouched(g, spec, before, router.pid)
        code, out, err = await g.acli("up", "--adopt", "-f", str(spec))
        assert code == 0, out + err
        st = await g.status("web")
    finally:
        report = await load.stop()
    assert report.failed == 0, report.failures
    assert st["phase"] == "Healthy", st
    assert {i["pid"] for i in st["instances"]} == before


async def test_down_stops_processes_of_a_lost_state_gracefully(g: Gapless) -> None:
    """`gapless down` after state.db was lost stops the unrecorded router and instances with SIGTERM first, leaving nothing."""
    port = free_port()
    doc = rollout_doc("web", port, "v1", replicas=2, strategy=SURGE)
    code, out, err = await g.acli("up", "-f", str(g.write(doc)))
    assert code == 0, out + err
    await _kill_control_plane_and_lose_state(g, "deleted", doc)
    code, out, err = await g.acli("down")
    assert code == 0, out + err
    assert "stopping leftover instance" in out + err
    assert g.processes() == []
    logs = [p.read_text() for p in (g.state_dir / "logs" / "web").glob("web-*.log")]
    assert len(logs) == 2
    assert all("received SIGTERM: draining" in text for text in logs)


async def test_state_db_deleted_under_a_running_control_plane_is_restored(g: Gapless) -> None:
    """Deleted while the control plane runs, state.db is written back at once, so a later restart adopts everything as usual."""
    port = free_port()
    spec = g.write(rollout_doc("web", port, "v1", replicas=2, strategy=SURGE))
    code, out, err = await g.acli("up", "-f", str(spec))
    assert code == 0, out + err
    before = {p.pid for p in g.processes("instance")}
    load = Load(f"http://127.0.0.1:{port}/", rps=200)
    try:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{g.state_dir / 'state.db'}{suffix}").unlink(missing_ok=True)
        for _ in range(50):
            if (g.state_dir / "state.db").exists():
                break
            await asyncio.sleep(0.1)
        assert (g.state_dir / "state.db").exists()
        [cp] = g.processes("control-plane")
        os.kill(cp.pid, signal.SIGKILL)
        code, out, err = await g.acli("up", "-f", str(spec))
        assert code == 0, out + err
        st = await g.status("web")
    finally:
        report = await load.stop()
    assert report.failed == 0, report.failures
    assert st["phase"] == "Healthy", st
    assert {i["pid"] for i in st["instances"]} == before
    code, out, err = await g.acli("events", "web", "-o", "json")
    assert "StateRestored" in out


async def test_adopted_canary_resumes_at_its_step_with_its_weights(g: Gapless) -> None:
    """A canary paused at its second step (60%) when state.db is lost resumes there after adoption, not at 20%."""
    from gapless.loadgen import run_load
    from tests.e2e.harness import api, wait_for

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]
    strategy = {"canary": {"steps": steps, "scaleDownDelaySeconds": 0}}
    code, out, err = await g.acli(
        "up", "-f", str(g.write(rollout_doc("k", port, "v1", replicas=2, strategy=strategy)))
    )
    assert code == 0, out + err
    v2 = g.write(rollout_doc("k", port, "v2", replicas=2, strategy=strategy))
    code, out, err = await g.acli("apply", "-f", str(v2))
    assert code == 0, out + err
    await wait_for(g, "k", lambda st: st["strategy"].get("waitingForPromote"))
    await api(g, "POST", "/api/v1/rollouts/k/promote", {})
    await wait_for(
        g, "k", lambda st: st["strategy"].get("waitingForPromote") and st["strategy"]["stepIndex"] == 3
    )
    await _kill_control_plane_and_lose_state(g, "deleted", {})
    code, out, err = await g.acli("up", "--adopt", "-f", str(v2), "--detach")
    assert code == 0, out + err
    st = await wait_for(g, "k", lambda st: st["strategy"].get("waitingForPromote"))
    assert st["strategy"]["stepIndex"] == 3
    after = await run_load(url, rps=400, duration=1.5)
    assert after.failed == 0, after.failures
    share = 100 * after.versions.get("v2", 0) / max(1, after.ok)
    assert abs(share - 60) <= 5, after.versions
    await api(g, "POST", "/api/v1/rollouts/k/promote", {})
    await wait_for(g, "k", lambda st: st["phase"] == "Healthy" and st["currentRevision"] == 2)
