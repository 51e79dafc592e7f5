"""A real Prometheus scrapes ``--metrics-listen``: per-revision router counters of a paused canary grow."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Gapless, Load, api, rollout_doc
from tests.ports import free_port
from tests.prom import require_prometheus, start_prometheus

pytestmark = pytest.mark.slow

CANARY = {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}], "scaleDownDelaySeconds": 1}}


async def _query(http: httpx.AsyncClient, promql: str) -> dict[str, float]:
    """An instant query's result as ``{revision label: value}``."""
    r = await http.get("/api/v1/query", params={"query": promql})
    r.raise_for_status()
    return {s["metric"].get("revision", ""): float(s["value"][1]) for s in r.json()["data"]["result"]}


async def _wait(http: httpx.AsyncClient, promql: str, holds: Any, deadline: float) -> dict[str, float]:
    """Poll ``promql`` until ``holds(result)``; fail with the last result at ``deadline``."""
    while True:
        result = await _query(http, promql)
        if holds(result):
            return result
        assert time.monotonic() < deadline, f"{promql}: {result}"
        await asyncio.sleep(0.2)


async def test_prometheus_sees_per_revision_counters_grow(g: Gapless, tmp_path: Path) -> None:
    """Under load, Prometheus scrapes both revisions' 2xx counters, increasing, plus weights and instance memory."""
    require_prometheus()
    port, metrics = free_port(), f"127.0.0.1:{free_port()}"
    spec = rollout_doc("shop", port, "v1", replicas=2, strategy=CANARY)
    code, _, err = await g.acli("up", "-f", str(g.write(spec)), "--metrics-listen", metrics)
    assert code == 0, err
    code, _, err = await g.acli(
        "apply", "-f", str(g.write(rollout_doc("shop", port, "v2", replicas=2, strategy=CANARY)))
    )
    assert code == 0, err
    deadline = time.monotonic() + 30
    while not (status := (await api(g, "GET", "/api/v1/rollouts/shop"))["status"])["strategy"].get(
        "waitingForPromote"
    ):
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)
    hashes = {r["hash"] for r in status["revisions"]}
    assert len(hashes) == 2

    load = Load(f"http://127.0.0.1:{port}/", rps=50)
    (tmp_path / "prom").mkdir()
    prom = await asyncio.to_thread(start_prometheus, tmp_path / "prom", [metrics], scrape_interval="1s")
    try:
        async with httpx.AsyncClient(base_url=prom.address, timeout=5) as http:
            deadline = time.monotonic() + 15
            ok = 'gapless_router_responses_total{rollout="shop",code_class="2xx"}'
            first = await _wait(
                http, ok, lambda r: set(r) == hashes and all(v > 0 for v in r.values()), deadline
            )
            await _wait(http, ok, lambda r: all(r[h] > first[h] for h in hashes), deadline)
            assert await _query(http, 'up{job="test"}') == {"": 1.0}
            assert await _query(http, 'gapless_router_weight{rollout="shop"}') == dict.fromkeys(hashes, 50.0)
            assert await _query(http, 'gapless_scrape_errors{rollout="shop",source="router"}') == {"": 0.0}
            rss = await _query(http, 'gapless_instance_rss_bytes{rollout="shop"}')
            assert set(rss) == {"1", "2"}
            assert all(v > 1_000_000 for v in rss.values())
    finally:
        await asyncio.to_thread(prom.stop)
        report = await load.stop()
    assert report.failed == 0, report.failures
