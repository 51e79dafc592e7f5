"""The router as the control plane runs it: a SIGKILLed router worker and an address already in use."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import httpx
import psutil
import pytest

from gapless.server.auth import read_token
from tests.e2e.harness import Gapless, Load, api, rollout_doc, wait_for
from tests.ports import free_port

pytestmark = pytest.mark.slow


def _worker(g: Gapless, name: str) -> psutil.Process:
    """The router's worker: the one child of the router's supervisor."""
    [sup] = [p for p in g.processes("router") if p.rollout == name]
    [worker] = psutil.Process(sup.pid).children()
    return worker


async def _metrics(g: Gapless) -> str:
    state = g.state_dir.resolve()
    transport = httpx.AsyncHTTPTransport(uds=str(state / "api.sock"))
    async with httpx.AsyncClient(transport=transport, base_url="http://cp", timeout=10) as http:
        r = await http.get("/metrics", headers={"Authorization": f"Bearer {read_token(state)}"})
    assert r.status_code == 200
    return r.text


async def test_router_sigkill_refuses_no_connection_and_is_recorded(g: Gapless) -> None:
    """SIGKILLs of the router's worker under load refuse no connection; each restart (also of the whole router) is recorded."""
    port = free_port()
    code, out, err = await g.acli("up", "-f", str(g.write(rollout_doc("rk", port, "v1", replicas=2))))
    assert code == 0, out + err
    [sup] = [p for p in g.processes("router") if p.rollout == "rk"]
    load = Load(f"http://127.0.0.1:{port}/", rps=100)
    killed = []
    for _ in range(3):
        await asyncio.sleep(1.0)
        worker = _worker(g, "rk")
        killed.append(worker.pid)
        os.kill(worker.pid, signal.SIGKILL)
    await asyncio.sleep(1.0)
    report = await load.stop()
    # Not one connection is refused (the supervisor's socket stays open; the kernel queues new
    # connections for the next worker). What a SIGKILL still costs is the requests sent on kept-alive
    # connections of the dying worker in the milliseconds before the kernel closes them (0-4 per kill
    # here): cut off (reset), never refused. Before the supervisor each kill refused connections for
    # 0.3-0.85 s.
    assert set(report.failures) <= {"connection_reset", "connection_closed"}, report.failures
    assert report.failed <= 0.05 * report.sent, report.failures
    assert _worker(g, "rk").pid not in killed
    [same] = [p for p in g.processes("router") if p.rollout == "rk"]
    assert same.pid == sup.pid  # the supervisor and its socket stayed; no new router was started
    st = await wait_for(g, "rk", lambda st: (st.get("router") or {}).get("restarts") == 3)
    assert st["router"]["pid"] == sup.pid
    events = (await api(g, "GET", "/api/v1/events?rollout=rk"))["items"]
    restarted = [e for e in events if e["type"] == "RouterRestarted"]
    assert restarted
    assert "(3 in all)" in restarted[-1]["message"]
    assert 'gapless_router_restarts_total{rollout="rk"} 3.0' in await _metrics(g)
    log = (g.state_dir / "logs" / "rk" / "router.log").read_text()
    assert log.count("starting another (restart") == 3
    # The whole router killed (supervisor and worker): the control plane starts another and says so.
    os.killpg(sup.pgid, signal.SIGKILL)
    st = await wait_for(g, "rk", lambda st: st["router"]["pid"] not in (None, sup.pid), timeout=15)
    events = (await api(g, "GET", "/api/v1/events?rollout=rk"))["items"]
    assert any(
        e["type"] == "RouterRestarted" and f"the router (pid {sup.pid}) was gone" in e["message"]
        for e in events
    )


async def test_stopped_instance_costs_no_request_and_is_ejected(g: Gapless) -> None:
    """A SIGSTOPped instance fails no request: none waits past spec.router's backend timeout, and the router ejects it."""
    port = free_port()
    doc = rollout_doc("hang", port, "v1", replicas=3)
    doc["spec"]["router"] = {"backendTimeoutSeconds": 1, "ejectAfterFailures": 2}
    code, out, err = await g.acli("up", "-f", str(g.write(doc)))
    assert code == 0, out + err
    load = Load(f"http://127.0.0.1:{port}/", rps=100)
    await asyncio.sleep(1.0)
    victim = next(p for p in g.processes("instance") if p.rollout == "hang")
    os.killpg(victim.pgid, signal.SIGSTOP)
    try:
        await asyncio.sleep(4.0)
        report = await load.stop()
    finally:
        os.killpg(victim.pgid, signal.SIGCONT)
    assert report.failed == 0, report.failures
    assert report.latency.max is not None
    assert report.latency.max < 2.0  # the backend timeout (1 s), a housekeeping period, the retry
    log = (g.state_dir / "logs" / "hang" / "router.log").read_text()
    assert f"backend {victim.instance_id} " in log
    assert "ejected for 10s after 2 failures in a row" in log


async def test_port_clash_fails_up_within_seconds_naming_the_address(g: Gapless) -> None:
    """``gapless up`` on an address in use exits non-zero within seconds naming it; the deadline still fails the revision."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        doc = rollout_doc("clash", port, "v1", replicas=1, deadline=4)
        started = time.monotonic()
        code, out, err = await g.acli("up", "-f", str(g.write(doc)), timeout=60)
        took = time.monotonic() - started
        assert code != 0
        said = " ".join((out + err).split())
        assert f"cannot listen on 127.0.0.1:{port}: address already in use" in said, said
        assert took < 20
        st = await wait_for(g, "clash", lambda st: st["phase"] == "Failed", timeout=15)
        assert "address already in use" in st["router"]["error"]
        [revision] = (await api(g, "GET", "/api/v1/rollouts/clash/history"))["items"]
        assert "made no progress for 4s" in revision["message"]
        assert "address already in use" in revision["message"]
