"""Fixtures of the router tests: real upstream servers and a router served on the test's event loop.

The tests run on uvloop, the loop the router process uses in production.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import uvloop

from gapless.router.admin import AdminServer
from gapless.router.client import RouterClient
from gapless.router.config import Backend, Limits, RouterConfig
from gapless.router.persist import token_digest
from gapless.router.proxy import Router
from tests.router.backends import TestBackend


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run the router tests on uvloop."""
    return {"uvloop": uvloop.new_event_loop}


class RouterHarness:
    """An in-process router with its admin API, plus an HTTP client for its public address."""

    def __init__(
        self, router: Router, admin: AdminServer, client: RouterClient, config_file: Path, token: str
    ) -> None:
        self.router = router
        self.token = token
        self.admin = admin
        self.admin_client = client
        self.config_file = config_file
        self.url = f"http://{router.listen}"
        self.http = httpx.AsyncClient(base_url=self.url, timeout=10.0)
        self.version = 0

    async def route(
        self,
        backends: list[TestBackend | tuple[TestBackend, str]],
        weights: dict[str, int] | None = None,
        limits: Limits | None = None,
    ) -> RouterConfig:
        """Push a config listing ``backends`` (``(backend, revision)`` pairs, revision "a" by default)."""
        listed = []
        for item in backends:
            b, rev = item if isinstance(item, tuple) else (item, "a")
            listed.append(Backend(id=b.id, port=b.port, revision=rev))
        return await self.push(listed, weights, limits)

    async def push(
        self, listed: list[Backend], weights: dict[str, int] | None = None, limits: Limits | None = None
    ) -> RouterConfig:
        """Push exactly these backends (and these limits) with the next version."""
        self.version += 1
        config = RouterConfig(
            version=self.version, backends=tuple(listed), weights=weights, limits=limits or Limits()
        )
        await self.admin_client.put_config(config)
        return config


@pytest.fixture
async def backends() -> AsyncIterator[Callable[..., Awaitable[TestBackend]]]:
    """A factory of started upstream servers, all stopped at the end of the test."""
    started: list[TestBackend] = []

    async def make(backend_id: str, **kwargs: float | None) -> TestBackend:
        b = await TestBackend(backend_id, **kwargs).start()
        started.append(b)
        return b

    yield make
    for b in started:
        await b.stop()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[RouterHarness]:
    """A started router on 127.0.0.1 with a free port and its admin API on a unix socket."""
    token = secrets.token_hex(16)
    router = Router("test")
    await router.start("127.0.0.1", 0)
    socket_path = tmp_path / "admin.sock"
    config_file = tmp_path / "router.json"
    admin = AdminServer(router, socket_path, token_digest(token), config_file)
    await admin.start()
    client = RouterClient(socket_path, token)
    h = RouterHarness(router, admin, client, config_file, token)
    try:
        yield h
    finally:
        await h.http.aclose()
        await client.aclose()
        await router.stop(grace=1.0)
        await admin.stop()
