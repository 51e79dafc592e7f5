"""Automated analysis under real load: bad canaries are rolled back without a human, a healthy one is promoted.

Each test runs a stable revision of the example app with about 0.1% errors behind the real router under
steady load, then applies a canary that misbehaves in one way, and checks that the analysis verdict
aborts (all traffic back to stable) or promotes it. The blast radius, what the canary served before
the rollback took effect (all of its responses, and its 5xx), is read from the router's own per-revision
counters and printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gapless.core.files import router_socket
from gapless.router.client import RouterClient
from gapless.server.auth import read_token
from tests.e2e.harness import Gapless, Load, api, rollout_doc, wait_for
from tests.haproxy.binary import ROUTERS, on_router
from tests.ports import free_port
from tests.prom import require_prometheus, start_prometheus

pytestmark = pytest.mark.slow

STABLE_ARGS = ("--error-rate", "0.001", "--orders-per-request", "0.5")


def template(name: str, *metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {"metrics": list(metrics)},
    }


def canary(analysis_step: dict[str, Any], **extra: Any) -> dict[str, Any]:
    steps = [{"setWeight": 25}, {"analysis": analysis_step}, {"setWeight": 100}]
    # The aborted canary stays (without traffic) long enough for its router counters to be read.
    return {"canary": {"steps": steps, "scaleDownDelaySeconds": 1, "abortScaleDownDelaySeconds": 60} | extra}


def write_all(g: Gapless, filename: str, *docs: dict[str, Any]) -> Path:
    path = g.specs / filename
    path.write_text(yaml.safe_dump_all(docs))
    return path


async def canary_served(g: Gapless, rollout: str, revision: str) -> tuple[int, int]:
    """Responses and 5xx responses the router served for one revision (its own counters)."""
    state = g.state_dir.resolve()
    haproxy = state / "routers" / f"{rollout}.haproxy.sock"
    if haproxy.exists():
        return await _haproxy_served(haproxy, revision)
    async with RouterClient(router_socket(state, rollout), read_token(state)) as client:
        stats = await client.stats()
    rev = stats.revisions.get(revision)
    return (0, 0) if rev is None else (sum(rev.responses.values()), rev.responses.get("5xx", 0))


async def _haproxy_served(sock: Path, revision: str) -> tuple[int, int]:
    """HAProxy's counters of one revision's servers, summed over its backends (``show stat``)."""
    from gapless.haproxy.runtime import parse_stat, run_one

    text = await run_one(sock, "show stat")
    names = {line.split(",", 1)[0] for line in text.splitlines()[1:] if line}
    served = bad = 0
    for backend in names:
        for name, stat in parse_stat(text, backend).items():
            if name.startswith(revision + "."):
                served += sum(stat.responses.values())
                bad += stat.responses.get("5xx", 0)
    return served, bad


async def run_canary(
    g: Gapless,
    name: str,
    strategy: dict[str, Any],
    templates: list[dict[str, Any]],
    canary_args: tuple[str, ...],
    up_args: tuple[str, ...] = (),
    router: str = "builtin",
) -> tuple[dict[str, Any], float, Load]:
    """Stable up, load on, canary applied; returns the status once the canary's revision is decided."""
    port = free_port()
    first = on_router(
        router, rollout_doc(name, port, "v1", strategy=strategy, replicas=3, app_args=STABLE_ARGS)
    )
    code, out, err = await g.acli(
        "up", "-f", str(write_all(g, f"{name}-v1.yaml", *templates, first)), *up_args
    )
    assert code == 0, out + err
    load = Load(f"http://127.0.0.1:{port}/", rps=300)
    await asyncio.sleep(1.0)
    second = on_router(
        router, rollout_doc(name, port, "v2", strategy=strategy, replicas=3, app_args=canary_args)
    )
    started = time.monotonic()
    code, out, err = await g.acli("apply", "-f", str(write_all(g, f"{name}-v2.yaml", second)))
    assert code == 0, out + err
    st = await wait_for(
        g,
        name,
        lambda st: st["phase"] in ("Degraded", "Healthy", "Paused", "Failed") and st["currentRevision"] == 2,
        timeout=90,
    )
    return st, time.monotonic() - started, load


async def assert_rolled_back(g: Gapless, name: str, st: dict[str, Any], load: Load, what: str) -> None:
    assert st["phase"] == "Degraded", st
    assert st["strategy"]["aborted"], st["strategy"]
    assert "analysis" in st["strategy"]["abortReason"], st["strategy"]
    assert st["strategy"]["weights"] == {"1": 100}, st["strategy"]
    served, bad = await canary_served(g, name, st["currentHash"])
    async with httpx.AsyncClient() as client:  # after the rollback, only stable answers
        url = f"http://{st['router']['listen']}/"
        versions = {(await client.get(url)).headers["x-version"] for _ in range(100)}
    assert versions == {"v1"}
    report = await load.stop()
    runs = (await api(g, "GET", f"/api/v1/rollouts/{name}/analysis"))["items"]
    failed = [r for r in runs if r["phase"] in ("failed", "error")]
    assert failed, json.dumps(runs)[:2000]
    code, out, err = await g.acli("analysis", name)
    assert code == 0, err
    assert "failed" in out
    print(
        f"\n{what}: the canary served {served} responses ({bad} of them 5xx) before the rollback; load {report.status_codes}"
    )


@pytest.mark.parametrize("router", ROUTERS)
async def test_error_rate_regression_is_rolled_back_by_the_sequential_judge(g: Gapless, router: str) -> None:
    errors = template(
        "errors",
        {
            "name": "error-rate",
            "provider": {"builtin": {}},
            "interval": "1s",
            "count": 60,
            "judge": {"sequential": {"alpha": 0.05, "latency": False}},
        },
    )
    st, took, load = await run_canary(
        g,
        "seq",
        canary({"templates": [{"templateName": "errors"}]}),
        [errors],
        ("--error-rate", "0.05"),
        router=router,
    )
    await assert_rolled_back(g, "seq", st, load, f"{router}: 5% errors, sequential judge ({took:.1f} s)")


@pytest.mark.parametrize("router", ROUTERS)
async def test_latency_regression_is_rolled_back(g: Gapless, router: str) -> None:
    latency = template(
        "latency",
        {
            "name": "p99",
            "provider": {"builtin": {}},
            "interval": "1s",
            "count": 10,
            "failureLimit": 1,
            "inconclusiveLimit": 3,
            "judge": {"compareToBaseline": {"minRequests": 20, "maxLatencyIncreaseSeconds": "100ms"}},
        },
    )
    st, took, load = await run_canary(
        g,
        "lat",
        canary({"templates": [{"templateName": "latency"}]}),
        [latency],
        ("--slow-ms", "300"),
        router=router,
    )
    await assert_rolled_back(g, "lat", st, load, f"{router}: +300 ms, compareToBaseline ({took:.1f} s)")


async def test_business_ratio_drop_is_rolled_back(g: Gapless) -> None:
    orders = template(
        "orders",
        {
            "name": "orders-per-request",
            "provider": {"business": {"metrics": ["orders_completed_total"]}},
            "interval": "2s",
            "count": 8,
            "failureLimit": 1,
            "inconclusiveLimit": 3,
            "judge": {
                "compareToBaseline": {
                    "minRequests": 50,
                    "minCounterRatios": {"orders_completed_total": 0.8},
                }
            },
        },
    )
    st, took, load = await run_canary(
        g,
        "biz",
        canary({"templates": [{"templateName": "orders"}]}),
        [orders],
        ("--error-rate", "0.001", "--orders-per-request", "0.25"),
    )
    await assert_rolled_back(g, "biz", st, load, f"orders per request halved ({took:.1f} s)")


async def test_memory_leak_is_rolled_back(g: Gapless) -> None:
    memory = template(
        "memory",
        {
            "name": "rss-trend",
            "provider": {"resource": {}},
            "interval": "2s",
            "count": 6,
            "inconclusiveLimit": 6,
            "judge": {"memoryLeak": {"minSamples": 6, "minDurationSeconds": 6}},
        },
    )
    st, took, load = await run_canary(
        g,
        "leak",
        canary({"templates": [{"templateName": "memory"}]}),
        [memory],
        (*STABLE_ARGS, "--leak-kib-per-second", "4096"),
    )
    await assert_rolled_back(g, "leak", st, load, f"RSS +4 MiB/s ({took:.1f} s)")


async def test_healthy_canary_is_promoted_and_background_analysis_passes(g: Gapless) -> None:
    step = template(
        "step-check",
        {
            "name": "versus-stable",
            "provider": {"builtin": {}},
            "interval": "1s",
            "count": 4,
            "inconclusiveLimit": 2,
            # Error ratios over 1 s windows are noise at a 0.1% error rate: the sequential judge watches errors.
            "judge": {
                "compareToBaseline": {
                    "minRequests": 20,
                    "maxErrorRateRatio": None,
                    "maxLatencyIncreaseSeconds": "50ms",
                }
            },
        },
        {
            "name": "absolute",
            "provider": {"builtin": {}},
            "interval": "1s",
            "count": 4,
            "successCondition": "result.requests == 0 or result.error_rate < 0.05",
        },
    )
    watch = template(
        "watch",
        {
            "name": "error-rate",
            "provider": {"builtin": {}},
            "interval": "1s",
            "judge": {"sequential": {"latency": False}},
        },
        {
            "name": "tuning",
            "provider": {"builtin": {}},
            "interval": "1s",
            "dryRun": True,
            "successCondition": "result.p99 < 0.000001",
        },
    )
    strategy = canary(
        {"templates": [{"templateName": "step-check"}]},
        analysis={"templates": [{"templateName": "watch"}], "startingStep": 1},
    )
    st, took, load = await run_canary(g, "ok", strategy, [step, watch], STABLE_ARGS)
    report = await load.stop()
    runs = (await api(g, "GET", "/api/v1/rollouts/ok/analysis"))["items"]
    assert st["phase"] == "Healthy", (st["phase"], st["message"], json.dumps(runs)[:3000])
    assert report.failed <= report.sent * 0.01
    phases = {r["key"]: r["phase"] for r in runs}
    assert phases == {"step-1": "successful", "background": "successful"}, json.dumps(runs)[:3000]
    background = next(r for r in runs if r["key"] == "background")
    tuning = next(m for m in background["metrics"] if m["name"] == "tuning")
    assert tuning["dryRun"]
    assert tuning["failed"] >= 1, json.dumps(background)  # the dry-run condition failed and decided nothing
    print(f"\nhealthy canary promoted in {took:.1f} s")


async def test_error_rate_regression_is_rolled_back_by_a_promql_query(g: Gapless, tmp_path: Path) -> None:
    """The same rollback, decided by PromQL on a real Prometheus that scrapes gapless's metrics address."""
    require_prometheus()
    metrics = f"127.0.0.1:{free_port()}"
    (tmp_path / "prom").mkdir()
    prom = await asyncio.to_thread(start_prometheus, tmp_path / "prom", [metrics], scrape_interval="1s")
    try:
        selector = 'rollout="{{args.rollout}}",revision="{{args.canary}}"'
        all_responses = f"sum(rate(gapless_router_responses_total{{{selector}}}[4s]))"
        bad_responses = f'sum(rate(gapless_router_responses_total{{{selector},code_class="5xx"}}[4s]))'
        promql = f"({bad_responses} / {all_responses}) or vector(0)"
        errors = template(
            "prom-errors",
            {
                "name": "canary-5xx-share",
                "provider": {"prometheus": {"address": prom.address, "query": promql}},
                "initialDelay": "2s",
                "interval": "1s",
                "count": 20,
                "failureCondition": "result > 0.02",
            },
        )
        st, took, load = await run_canary(
            g,
            "prom",
            canary({"templates": [{"templateName": "prom-errors"}]}),
            [errors],
            ("--error-rate", "0.05"),
            up_args=("--metrics-listen", metrics),
        )
        await assert_rolled_back(g, "prom", st, load, f"5% errors, PromQL ({took:.1f} s)")
        runs = (await api(g, "GET", "/api/v1/rollouts/prom/analysis"))["items"]
        failed = next(r for r in runs if r["phase"] == "failed")
        last = failed["measurements"]["canary-5xx-share"][-1]
        assert last["phase"] == "failed"
        assert last["value"]["result"] > 0.02
    finally:
        await asyncio.to_thread(prom.stop)


async def test_blue_green_post_promotion_analysis_switches_back_to_blue(g: Gapless) -> None:
    """Green takes all traffic, its post-promotion analysis fails, and blue (kept warm) takes it back."""
    errors = template(
        "bg-errors",
        {
            "name": "error-rate",
            "provider": {"builtin": {}},
            "interval": "1s",
            "count": 30,
            "judge": {"threshold": {"minRequests": 50, "maxErrorRate": 0.02}},
            "failureLimit": 1,
            "inconclusiveLimit": 5,
        },
    )
    strategy = {
        "blueGreen": {
            "postPromotionAnalysis": {"templates": [{"templateName": "bg-errors"}]},
            "scaleDownDelaySeconds": 1,
            "abortScaleDownDelaySeconds": 1,
        }
    }
    st, took, load = await run_canary(g, "bg", strategy, [errors], ("--error-rate", "0.2"))
    report = await load.stop()
    assert st["phase"] == "Degraded", st
    assert st["strategy"]["abortReason"] == "post-promotion analysis failed"
    assert st["strategy"]["weights"] == {"1": 100}
    async with httpx.AsyncClient() as client:
        url = f"http://{st['router']['listen']}/"
        versions = {(await client.get(url)).headers["x-version"] for _ in range(50)}
    assert versions == {"v1"}
    assert report.status_codes.get(200, 0) > 0
    print(f"\ngreen with 20% errors switched back to blue in {took:.1f} s; load {report.status_codes}")


async def test_analysis_resumes_after_the_control_plane_is_killed(g: Gapless) -> None:
    """SIGKILL while an analysis runs: the new control plane resumes the same run and still rolls back."""
    errors = template(
        "slow-errors",
        {
            "name": "error-rate",
            "provider": {"builtin": {}},
            "interval": "1s",
            "count": 20,
            "failureLimit": 3,
            "inconclusiveLimit": 10,
            "judge": {"threshold": {"minRequests": 30, "maxErrorRate": 0.02}},
        },
    )
    strategy = canary({"templates": [{"templateName": "slow-errors"}]})
    port = free_port()
    first = rollout_doc("crash", port, "v1", strategy=strategy, replicas=3, app_args=STABLE_ARGS)
    code, out, err = await g.acli("up", "-f", str(write_all(g, "crash-v1.yaml", errors, first)))
    assert code == 0, out + err
    load = Load(f"http://127.0.0.1:{port}/", rps=300)
    second = rollout_doc("crash", port, "v2", strategy=strategy, replicas=3, app_args=("--error-rate", "0.1"))
    v2 = write_all(g, "crash-v2.yaml", second)
    code, out, err = await g.acli("apply", "-f", str(v2))
    assert code == 0, out + err

    def measured(st: dict[str, Any]) -> int:
        runs = st["strategy"].get("analysis") or [{"metrics": [{"measured": 0}]}]
        return int(runs[0]["metrics"][0]["measured"])

    await wait_for(g, "crash", lambda st: measured(st) >= 1, timeout=60)
    [cp] = g.processes("control-plane")
    os.kill(cp.pid, signal.SIGKILL)
    await asyncio.sleep(1.0)
    code, out, err = await g.acli("up", "-f", str(v2), "--detach")
    assert code == 0, out + err
    st = await wait_for(g, "crash", lambda st: st["phase"] == "Degraded", timeout=60)
    await load.stop()
    assert st["strategy"]["abortReason"] == "analysis of step 2 failed"
    runs = (await api(g, "GET", "/api/v1/rollouts/crash/analysis"))["items"]
    assert [(r["key"], r["phase"]) for r in runs] == [("step-1", "failed")]  # resumed, not started again
    assert runs[0]["metrics"][0]["failed"] == 4
