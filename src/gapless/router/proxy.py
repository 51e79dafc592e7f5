"""The router's state on its event loop: the routing table, backend pools, counters and listener.

A config push builds a new ``Table`` and swaps one reference; requests already routed hold their
``BackendPool`` and finish there. Pools and revision counters are carried over by backend id and
revision name, so counters survive config pushes. A backend that leaves the config is drained and
kept visible in ``stats()`` until its last in-flight request ends.

``Router`` starts inert; ``start()`` opens the listener (or serves a listening socket it is given) and a
periodic housekeeping task, and ``stop()`` stops accepting, lets in-flight requests finish within a grace
period, then closes the rest.

Housekeeping is where the router defends itself, so that the request path needs no timer: every
``period`` seconds (a quarter of the shortest timeout, at most 0.75 s) it closes client connections
past the header or idle timeout (the oldest first, stopping at the first that is not), gives up on
requests whose backend has not started answering within the backend timeout, lets ejected backends back
in, and expires idle upstream connections. At the connection limit, ``make_room`` closes the connection
that has waited longest without a complete request head: first among those in the middle of one (what
a slowloris holds; a normal client sends its head in one piece), then among those that sent nothing
yet, then among kept-alive ones; only when every connection is busy is the new one refused. So an
attacker holding more sockets than the limit mostly pushes out its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Coroutine
from time import monotonic
from typing import Any

from gapless.router.balancer import Table
from gapless.router.config import Limits, RouterConfig
from gapless.router.counters import RevisionCounters
from gapless.router.downstream import DownstreamProtocol
from gapless.router.pool import IDLE_TIMEOUT, BackendPool
from gapless.router.stats import ConnectionStats, RouterStats
from gapless.router.upstream import Pool

__all__ = ["Router", "fd_budget"]


log = logging.getLogger(__name__)

_HOUSEKEEPING_PERIOD = IDLE_TIMEOUT / 2
_MIN_PERIOD = 0.05
_FD_RESERVE = 128
"""File descriptors kept for the admin socket, logs, the config file and backend connects."""


def fd_budget(soft_limit: int, wanted: int) -> int:
    """Client connections the open-file limit allows: each busy one needs a backend connection too."""
    return max(1, min(wanted, (soft_limit - _FD_RESERVE) // 2))


class Router:
    """The data plane of one rollout."""

    def __init__(self, name: str, config: RouterConfig | None = None, *, fd_limit: int | None = None) -> None:
        self.name = name
        self.closing = False
        self.connections: set[DownstreamProtocol] = set()
        # Connections waiting for a request head, oldest first (see downstream.py).
        self.fresh: dict[DownstreamProtocol, None] = {}
        self.partial: dict[DownstreamProtocol, None] = {}
        self.idle: dict[DownstreamProtocol, None] = {}
        self.now = monotonic()  # refreshed by housekeeping: a clock read the request path need not make
        self.fd_limit = fd_limit
        self.limits = Limits()
        self.max_connections = self._connection_budget(self.limits)
        self.period = self._period(self.limits)
        self.evicted = 0
        self.refused = 0
        self.header_timeouts = 0
        self.idle_timeouts = 0
        self.oversized_heads = 0
        self.restarts = 0
        self.pools: dict[str, Pool] = {}
        self.draining: dict[str, Pool] = {}
        self.revisions: dict[str, RevisionCounters] = {}
        self.table = Table(RouterConfig(version=0), {})
        # CLOCK_MONOTONIC when the config in force was applied, and when the weights last changed
        # (/healthz reports both: comparable with any process's clock on the host, so a benchmark
        # can time a command to the moment the data plane held it without polling for it).
        self.applied_at = 0.0
        self.weights_changed_at = 0.0
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
        now = monotonic()
        if config.weights != self.table.config.weights:
            self.weights_changed_at = now
        self.applied_at = now
        pools: dict[str, Pool] = {}
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
        if config.limits != self.limits:
            self.limits = config.limits
            self.max_connections = self._connection_budget(config.limits)
            self.period = self._period(config.limits)
        self._prune()

    def _connection_budget(self, limits: Limits) -> int:
        if self.fd_limit is None:
            return limits.max_connections
        budget = fd_budget(self.fd_limit, limits.max_connections)
        if budget < limits.max_connections:
            log.info(
                "maxConnections %d lowered to %d: the open-file limit is %d",
                limits.max_connections,
                budget,
                self.fd_limit,
            )
        return budget

    @staticmethod
    def _period(limits: Limits) -> float:
        shortest = min(limits.header_timeout, limits.idle_timeout, limits.backend_timeout)
        return max(_MIN_PERIOD, min(_HOUSEKEEPING_PERIOD, shortest / 4))

    def make_room(self) -> bool:
        """At the connection limit: close the longest-waiting connection without a complete head."""
        for waiting in (self.partial, self.fresh, self.idle):
            if waiting:
                oldest = next(iter(waiting))
                oldest.shed(timed_out=False)
                self.evicted += 1
                return True
        return False

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
            restarts=self.restarts,
            revisions={n: r.snapshot() for n, r in self.revisions.items()},
            backends=backends,
            connections=ConnectionStats(
                open=len(self.connections),
                limit=self.max_connections,
                evicted=self.evicted,
                refused=self.refused,
                header_timeouts=self.header_timeouts,
                idle_timeouts=self.idle_timeouts,
                oversized_heads=self.oversized_heads,
            ),
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

    async def start(self, host: str, port: int, sock: socket.socket | None = None) -> None:
        """Listen on ``host:port`` (port 0 picks a free one; see ``listen``), or serve ``sock``."""
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(lambda: DownstreamProtocol(self), sock=sock, backlog=2048)
        else:
            self._server = await loop.create_server(
                lambda: DownstreamProtocol(self), host, port, backlog=2048, reuse_address=True
            )
        sock_host, sock_port = self._server.sockets[0].getsockname()[:2]
        self.listen = f"[{sock_host}]:{sock_port}" if ":" in sock_host else f"{sock_host}:{sock_port}"
        self._housekeeping = loop.create_task(self._housekeep())

    async def _housekeep(self) -> None:
        swept = monotonic()
        while True:
            await asyncio.sleep(self.period)
            stamped, now = self.now, monotonic()
            self.now = now
            self._restamp_idle(stamped, now)
            self._expire(now)
            for pool in self.pools.values():
                pool.readmit(now)
            if now - swept >= _HOUSEKEEPING_PERIOD:
                swept = now
                for pool in self.pools.values():
                    pool.sweep()
                self._prune()

    def _restamp_idle(self, stamped: float, now: float) -> None:
        """Move the idle stamps of the interval just ended from its start to its end.

        A connection that went idle since the last sweep was stamped with that sweep's ``now`` (the request
        path reads no clock), which may be long before it really went idle when the loop was busy and
        this sweep came late. Stamped with this sweep's time instead, an idle connection is never closed
        before ``idle_timeout`` has passed, however late the sweeps run. The newest are last, so only the
        connections of this interval are looked at. The new stamp is one float step after ``now``, so the
        next sweep tells these apart from the connections that go idle in the next interval (stamped
        ``now`` exactly) and moves only those.
        """
        end = math.nextafter(now, math.inf)
        for conn in reversed(self.idle):
            if conn.since != stamped:
                break
            conn.since = end

    def _expire(self, now: float) -> None:
        """Close connections past the header or idle timeout; give up on backends past theirs."""
        limits = self.limits
        for waiting, timeout, head in (
            (self.partial, limits.header_timeout, True),
            (self.fresh, limits.header_timeout, True),
            (self.idle, limits.idle_timeout, False),
        ):
            late: list[DownstreamProtocol] = []
            for conn in waiting:  # oldest first
                if now - conn.since < timeout:
                    break
                late.append(conn)
            for conn in late:
                if head:
                    self.header_timeouts += 1
                else:
                    self.idle_timeouts += 1
                conn.shed(timed_out=head)
        timeout = limits.backend_timeout
        for conn in [c for c in self.connections if c.current is not None and c.tunnel is None]:
            ex = conn.current
            if (
                ex is not None
                and conn.up is not None
                and ex.request_done
                and not conn.up.got_bytes
                and now - ex.attempt_at >= timeout
            ):
                conn.backend_timed_out(now)

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
