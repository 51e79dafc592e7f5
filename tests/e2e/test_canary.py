"""Canary rollouts through the real router: exact weights, header routes, sticky users, abort."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from gapless.loadgen import run_load
from tests.e2e.harness import Gapless, Load, api, rollout_doc, seconds_until_all, wait_for
from tests.haproxy.binary import ROUTERS, on_router
from tests.ports import free_port

pytestmark = pytest.mark.slow


def canary(steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"canary": {"steps": steps, "scaleDownDelaySeconds": 1, "abortScaleDownDelaySeconds": 1} | extra}


both_routers = pytest.mark.parametrize("router", ROUTERS)


def at_step(index: int) -> Any:
    return lambda st: st["strategy"].get("stepIndex") == index and st["strategy"].get("waitingForPromote")


async def test_canary_weights_are_exact_per_step(g: Gapless) -> None:
    """Steps 5 -> 25 -> 50 -> 100: over >= 2,000 requests per step the canary share is within 2 points."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    steps = [
        {"setWeight": 5},
        {"pause": {}},
        {"setWeight": 25},
        {"pause": {}},
        {"setWeight": 50},
        {"pause": {}},
    ]
    code, out, err = await g.acli(
        "up", "-f", str(g.write(rollout_doc("c", port, "v1", strategy=canary(steps))))
    )
    assert code == 0, out + err
    code, out, err = await g.acli(
        "apply", "-f", str(g.write(rollout_doc("c", port, "v2", strategy=canary(steps))))
    )
    assert code == 0, out + err
    for index, weight in ((1, 5), (3, 25), (5, 50)):
        await wait_for(g, "c", at_step(index))
        report = await run_load(url, rps=1100, duration=2.0)
        assert report.failed == 0, report.failures
        assert report.ok >= 2000
        share = 100 * report.versions.get("v2", 0) / report.ok
        assert abs(share - weight) <= 2, (weight, share, report.versions)
        await api(g, "POST", "/api/v1/rollouts/c/promote", {})
    st = await wait_for(g, "c", lambda st: st["phase"] == "Healthy")
    assert st["currentRevision"] == 2
    report = await run_load(url, rps=1000, duration=2.0)
    assert report.versions == {"v2": report.ok}
    assert report.ok >= 2000


@both_routers
async def test_header_route_and_abort(g: Gapless, router: str) -> None:
    """A header route sends every matching request to the canary at weight 5; abort moves all traffic back in < 1 s."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    route = {"match": [{"headerName": "X-Internal", "headerValue": {"exact": "yes"}}]}
    steps = [{"setWeight": 5}, {"setHeaderRoute": route}, {"pause": {}}]
    code, out, err = await g.acli(
        "up", "-f", str(g.write(on_router(router, rollout_doc("h", port, "v1", strategy=canary(steps)))))
    )
    assert code == 0, out + err
    load = Load(url, rps=200)
    code, out, err = await g.acli(
        "apply", "-f", str(g.write(on_router(router, rollout_doc("h", port, "v2", strategy=canary(steps)))))
    )
    assert code == 0, out + err
    await wait_for(g, "h", at_step(2))
    async with httpx.AsyncClient() as client:
        internal = [
            (await client.get(url, headers={"X-Internal": "yes"})).headers["x-version"] for _ in range(200)
        ]
        other = [
            (await client.get(url, headers={"X-Internal": "no"})).headers["x-version"] for _ in range(400)
        ]
    assert internal == ["v2"] * 200
    assert 5 <= other.count("v2") <= 35  # weight 5 of 400 requests is 20

    started = time.monotonic()
    await api(g, "POST", "/api/v1/rollouts/h/abort")
    moved = await seconds_until_all(url, "v1", since=started)
    print(f"{router}: abort -> all traffic on stable after {moved * 1000:.0f} ms")
    assert moved < 1.0, moved
    st = await wait_for(g, "h", lambda st: st["aborted"])
    assert st["phase"] == "Degraded"
    code, out, _ = await g.acli("status", "h")
    assert "aborted" in out
    report = await load.stop()
    assert report.failed == 0, report.failures
    # Abort is a failure for scripts waiting on the rollout.
    code, _, _ = await g.acli(
        "apply",
        "-f",
        str(g.write(on_router(router, rollout_doc("h", port, "v2", strategy=canary(steps))))),
        "--wait",
    )
    assert code == 1
    code, _, err = await g.acli("retry", "h")
    assert code == 0, err
    await wait_for(g, "h", at_step(2))


@both_routers
async def test_sticky_users_never_flip_back(g: Gapless, router: str) -> None:
    """With stickiness on a header, no key served by the canary is later served by stable while the weight grows; 0 failed under load."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    steps = [
        {"setWeight": 10},
        {"pause": {}},
        {"setWeight": 30},
        {"pause": {}},
        {"setWeight": 60},
        {"pause": {}},
    ]
    strategy = canary(steps, trafficRouting={"stickiness": {"header": "X-User"}})
    code, out, err = await g.acli(
        "up", "-f", str(g.write(on_router(router, rollout_doc("s", port, "v1", strategy=strategy))))
    )
    assert code == 0, out + err
    load = Load(url, rps=150)
    code, out, err = await g.acli(
        "apply", "-f", str(g.write(on_router(router, rollout_doc("s", port, "v2", strategy=strategy))))
    )
    assert code == 0, out + err
    on_canary: set[str] = set()
    keys = [f"user-{i}" for i in range(500)]
    async with httpx.AsyncClient() as client:
        for index, weight in ((1, 10), (3, 30), (5, 60)):
            await wait_for(g, "s", at_step(index))
            served = {k: (await client.get(url, headers={"X-User": k})).headers["x-version"] for k in keys}
            flipped = [k for k in on_canary if served[k] != "v2"]
            assert flipped == [], flipped[:5]
            now_canary = {k for k, v in served.items() if v == "v2"}
            assert abs(100 * len(now_canary) / len(keys) - weight) <= 7
            on_canary = now_canary
            # The same key twice gets the same answer.
            again = (await client.get(url, headers={"X-User": keys[0]})).headers["x-version"]
            assert again == served[keys[0]]
            print(f"{router} weight {weight}: {len(now_canary)} of {len(keys)} keys on the canary")
            await api(g, "POST", "/api/v1/rollouts/s/promote", {})
    report = await load.stop()
    print(f"{router} sticky: {report.ok} ok, {report.failed} failed")
    assert report.failed == 0, report.failures


async def test_new_revision_replaces_the_canary_in_progress(g: Gapless) -> None:
    """Applying v3 during v2's canary removes v2 and canaries v3: never three revisions taking traffic."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    steps = [{"setWeight": 30}, {"pause": {}}]
    code, out, err = await g.acli(
        "up", "-f", str(g.write(rollout_doc("r", port, "v1", strategy=canary(steps))))
    )
    assert code == 0, out + err
    load = Load(url, rps=250)
    await g.acli("apply", "-f", str(g.write(rollout_doc("r", port, "v2", strategy=canary(steps)))))
    await wait_for(g, "r", at_step(1))
    code, out, err = await g.acli(
        "apply", "-f", str(g.write(rollout_doc("r", port, "v3", strategy=canary(steps))))
    )
    assert code == 0, out + err
    seen_weights = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        st = await g.status("r")
        seen_weights.append(st["strategy"].get("weights") or {})
        if (
            st["currentRevision"] == 3
            and at_step(1)(st)
            and {i["revision"] for i in st["instances"]} == {1, 3}
        ):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail(f"v3 never became the only canary: {st}")
    assert all(len([w for w in ws.values() if w > 0]) <= 2 for ws in seen_weights), seen_weights
    await api(g, "POST", "/api/v1/rollouts/r/promote", {"full": True})
    await wait_for(g, "r", lambda st: st["phase"] == "Healthy" and st["currentRevision"] == 3)
    report = await load.stop()
    assert report.failed == 0, report.failures
    assert set(report.versions) <= {"v1", "v2", "v3"}
    code, out, _ = await g.acli("history", "r", "-o", "json")
    phases = {r["number"]: r["phase"] for r in json.loads(out)}
    assert phases[2] == "superseded"
    assert phases[3] == "complete"


async def test_repeated_canary_rollouts_with_aborts_fail_no_request(g: Gapless) -> None:
    """Several canary rollouts in a row, promoted or aborted and retried, fail no request."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    # The first pause is long enough that an abort sent once the weight is 20 lands before the
    # rollout completes, however slow the machine is.
    steps = [
        {"setWeight": 20},
        {"pause": {"duration": "2s"}},
        {"setWeight": 60},
        {"pause": {"duration": "0.3s"}},
    ]
    code, out, err = await g.acli(
        "up", "-f", str(g.write(rollout_doc("rep", port, "v0", replicas=2, strategy=canary(steps))))
    )
    assert code == 0, out + err
    load = Load(url, rps=250)
    for k in range(1, 4):  # promoted, aborted and retried, promoted
        code, out, err = await g.acli(
            "apply", "-f", str(g.write(rollout_doc("rep", port, f"v{k}", replicas=2, strategy=canary(steps))))
        )
        assert code == 0, out + err
        if k % 2 == 0:
            await wait_for(
                g,
                "rep",
                lambda st: (
                    st["currentRevision"] is not None and (st["strategy"].get("canaryWeight") or 0) >= 20
                ),
            )
            await api(g, "POST", "/api/v1/rollouts/rep/abort")
            await wait_for(g, "rep", lambda st: st["aborted"])
            await api(g, "POST", "/api/v1/rollouts/rep/retry")
        await wait_for(g, "rep", lambda st: st["phase"] == "Healthy", timeout=60)
    report = await load.stop()
    assert report.failed == 0, report.failures
    assert set(report.versions) == {f"v{k}" for k in range(4)}


async def test_history_of_aborted_rollouts_keeps_its_limit(g: Gapless) -> None:
    """Rollouts aborted again and again never complete; the history still keeps revisionHistoryLimit old ones.

    History was pruned only when a rollout completed, so a rollout whose every canary was aborted kept
    every revision, and each pass (which reads them all) slowed down as it grew.
    """
    port = free_port()
    steps = [{"setWeight": 50}, {"pause": {}}]

    def doc(version: str) -> dict[str, Any]:
        d = rollout_doc("h", port, version, replicas=1, strategy=canary(steps))
        d["spec"]["revisionHistoryLimit"] = 1
        return d

    code, out, err = await g.acli("up", "-f", str(g.write(doc("v0"))))
    assert code == 0, out + err
    for k in range(1, 5):
        code, out, err = await g.acli("apply", "-f", str(g.write(doc(f"v{k}"))))
        assert code == 0, out + err
        await wait_for(g, "h", lambda st: bool(st["strategy"].get("waitingForPromote")))
        code, out, err = await g.acli("abort", "h")
        assert code == 0, out + err
        await wait_for(g, "h", lambda st: st["aborted"])
    code, out, _ = await g.acli("history", "h", "-o", "json")
    numbers = {r["number"]: r["phase"] for r in json.loads(out)}
    # v0 stable (1), the aborted v4 in force (5), and one old revision (4): 2 and 3 are gone.
    assert sorted(numbers) == [1, 4, 5], numbers
    assert numbers[1] == "complete"
