"""Failure cases: a revision that never gets ready, a stubborn instance, a liveness failure."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Gapless, Load, rollout_doc
from tests.ports import free_port

pytestmark = pytest.mark.slow


async def test_unready_revision_fails_at_deadline_and_old_keeps_serving(g: Gapless) -> None:
    """A revision whose readiness never passes fails after its deadline; v1 serves throughout; undo works."""
    port = free_port()
    code, out, err = await g.acli("up", "-f", str(g.write(rollout_doc("web", port, "v1", replicas=3))))
    assert code == 0, out + err
    load = Load(f"http://127.0.0.1:{port}/", rps=200)
    bad = rollout_doc("web", port, "v2", replicas=3, app_args=("--never-ready",), deadline=3)
    started = time.monotonic()
    code, out, err = await g.acli("apply", "-f", str(g.write(bad)), "--wait")
    elapsed = time.monotonic() - started
    assert code == 1, out + err
    assert 3 <= elapsed < 15
    st = await g.status("web")
    assert st["phase"] == "Failed"
    progressing = next(c for c in st["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    await asyncio.sleep(1.5)
    st = await g.status("web")
    assert [i["revision"] for i in st["instances"]] == [1, 1, 1]
    assert st["availableReplicas"] == 3

    code, out, err = await g.acli("undo", "web", "--wait")
    assert code == 0, out + err
    st = await g.status("web")
    assert st["phase"] == "Healthy"
    report = await load.stop()
    assert report.failed == 0, report.failures
    assert set(report.versions) == {"v1"}


async def test_stubborn_instance_is_killed_and_slow_requests_finish(g: Gapless) -> None:
    """An instance ignoring SIGTERM is SIGKILLed after the grace period; 2 s requests in flight finish."""
    port = free_port()
    doc = rollout_doc(
        "slow", port, "v1", replicas=2, app_args=("--ignore-sigterm",), grace=3, unavailable=1, surge=0
    )
    code, out, err = await g.acli("up", "-f", str(g.write(doc)))
    assert code == 0, out + err
    old_pids = {p.pid for p in g.processes("instance")}
    async with httpx.AsyncClient(timeout=30) as client:
        slow = [asyncio.create_task(client.get(f"http://127.0.0.1:{port}/slow?ms=2000")) for _ in range(6)]
        await asyncio.sleep(0.3)
        new = rollout_doc("slow", port, "v2", replicas=2, grace=3, unavailable=1, surge=0)
        started = time.monotonic()
        code, out, err = await g.acli("apply", "-f", str(g.write(new)), "--wait")
        elapsed = time.monotonic() - started
        responses = await asyncio.gather(*slow)
    assert code == 0, out + err
    assert [r.status_code for r in responses] == [200] * 6
    assert all(r.headers["x-version"] == "v1" for r in responses)
    # Each old instance needed its full grace period (3 s) before SIGKILL.
    assert elapsed >= 3
    assert not old_pids & {p.pid for p in g.processes("instance")}
    code, out, _ = await g.acli("events", "slow")
    assert "killed after the grace period" in out


async def test_liveness_failure_restarts_instance_without_failed_requests(g: Gapless, tmp_path: Path) -> None:
    """An instance failing liveness leaves the router first, then restarts; no request fails."""
    port = free_port()
    flags = tmp_path / "flags"
    flags.mkdir()
    # The liveness probe fails while a file named after the instance's port exists.
    check = f"import os, sys; sys.exit(os.path.exists({str(flags)!r} + '/fail-' + os.environ['PORT']))"
    liveness = {
        "exec": {"command": [sys.executable, "-c", check]},
        "periodSeconds": 0.3,
        "failureThreshold": 2,
    }
    doc = rollout_doc("live", port, "v1", replicas=2, extra_template={"livenessProbe": liveness})
    code, out, err = await g.acli("up", "-f", str(g.write(doc)))
    assert code == 0, out + err
    st = await g.status("live")
    victim = st["instances"][0]
    load = Load(f"http://127.0.0.1:{port}/", rps=200)
    await asyncio.sleep(0.5)
    (flags / f"fail-{victim['port']}").touch()
    deadline = time.monotonic() + 30
    restarted = None
    while time.monotonic() < deadline:
        st = await g.status("live")
        restarted = next(
            (i for i in st["instances"] if i["id"] == victim["id"] and i["restarts"] >= 1 and i["ready"]),
            None,
        )
        if restarted:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    report = await load.stop()
    assert restarted is not None
    assert restarted["pid"] != victim["pid"]
    assert report.failed == 0, report.failures
    code, out, _ = await g.acli("events", "live")
    assert "Unhealthy" in out
    assert "InstanceRestarting" in out
