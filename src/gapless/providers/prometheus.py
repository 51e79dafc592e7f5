"""Instant PromQL queries against a Prometheus server, for analyses written as ``query`` + condition.

The answer is reduced to plain numbers before anything judges it: a scalar or a one-series vector is
one float, several series are a list (ordered by their labels, so the same query gives the same list),
and an empty vector is an empty list, which a condition can test (``len(result) == 0``) instead of the
provider guessing what "no data" means. Ranges and strings have no numeric answer and are refused.
"""

from __future__ import annotations

from typing import Any

import httpx

from gapless.providers.errors import ProviderError

__all__ = ["query"]


async def query(
    client: httpx.AsyncClient, address: str, promql: str, *, timeout: float, at: float | None = None
) -> float | list[float]:
    """Evaluate ``promql`` at ``at`` (epoch seconds; Prometheus' now when ``None``).

    Raises ``ProviderError`` when Prometheus cannot be reached or answers in time, refuses the query
    (with its ``errorType`` and ``error``), or returns a range vector or a string.
    """
    url = f"{address.rstrip('/')}/api/v1/query"
    params: dict[str, str] = {"query": promql, "timeout": f"{timeout:g}"}
    if at is not None:
        params["time"] = f"{at:.3f}"
    try:
        response = await client.get(url, params=params, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ProviderError(f"Prometheus at {url}: {type(exc).__name__}: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ProviderError(
            f"Prometheus at {url} answered HTTP {response.status_code}, not JSON: {response.text[:200]!r}"
        )
    if body.get("status") != "success":
        raise ProviderError(
            f"Prometheus at {url} refused {promql!r} (HTTP {response.status_code}): "
            f"{body.get('errorType', 'error')}: {body.get('error', response.text[:200])}"
        )
    try:
        return _result(body["data"])
    except ProviderError as exc:
        raise ProviderError(f"Prometheus at {url}: {promql!r}: {exc}") from exc
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ProviderError(f"Prometheus at {url}: unexpected answer to {promql!r}: {exc!r}") from exc


def _result(data: dict[str, Any]) -> float | list[float]:
    kind = data["resultType"]
    result = data["result"]
    if kind == "scalar":
        return _number(result[1])
    if kind == "vector":
        series = sorted(result, key=lambda s: sorted(s["metric"].items()))
        values = [_number(s["value"][1]) for s in series]
        return values[0] if len(values) == 1 else values
    raise ProviderError(f"the query returned a {kind}, not a number; use an instant vector or a scalar")


def _number(text: str) -> float:
    """Prometheus writes sample values as strings; ``NaN``, ``+Inf`` and ``-Inf`` parse as floats."""
    if not isinstance(text, str):
        raise TypeError(f"a sample value is a string, got {text!r}")
    return float(text)
