"""SIGKILL of the control plane in the middle of a rollout loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.e2e.harness import Gapless, Load, rollout_doc
from tests.ports import free_port

pytestmark = pytest.mark.slow


async def test_control_plane_sigkill_mid_rollout(g: Gapless) -> None:
    """Killing the control plane mid-rollout fails no request; a restart completes it with no duplicates or orphans."""
    port = free_port()
    code, out, err = await g.acli(
        "up", "-f", str(g.write(rollout_doc("cart", port, "v1", app_args=("--ready-delay", "1"))))
    )
    assert code == 0, out + err
    load = Load(f"http://127.0.0.1:{port}/", rps=250)
    v2 = rollout_doc("cart", port, "v2", app_args=("--ready-delay", "1"))
    code, out, err = await g.acli("apply", "-f", str(g.write(v2)))
    assert code == 0, out + err
    # Wait until the update is under way, then kill the control plane.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        st = await g.status("cart")
        if st.get("currentRevision") == 2 and st["updatedReplicas"] >= 1:
            break
        await asyncio.sleep(0.1)
    [cp] = g.processes("control-plane")
    os.kill(cp.pid, signal.SIGKILL)
    await asyncio.sleep(2)  # the router keeps serving alone
    assert g.processes("router")
    code, out, err = await g.acli("up", "-f", str(g.write(v2)))
    assert code == 0, out + err
    await asyncio.sleep(0.5)
    report = await load.stop()
    assert report.failed == 0, report.failures

    st = await g.status("cart")
    assert st["phase"] == "Healthy"
    assert st["totalInstances"] == 4
    assert {i["revision"] for i in st["instances"]} == {2}
    known = {i["pid"] for i in st["instances"]}
    running = {p.pid for p in g.processes("instance")}
    # Every running instance process is one the control plane knows: no orphans, no duplicates.
    assert running == known
    assert len(g.processes("control-plane")) == 1
    assert len(g.processes("router")) == 1


async def test_control_plane_sigkill_during_canary_keeps_weights(g: Gapless) -> None:
    """Killed at a canary pause, the router keeps the weights; a new control plane resumes at the same step."""
    from tests.e2e.harness import api, wait_for

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    strategy = {"canary": {"steps": [{"setWeight": 40}, {"pause": {}}], "scaleDownDelaySeconds": 0}}
    code, out, err = await g.acli("up", "-f", str(g.write(rollout_doc("k", port, "v1", strategy=strategy))))
    assert code == 0, out + err
    load = Load(url, rps=250)
    v2 = g.write(rollout_doc("k", port, "v2", strategy=strategy))
    await g.acli("apply", "-f", str(v2))
    await wait_for(g, "k", lambda st: st["strategy"].get("waitingForPromote"))
    [cp] = g.processes("control-plane")
    os.kill(cp.pid, signal.SIGKILL)
    from gapless.loadgen import run_load

    alone = await run_load(url, rps=500, duration=2.0)
    share = 100 * alone.versions.get("v2", 0) / max(1, alone.ok)
    assert abs(share - 40) <= 3, alone.versions
    code, out, err = await g.acli("up", "-f", str(v2), "--detach")
    assert code == 0, out + err
    st = await wait_for(g, "k", lambda st: st["strategy"].get("waitingForPromote"))
    assert st["strategy"]["stepIndex"] == 1
    await api(g, "POST", "/api/v1/rollouts/k/promote", {})
    # Healthy comes before the old revision's instances have drained and exited: wait for those too.
    await wait_for(
        g,
        "k",
        lambda st: st["phase"] == "Healthy" and st["currentRevision"] == 2 and st["terminatingReplicas"] == 0,
    )
    report = await load.stop()
    assert report.failed == 0, report.failures
    assert alone.failed == 0, alone.failures
    # The records first, then the processes: a record is written before its process starts and deleted
    # after it exits, so every process found after the read is one the control plane knows.
    known = {i["pid"] for i in (await g.status("k"))["instances"]}
    running = {p.pid for p in g.processes("instance")}
    assert running == known


async def test_dashboard_charts_survive_a_control_plane_sigkill(g: Gapless) -> None:
    """The per-revision chart points are kept in the store: a killed and restarted control plane serves them."""
    from tests.e2e.harness import api

    port = free_port()
    spec = g.write(rollout_doc("charts", port, "v1", replicas=1))
    code, out, err = await g.acli("up", "-f", str(spec))
    assert code == 0, out + err
    load = Load(f"http://127.0.0.1:{port}/", rps=50)
    try:
        deadline = time.monotonic() + 30
        before: list[dict[str, float]] = []
        while time.monotonic() < deadline and len(before) < 5:
            series = await api(g, "GET", "/api/v1/rollouts/charts/series")
            before = (series["revisions"].get("1") or {}).get("points", [])
            await asyncio.sleep(0.5)
        assert len(before) >= 5, series
        assert any(p["rps"] > 0 for p in before)
        [cp] = g.processes("control-plane")
        os.kill(cp.pid, signal.SIGKILL)
        await asyncio.sleep(0.5)
        code, out, err = await g.acli("up", "-f", str(spec))
        assert code == 0, out + err
        after = (await api(g, "GET", "/api/v1/rollouts/charts/series"))["revisions"]["1"]["points"]
        kept = {p["t"] for p in after}
        assert {p["t"] for p in before} <= kept  # every point from before the kill is still there
    finally:
        await load.stop()
