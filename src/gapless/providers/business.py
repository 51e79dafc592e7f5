"""Business metrics (orders, sign-ups, payments) scraped from each instance's Prometheus endpoint.

A deployment can be healthy by every HTTP measure and still lose orders. The instances already expose
counters in Prometheus' text format, so the provider scrapes them directly, instance by instance,
without needing a Prometheus server; :class:`BusinessWindow` turns the scraped counters into per-revision
increases over each analysis interval. Counters are summed over their label sets: the analysis asks
"how many orders did the canary take", not "how many in region eu".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gapless.providers.errors import ProviderError

__all__ = ["BusinessWindow", "parse_counters", "scrape"]

_LOOSE_TYPES = frozenset({"counter", "unknown", "untyped"})
"""Families whose samples match a requested name with or without ``_total``: counters, and metrics
exposed without a ``# TYPE`` line, which are often counters written by hand."""


def parse_counters(text: str, names: Collection[str]) -> dict[str, float]:
    """The value of each named metric in Prometheus text, summed over all its label sets.

    A counter matches with or without its ``_total`` suffix (``orders`` and ``orders_total`` are the
    same counter); other metrics match by their exact sample name (``latency_count``). A name that is
    not exposed is missing from the result. Raises ``ProviderError`` for text that does not parse.
    """
    wanted = {
        name: {name, name.removesuffix("_total"), name.removesuffix("_total") + "_total"} for name in names
    }
    totals: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            loose = family.type in _LOOSE_TYPES
            for sample in family.samples:
                for name, aliases in wanted.items():
                    if sample.name == name or (loose and sample.name in aliases):
                        totals[name] = totals.get(name, 0.0) + float(sample.value)
    except ValueError as exc:
        raise ProviderError(f"not Prometheus text format: {exc}") from exc
    return totals


async def scrape(
    client: httpx.AsyncClient, url: str, names: Collection[str], timeout: float
) -> dict[str, float]:
    """GET ``url`` and parse the named counters; ``ProviderError`` naming the URL when that fails."""
    try:
        response = await client.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ProviderError(f"scraping {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise ProviderError(f"scraping {url}: HTTP {response.status_code}: {response.text[:200]!r}")
    try:
        return parse_counters(response.text, names)
    except ProviderError as exc:
        raise ProviderError(f"scraping {url}: {exc}") from exc


class BusinessWindow:
    """Per-revision counter increases between consecutive scrapes of every instance.

    Stateful on purpose, one per analysis metric: counters only make sense as differences, and the
    previous values are what the next difference needs. Increases are robust to instances that come
    and go: a new instance counts from zero (its counters started at 0 when it started), a counter
    that went down counts its new value (the process restarted and counted that much since), and an
    instance that is gone is forgotten.
    """

    def __init__(self) -> None:
        self._previous: dict[str, dict[str, float]] | None = None

    def advance(self, values: Mapping[str, tuple[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
        """Record ``instance id -> (revision, counters)``; return per revision the increases since last time.

        The first call only records, so every revision it sees gets zero increases: counters hold
        everything since the instance started, not what happened in this window.
        """
        first = self._previous is None
        previous = self._previous or {}
        increases: dict[str, dict[str, float]] = {}
        for instance_id, (revision, counters) in values.items():
            before = previous.get(instance_id, {})
            totals = increases.setdefault(revision, {})
            for name, value in counters.items():
                if first:
                    delta = 0.0
                elif name not in before or value < before[name]:
                    delta = value
                else:
                    delta = value - before[name]
                totals[name] = totals.get(name, 0.0) + delta
        self._previous = {instance_id: dict(counters) for instance_id, (_, counters) in values.items()}
        return increases
