"""The router's state on its event loop: the routing table, backend pools, counters and listener.

A config push builds a new ``Table`` and swaps one reference; requests already routed hold their
``BackendPool`` and finish there. Pools and revision counters are carried over by backend id and
revision name, so counters survive config pushes. A backend that leaves the config is drained and
kept visible in ``stats()`` until its last in-flight request ends.

``Router`` starts inert; ``start()`` opens the listener and a periodic housekeeping task (idle connection expiry, pruning of drained backends), and
``stop()`` stops accepting, lets in-flight requests finish within a grace period, then closes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from time import monotonic
from typing import Any

from gapless.router.balancer import Table
from gapless.router.config import RouterConfig
from gapless.router.counters import RevisionCounters
from gapless.router.downstream import DownstreamProtocol
from gapless.router.pool import IDLE_TIMEOUT, BackendPool
from gapless.router.stats import RouterStats

__all__ = ["Router"]

log = logging.getLogger(__name__)

_HOUSEKEEPING_PERIOD = IDLE_TIMEOUT / 2


class Router:
    """The data plane of one rollout."""

    def __init__(self, name: str, config: RouterConfig | None = None) -> None:
        self.name = name
        self.closing = False
        self.connections: set[DownstreamProtocol] = set()
        self.pools: dict[str, BackendPool] = {}
        self.draining: dict[str, BackendPool] = {}
        self.revisions: dict[str, RevisionCounters] = {}
        self.table = Table(RouterConfig(version=0), {})
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self.listen = ""
        if config is not None:
            self.apply(config)

    @property
    def config(self) -> RouterConfig:
        return self.table.config

    def apply(self, config: RouterConfig) -> None:
        """Route by ``config`` from now on; backends no longer listed start draining."""
        pools: dict[str, BackendPool] = {}
        for backend in config.backends:
            old = self.pools.get(backend.id)
            if old is not None and old.backend == backend:
                pools[backend.id] = old
                continue
            rev = self.revisions.get(backend.revision)
            if rev is None:
                rev = self.revisions[backend.revision] = RevisionCounters(backend.revision)
            pools[backend.id] = BackendPool(backend, rev)
            self.draining.pop(backend.id, None)
        for backend_id, old in self.pools.items():
            if pools.get(backend_id) is not old:
                old.drain()
                if old.in_flight > 0 and backend_id not in pools:
                    self.draining[backend_id] = old
        self.pools = pools
        self.table = Table(config, pools)
        self._prune()

    def _prune(self) -> None:
        for backend_id in [k for k, p in self.draining.items() if p.in_flight <= 0]:
            del self.draining[backend_id]
        keep = {p.rev.name for p in self.pools.values()} | {p.rev.name for p in self.draining.values()}
        keep.update(self.config.weights or ())
        for name in [n for n, r in self.revisions.items() if n not in keep and r.in_flight <= 0]:
            del self.revisions[name]

    def stats(self) -> RouterStats:
        """A snapshot of every counter; drained backends and revisions are dropped once idle."""
        self._prune()
        backends = {k: p.snapshot() for k, p in self.draining.items()}
        backends.update((k, p.snapshot()) for k, p in self.pools.items())
        return RouterStats(
            name=self.name,
            config_version=self.config.version,
            revisions={n: r.snapshot() for n, r in self.revisions.items()},
            backends=backends,
        )

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a short background step (an upstream connect) owned by the router."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("router task failed", exc_info=task.exception())

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0 picks a free one; see ``listen``)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: DownstreamProtocol(self), host, port, backlog=2048, reuse_address=True
        )
        sock_host, sock_port = self._server.sockets[0].getsockname()[:2]
        self.listen = f"[{sock_host}]:{sock_port}" if ":" in sock_host else f"{sock_host}:{sock_port}"
        self._housekeeping = loop.create_task(self._housekeep())

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(_HOUSEKEEPING_PERIOD)
            for pool in self.pools.values():
                pool.sweep()
            self._prune()

    def busy(self) -> int:
        """Client connections with a request in flight or an open tunnel."""
        return sum(1 for c in self.connections if c.current is not None or c.tunnel is not None)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight requests end within ``grace`` seconds, then close everything."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.current is None and conn.tunnel is None:
                conn.closing = True
                conn.transport.close()
        deadline = monotonic() + grace
        # Polling: the busy count changes in many places of the hot path, which should not signal events.
        while self.busy() and monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.transport.abort()
        for pool in [*self.pools.values(), *self.draining.values()]:
            pool.drain()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
