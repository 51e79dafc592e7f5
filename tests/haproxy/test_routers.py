"""``HaproxyRouters`` against a real HAProxy and real instances, without a control plane."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from gapless.controller.haproxy import HaproxyRouters
from gapless.controller.traffic import RouterChoice, RouterStartError, Routing
from gapless.haproxy.runtime import run_one
from gapless.loadgen import run_load
from gapless.platform.local import LocalPlatform
from gapless.router.config import Backend, Limits
from tests.e2e.harness import APP
from tests.haproxy.binary import require_haproxy
from tests.ports import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def apps() -> Iterator[dict[str, Backend]]:
    """Three instances of the example app: two of revision ``aaaa``, one of ``bbbb``."""
    procs = []
    backends = {}
    for iid, rev in (("i1", "aaaa"), ("i2", "aaaa"), ("i3", "bbbb")):
        port = free_port()
        env = dict(os.environ) | {"PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, str(APP), "--version", rev], env=env))
        backends[iid] = Backend(id=iid, port=port, revision=rev)
    deadline = time.monotonic() + 20
    for b in backends.values():
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{b.port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    yield backends
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture
async def routers(tmp_path: Path) -> AsyncIterator[HaproxyRouters]:
    """An ``HaproxyRouters`` on a fresh state directory; its HAProxy is stopped afterwards."""
    state = (tmp_path / "s").resolve()
    state.mkdir()
    r = HaproxyRouters(state, LocalPlatform(state, state_id="test"))
    yield r
    await r.remove("web")
    for p in LocalPlatform(state).discover():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pgid, signal.SIGKILL)


async def _versions(url: str, n: int) -> dict[str, int]:
    seen: dict[str, int] = {}
    async with httpx.AsyncClient() as client:
        for _ in range(n):
            r = await client.get(url)
            assert r.status_code == 200
            seen[r.headers["x-version"]] = seen.get(r.headers["x-version"], 0) + 1
    return seen


async def test_weights_drain_stats_and_restart(routers: HaproxyRouters, apps: dict[str, Backend]) -> None:
    """Weights split exactly, a removed server drains then is deleted, stats map to revisions, a restart keeps the split."""
    require_haproxy()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    choice = RouterChoice(type="haproxy")
    await routers.ensure("web", f"127.0.0.1:{port}", router=choice)
    sock, state, cfg, _ = routers.paths("web")
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    all3 = list(apps.values())
    assert await routers.set_backends("web", all3, Routing(weights={"aaaa": 75, "bbbb": 25}))
    assert not await routers.set_backends("web", all3, Routing(weights={"aaaa": 75, "bbbb": 25}))
    # HAProxy's weighted round-robin is exact over a cycle: 75 % of 400 requests is 300.
    seen = await _versions(url, 400)
    assert abs(seen.get("bbbb", 0) - 100) <= 2, seen
    await routers.set_backends("web", all3, Routing(weights={"aaaa": 100, "bbbb": 0}))
    assert await _versions(url, 50) == {"aaaa": 50}, "weight 0: no traffic"

    # A slow request in flight on i1 keeps it from being drained until it ends.
    async with httpx.AsyncClient(timeout=10) as client:
        slow = asyncio.create_task(client.get(f"http://127.0.0.1:{apps['i1'].port}/slow?ms=10"))
        await slow
        through = asyncio.create_task(client.get(url + "slow?ms=1500"))
        await asyncio.sleep(0.3)
        stats = await routers.stats("web")
        assert stats is not None
        busy = [i for i, b in stats.backends.items() if b.in_flight == 1]
        assert len(busy) == 1
        rest = [b for b in all3 if b.id != busy[0]]
        await routers.set_backends("web", rest, Routing(weights={"aaaa": 100, "bbbb": 0}))
        assert not await routers.wait_drained("web", busy[0], 0.3)
        assert await routers.wait_drained("web", busy[0], 5)
        assert (await through).status_code == 200
    before = await routers.stats("web")
    assert before is not None
    await routers.set_backends(
        "web", rest, Routing(weights={"aaaa": 100, "bbbb": 0})
    )  # deletes the drained server
    after = await routers.stats("web")
    assert after is not None
    assert busy[0] not in after.backends
    assert after.revisions["aaaa"].requests == before.revisions["aaaa"].requests, (
        "a deleted server's counts stay"
    )
    assert after.revisions["aaaa"].responses["2xx"] >= 350
    assert after.revisions["bbbb"].responses["2xx"] >= 98

    # SIGKILL: ensure starts HAProxy again with the servers and weights in force.
    old = routers.state("web").pid
    assert old is not None
    os.killpg(old, signal.SIGKILL)
    await asyncio.sleep(0.2)
    await routers.ensure("web", f"127.0.0.1:{port}", router=choice)
    assert routers.state("web").pid != old
    await routers.set_backends("web", rest, Routing(weights={"aaaa": 50, "bbbb": 50}))
    seen = await _versions(url, 200)
    assert abs(seen.get("bbbb", 0) - 100) <= 2, seen


async def test_changed_limits_reload_without_failed_requests(
    routers: HaproxyRouters, apps: dict[str, Backend]
) -> None:
    """New limits reach HAProxy by a reload under load: same master, new worker, no request refused or cut."""
    require_haproxy()
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    choice = RouterChoice(type="haproxy")
    listen = f"127.0.0.1:{port}"
    await routers.ensure("web", listen, Limits(), router=choice)
    await routers.set_backends("web", list(apps.values()), Routing(weights={"aaaa": 50, "bbbb": 50}))
    master = routers.state("web").pid
    sock, _, cfg, _ = routers.paths("web")
    worker = await run_one(sock, "show info")
    load = asyncio.create_task(run_load(url, rps=200, duration=3.0))
    await asyncio.sleep(1.0)
    await routers.ensure("web", listen, Limits(idle_timeout=33, backend_timeout=7), router=choice)
    report = await load
    print(f"reload under load: {report.failed} failed of {report.sent} ({report.failures})")
    # HAProxy 2.6's old worker closes idle kept-alive client connections when it stops; a client that
    # reuses one at that instant sees it closed (2.7's idle-close-on-response avoids this). Seen in 2
    # of about 15 runs, one request each; nothing else may fail.
    assert set(report.failures) <= {"connection_closed"}, report.failures
    assert report.failed <= 2, report.failures
    assert report.ok >= 500
    assert routers.state("web").pid == master
    assert await run_one(sock, "show info") != worker
    text = cfg.read_text()
    assert "timeout http-keep-alive 33000ms" in text
    assert "timeout server 7000ms" in text
    # The servers and weights in force survived the reload.
    seen = await _versions(url, 100)
    assert abs(seen.get("bbbb", 0) - 50) <= 2, seen


async def test_an_address_in_use_is_reported(routers: HaproxyRouters) -> None:
    """HAProxy that cannot bind ends at once; the error says why, in plain text (no square brackets)."""
    require_haproxy()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RouterStartError, match="Address already in use") as e:
            await routers.ensure("web", f"127.0.0.1:{port}", router=RouterChoice(type="haproxy"))
    assert "[" not in str(e.value)
    assert "]" not in str(e.value)
