"""A rolling update under load: zero failed requests, bounds respected, and nothing left after down."""

from __future__ import annotations

import asyncio

import psutil
import pytest

from tests.e2e.harness import BoundsMonitor, Gapless, Load, rollout_doc
from tests.haproxy.binary import ROUTERS, on_router
from tests.ports import free_port

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("router", ROUTERS)
async def test_rolling_update_under_load_has_no_failed_requests(g: Gapless, router: str) -> None:
    """4 replicas roll v1 -> v2 under 250 req/s with 0 failures and within maxSurge/maxUnavailable."""
    port = free_port()
    v1 = g.write(on_router(router, rollout_doc("shop", port, "v1", surge=1, unavailable=1)))
    code, out, err = await g.acli("up", "-f", str(v1))
    assert code == 0, out + err
    st = await g.status("shop")
    assert st["phase"] == "Healthy"
    assert st["availableReplicas"] == 4

    load = Load(f"http://127.0.0.1:{port}/", rps=250)
    monitor = BoundsMonitor(g, "shop")
    await asyncio.sleep(1.0)
    v2 = g.write(on_router(router, rollout_doc("shop", port, "v2", surge=1, unavailable=1)))
    code, out, err = await g.acli("apply", "-f", str(v2), "--wait")
    assert code == 0, out + err
    await asyncio.sleep(1.0)
    await monitor.stop()
    report = await load.stop()

    assert report.failed == 0, report.failures
    assert report.sent >= 250 * 2
    assert set(report.versions) == {"v1", "v2"}
    assert monitor.samples > 10
    assert monitor.max_processes <= 5, monitor.max_processes
    assert monitor.min_available is not None
    assert monitor.min_available >= 3, monitor.min_available

    st = await g.status("shop")
    assert st["phase"] == "Healthy"
    assert st["currentRevision"] == 2
    assert {i["revision"] for i in st["instances"]} == {2}

    code, out, _ = await g.acli("history", "shop", "-o", "json")
    assert code == 0
    assert '"complete"' in out
    assert '"superseded"' in out

    pids = [p.pid for p in g.processes()]
    assert pids
    down = g.down()
    assert down.returncode == 0, down.stdout + down.stderr
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert g.processes() == []
