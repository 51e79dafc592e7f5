"""The control plane's ``GET /metrics``: rollout statuses as Prometheus metrics, behind the token."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gapless.server.metrics import render_control_plane_metrics
from gapless.store.records import RolloutRecord
from gapless.store.sqlite import Store

Key = tuple[str, frozenset[tuple[str, str]]]


def _instance(id_: str, revision: int | None, *, ready: bool, restarts: int = 0) -> dict[str, Any]:
    return {
        "id": id_,
        "revision": revision,
        "hash": "h",
        "state": "running",
        "ready": ready,
        "restarts": restarts,
    }


CANARY = {
    "name": "shop",
    "phase": "Progressing",
    "replicas": 3,
    "updatedReplicas": 1,
    "readyReplicas": 3,
    "availableReplicas": 2,
    "strategy": {"type": "Canary", "stepIndex": 2, "weights": {"1": 80, "2": 20}},
    "instances": [
        _instance("shop-1-a", 1, ready=True),
        _instance("shop-1-b", 1, ready=True, restarts=4),
        _instance("shop-2-a", 2, ready=False, restarts=1),
    ],
}
ROLLING = {
    "name": "api",
    "phase": "Healthy",
    "replicas": 1,
    "updatedReplicas": 1,
    "readyReplicas": 1,
    "availableReplicas": 1,
    "strategy": {"type": "RollingUpdate", "weights": None},
    "instances": [_instance("api-3-a", 3, ready=True)],
}
UNRECONCILED = {"name": "new"}


def _parse(body: bytes) -> dict[Key, float]:
    """Every sample of an exposition, keyed by sample name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def _k(name: str, **labels: str) -> Key:
    return (name, frozenset(labels.items()))


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], {}),
        (
            [CANARY],
            {
                _k("gapless_rollout_info", rollout="shop", phase="Progressing", strategy="Canary"): 1,
                _k("gapless_rollout_replicas", rollout="shop", kind="desired"): 3,
                _k("gapless_rollout_replicas", rollout="shop", kind="updated"): 1,
                _k("gapless_rollout_replicas", rollout="shop", kind="ready"): 3,
                _k("gapless_rollout_replicas", rollout="shop", kind="available"): 2,
                _k("gapless_rollout_step", rollout="shop"): 2,
                _k("gapless_rollout_weight", rollout="shop", revision="1"): 80,
                _k("gapless_rollout_weight", rollout="shop", revision="2"): 20,
                _k("gapless_instance_ready", rollout="shop", revision="1", instance="shop-1-a"): 1,
                _k("gapless_instance_ready", rollout="shop", revision="1", instance="shop-1-b"): 1,
                _k("gapless_instance_ready", rollout="shop", revision="2", instance="shop-2-a"): 0,
                _k("gapless_instance_restarts_total", rollout="shop", revision="1", instance="shop-1-a"): 0,
                _k("gapless_instance_restarts_total", rollout="shop", revision="1", instance="shop-1-b"): 4,
                _k("gapless_instance_restarts_total", rollout="shop", revision="2", instance="shop-2-a"): 1,
            },
        ),
        (
            [ROLLING, UNRECONCILED],
            {
                _k("gapless_rollout_info", rollout="api", phase="Healthy", strategy="RollingUpdate"): 1,
                _k("gapless_rollout_replicas", rollout="api", kind="desired"): 1,
                _k("gapless_rollout_replicas", rollout="api", kind="updated"): 1,
                _k("gapless_rollout_replicas", rollout="api", kind="ready"): 1,
                _k("gapless_rollout_replicas", rollout="api", kind="available"): 1,
                _k("gapless_instance_ready", rollout="api", revision="3", instance="api-3-a"): 1,
                _k("gapless_instance_restarts_total", rollout="api", revision="3", instance="api-3-a"): 0,
                _k("gapless_rollout_info", rollout="new", phase="", strategy=""): 1,
            },
        ),
    ],
    ids=["none", "canary-mid-step", "rolling-and-unreconciled"],
)
def test_statuses_render_as_metrics(statuses: list[dict[str, Any]], expected: dict[Key, float]) -> None:
    """Each status yields exactly its info, replica, step, weight and instance samples, no more."""
    assert _parse(render_control_plane_metrics(statuses)) == expected


async def test_metrics_endpoint_needs_the_token_and_serves_stored_statuses(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    """Without the token /metrics is 401; with it, 200 text/plain built from the stored statuses."""
    http, store = api
    store.put_rollout(RolloutRecord(name="shop", spec={}, generation=1, created_at=0.0, updated_at=0.0))
    store.set_status("shop", {k: v for k, v in CANARY.items() if k != "name"})
    assert (await http.get("/metrics", headers={"Authorization": ""})).status_code == 401
    assert (await http.get("/metrics", headers={"Authorization": "Bearer nope"})).status_code == 401
    r = await http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert _parse(r.content) == _parse(render_control_plane_metrics([CANARY]))
