"""Issue 14 on real processes: pause holds every strategy, a revert rolls out, undo finds the warm blue.

The model-based tests (tests/controller/test_model.py) found these sequences; here they run against a
real control plane, real routers and real instance processes, each in a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.harness import Gapless, api, rollout_doc, seconds_until_all, wait_for
from tests.ports import free_port

pytestmark = pytest.mark.slow


def versions(g: Gapless, name: str) -> set[str]:
    """The versions of the instance processes of a rollout, read from their command lines."""
    import psutil

    out = set()
    for p in g.processes("instance"):
        if p.rollout == name:
            cmd = psutil.Process(p.pid).cmdline()
            out.add(cmd[cmd.index("--version") + 1])
    return out


async def test_pause_holds_canary_and_blue_green(g: Gapless) -> None:
    """Paused canary and blue-green rollouts start no instance of a new revision and keep stable serving."""
    ports = {"c": free_port(), "bg": free_port()}
    strategies: dict[str, dict[str, Any]] = {
        "c": {
            "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": 1}}], "scaleDownDelaySeconds": 1}
        },
        "bg": {"blueGreen": {"previewListen": f"127.0.0.1:{free_port()}", "scaleDownDelaySeconds": 1}},
    }
    for name, strategy in strategies.items():
        doc = rollout_doc(name, ports[name], "v1", replicas=2, strategy=strategy)
        code, out, err = await g.acli("up", "-f", str(g.write(doc)))
        assert code == 0, out + err
        await api(g, "POST", f"/api/v1/rollouts/{name}/pause", {})
        doc = rollout_doc(name, ports[name], "v2", replicas=2, strategy=strategy)
        code, out, err = await g.acli("apply", "-f", str(g.write(doc)))
        assert code == 0, out + err
    await asyncio.sleep(3)  # many passes: before the fix v2 was promoted within a second
    async with httpx.AsyncClient() as client:
        for name in strategies:
            st = await g.status(name)
            assert st["phase"] == "Paused", (name, st["phase"], st["strategy"])
            assert versions(g, name) == {"v1"}, name
            seen = {
                (await client.get(f"http://127.0.0.1:{ports[name]}/")).headers["x-version"] for _ in range(20)
            }
            assert seen == {"v1"}, name
    for name in strategies:
        await api(g, "POST", f"/api/v1/rollouts/{name}/resume", {})
    for name in strategies:
        st = await wait_for(
            g, name, lambda st: st["phase"] == "Healthy" and st["currentRevision"] == 2, timeout=20
        )
        assert versions(g, name) == {"v2"}


async def test_reapplying_an_earlier_template_rolls_it_out(g: Gapless) -> None:
    """Applying v1's file again after its progress deadline would have passed rolls v1 out (the common revert)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    v1 = g.write(rollout_doc("r", port, "v1", replicas=2, deadline=3))
    code, out, err = await g.acli("up", "-f", str(v1))
    assert code == 0, out + err
    code, out, err = await g.acli(
        "apply", "-f", str(g.write(rollout_doc("r", port, "v2", replicas=2, deadline=3))), "--wait"
    )
    assert code == 0, out + err
    await asyncio.sleep(3.5)  # v1's progress clock is older than its deadline now
    code, out, err = await g.acli("apply", "-f", str(v1), "--wait")
    assert code == 0, out + err
    st = await g.status("r")
    assert (st["phase"], st["currentRevision"]) == ("Healthy", 3), st["message"]
    assert await seconds_until_all(url, "v1", timeout=5) < 5


async def test_undo_after_blue_green_promote_goes_to_the_warm_blue(g: Gapless) -> None:
    """v2 replaced by v3 before promotion, v3 promoted: undo switches back to warm v1 at once, unpaused."""
    port, preview = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/"
    strategy = {
        "blueGreen": {
            "previewListen": f"127.0.0.1:{preview}",
            "autoPromotionEnabled": False,
            "scaleDownDelaySeconds": 60,
        }
    }

    def doc(version: str) -> dict[str, Any]:
        return rollout_doc("bg", port, version, replicas=2, strategy=strategy)

    code, out, err = await g.acli("up", "-f", str(g.write(doc("v1"))))
    assert code == 0, out + err
    await g.acli("apply", "-f", str(g.write(doc("v2"))))
    await wait_for(g, "bg", lambda st: st["strategy"].get("waitingForPromote") and st["currentRevision"] == 2)
    await g.acli("apply", "-f", str(g.write(doc("v3"))))
    await wait_for(g, "bg", lambda st: st["strategy"].get("waitingForPromote") and st["currentRevision"] == 3)
    await api(g, "POST", "/api/v1/rollouts/bg/promote", {})
    await seconds_until_all(url, "v3", timeout=5)
    pids = {p.pid for p in g.processes("instance") if p.rollout == "bg"}
    started = time.monotonic()
    await api(g, "POST", "/api/v1/rollouts/bg/undo", {})
    assert await seconds_until_all(url, "v1", since=started, timeout=5) < 1.0
    st = await wait_for(g, "bg", lambda st: st["phase"] == "Healthy", timeout=10)
    assert st["stableRevision"] == st["currentRevision"] == 4
    assert not st["paused"]
    assert {p.pid for p in g.processes("instance") if p.rollout == "bg"} <= pids  # no process started


async def test_aborted_step_analysis_is_not_reported_successful(g: Gapless) -> None:
    """Aborting during an analysis step before any measurement leaves that run inconclusive, not successful."""
    port = free_port()
    template = {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "slow"},
        "spec": {
            "metrics": [
                {
                    "name": "errors",
                    "provider": {"builtin": {}},
                    "interval": "60s",
                    "count": 3,
                    "successCondition": "true",
                }
            ]
        },
    }
    strategy = {
        "canary": {"steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "slow"}]}}]}
    }

    def write(version: str) -> str:
        path = g.specs / f"a-{version}.yaml"
        path.write_text(
            yaml.safe_dump_all([template, rollout_doc("a", port, version, replicas=2, strategy=strategy)])
        )
        return str(path)

    code, out, err = await g.acli("up", "-f", write("v1"))
    assert code == 0, out + err
    code, out, err = await g.acli("apply", "-f", write("v2"))
    assert code == 0, out + err
    await wait_for(
        g, "a", lambda st: any(r.get("phase") == "running" for r in st["strategy"].get("analysis", []))
    )
    await api(g, "POST", "/api/v1/rollouts/a/abort", {})
    runs = await api(g, "GET", "/api/v1/rollouts/a/analysis")
    deadline = time.monotonic() + 10
    while [r["phase"] for r in runs["items"]] == ["running"] and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        runs = await api(g, "GET", "/api/v1/rollouts/a/analysis")
    [run] = runs["items"]
    assert run["phase"] == "inconclusive", run
    assert "0 of 3 measurements" in run["message"], run["message"]
