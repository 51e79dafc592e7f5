"""Business counters scraped over real HTTP from instances' Prometheus endpoints, and their increases."""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from gapless.providers.business import BusinessWindow, parse_counters, scrape
from gapless.providers.errors import ProviderError
from tests.providers.exporter import Exporter

TEXT = """\
# HELP orders_total Orders taken.
# TYPE orders_total counter
orders_total{region="eu",method="card"} 3
orders_total{region="us",method="card"} 4
orders_total{region="us",method="cash"} 0.5
# TYPE basket_size gauge
basket_size{region="eu"} 2
basket_size{region="us"} 5
# TYPE checkout_seconds histogram
checkout_seconds_bucket{le="1"} 6
checkout_seconds_bucket{le="+Inf"} 9
checkout_seconds_count 9
checkout_seconds_sum 7.5
signups_total 11
"""


def counters_text(**values: float) -> str:
    """Prometheus text of counters as the official client writes it (with ``_created`` samples)."""
    registry = CollectorRegistry()
    for name, value in values.items():
        Counter(name, name, ["region"], registry=registry).labels(region="eu").inc(value)
    return generate_latest(registry).decode()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("orders", 7.5),
        ("orders_total", 7.5),
        ("basket_size", 7.0),
        ("checkout_seconds_count", 9.0),
        ("signups", 11.0),
        ("signups_total", 11.0),
    ],
)
def test_parse_sums_each_metric_over_its_label_sets(name: str, expected: float) -> None:
    """A metric's samples are summed over labels; counters match with or without ``_total``."""
    assert parse_counters(TEXT, [name]) == {name: expected}


def test_parse_leaves_out_what_is_not_exposed() -> None:
    """Absent metrics are missing from the result; a gauge does not answer to a ``_total`` name."""
    assert parse_counters(TEXT, ["refunds", "basket_size_total", "checkout_seconds", "orders"]) == {
        "orders": 7.5
    }
    assert parse_counters("", ["orders"]) == {}


def test_parse_reads_the_official_client_output() -> None:
    """Text from prometheus_client (``_total`` and ``_created`` samples) gives the counter values."""
    text = counters_text(orders=12, payments=3)
    assert parse_counters(text, ["orders", "payments_total"]) == {"orders": 12.0, "payments_total": 3.0}


@pytest.mark.parametrize("garbage", ["<html><body>Oops</body></html>", "orders_total{region=eu} 3", "x abc"])
def test_parse_refuses_text_that_is_not_prometheus(garbage: str) -> None:
    """Text that does not parse is a provider error, never an empty result."""
    with pytest.raises(ProviderError, match="not Prometheus text"):
        parse_counters(garbage, ["orders"])


async def test_scrape_reads_counters_over_http(exporter: Exporter) -> None:
    """A scrape fetches the endpoint and sums the requested counters."""
    exporter.body = TEXT
    async with httpx.AsyncClient() as client:
        assert await scrape(client, exporter.url, ["orders", "signups", "refunds"], 2.0) == {
            "orders": 7.5,
            "signups": 11.0,
        }
    assert exporter.requests == 1


async def test_scrape_failures_name_the_url(exporter: Exporter) -> None:
    """A 500, garbage, a refused connection and a timeout are provider errors naming the URL."""
    async with httpx.AsyncClient() as client:
        exporter.status, exporter.body = 500, "database down"
        with pytest.raises(ProviderError, match=r"/metrics: HTTP 500: 'database down'") as failed:
            await scrape(client, exporter.url, ["orders"], 2.0)
        assert exporter.url in str(failed.value)

        exporter.status, exporter.body = 200, "<html>maintenance</html>"
        with pytest.raises(ProviderError, match="not Prometheus text") as failed:
            await scrape(client, exporter.url, ["orders"], 2.0)
        assert exporter.url in str(failed.value)

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = f"http://127.0.0.1:{s.getsockname()[1]}/metrics"
        with pytest.raises(ProviderError, match="ConnectError") as failed:
            await scrape(client, closed, ["orders"], 2.0)
        assert closed in str(failed.value)

        exporter.hang = True
        with pytest.raises(ProviderError, match="Timeout") as failed:
            await scrape(client, exporter.url, ["orders"], 0.3)
        assert exporter.url in str(failed.value)


def test_window_first_call_only_records() -> None:
    """The first advance returns zero for every revision: totals since start are not a window."""
    window = BusinessWindow()
    assert window.advance({"a-1": ("a", {"orders": 100.0}), "b-1": ("b", {"orders": 5.0})}) == {
        "a": {"orders": 0.0},
        "b": {"orders": 0.0},
    }
    assert window.advance({"a-1": ("a", {"orders": 130.0}), "b-1": ("b", {"orders": 5.0})}) == {
        "a": {"orders": 30.0},
        "b": {"orders": 0.0},
    }


def test_window_handles_new_restarted_and_gone_instances() -> None:
    """New instances count from zero, a restart counts its new value, gone instances are forgotten."""
    window = BusinessWindow()
    window.advance({"s-1": ("stable", {"orders": 50.0}), "s-2": ("stable", {"orders": 40.0})})

    # A canary instance appears with 4 orders; s-2 restarted and has counted 3 since.
    step = window.advance(
        {
            "s-1": ("stable", {"orders": 60.0}),
            "s-2": ("stable", {"orders": 3.0}),
            "c-1": ("canary", {"orders": 4.0, "refunds": 1.0}),
        }
    )
    assert step == {"stable": {"orders": 13.0}, "canary": {"orders": 4.0, "refunds": 1.0}}

    # s-1 is gone; a counter that appears late in an existing instance started at zero.
    step = window.advance(
        {
            "s-2": ("stable", {"orders": 5.0, "refunds": 2.0}),
            "c-1": ("canary", {"orders": 9.0, "refunds": 1.0}),
        }
    )
    assert step == {"stable": {"orders": 2.0, "refunds": 2.0}, "canary": {"orders": 5.0, "refunds": 0.0}}

    # s-1 comes back under the same id: it was forgotten, so it is new and counts from zero.
    step = window.advance({"s-1": ("stable", {"orders": 1.0}), "s-2": ("stable", {"orders": 5.0})})
    assert step == {"stable": {"orders": 1.0}}


async def test_window_over_real_scrapes(exporter: Exporter) -> None:
    """Scraped counters of a restarting instance turn into the orders it actually took."""
    window = BusinessWindow()
    increases = []
    async with httpx.AsyncClient() as client:
        for orders in (10, 25, 3, 8):  # the instance restarts between the 2nd and 3rd scrape
            exporter.body = counters_text(orders=orders)
            values = await scrape(client, exporter.url, ["orders"], 2.0)
            increases.append(window.advance({"web-1": ("r2", values)})["r2"]["orders"])
    assert increases == [0.0, 15.0, 3.0, 5.0]


def test_gauge_and_counter_from_the_client_library() -> None:
    """A gauge is read at its value, summed over labels."""
    registry = CollectorRegistry()
    queue = Gauge("queue_depth", "depth", ["shard"], registry=registry)
    queue.labels(shard="1").set(3)
    queue.labels(shard="2").set(4)
    assert parse_counters(generate_latest(registry).decode(), ["queue_depth"]) == {"queue_depth": 7.0}
