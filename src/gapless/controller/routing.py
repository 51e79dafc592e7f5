"""Turning a plan's traffic decision into router configuration, and the pre-promotion checks.

The planner speaks in revisions and percentages; the router speaks in backends, weights, routes and
stickiness. This module is the translation, plus the blue-green checks that run against the preview
address (I/O, so they live here and not in the planner).
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from gapless.controller.traffic import RouterChoice, Routing
from gapless.platform.probes import run_exec
from gapless.router.config import Limits, Route, RouteMatch, Stickiness, StringMatch
from gapless.spec.models import RolloutSpec
from gapless.spec.strategy import PrePromotionCheck
from gapless.strategies.plan import Traffic

__all__ = ["limits_for", "router_for", "routing_for", "run_check"]


def router_for(spec: RolloutSpec) -> RouterChoice:
    """The data plane ``spec.router`` asks for."""
    tls = spec.router.tls
    stickiness = None
    routes: tuple[tuple[RouteMatch, ...], ...] = ()
    canary = spec.strategy.canary
    if canary is not None:
        s = canary.traffic_routing.stickiness
        if s is not None:
            stickiness = Stickiness(header=s.header, cookie=s.cookie)
        routes = tuple(
            tuple(_match(m.model_dump(by_alias=True)) for m in step.set_header_route.match)
            for step in canary.steps
            if step.set_header_route is not None and step.set_header_route.match
        )
    return RouterChoice(
        type=spec.router.type,
        binary=spec.router.binary,
        tls=None if tls is None else (tls.cert_file, tls.key_file),
        stickiness=stickiness,
        routes=routes,
        latency_sampling=spec.router.latency_sampling,
    )


def limits_for(spec: RolloutSpec) -> Limits:
    """The router's limits from ``spec.router``."""
    r = spec.router
    return Limits(
        header_timeout=r.header_timeout_seconds,
        idle_timeout=r.idle_timeout_seconds,
        max_connections=r.max_connections,
        max_header_bytes=r.max_header_bytes,
        backend_timeout=r.backend_timeout_seconds,
        eject_after=r.eject_after_failures,
        ejection=r.ejection_seconds,
    )


def routing_for(spec: RolloutSpec, traffic: Traffic | None) -> Routing:
    """The router's routing for a plan's traffic (``None``: an even split, as in a rolling update)."""
    if traffic is None or traffic.weights is None:
        return Routing()
    weights = dict(traffic.weights)
    routes: tuple[Route, ...] = ()
    if traffic.header_route and traffic.route_revision:
        matches = tuple(_match(m) for m in traffic.header_route)
        routes = (Route(match=matches, revision=traffic.route_revision),)
    stickiness = None
    canary = spec.strategy.canary
    if canary is not None and canary.traffic_routing.stickiness is not None:
        s = canary.traffic_routing.stickiness
        stickiness = Stickiness(header=s.header, cookie=s.cookie)
    return Routing(weights=weights, routes=routes, stickiness=stickiness)


def _match(m: dict[str, Any]) -> RouteMatch:
    """A spec match (``headerName``/``headerValue`` or ``cookieName``/``cookieValue``) for the router."""
    if m.get("headerName"):
        return RouteMatch(header=str(m["headerName"]), value=StringMatch(**dict(m["headerValue"])))
    return RouteMatch(cookie=str(m["cookieName"]), value=StringMatch(**dict(m["cookieValue"])))


async def run_check(check: PrePromotionCheck, preview_url: str) -> tuple[bool, str]:
    """Run one pre-promotion check against the preview address; (passed, message)."""
    if check.exec is not None:
        env = dict(os.environ) | {"PREVIEW_URL": preview_url, "GAPLESS_PREVIEW_URL": preview_url}
        result = await run_exec(list(check.exec.command), env=env, timeout=check.timeout_seconds)
        return result.success, f"{' '.join(check.exec.command)}: {result.message}"
    if check.http_get is None:
        return False, "a check needs exec or httpGet"
    url = preview_url.rstrip("/") + check.http_get.path
    try:
        async with httpx.AsyncClient(timeout=check.timeout_seconds) as client:
            r = await client.get(url)
    except httpx.HTTPError as e:
        return False, f"GET {url}: {type(e).__name__}: {e}"
    ok = r.status_code == check.http_get.expect_status
    return ok, f"GET {url}: {r.status_code} (expected {check.http_get.expect_status})"
