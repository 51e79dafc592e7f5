"""The analysis API adds readings to every run: verdict and values with units per metric, old fields kept."""

from __future__ import annotations

import httpx

from gapless.store.records import AnalysisRunRecord
from gapless.store.sqlite import Store
from tests.server.test_api import doc

LATENCY = {
    "name": "latency",
    "provider": {"builtin": {}},
    "judge": {"compareToBaseline": {"maxErrorRateRatio": None, "maxLatencyIncreaseSeconds": 0.05}},
}


def _progress(name: str, phase: str, values: list[dict[str, object]]) -> dict[str, object]:
    return {
        "name": name,
        "phase": phase,
        "measured": len(values),
        "successful": len(values),
        "measurements": [
            {"at": 100.0 + i, "phase": "successful", "message": "ok", "value": v}
            for i, v in enumerate(values)
        ],
    }


async def test_each_run_has_readings_of_its_metrics(api: tuple[httpx.AsyncClient, Store]) -> None:
    """A run's metrics read as sentences with units and series; a metric whose spec is unreadable keeps its verdict."""
    client, store = api
    assert (await client.put("/api/v1/rollouts/shop", json=doc())).status_code == 200
    values = [
        {"canary_latency": 0.0021, "baseline_latency": 0.0064},
        {"canary_latency": 0.0025, "baseline_latency": 0.0060},
    ]
    spec = {"templates": ["watch"], "metrics": [LATENCY, {"name": "old", "provider": {"nothing": {}}}]}
    metrics = [_progress("latency", "running", values), _progress("old", "failed", [])]
    store.put_analysis_run(
        AnalysisRunRecord("r1", "shop", "abc", "background", "running", 5.0, spec, metrics)
    )
    item = (await client.get("/api/v1/rollouts/shop/analysis")).json()["items"][0]
    assert [m["name"] for m in item["metrics"]] == ["latency", "old"]  # the fields it had are kept
    latency, old = item["readings"]
    assert (latency["metric"], latency["verdict"], latency["lastVerdict"]) == ("latency", "running", "pass")
    (check,) = latency["checks"]
    assert check["text"] == "p99 2.5 ms vs 6.0 ms (limit +50 ms)"
    assert (check["unit"], check["valueText"], check["referenceText"]) == ("seconds", "2.5 ms", "6.0 ms")
    assert check["series"] == [[100.0, 0.0021], [101.0, 0.0025]]
    assert (old["metric"], old["verdict"], old["checks"]) == ("old", "fail", [])
