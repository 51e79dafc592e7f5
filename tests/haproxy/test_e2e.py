"""HAProxy as the data plane, end to end: real control plane, real HAProxy, real instances, steady load."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import psutil
import pytest

from gapless.loadgen import run_load
from tests.e2e.harness import Gapless, Load, api, rollout_doc, seconds_until_all, wait_for
from tests.haproxy.binary import require_haproxy
from tests.ports import free_port

pytestmark = pytest.mark.slow


def haproxy_doc(name: str, port: int, version: str, **kw: Any) -> dict[str, Any]:
    doc = rollout_doc(name, port, version, **kw)
    doc["spec"]["router"] = {"type": "haproxy", "binary": require_haproxy()}
    return doc


def canary(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"canary": {"steps": steps, "scaleDownDelaySeconds": 1, "abortScaleDownDelaySeconds": 1}}


def at_step(index: int) -> Any:
    return lambda st: st["strategy"].get("stepIndex") == index and st["strategy"].get("waitingForPromote")


def haproxy_groups(g: Gapless, name: str) -> set[int]:
    return {p.pgid for p in g.processes("router") if p.rollout == name}


async def test_canary_weights_under_load(g: Gapless) -> None:
    """setWeight 20 / 50 / promote under steady load: 0 failed requests, each split within 3 points over >= 2,000 requests."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
    code, out, err = await g.acli(
        "up", "-f", str(g.write(haproxy_doc("c", port, "v1", strategy=canary(steps))))
    )
    assert code == 0, out + err
    assert haproxy_groups(g, "c"), "the rollout's router is an HAProxy process marked as gapless's router"
    names = {psutil.Process(p.pid).name() for p in g.processes("router")}
    assert names == {"haproxy"}, names
    background = Load(url, rps=100)
    code, out, err = await g.acli(
        "apply", "-f", str(g.write(haproxy_doc("c", port, "v2", strategy=canary(steps))))
    )
    assert code == 0, out + err
    for index, weight in ((1, 20), (3, 50)):
        await wait_for(g, "c", at_step(index))
        report = await run_load(url, rps=450, duration=5.0)
        assert report.failed == 0, report.failures
        assert report.ok >= 2000
        share = 100 * report.versions.get("v2", 0) / report.ok
        print(f"setWeight {weight}: canary share {share:.2f} % of {report.ok}")
        assert abs(share - weight) <= 3, (weight, share, report.versions)
        await api(g, "POST", "/api/v1/rollouts/c/promote", {})
    st = await wait_for(g, "c", lambda st: st["phase"] == "Healthy", timeout=60)
    assert st["currentRevision"] == 2
    report = await background.stop()
    print(f"background: {report.ok} ok, {report.failed} failed")
    assert report.failed == 0, report.failures
    report = await run_load(url, rps=500, duration=1.0)
    assert report.versions == {"v2": report.ok}
    # The status says what the latency histograms hold: one request in 10, lines read and dropped.
    st = await wait_for(g, "c", lambda st: (st["router"].get("requestLog") or {}).get("linesRead", 0) >= 300)
    rlog = st["router"]["requestLog"]
    print(f"request log: {rlog}")
    assert rlog["sampling"] == 10
    assert rlog["linesDropped"] >= 0
    assert rlog["malformed"] == 0


async def test_rolling_update_and_removal(g: Gapless) -> None:
    """A rolling update through HAProxy under load loses no request; down leaves no HAProxy behind."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    code, out, err = await g.acli("up", "-f", str(g.write(haproxy_doc("r", port, "v1", replicas=3))))
    assert code == 0, out + err
    load = Load(url, rps=200)
    await asyncio.sleep(0.5)
    code, out, err = await g.acli(
        "apply", "-f", str(g.write(haproxy_doc("r", port, "v2", replicas=3))), "--wait"
    )
    assert code == 0, out + err
    await seconds_until_all(url, "v2")
    report = await load.stop()
    print(f"rolling: {report.ok} ok, {report.failed} failed")
    assert report.failed == 0, report.failures
    assert report.versions.get("v1", 0) > 0
    assert report.versions.get("v2", 0) > 0
    done = g.down()
    assert done.returncode == 0, done.stdout + done.stderr
    assert not g.processes()


async def test_abort_moves_traffic_back(g: Gapless) -> None:
    """Abort at weight 50 moves every request back to stable within a second, with no failed request."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    steps = [{"setWeight": 50}, {"pause": {}}]
    code, out, err = await g.acli(
        "up", "-f", str(g.write(haproxy_doc("a", port, "v1", strategy=canary(steps))))
    )
    assert code == 0, out + err
    load = Load(url, rps=200)
    code, out, err = await g.acli(
        "apply", "-f", str(g.write(haproxy_doc("a", port, "v2", strategy=canary(steps))))
    )
    assert code == 0, out + err
    await wait_for(g, "a", at_step(1))
    started = time.monotonic()
    await api(g, "POST", "/api/v1/rollouts/a/abort")
    moved = await seconds_until_all(url, "v1", since=started)
    print(f"abort: all traffic on stable after {moved * 1000:.0f} ms")
    assert moved < 1.0, moved
    st = await wait_for(g, "a", lambda st: st["aborted"])
    assert st["phase"] == "Degraded"
    report = await load.stop()
    assert report.failed == 0, report.failures


async def test_haproxy_killed_mid_rollout_is_restarted(g: Gapless) -> None:
    """SIGKILL to HAProxy at weight 50: the control plane starts it again with the split in force and the rollout completes."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    steps = [{"setWeight": 50}, {"pause": {}}]
    code, out, err = await g.acli(
        "up", "-f", str(g.write(haproxy_doc("k", port, "v1", strategy=canary(steps))))
    )
    assert code == 0, out + err
    code, out, err = await g.acli(
        "apply", "-f", str(g.write(haproxy_doc("k", port, "v2", strategy=canary(steps))))
    )
    assert code == 0, out + err
    await wait_for(g, "k", at_step(1))
    before = haproxy_groups(g, "k")
    load = Load(url, rps=200)
    await asyncio.sleep(1.0)
    killed_at = time.monotonic()
    for pgid in before:
        os.killpg(pgid, signal.SIGKILL)
    await wait_for(g, "k", lambda st: bool(haproxy_groups(g, "k") - before) and st["router"]["running"])
    print(f"HAProxy back after {time.monotonic() - killed_at:.2f} s")
    # The restarted HAProxy holds the split in force (50/50) at once.
    report = await run_load(url, rps=300, duration=2.0)
    share = 100 * report.versions.get("v2", 0) / max(1, report.ok)
    assert abs(share - 50) <= 5, (share, report.versions)
    await api(g, "POST", "/api/v1/rollouts/k/promote", {})
    st = await wait_for(g, "k", lambda st: st["phase"] == "Healthy", timeout=60)
    assert st["currentRevision"] == 2
    report = await load.stop()
    print(f"kill gap: {report.failed} failed of {report.sent} ({report.failures})")
    # Requests fail only while no HAProxy listens (refused, or cut when it was killed): the control plane
    # notices at its next pass. "overload" is the load generator's own backlog on a saturated machine.
    gap = report.failed - report.failures.get("overload", 0)
    assert set(report.failures) <= {"connect_refused", "connection_closed", "connection_reset", "overload"}
    assert gap <= 200 * 2, report.failures
    events = (await api(g, "GET", "/api/v1/events?rollout=k"))["items"]
    assert any(e["type"] == "RouterRestarted" for e in events)


async def test_blue_green_preview_and_switch(g: Gapless) -> None:
    """Blue-green on HAProxy: the preview address is an HAProxy serving green, promote switches all traffic in < 1 s, 0 failed."""
    port, preview = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/"
    strategy = {
        "blueGreen": {
            "previewListen": f"127.0.0.1:{preview}",
            "autoPromotionEnabled": False,
            "scaleDownDelaySeconds": 5,
            "prePromotionChecks": [{"httpGet": {"path": "/healthz"}}],
        }
    }
    doc = haproxy_doc("bg", port, "v1", replicas=2, strategy=strategy)
    code, out, err = await g.acli("up", "-f", str(g.write(doc)))
    assert code == 0, out + err
    load = Load(url, rps=150)
    doc = haproxy_doc("bg", port, "v2", replicas=2, strategy=strategy)
    code, out, err = await g.acli("apply", "-f", str(g.write(doc)))
    assert code == 0, out + err
    st = await wait_for(g, "bg", lambda st: st["strategy"].get("waitingForPromote"), timeout=60)
    assert st["strategy"]["checks"] == "passed"
    assert haproxy_groups(g, "bg.preview"), "the preview router is an HAProxy too"
    names = {psutil.Process(p.pid).name() for p in g.processes("router")}
    assert names == {"haproxy"}, names
    assert await _versions_of(f"http://127.0.0.1:{preview}/", 20) == {"v2"}
    assert await _versions_of(url, 20) == {"v1"}
    started = time.monotonic()
    await api(g, "POST", "/api/v1/rollouts/bg/promote", {})
    switched = await seconds_until_all(url, "v2", since=started, streak=50)
    print(f"blue-green: all traffic on green after {switched * 1000:.0f} ms")
    assert switched < 1.0, switched
    await wait_for(g, "bg", lambda st: st["phase"] == "Healthy", timeout=60)
    report = await load.stop()
    print(f"blue-green: {report.ok} ok, {report.failed} failed")
    assert report.failed == 0, report.failures


async def _versions_of(url: str, n: int) -> set[str]:
    import httpx

    async with httpx.AsyncClient() as client:
        return {(await client.get(url)).headers["x-version"] for _ in range(n)}


async def test_control_plane_sigkill_keeps_haproxy_serving(g: Gapless) -> None:
    """Control plane SIGKILLed at a canary pause: HAProxy keeps the split; a new control plane adopts it and completes."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    steps = [{"setWeight": 40}, {"pause": {}}]
    code, out, err = await g.acli(
        "up", "-f", str(g.write(haproxy_doc("cp", port, "v1", strategy=canary(steps))))
    )
    assert code == 0, out + err
    load = Load(url, rps=150)
    v2 = g.write(haproxy_doc("cp", port, "v2", strategy=canary(steps)))
    code, out, err = await g.acli("apply", "-f", str(v2))
    assert code == 0, out + err
    await wait_for(g, "cp", at_step(1))
    routers = haproxy_groups(g, "cp")
    [cp] = g.processes("control-plane")
    os.kill(cp.pid, signal.SIGKILL)
    alone = await run_load(url, rps=300, duration=2.0)
    share = 100 * alone.versions.get("v2", 0) / max(1, alone.ok)
    print(f"without a control plane: canary share {share:.1f} % of {alone.ok}")
    assert abs(share - 40) <= 4, alone.versions
    code, out, err = await g.acli("up", "-f", str(v2), "--detach")
    assert code == 0, out + err
    st = await wait_for(g, "cp", at_step(1))
    assert haproxy_groups(g, "cp") == routers, "the same HAProxy was adopted, not replaced"
    assert st["router"]["running"]
    await api(g, "POST", "/api/v1/rollouts/cp/promote", {})
    await wait_for(g, "cp", lambda st: st["phase"] == "Healthy" and st["currentRevision"] == 2, timeout=60)
    report = await load.stop()
    print(f"control-plane kill: {report.ok} ok, {report.failed} failed")
    assert report.failed == 0, report.failures
    assert alone.failed == 0, alone.failures
