"""PromQL instant queries against a real Prometheus scraping a real metrics endpoint."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator

import httpx
import pytest

from gapless.providers.errors import ProviderError
from gapless.providers.prometheus import query
from tests.prom import PrometheusServer, require_prometheus, start_prometheus
from tests.providers.exporter import Exporter

METRICS = """\
# TYPE demo_orders_total counter
demo_orders_total{region="us"} 4
demo_orders_total{region="ap"} 5
demo_orders_total{region="eu"} 3
# TYPE demo_temperature_celsius gauge
demo_temperature_celsius 21.5
"""


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """One Prometheus for the module, already holding every series of the endpoint it scrapes."""
    require_prometheus()
    exporter = Exporter()
    exporter.body = METRICS
    exporter.start()
    try:
        with start_prometheus(tmp_path_factory.mktemp("prometheus"), [exporter.target]) as server:
            server.wait_for_series("demo_orders_total", count=3, timeout=15.0)
            server.wait_for_series("demo_temperature_celsius", timeout=5.0)
            yield server
    finally:
        exporter.close()


async def ask(server: PrometheusServer, promql: str, at: float | None = None) -> float | list[float]:
    async with httpx.AsyncClient() as client:
        return await query(client, server.address, promql, timeout=5.0, at=at)


async def test_scalar_is_a_float(prometheus: PrometheusServer) -> None:
    """A scalar result is returned as a float."""
    assert await ask(prometheus, "scalar(sum(demo_orders_total))") == 12.0
    assert await ask(prometheus, "2 * 21") == 42.0


async def test_one_sample_vector_is_a_float(prometheus: PrometheusServer) -> None:
    """An instant vector with one series is its value."""
    assert await ask(prometheus, "sum(demo_orders_total)") == 12.0
    assert await ask(prometheus, "demo_temperature_celsius") == 21.5


async def test_several_samples_are_a_list_ordered_by_labels(prometheus: PrometheusServer) -> None:
    """Several series come back as a list sorted by their labels (regions ap, eu, us)."""
    assert await ask(prometheus, "demo_orders_total") == [5.0, 3.0, 4.0]
    assert await ask(prometheus, "sum by (region) (demo_orders_total) > 3.5") == [5.0, 4.0]


async def test_empty_vector_is_an_empty_list(prometheus: PrometheusServer) -> None:
    """A query that matches nothing returns ``[]``, for the condition to judge."""
    assert await ask(prometheus, 'demo_orders_total{region="mars"}') == []


async def test_nan_and_infinities_are_floats(prometheus: PrometheusServer) -> None:
    """Prometheus' NaN, +Inf and -Inf strings become floats."""
    nan = await ask(prometheus, "0 / 0")
    assert isinstance(nan, float)
    assert math.isnan(nan)
    assert await ask(prometheus, "1 / 0") == math.inf
    assert await ask(prometheus, "-demo_temperature_celsius / 0") == -math.inf


async def test_query_at_a_given_time(prometheus: PrometheusServer) -> None:
    """``at`` is the evaluation time."""
    assert await ask(prometheus, "time()", at=1_700_000_000.5) == 1_700_000_000.5


async def test_bad_query_carries_prometheus_message(prometheus: PrometheusServer) -> None:
    """A query Prometheus refuses raises with its errorType and error text."""
    with pytest.raises(ProviderError, match=r"bad_data: .*parse error") as failed:
        await ask(prometheus, "sum(demo_orders_total")
    assert prometheus.address in str(failed.value)


@pytest.mark.parametrize(("promql", "kind"), [('"hello"', "string"), ("demo_orders_total[1m]", "matrix")])
async def test_results_without_a_number_are_refused(
    prometheus: PrometheusServer, promql: str, kind: str
) -> None:
    """Strings and range vectors are not measurements."""
    with pytest.raises(ProviderError, match=f"returned a {kind}"):
        await ask(prometheus, promql)


async def test_unreachable_prometheus() -> None:
    """A refused connection is a provider error naming the address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"http://127.0.0.1:{s.getsockname()[1]}"
    async with httpx.AsyncClient() as client:
        with pytest.raises(ProviderError, match="ConnectError") as failed:
            await query(client, address, "up", timeout=2.0)
    assert address in str(failed.value)


async def test_prometheus_that_does_not_answer_in_time(exporter: Exporter) -> None:
    """A server that never answers is a timeout error after ``timeout`` seconds."""
    exporter.hang = True
    async with httpx.AsyncClient() as client:
        with pytest.raises(ProviderError, match="Timeout"):
            await query(client, f"http://{exporter.target}", "up", timeout=0.3)


async def test_something_else_than_prometheus(exporter: Exporter) -> None:
    """An address that answers without Prometheus' JSON is an error showing the status."""
    async with httpx.AsyncClient() as client:
        with pytest.raises(ProviderError, match="HTTP 404, not JSON"):
            await query(client, f"http://{exporter.target}/", "up", timeout=2.0)
