"""The control plane's ``GET /metrics``: one exposition of statuses, routers and instances.

Served behind the token on the API socket and, with ``--metrics-listen``, without one on a TCP address.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gapless.platform.base import ResourceUsage
from gapless.router.config import RouterConfig
from gapless.router.stats import LATENCY_BOUNDS, RESPONSE_CLASSES, BackendStats, RevisionStats, RouterStats
from gapless.server.auth import read_token
from gapless.server.metrics import InstanceReading, Scrape, render_control_plane_metrics, render_metrics
from gapless.server.process import API_SOCKET, parse_metrics_listen
from gapless.store.records import RolloutRecord
from gapless.store.sqlite import Store
from tests.e2e.harness import Gapless, api, rollout_doc
from tests.ports import free_port

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
HAPROXY = {
    "name": "edge",
    "router": {
        "running": True,
        "requestLog": {
            "sampling": 10,
            "linesRead": 981,
            "linesDropped": 19,
            "droppedShare": 0.019,
            "malformed": 0,
            "unrouted": 0,
        },
    },
}


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
        (
            [HAPROXY],
            {
                _k("gapless_rollout_info", rollout="edge", phase="", strategy=""): 1,
                _k("gapless_router_request_log_sampling", rollout="edge"): 10,
                _k("gapless_router_request_log_lines_total", rollout="edge", outcome="read"): 981,
                _k("gapless_router_request_log_lines_total", rollout="edge", outcome="dropped"): 19,
            },
        ),
    ],
    ids=["none", "canary-mid-step", "rolling-and-unreconciled", "haproxy-request-log"],
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


def _router(name: str, revision: str, requests: int) -> tuple[RouterStats, RouterConfig]:
    """A router snapshot: ``requests`` 2xx answers of one revision, each between 10 and 20 ms."""
    latency = [0] * (len(LATENCY_BOUNDS) + 1)
    latency[next(i for i, b in enumerate(LATENCY_BOUNDS) if b > 0.01)] = requests
    rev = RevisionStats(
        requests=requests,
        responses=dict.fromkeys(RESPONSE_CLASSES, 0) | {"2xx": requests},
        latency_counts=latency,
        latency_sum=0.015 * requests,
        latency_count=requests,
    )
    stats = RouterStats(
        name=name,
        config_version=3,
        revisions={revision: rev},
        backends={f"{name}-a": BackendStats(revision=revision, requests=requests)},
    )
    return stats, RouterConfig(version=3, weights={revision: 100})


def test_one_exposition_merges_routers_instances_and_errors() -> None:
    """Two routers, an instance and a silent router give one family per name, every sample kept."""
    usage = ResourceUsage(
        cpu_percent=3.0, rss_bytes=50_000_000, open_files=9, num_processes=2, cpu_seconds=1.5
    )
    scrape = Scrape(
        statuses=[CANARY, ROLLING],
        routers=[_router("shop", "h2", 5), _router("api", "h3", 7)],
        instances=[InstanceReading("shop", "1", "shop-1-a", usage)],
        errors={("shop", "router"): 0, ("api", "router"): 0, ("gone", "router"): 1},
    )
    body = render_metrics(scrape)
    names = [f.name for f in text_string_to_metric_families(body.decode())]
    assert len(names) == len(set(names)), names
    types = [line.split()[2] for line in body.decode().splitlines() if line.startswith("# TYPE")]
    assert len(types) == len(set(types))
    samples = _parse(body)
    assert samples[_k("gapless_router_requests_total", rollout="shop", revision="h2")] == 5
    assert samples[_k("gapless_router_requests_total", rollout="api", revision="h3")] == 7
    assert samples[_k("gapless_router_responses_total", rollout="api", revision="h3", code_class="2xx")] == 7
    assert samples[_k("gapless_router_request_duration_seconds_count", rollout="shop", revision="h2")] == 5
    assert samples[_k("gapless_router_weight", rollout="api", revision="h3")] == 100
    shop_1_a = {"rollout": "shop", "revision": "1", "instance": "shop-1-a"}
    assert samples[_k("gapless_instance_rss_bytes", **shop_1_a)] == 50_000_000
    assert samples[_k("gapless_instance_cpu_seconds_total", **shop_1_a)] == 1.5
    assert samples[_k("gapless_instance_open_files", **shop_1_a)] == 9
    assert samples[_k("gapless_instance_processes", **shop_1_a)] == 2
    assert samples[_k("gapless_scrape_errors", rollout="gone", source="router")] == 1
    assert samples[_k("gapless_scrape_errors", rollout="shop", source="router")] == 0
    assert samples[_k("gapless_instance_ready", rollout="api", revision="3", instance="api-3-a")] == 1


@dataclass(frozen=True)
class Live:
    """A control plane started by ``gapless up --metrics-listen`` with two instances of the example app."""

    g: Gapless
    port: int
    metrics: str
    up_stderr: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One live rollout shared by the tests of this module; everything is stopped afterwards."""
    g = Gapless(tmp_path_factory.mktemp("metrics") / "state")
    port, metrics = free_port(), f"127.0.0.1:{free_port()}"
    spec = g.write(rollout_doc("shop", port, "v1", replicas=2))
    try:
        r = g.cli("up", "-f", str(spec), "--metrics-listen", metrics, timeout=60)
        assert r.returncode == 0, r.stderr
        yield Live(g, port, metrics, r.stderr)
    finally:
        g.down()
        for p in g.processes():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pgid, signal.SIGKILL)


async def test_live_scrape_has_router_counters_and_instance_gauges(live: Live) -> None:
    """Without a token the metrics address serves per-revision router counters and per-instance usage."""
    assert f"metrics on http://{live.metrics}/metrics" in live.up_stderr
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(20):
            assert (await http.get(f"http://127.0.0.1:{live.port}/")).status_code == 200
        r = await http.get(f"http://{live.metrics}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    names = [f.name for f in text_string_to_metric_families(r.text)]
    assert len(names) == len(set(names)), names
    samples = _parse(r.content)
    status = (await api(live.g, "GET", "/api/v1/rollouts/shop"))["status"]
    (revision,) = status["revisions"]
    by_hash = {"rollout": "shop", "revision": revision["hash"]}
    assert (
        samples[
            _k(
                "gapless_revision_info",
                rollout="shop",
                revision="1",
                hash=revision["hash"],
                phase=revision["phase"],
            )
        ]
        == 1
    )
    assert samples[_k("gapless_router_requests_total", **by_hash)] >= 20
    assert samples[_k("gapless_router_responses_total", **by_hash, code_class="2xx")] >= 20
    assert samples[_k("gapless_router_request_duration_seconds_count", **by_hash)] >= 20
    assert samples[_k("gapless_scrape_errors", rollout="shop", source="router")] == 0
    instances = {i["id"] for i in status["instances"]}
    assert len(instances) == 2
    for instance in instances:
        labels = {"rollout": "shop", "revision": "1", "instance": instance}
        assert samples[_k("gapless_instance_rss_bytes", **labels)] > 1_000_000
        assert samples[_k("gapless_instance_cpu_seconds_total", **labels)] > 0
        assert samples[_k("gapless_instance_open_files", **labels)] >= 3
        assert samples[_k("gapless_instance_processes", **labels)] >= 1


async def test_metrics_address_serves_nothing_else(live: Live) -> None:
    """Only /metrics and /healthz answer on the metrics address; the API's paths are 404 there."""
    async with httpx.AsyncClient(base_url=f"http://{live.metrics}", timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/api/v1/rollouts")).status_code == 404
        assert (await http.get("/api/v1/rollouts/shop")).status_code == 404
        assert (await http.post("/api/v1/shutdown")).status_code == 404
        assert (await http.delete("/api/v1/rollouts/shop")).status_code == 404
        assert (await http.get("/nope")).status_code == 404
        tcp = _parse((await http.get("/metrics")).content)
    token = read_token(live.g.state_dir)
    async with httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(live.g.state_dir / API_SOCKET)), base_url="http://cp"
    ) as api:
        assert (await api.get("/metrics")).status_code == 401
        r = await api.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert set(_parse(r.content)) == set(tcp)


async def test_a_silent_router_is_counted_not_fatal(live: Live) -> None:
    """A router that does not answer is left out and counted in gapless_scrape_errors; the scrape succeeds."""
    (router,) = [p for p in live.g.processes("router") if p.rollout == "shop"]
    os.killpg(router.pgid, signal.SIGSTOP)  # the supervisor and its worker
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.get(f"http://{live.metrics}/metrics")
    finally:
        os.killpg(router.pgid, signal.SIGCONT)
    assert r.status_code == 200
    samples = _parse(r.content)
    assert samples[_k("gapless_scrape_errors", rollout="shop", source="router")] == 1
    assert not any(name.startswith("gapless_router_") for name, _ in samples)
    assert samples[_k("gapless_rollout_info", rollout="shop", phase="Healthy", strategy="RollingUpdate")] == 1


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("localhost:1", ("localhost", 1)),
        ("[::1]:65535", ("::1", 65535)),
        ("nope", None),
        ("127.0.0.1", None),
        (":9100", None),
        ("127.0.0.1:0", None),
        ("127.0.0.1:70000", None),
        ("127.0.0.1:http", None),
    ],
)
def test_metrics_address_parsing(address: str, expected: tuple[str, int] | None) -> None:
    """HOST:PORT with a host and a port of 1-65535 is accepted; anything else is a ValueError naming the option."""
    if expected is None:
        with pytest.raises(ValueError, match="--metrics-listen"):
            parse_metrics_listen(address)
    else:
        assert parse_metrics_listen(address) == expected


def test_a_malformed_metrics_address_exits_2_before_anything_starts(state_dir: Path) -> None:
    """`up` and the hidden `control-plane` refuse a bad HOST:PORT with exit 2 and start nothing."""
    g = Gapless(state_dir)
    spec = g.write(rollout_doc("shop", free_port(), "v1", replicas=1))
    for args in (
        ["up", "-f", str(spec), "--metrics-listen", "127.0.0.1:70000"],
        ["control-plane", "--metrics-listen", "nope"],
    ):
        r = g.cli(*args, timeout=30)
        assert r.returncode == 2, r.stderr
        assert "--metrics-listen" in r.stderr
    assert not (state_dir / "state.db").exists()
    assert g.processes() == []


def test_a_metrics_address_in_use_fails_up_naming_it(state_dir: Path) -> None:
    """`up` fails (exit 1) when the metrics port is taken, names the address, warns it is public, leaves nothing."""
    g = Gapless(state_dir)
    spec = g.write(rollout_doc("shop", free_port(), "v1", replicas=1))
    with socket.create_server(("0.0.0.0", 0)) as taken:
        address = f"0.0.0.0:{taken.getsockname()[1]}"
        r = g.cli("up", "-f", str(spec), "--metrics-listen", address, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "warning" in r.stderr
    assert f"cannot serve metrics on {address}" in r.stderr
    assert g.processes() == []
    assert not (state_dir / "state.db").exists()
