"""Releases on a real control plane: flag, rollout, wait and approve steps under load through the router.

Each test starts ``gapless up`` with a RollingUpdate rollout ``shop`` (v1), a flag project with a staged
flag, and sends steady load through the router while a release runs; a release must never fail a request.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gapless.core.failpoints import ENV as CRASH_ENV
from gapless.flags.service.serve import ADMIN_TOKEN_FILE
from tests.e2e.harness import Gapless, Load, api, rollout_doc
from tests.ports import free_port

pytestmark = pytest.mark.slow

STAGES = [
    {"name": "internal", "rules": []},
    {"name": "beta", "rules": []},
    {"name": "everyone", "rollout": {"variant": "on"}},
]


async def _setup(g: Gapless) -> tuple[int, Path]:
    """``shop`` v1 up, flag ``new-ui`` (off, stage 0 of 3) in ``production``; the router port and the v2 file."""
    port = free_port()
    code, out, err = await g.acli("up", "-f", str(g.write(rollout_doc("shop", port, "v1", replicas=2))))
    assert code == 0, out + err
    v2 = g.write(rollout_doc("shop", port, "v2", replicas=2), "shop-v2.yaml")
    transport = httpx.AsyncHTTPTransport(uds=str(g.state_dir / "api.sock"))
    async with httpx.AsyncClient(transport=transport, base_url="http://gapless/flags", timeout=10) as c:
        deadline = time.monotonic() + 30
        while (r := await c.get("/healthz")).status_code != 200:
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.1)
        headers = {"Authorization": f"Bearer {(g.state_dir / ADMIN_TOKEN_FILE).read_text().strip()}"}
        r = await c.put("/api/v1/projects/shop", json={"environments": ["production"]}, headers=headers)
        assert r.status_code == 200, r.text
        flag = {
            "key": "new-ui",
            "kind": "boolean",
            "variants": [{"key": "on", "value": True}, {"key": "off", "value": False}],
            "offVariant": "off",
            "environments": {"production": {"enabled": False, "releasePlan": {"stages": STAGES}}},
        }
        r = await c.post("/api/v1/projects/shop/flags", json=flag, headers=headers)
        assert r.status_code == 201, r.text
    return port, v2


async def _flag(g: Gapless) -> dict[str, Any]:
    """``(enabled, currentStage)`` of ``new-ui`` in production, read from the flag service."""
    transport = httpx.AsyncHTTPTransport(uds=str(g.state_dir / "api.sock"))
    headers = {"Authorization": f"Bearer {(g.state_dir / ADMIN_TOKEN_FILE).read_text().strip()}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://gapless/flags", timeout=10) as c:
        r = await c.get("/api/v1/projects/shop/flags/new-ui", headers=headers)
        assert r.status_code == 200, r.text
        env = r.json()["environments"]["production"]
        return {"enabled": env["enabled"], "stage": env["releasePlan"]["currentStage"]}


def _release(g: Gapless, *, wait: str = "1s", name: str = "ui") -> Path:
    doc = {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": name},
        "spec": {
            "steps": [
                {
                    "name": "flag-on",
                    "flag": {
                        "project": "shop",
                        "flag": "new-ui",
                        "environment": "production",
                        "enabled": True,
                    },
                },
                {"name": "ship-v2", "rollout": {"file": "shop-v2.yaml"}},
                {"name": "watch", "wait": {"duration": wait}},
                {"name": "sign-off", "approve": {"message": "v2 looks fine"}},
                {
                    "name": "beta",
                    "flag": {
                        "project": "shop",
                        "flag": "new-ui",
                        "environment": "production",
                        "stage": "beta",
                    },
                },
                {
                    "name": "everyone",
                    "flag": {
                        "project": "shop",
                        "flag": "new-ui",
                        "environment": "production",
                        "advance": True,
                    },
                },
            ]
        },
    }
    path = g.specs / f"release-{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def _start_control_plane(g: Gapless, crash_at: str | None = None) -> None:
    """Start the control plane again, as ``gapless up`` does, without applying any spec.

    ``crash_at``: the crash point (``gapless.core.failpoints``) at which it SIGKILLs itself.
    """
    code = (
        "import asyncio, pathlib, sys; from gapless.cli.client import start_control_plane; "
        "sys.exit(0 if asyncio.run(start_control_plane(pathlib.Path(sys.argv[1]))) else 1)"
    )
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV} | (
        {CRASH_ENV: crash_at} if crash_at else {}
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, str(g.state_dir.resolve()), env=env
    )
    assert await asyncio.wait_for(proc.wait(), 60) == 0


async def _killed_itself(g: Gapless, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while g.processes("control-plane"):
        assert time.monotonic() < deadline, "the control plane did not reach its crash point"
        await asyncio.sleep(0.1)


async def _status(g: Gapless, name: str = "ui") -> dict[str, Any]:
    return dict(await api(g, "GET", f"/api/v1/releases/{name}"))


async def _until(g: Gapless, predicate: Any, timeout: float = 60, name: str = "ui") -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = await _status(g, name)
        if predicate(st):
            return st
        assert time.monotonic() < deadline, json.dumps(st, indent=1)
        await asyncio.sleep(0.1)


def _at_gate(st: dict[str, Any]) -> bool:
    return bool(st["steps"][3]["phase"] == "running")


async def _serving(port: int) -> set[str]:
    async with httpx.AsyncClient(timeout=5) as c:
        return {(await c.get(f"http://127.0.0.1:{port}/")).headers.get("x-version", "") for _ in range(20)}


async def test_a_release_runs_its_steps_in_order_with_no_failed_request(g: Gapless) -> None:
    """flag on, rollout v2, a monitoring window, an approve gate, two flag stages: all run, no request fails."""
    port, _ = await _setup(g)
    load = Load(f"http://127.0.0.1:{port}/", rps=100)
    code, out, err = await g.acli("release", "apply", "-f", str(_release(g)))
    assert code == 0, out + err
    st = await _until(g, _at_gate)
    assert [s["phase"] for s in st["steps"][:3]] == ["succeeded"] * 3
    assert await _flag(g) == {"enabled": True, "stage": 0}
    assert await _serving(port) == {"v2"}
    # Waiting at the gate: --timeout gives up with exit 3 and changes nothing; a bad value exits 2 first.
    code, out, err = await g.acli("release", "apply", "-f", str(_release(g)), "--wait", "--timeout", "0.5")
    assert code == 3, out + err
    assert "timed out" in err
    code, out, err = await g.acli("release", "abort", "ui", "--wait", "--timeout", "soon")
    assert code == 2, out + err
    assert "soon" in err
    assert _at_gate(await _status(g))
    code, out, err = await g.acli("release", "promote", "ui")
    assert code == 0, out + err
    st = await _until(g, lambda s: s["phase"] == "Succeeded")
    assert await _flag(g) == {"enabled": True, "stage": 2}
    code, out, err = await g.acli("release", "status", "ui", "-o", "json")
    assert code == 0, out + err
    assert json.loads(out)["phase"] == "Succeeded"
    code, out, err = await g.acli("events", "-o", "json")
    events = [json.loads(line) for line in out.splitlines()]
    started = [e["revision"] for e in events if e["rollout"] == "release:ui" and e["type"] == "StepStarted"]
    assert len(started) == 6
    assert len(set(started)) == 6
    assert any(e["type"] == "ReleaseSucceeded" for e in events)
    # `release undo` of the finished release takes it all back, newest first, still under load.
    code, out, err = await g.acli("release", "undo", "ui", "--wait")
    assert code == 0, out + err
    report = await load.stop()
    assert report.failed == 0, report.failures
    st = await _status(g)
    assert [s["phase"] for s in st["steps"]] == ["undone"] * 6
    assert await _flag(g) == {"enabled": False, "stage": 0}
    assert await _serving(port) == {"v1"}
    code, out, err = await g.acli("release", "undo", "ui")
    assert code == 1, out + err  # only a release that succeeded can be undone


async def test_abort_puts_the_flags_and_the_application_back(g: Gapless) -> None:
    """An abort at the gate undoes newest first: the flag back off at stage 0, v1 serving again, 0 failed."""
    port, _ = await _setup(g)
    load = Load(f"http://127.0.0.1:{port}/", rps=100)
    code, out, err = await g.acli("release", "apply", "-f", str(_release(g)))
    assert code == 0, out + err
    await _until(g, _at_gate)
    assert await _flag(g) == {"enabled": True, "stage": 0}
    code, out, err = await g.acli("release", "abort", "ui")
    assert code == 0, out + err
    st = await _until(g, lambda s: s["phase"] == "RolledBack")
    report = await load.stop()
    assert report.failed == 0, report.failures
    assert [s["phase"] for s in st["steps"]] == ["undone"] * 4 + ["pending"] * 2
    assert await _flag(g) == {"enabled": False, "stage": 0}
    assert await _serving(port) == {"v1"}
    rollout = await g.status("shop")
    assert rollout["phase"] == "Healthy"
    code, out, err = await g.acli("release", "abort", "ui")
    assert code == 1, out + err  # nothing left to abort


async def test_sigkill_of_the_control_plane_mid_release_resumes_without_repeating(g: Gapless) -> None:
    """Killed in the rollout step, the monitoring window and at the gate, the release resumes; each step runs once."""
    port, v2 = await _setup(g)
    slow = rollout_doc("shop", port, "v2", replicas=2, app_args=("--ready-delay", "1"))
    v2.write_text(yaml.safe_dump(slow))
    load = Load(f"http://127.0.0.1:{port}/", rps=100)
    code, out, err = await g.acli("release", "apply", "-f", str(_release(g, wait="4s")))
    assert code == 0, out + err
    for step in (1, 2, 3):  # the rollout step, the monitoring window, the approve gate
        await _until(g, lambda s, i=step: s["steps"][i]["phase"] == "running")
        [cp] = g.processes("control-plane")
        os.kill(cp.pid, signal.SIGKILL)
        await asyncio.sleep(1)
        await _start_control_plane(g)
    await _until(g, _at_gate)
    code, out, err = await g.acli("release", "promote", "ui")
    assert code == 0, out + err
    await _until(g, lambda s: s["phase"] == "Succeeded")
    report = await load.stop()
    assert report.failed == 0, report.failures
    assert await _flag(g) == {"enabled": True, "stage": 2}  # advanced once, not once per restart
    code, out, err = await g.acli("events", "-o", "json")
    events = [json.loads(line) for line in out.splitlines()]
    started = [e["revision"] for e in events if e["rollout"] == "release:ui" and e["type"] == "StepStarted"]
    assert sorted(started) == sorted(set(started))
    assert len(started) == 6
    code, out, err = await g.acli("history", "shop", "-o", "json")
    assert code == 0, out + err


async def test_sigkill_in_each_window_of_a_flag_step_sets_the_flag_once_and_undo_restores_it(
    g: Gapless,
) -> None:
    """Killed after the flag service took a step's change but before the step recorded it, then after a
    flag step recorded the state from before it but before setting it: the release resumes and finishes,
    each step starts once, each step keeps the "before" of its first start, and undo restores it exactly."""
    port, _ = await _setup(g)
    load = Load(f"http://127.0.0.1:{port}/", rps=50)
    doc = yaml.safe_load(_release(g).read_text())
    steps = [s for s in doc["spec"]["steps"] if "flag" in s]  # flag-on, beta, everyone (advance)
    doc["spec"]["steps"] = steps
    path = g.specs / "release-flags.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    [cp] = g.processes("control-plane")
    os.kill(cp.pid, signal.SIGKILL)
    await asyncio.sleep(1)
    await _start_control_plane(g, crash_at="release.flag.set")
    deadline = time.monotonic() + 30
    while (result := await g.acli("release", "apply", "-f", str(path)))[0] != 0:
        assert "starting" in result[2], result  # the flag service is still loading
        assert time.monotonic() < deadline, result
        await asyncio.sleep(0.2)
    await _killed_itself(g)  # flag-on: the flag service enabled it, the step did not record that
    await _start_control_plane(g, crash_at="release.flag.recorded")
    await _killed_itself(g)  # flag-on finished (set again: the same state); beta recorded, not set
    await _start_control_plane(g)
    st = await _until(g, lambda s: s["phase"] == "Succeeded")
    assert await _flag(g) == {"enabled": True, "stage": 2}  # advanced once, not once per restart
    befores = [s["record"]["before"] for s in st["steps"]]
    assert befores == [
        {"enabled": False, "stage": 0},
        {"enabled": True, "stage": 0},
        {"enabled": True, "stage": 1},
    ], befores
    code, out, err = await g.acli("events", "-o", "json")
    events = [json.loads(line) for line in out.splitlines()]
    started = [e["revision"] for e in events if e["rollout"] == "release:ui" and e["type"] == "StepStarted"]
    assert len(started) == 3, started
    assert len(set(started)) == 3, started
    code, out, err = await g.acli("release", "undo", "ui", "--wait")
    assert code == 0, out + err
    assert await _flag(g) == {"enabled": False, "stage": 0}  # the state from before the release
    report = await load.stop()
    assert report.failed == 0, report.failures


async def test_bad_releases_exit_2_naming_the_step_and_store_nothing(g: Gapless) -> None:
    """A database URL the control plane cannot see, a missing flag or stage, a rollout needing an unprovided schema: exit 2, nothing stored."""
    await _setup(g)
    base = yaml.safe_load(_release(g).read_text())
    cases: list[tuple[dict[str, Any], str]] = []
    migrate = json.loads(json.dumps(base))
    migrate["spec"]["databases"] = {"shop": {"urlFromEnv": "GAPLESS_TEST_NO_SUCH_URL"}}
    (g.specs / "0001_x.yaml").write_text(
        yaml.safe_dump(
            {"name": "0001_x", "operations": [{"rename_column": {"table": "t", "from": "a", "to": "b"}}]}
        )
    )
    migrate["spec"]["steps"].insert(
        0, {"name": "expand", "migrate": {"file": "0001_x.yaml", "database": "shop"}}
    )
    cases.append(
        (
            migrate,
            "steps.0 (expand).migrate.database: database shop: the control plane's environment has no GAPLESS_TEST_NO_SUCH_URL",
        )
    )
    missing = json.loads(json.dumps(base))
    missing["spec"]["steps"][0]["flag"]["flag"] = "no-such-flag"
    cases.append((missing, "steps.0 (flag-on).flag"))
    stage = json.loads(json.dumps(base))
    stage["spec"]["steps"][4]["flag"]["stage"] = "gamma"
    cases.append((stage, "no stage 'gamma'"))
    needs = rollout_doc("shop", free_port(), "v3", replicas=2, extra_template={"requiresSchema": "0002_y"})
    g.write(needs, "shop-v3.yaml")
    schema = json.loads(json.dumps(base))
    schema["spec"]["steps"][1]["rollout"]["file"] = "shop-v3.yaml"
    cases.append((schema, "steps.1 (ship-v2)"))
    for i, (doc, expected) in enumerate(cases):
        path = g.specs / f"bad-{i}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        code, out, err = await g.acli("release", "apply", "-f", str(path))
        assert code == 2, (i, out, err)
        assert expected in " ".join(err.split()), (i, err)
    assert (await api(g, "GET", "/api/v1/releases"))["items"] == []
    transport = httpx.AsyncHTTPTransport(uds=str(g.state_dir / "api.sock"))
    async with httpx.AsyncClient(transport=transport, base_url="http://gapless", timeout=10) as c:
        r = await c.put("/api/v1/releases/ui", json={"release": base, "rollouts": {}})
        assert r.status_code == 401  # a token is required, as for every change
        headers = {"Authorization": f"Bearer {(g.state_dir / 'token').read_text().strip()}"}
        r = await c.put("/api/v1/releases/ui", json={"release": base, "rollouts": {}}, headers=headers)
        assert r.status_code == 400
        assert r.json()["problems"][0]["path"] == "steps.1 (ship-v2).rollout"
        r = await c.put("/api/v1/releases/other", json={"release": base}, headers=headers)
        assert r.status_code == 400
        assert "URL names 'other'" in r.text
    assert (await api(g, "GET", "/api/v1/releases"))["items"] == []
    assert await _flag(g) == {"enabled": False, "stage": 0}
    code, out, err = await g.acli("release", "status", "ui")
    assert code == 2, out + err  # 404: no such release


async def test_a_failed_rollout_rolls_the_release_back_and_says_why(g: Gapless) -> None:
    """v2 never gets ready: its revision fails at the progress deadline, the flag goes back off, v1 serves, 0 failed."""
    port, v2 = await _setup(g)
    broken = rollout_doc("shop", port, "v2", replicas=2, app_args=("--never-ready",), deadline=4)
    v2.write_text(yaml.safe_dump(broken))
    load = Load(f"http://127.0.0.1:{port}/", rps=100)
    code, out, err = await g.acli("release", "apply", "-f", str(_release(g)), "--wait")
    assert code == 1, out + err  # --wait: the release ended, but not as asked
    assert "RolledBack" in out
    st = await _status(g)
    assert st["phase"] == "RolledBack"
    report = await load.stop()
    assert report.failed == 0, report.failures
    assert [s["phase"] for s in st["steps"]] == ["undone", "undone"] + ["pending"] * 4
    assert await _flag(g) == {"enabled": False, "stage": 0}
    assert await _serving(port) == {"v1"}
    code, out, err = await g.acli("events", "-o", "json")
    events = [json.loads(line) for line in out.splitlines()]
    [failed] = [e for e in events if e["rollout"] == "release:ui" and e["type"] == "StepFailed"]
    assert "rollout shop revision 2 is failed" in failed["message"]


async def test_abort_during_the_rollout_step_puts_v1_back_with_no_failed_request(g: Gapless) -> None:
    """Aborted while v2 is still rolling out, the release puts v1 back at full size and the flag off."""
    port, v2 = await _setup(g)
    slow = rollout_doc("shop", port, "v2", replicas=2, app_args=("--ready-delay", "2"))
    v2.write_text(yaml.safe_dump(slow))
    load = Load(f"http://127.0.0.1:{port}/", rps=100)
    code, out, err = await g.acli("release", "apply", "-f", str(_release(g)))
    assert code == 0, out + err
    await _until(g, lambda s: s["steps"][1]["phase"] == "running")
    code, out, err = await g.acli("release", "abort", "ui", "--wait")
    assert code == 0, out + err
    report = await load.stop()
    assert report.failed == 0, report.failures
    st = await _status(g)
    assert [s["phase"] for s in st["steps"]] == ["undone", "undone"] + ["pending"] * 4
    assert await _flag(g) == {"enabled": False, "stage": 0}
    assert await _serving(port) == {"v1"}
    rollout = await g.status("shop")
    assert rollout["phase"] == "Healthy"
    assert rollout["availableReplicas"] == 2


async def test_a_step_with_on_failure_pause_stops_the_release_until_abort(g: Gapless) -> None:
    """A failing rollout step with onFailure: pause leaves the release Paused (flag kept); abort then rolls back."""
    port, v2 = await _setup(g)
    broken = rollout_doc("shop", port, "v2", replicas=2, app_args=("--never-ready",), deadline=4)
    v2.write_text(yaml.safe_dump(broken))
    path = _release(g)
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["steps"][1]["onFailure"] = "pause"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    code, out, err = await g.acli("release", "apply", "-f", str(path))
    assert code == 0, out + err
    st = await _until(g, lambda s: s["phase"] == "Paused", timeout=60)
    assert [s["phase"] for s in st["steps"][:2]] == ["succeeded", "failed"]
    assert "promote to retry it, abort to roll back" in st["message"]
    assert await _flag(g) == {"enabled": True, "stage": 0}  # nothing is undone while paused
    code, out, err = await g.acli("release", "abort", "ui", "--wait")
    assert code == 0, out + err
    assert await _flag(g) == {"enabled": False, "stage": 0}
    assert await _serving(port) == {"v1"}
