"""Blue-green through the real router: preview, checks, atomic switch, undo inside the delay window."""

from __future__ import annotations

import sys
import time

import httpx
import pytest

from tests.e2e.harness import Gapless, Load, api, rollout_doc, seconds_until_all, wait_for
from tests.haproxy.binary import ROUTERS, on_router
from tests.ports import free_port

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("router", ROUTERS)
async def test_blue_green_switch_and_undo_under_load(g: Gapless, router: str) -> None:
    """Green is previewed and checked, takes all traffic at once on promote, and undo switches back in < 1 s."""
    port, preview = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/"
    check = [
        sys.executable,
        "-c",
        "import os, urllib.request; urllib.request.urlopen(os.environ['PREVIEW_URL'] + '/healthz')",
    ]
    strategy = {
        "blueGreen": {
            "previewListen": f"127.0.0.1:{preview}",
            "autoPromotionEnabled": False,
            "scaleDownDelaySeconds": 60,
            "prePromotionChecks": [{"httpGet": {"path": "/healthz"}}, {"exec": {"command": check}}],
        }
    }
    code, out, err = await g.acli(
        "up",
        "-f",
        str(g.write(on_router(router, rollout_doc("bg", port, "v1", replicas=3, strategy=strategy)))),
    )
    assert code == 0, out + err
    load = Load(url, rps=250)
    code, out, err = await g.acli(
        "apply",
        "-f",
        str(g.write(on_router(router, rollout_doc("bg", port, "v2", replicas=3, strategy=strategy)))),
        "--wait",
    )
    assert code == 0, out + err  # waits for promotion: exit 0 with a message
    st = await wait_for(g, "bg", lambda st: st["strategy"].get("waitingForPromote"))
    assert st["strategy"]["checks"] == "passed"
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{preview}/")).headers["x-version"] == "v2"
        assert (await client.get(url)).headers["x-version"] == "v1"

    started = time.monotonic()
    await api(g, "POST", "/api/v1/rollouts/bg/promote", {})
    switched = await seconds_until_all(url, "v2", since=started, streak=50)
    print(f"{router}: promote -> all traffic on green after {switched * 1000:.0f} ms")
    assert switched < 1.0, switched
    # After the switch no new request reaches blue.
    async with httpx.AsyncClient() as client:
        versions = {(await client.get(url)).headers["x-version"] for _ in range(300)}
    assert versions == {"v2"}

    st = await g.status("bg")
    assert {i["revision"] for i in st["instances"]} == {1, 2}  # blue stays warm
    pids_before = {i["pid"] for i in st["instances"]}
    started = time.monotonic()
    await api(g, "POST", "/api/v1/rollouts/bg/undo", {})
    back = await seconds_until_all(url, "v1", since=started, streak=50)
    print(f"{router}: undo -> all traffic on blue after {back * 1000:.0f} ms")
    assert back < 1.0, back
    st = await wait_for(g, "bg", lambda st: st["phase"] == "Healthy")
    # Undo started no process: every instance left is one that ran before.
    assert {i["pid"] for i in st["instances"]} <= pids_before
    report = await load.stop()
    print(f"{router}: blue-green {report.ok} ok, {report.failed} failed")
    assert report.failed == 0, report.failures


async def test_failed_check_leaves_blue_serving(g: Gapless) -> None:
    """A failing pre-promotion check fails the rollout; green never takes traffic."""
    port, preview = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/"
    strategy = {
        "blueGreen": {
            "previewListen": f"127.0.0.1:{preview}",
            "prePromotionChecks": [{"httpGet": {"path": "/nope", "expectStatus": 200}}],
        }
    }
    code, out, err = await g.acli(
        "up", "-f", str(g.write(rollout_doc("f", port, "v1", replicas=2, strategy=strategy)))
    )
    assert code == 0, out + err
    load = Load(url, rps=200)
    code, out, err = await g.acli(
        "apply", "-f", str(g.write(rollout_doc("f", port, "v2", replicas=2, strategy=strategy))), "--wait"
    )
    assert code == 1, out + err
    assert "pre-promotion check failed" in err
    report = await load.stop()
    assert report.failed == 0, report.failures
    assert set(report.versions) == {"v1"}


async def test_abort_before_promotion_keeps_blue_and_removes_green(g: Gapless) -> None:
    """Abort of a waiting blue-green rollout: blue keeps all traffic, green goes after the abort delay."""
    port, preview = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/"
    strategy = {
        "blueGreen": {
            "previewListen": f"127.0.0.1:{preview}",
            "autoPromotionEnabled": False,
            "abortScaleDownDelaySeconds": 1,
        }
    }
    code, out, err = await g.acli(
        "up", "-f", str(g.write(rollout_doc("ab", port, "v1", replicas=2, strategy=strategy)))
    )
    assert code == 0, out + err
    load = Load(url, rps=200)
    await g.acli("apply", "-f", str(g.write(rollout_doc("ab", port, "v2", replicas=2, strategy=strategy))))
    await wait_for(g, "ab", lambda st: st["strategy"].get("waitingForPromote"))
    code, _, err = await g.acli("abort", "ab")
    assert code == 0, err
    st = await wait_for(g, "ab", lambda st: st["aborted"] and {i["revision"] for i in st["instances"]} == {1})
    assert st["phase"] == "Degraded"
    async with httpx.AsyncClient() as client:
        assert {(await client.get(url)).headers["x-version"] for _ in range(50)} == {"v1"}
    report = await load.stop()
    assert report.failed == 0, report.failures
    assert set(report.versions) == {"v1"}
    # The preview router is gone with green.
    await wait_for(g, "ab", lambda st: not any(p.rollout == "ab.preview" for p in g.processes("router")))
