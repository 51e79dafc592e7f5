"""A release step's ``analysis`` on a real control plane, under load through the router.

The release rolls ``shop`` from v1 to v2, then holds a monitoring window whose analysis measures the
application's error rate (the router's own counters). A healthy v2 passes (the run is stopped when the
window ends); a v2 that answers half its requests with 500 fails the analysis, which fails the step
and rolls the release back to v1, and status and events name the failing metric.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.harness import Gapless, Load, api, rollout_doc
from tests.ports import free_port
from tests.release.test_release_e2e import _start_control_plane

pytestmark = pytest.mark.slow

TEMPLATE = {
    "apiVersion": "gapless.dev/v1alpha1",
    "kind": "AnalysisTemplate",
    "metadata": {"name": "shop-health"},
    "spec": {
        "metrics": [
            {
                "name": "error-rate-low",
                "provider": {"builtin": {}},
                "interval": "1s",
                "failureLimit": 1,
                "successCondition": "result.requests == 0 or result.error_rate < 0.05",
            }
        ]
    },
}


CHECK = {
    "apiVersion": "gapless.dev/v1alpha1",
    "kind": "AnalysisTemplate",
    "metadata": {"name": "shop-check"},
    "spec": {
        "metrics": [
            {
                "name": "answers",
                "provider": {"builtin": {}},
                "interval": "1s",
                "count": 3,
                "successCondition": "result.requests > 0 and result.error_rate < 0.05",
            }
        ]
    },
}


async def _setup(g: Gapless, v2_args: tuple[str, ...]) -> int:
    port = free_port()
    path = g.specs / "shop-v1.yaml"
    path.write_text(yaml.safe_dump_all([TEMPLATE, CHECK, rollout_doc("shop", port, "v1", replicas=2)]))
    code, out, err = await g.acli("up", "-f", str(path))
    assert code == 0, out + err
    g.write(rollout_doc("shop", port, "v2", replicas=2, app_args=v2_args), "shop-v2.yaml")
    doc = {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "watched"},
        "spec": {
            "steps": [
                {"name": "ship-v2", "rollout": {"file": "shop-v2.yaml"}},
                {
                    "name": "watch",
                    "wait": {"duration": "6s"},
                    "analysis": {"templates": [{"templateName": "shop-health"}]},
                },
                {"name": "check", "verify": {"analysis": {"templates": [{"templateName": "shop-check"}]}}},
            ]
        },
    }
    (g.specs / "release.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return port


async def _status(g: Gapless) -> dict[str, Any]:
    return dict(await api(g, "GET", "/api/v1/releases/watched"))


async def _until(g: Gapless, predicate: Any, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = await _status(g)
        if predicate(st):
            return st
        assert time.monotonic() < deadline, json.dumps(st, indent=1)
        await asyncio.sleep(0.2)


async def _runs(g: Gapless) -> list[dict[str, Any]]:
    return list((await api(g, "GET", "/api/v1/rollouts/shop/analysis"))["items"])


async def test_a_healthy_window_passes_its_analysis(g: Gapless) -> None:
    """v2 healthy under load: the window's run is stopped at its end, the verify run concludes, all succeed."""
    port = await _setup(g, ())
    load = Load(f"http://127.0.0.1:{port}/", rps=100)
    code, out, err = await g.acli("release", "apply", "-f", str(g.specs / "release.yaml"), "--wait")
    assert code == 0, out + err
    report = await load.stop()
    assert report.failed == 0, report.failures
    st = await _status(g)
    assert [s["phase"] for s in st["steps"]] == ["succeeded"] * 3
    assert "analysis shop-check successful" in st["steps"][2]["message"]
    runs = {r["key"]: r for r in await _runs(g) if str(r.get("key", "")).startswith("release:")}
    assert sorted(runs) == ["release:watched:1", "release:watched:2:verify"], runs
    window = runs["release:watched:1"]
    assert window["phase"] == "successful", window
    assert window["metrics"][0]["measured"] >= 3, window  # it measured over the 6 s window
    assert window["finishedAt"] is not None
    assert runs["release:watched:2:verify"]["metrics"][0]["measured"] == 3


async def test_a_failing_analysis_rolls_the_release_back_naming_the_metric(g: Gapless) -> None:
    """v2 answers half its requests with 500: the window's analysis fails, v1 is back, the metric is named."""
    port = await _setup(g, ("--error-rate", "0.5"))
    load = Load(f"http://127.0.0.1:{port}/", rps=100)
    code, out, err = await g.acli("release", "apply", "-f", str(g.specs / "release.yaml"), "--wait")
    assert code == 1, out + err
    await load.stop()
    st = await _status(g)
    assert st["phase"] == "RolledBack"
    assert [s["phase"] for s in st["steps"]] == ["undone", "undone", "pending"]
    code, out, err = await g.acli("events", "-o", "json")
    events = [json.loads(line) for line in out.splitlines()]
    failed = [e["message"] for e in events if e["rollout"] == "release:watched" and e["type"] == "StepFailed"]
    assert len(failed) == 1, failed
    assert "analysis shop-health failed: error-rate-low" in failed[0], failed
    rollout = await g.status("shop")
    assert rollout["phase"] == "Healthy"
    versions = set()
    async with httpx.AsyncClient(timeout=5) as c:
        for _ in range(20):
            versions.add((await c.get(f"http://127.0.0.1:{port}/")).headers.get("x-version"))
    assert versions == {"v1"}


async def test_sigkill_during_an_analysed_window_resumes_the_same_run(g: Gapless) -> None:
    """Killed while the window's analysis measures, the restarted control plane continues that run, not a new one."""
    port = await _setup(g, ())
    load = Load(f"http://127.0.0.1:{port}/", rps=100)
    code, out, err = await g.acli("release", "apply", "-f", str(g.specs / "release.yaml"))
    assert code == 0, out + err
    await _until(g, lambda s: s["steps"][1]["phase"] == "running")
    await asyncio.sleep(2)  # a measurement or two into the window
    [cp] = g.processes("control-plane")
    os.kill(cp.pid, signal.SIGKILL)
    await asyncio.sleep(1)
    await _start_control_plane(g)
    st = await _until(g, lambda s: s["phase"] in ("Succeeded", "RolledBack", "Failed"))
    report = await load.stop()
    assert report.failed == 0, report.failures
    assert st["phase"] == "Succeeded", st
    runs = [r for r in await _runs(g) if r["key"] == "release:watched:1"]
    assert len(runs) == 1, runs  # resumed, not started again
    assert runs[0]["phase"] == "successful", runs
    code, out, err = await g.acli("events", "-o", "json")
    events = [json.loads(line) for line in out.splitlines()]
    started = [
        e["revision"] for e in events if e["rollout"] == "release:watched" and e["type"] == "StepStarted"
    ]
    assert sorted(started) == sorted(set(started))
    assert len(started) == 3
