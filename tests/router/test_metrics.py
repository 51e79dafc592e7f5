"""The router's ``GET /metrics``: the ``/stats`` counters in Prometheus text format, behind the token."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from gapless.router.client import RouterClient, UnauthorizedError
from gapless.router.config import RouterConfig
from gapless.router.counters import RevisionCounters
from gapless.router.metrics import KEPT_BOUNDS, RouterMetrics
from gapless.router.stats import LATENCY_BOUNDS, RouterStats
from tests.router.backends import TestBackend
from tests.router.conftest import RouterHarness

MakeBackend = Callable[..., Awaitable[TestBackend]]


def _samples(text: str) -> dict[str, list[Sample]]:
    """Samples by sample name (``..._total``, ``..._bucket``) of a parsed exposition."""
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def _value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    matching = [s.value for s in samples[name] if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(matching) == 1, (name, labels, matching)
    return matching[0]


async def test_metrics_match_the_requests_sent_per_revision(
    harness: RouterHarness, backends: MakeBackend
) -> None:
    """Requests, responses, latency counts, bytes, in-flight, weights and config version per revision."""
    a1, b1 = await backends("a1"), await backends("b1")
    config = await harness.route([(a1, "a"), (b1, "b")], weights={"a": 3, "b": 1})
    sent: Counter[str] = Counter()
    for _ in range(20):
        r = await harness.http.get("/")
        assert r.status_code == 200
        sent[{"a1": "a", "b1": "b"}[r.headers["x-backend"]]] += 1
    assert sent["a"] > 0
    assert sent["b"] > 0

    m = _samples(await harness.admin_client.metrics())
    for rev in ("a", "b"):
        labels = {"rollout": "test", "revision": rev}
        assert _value(m, "gapless_router_requests_total", **labels) == sent[rev]
        assert _value(m, "gapless_router_responses_total", code_class="2xx", **labels) == sent[rev]
        assert _value(m, "gapless_router_responses_total", code_class="5xx", **labels) == 0
        assert _value(m, "gapless_router_connection_errors_total", **labels) == 0
        assert _value(m, "gapless_router_in_flight", **labels) == 0
        assert _value(m, "gapless_router_request_duration_seconds_count", **labels) == sent[rev]
        assert _value(m, "gapless_router_request_duration_seconds_bucket", le="+Inf", **labels) == sent[rev]
        assert _value(m, "gapless_router_request_duration_seconds_sum", **labels) > 0
        assert _value(m, "gapless_router_bytes_total", direction="out", **labels) > 0
        assert _value(m, "gapless_router_weight", **labels) == (3 if rev == "a" else 1)
    assert _value(m, "gapless_router_backend_in_flight", backend="a1", revision="a") == 0
    assert _value(m, "gapless_router_config_version", rollout="test") == config.version


async def test_metrics_need_the_token_and_drop_weights_for_an_even_split(
    harness: RouterHarness, backends: MakeBackend
) -> None:
    """Without the token /metrics is 401; with weights null no weight metric is exported."""
    a1 = await backends("a1")
    await harness.route([a1])
    async with httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(harness.admin.socket_path)), base_url="http://router"
    ) as raw:
        r = await raw.get("/metrics")
        assert r.status_code == 401
        r = await raw.get("/metrics", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        r = await raw.get("/metrics", headers={"Authorization": f"Bearer {harness.token}"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert (
            await raw.post("/metrics", headers={"Authorization": f"Bearer {harness.token}"})
        ).status_code == 405
    assert "gapless_router_weight" not in _samples(r.text)
    async with RouterClient(harness.admin.socket_path, "not-the-token") as wrong:
        with pytest.raises(UnauthorizedError):
            await wrong.metrics()


def test_coarse_buckets_are_exact_at_the_kept_bounds() -> None:
    """Each kept ``le`` bucket counts exactly the samples at or below its bound, like the full histogram."""
    rnd = random.Random(3)  # noqa: S311 - seeded so that the samples are the same on every run
    samples = [rnd.lognormvariate(-4.0, 2.0) for _ in range(5_000)] + [LATENCY_BOUNDS[8], 61.0]
    counters = RevisionCounters("a")
    for s in samples:
        counters.record(200, s)
    stats = RouterStats(name="shop", config_version=1, revisions={"a": counters.snapshot()})
    text = RouterMetrics(lambda: (stats, RouterConfig(version=1))).render().decode()
    buckets = {
        s.labels["le"]: s.value for s in _samples(text)["gapless_router_request_duration_seconds_bucket"]
    }
    assert len(buckets) == len(KEPT_BOUNDS) + 1
    for bound in KEPT_BOUNDS:
        le = next(k for k in buckets if k != "+Inf" and float(k) == bound)
        assert buckets[le] == sum(1 for s in samples if s <= bound), bound
    assert buckets["+Inf"] == len(samples)
