"""The client's side of the router: parse requests, route each to a backend, and stream both ways.

This is the per-request hot path, written as a plain ``asyncio.Protocol`` over ``httptools`` so that a
request costs a few callbacks and no task, future or lock; reading requests off the connection is the
``RequestReader`` base class (``reader.py``). Everything one chunk of client bytes
produces (request head, body pieces) is gathered in the exchange's write list and sent to the backend
with one write afterwards. A request is dispatched after the chunk that completed its head has been
parsed, so a small request and its routing cost exactly one ``send`` upstream.

Flow control uses the transports' own buffers: when the backend's send buffer is full the client is
no longer read, and when the client's send buffer is full the backend is no longer read. Pipelined
requests wait in a queue (and stop the reading of the client) until the response before them ends.

A request is retried on another backend when connecting fails, or when the connection breaks before
any response byte arrived and the request can be replayed (an idempotent method whose bytes so far fit
in ``REPLAY_LIMIT``). A pooled connection that turns out to be closed does not count as an attempt.
A backend that has not started its response within the backend timeout (checked by the router's
housekeeping, so no timer per request) is given up on the same way: the request is replayed elsewhere
when it may be, else answered 504.

A connection waiting for a request head sits in one of the router's three ordered ``waiting`` dicts:
``fresh`` (connected, nothing sent yet), ``partial`` (in the middle of a head: what a slowloris holds)
or ``idle`` (kept alive between requests), in the order it started waiting there. That order is what
the timeouts and the connection limit use, for a dict operation or two per request.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections import deque
from time import monotonic
from typing import TYPE_CHECKING, Any, Protocol

from httptools import HttpParserError

from gapless.router.answers import BAD_REQUEST, OVER_LIMIT, REQUEST_TIMEOUT, TOO_LARGE, local_head
from gapless.router.exchange import (
    CONNECT_TIMEOUT,
    MAX_ATTEMPTS,
    MAX_STALE,
    PENDING_LIMIT,
    REPLAY_LIMIT,
    Exchange,
)
from gapless.router.pool import MAX_IDLE
from gapless.router.reader import HeadTooLarge, RequestReader
from gapless.router.stats import LATENCY_BOUNDS
from gapless.router.upstream import UPSTREAM_FULL, Pool, UpstreamProtocol

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from gapless.router.balancer import Table
    from gapless.router.config import Limits

__all__ = ["DownstreamProtocol", "RouterView"]


class RouterView(Protocol):
    """What a client connection needs of the router that accepted it (``proxy.Router`` meets it).

    Declared here so that this module does not import the one above it: news about a connection goes up
    only through these members.
    """

    table: Table
    closing: bool
    limits: Limits
    max_connections: int
    now: float
    connections: set[DownstreamProtocol]
    fresh: dict[DownstreamProtocol, None]
    partial: dict[DownstreamProtocol, None]
    idle: dict[DownstreamProtocol, None]
    refused: int
    oversized_heads: int

    def make_room(self) -> bool: ...
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...


# Reasons to stop reading the client, as bits: it is read again when none is left.
_UPSTREAM_FULL = UPSTREAM_FULL
_PIPELINED = 2
_CONNECTING = 4


class DownstreamProtocol(RequestReader):
    """One client connection."""

    __slots__ = (
        "closing",
        "current",
        "paused",
        "queue",
        "router",
        "since",
        "transport",
        "tunnel",
        "up",
        "waiting",
        "wbuf",
        "write_paused",
    )

    transport: asyncio.Transport  # set by connection_made, before any other callback

    def __init__(self, router: RouterView) -> None:
        super().__init__()
        self.router = router
        self.current: Exchange | None = None
        self.queue: deque[Exchange] | None = None
        self.wbuf: list[bytes] = []
        self.paused = 0
        self.write_paused = False
        self.tunnel: UpstreamProtocol | None = None
        self.up: UpstreamProtocol | None = None  # the backend connection of the current exchange
        self.closing = False
        self.waiting: dict[DownstreamProtocol, None] | None = None  # a dict of the router's, or None
        self.since = 0.0  # when it began waiting there

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        router = self.router
        if len(router.connections) >= router.max_connections and not router.make_room():
            router.refused += 1
            self.closing = True
            transport.write(OVER_LIMIT)  # type: ignore[attr-defined]
            transport.close()
            return
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip = str(peer[0]).encode()
        self.max_head = router.limits.max_header_bytes
        router.connections.add(self)
        self.since = monotonic()
        self.waiting = router.fresh
        router.fresh[self] = None

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.transport.write(data)
            return
        try:
            if self.slow_mode or self.upgrading:
                self.read(data)
            else:
                self._frame(data)  # the usual case, without one more call
        except HttpParserError as exc:
            self._bad_request(exc)
            return
        ex = self.current
        waiting = self.waiting
        if waiting is not None:
            if ex is not None:
                del waiting[self]
                self.waiting = None
            elif waiting is not self.router.partial and (self.inbuf or self.slow_mode):
                self._wait(self.router.partial, monotonic())  # a head began: the header timeout runs
        if ex is None:
            return
        if self.up is not None:
            if ex.wbuf is not None:
                self._send(ex)
        elif not ex.dispatched:
            self._dispatch(ex)
        elif ex.wsize > PENDING_LIMIT:
            self.pause_reading(_CONNECTING)

    def eof_received(self) -> bool | None:
        if self.tunnel is not None:
            up = self.tunnel.transport
            if up.can_write_eof():
                up.write_eof()
                return True
            return False
        if self.current is not None:
            # A half-closed client still gets its response; then the connection closes.
            self.current.keep_alive = False
            self.queue = None
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.router.connections.discard(self)
        if self.waiting is not None:
            del self.waiting[self]
            self.waiting = None
        self.queue = None
        tunnel = self.tunnel
        ex = self.current
        self.current = None
        self.tunnel = None
        if ex is not None:
            self._uncount(ex)
            if self.up is not None:
                up = self.up
                self.up = None
                if tunnel is not None:
                    up.close()
                else:
                    up.abort()

    def pause_writing(self) -> None:
        self.write_paused = True
        up = self.tunnel
        if up is None and self.current is not None:
            up = self.up
        if up is not None:
            up.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        up = self.tunnel
        if up is None and self.current is not None:
            up = self.up
        if up is not None:
            up.resume_reading()

    def pause_reading(self, reason: int) -> None:
        if not self.paused and not self.closing:
            self.transport.pause_reading()
        self.paused |= reason

    def resume_reading(self, reason: int) -> None:
        if not self.paused & reason:
            return
        self.paused &= ~reason
        if not self.paused and not self.closing:
            self.transport.resume_reading()

    # -- waiting for a request, and the router's defences --

    def _wait(self, waiting: dict[DownstreamProtocol, None], since: float) -> None:
        """Wait for a request head in ``waiting`` (at its end: the newest), from ``since``."""
        if self.waiting is not None:
            del self.waiting[self]
        self.waiting = waiting
        self.since = since
        waiting[self] = None

    def shed(self, *, timed_out: bool) -> None:
        """Close a connection that is waiting for a head (a timeout, or room at the connection limit)."""
        if self.waiting is not None:
            del self.waiting[self]
            self.waiting = None
        self.closing = True
        if timed_out and (self.inbuf or self.slow_mode):
            self.transport.write(REQUEST_TIMEOUT)  # it was sending a request: say why it ends
        self.transport.close()

    def backend_timed_out(self, now: float) -> None:
        """The backend did not start its response in time: replay the request elsewhere, or answer 504."""
        ex = self.current
        if ex is None or self.up is None or ex.pool is None:
            return
        pool = ex.pool
        limits = self.router.limits
        pool.timeouts += 1
        pool.failed(now, limits.eject_after, limits.ejection)
        up = self.up
        self.up = None
        up.abort()
        ex.timed_out = True
        self._attempt_failed(ex, replay=True, stale=False)

    # -- reading requests (see RequestReader) --

    def _start(self, ex: Exchange) -> None:
        """A request head is complete: it is next, or waits behind the requests pipelined before it."""
        self.parsing = ex
        if self.current is None:
            self.current = ex
        else:
            if self.queue is None:
                self.queue = deque()
            self.queue.append(ex)
            self.pause_reading(_PIPELINED)

    # -- towards the backend --

    def _send(self, ex: Exchange) -> None:
        """Write the request bytes gathered so far (the head first) to the exchange's backend."""
        up = self.up
        if up is None:
            return
        wbuf = ex.wbuf
        if not ex.head_sent:
            ex.head_sent = True
            if wbuf is None:
                up.transport.write(ex.head)
                return
            up.transport.writelines([ex.head, *wbuf])
        elif wbuf is None:
            return
        else:
            up.transport.writelines(wbuf)
        ex.wbuf = None
        if ex.replayable:
            ex.sent_size += ex.wsize
            if ex.sent_size > REPLAY_LIMIT:
                ex.replayable = False
                ex.sent = None
            elif ex.sent is None:
                ex.sent = wbuf
            else:
                ex.sent.extend(wbuf)
        ex.wsize = 0

    def _dispatch(self, ex: Exchange) -> None:
        """Route ``ex`` to a backend and start sending it, over a pooled connection when there is one."""
        ex.dispatched = True
        table = self.router.table
        if ex.tried is None:
            # A request naming no header a route or stickiness reads is split by weight: the usual case.
            if table.plain or table.keys.search(ex.head) is None:
                pool = table.pick()
            else:
                pool = table.pick_for(ex.head)
        elif table.plain:
            pool = table.pick_other(ex.tried)
        else:
            pool = table.pick_for(ex.head, ex.tried)
        if pool is None:
            if ex.pool is None:
                self._local_response(ex, 503, b"Service Unavailable", b"no backend available\n")
            else:
                self._bad_gateway(ex)
            return
        rev = pool.rev
        prev = ex.pool
        if prev is None:
            rev.requests += 1
        elif prev.rev is not rev:
            prev.rev.requests -= 1
            rev.requests += 1
        ex.pool = pool
        if prev is not None:
            ex.attempt_at = monotonic()  # a retry; the first attempt starts at ex.started
        ex.counted = True
        pool.requests += 1
        pool.in_flight += 1
        rev.in_flight += 1
        up = pool.acquire()
        if up is None:
            if ex.wsize > PENDING_LIMIT:
                self.pause_reading(_CONNECTING)
            self.router.spawn(self._connect(ex, pool))
            return
        up.reused = True
        self.up = up
        up.start(self, ex)
        if ex.wbuf is None and not ex.head_sent:
            ex.head_sent = True  # the common case, inline: a request without a body
            up.transport.write(ex.head)
        else:
            self._send(ex)

    async def _connect(self, ex: Exchange, pool: Pool) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                _, up = await loop.create_connection(lambda: UpstreamProtocol(pool), pool.host, pool.port)
        except (OSError, TimeoutError):
            pool.connection_errors += 1
            limits = self.router.limits
            pool.failed(monotonic(), limits.eject_after, limits.ejection)
            if ex is self.current and ex.pool is pool and not self.closing:
                self._attempt_failed(ex, replay=False, stale=False)
            return
        if ex is not self.current or ex.pool is not pool or self.closing:
            pool.release(up)
            return
        self._attach(ex, up)

    def _attach(self, ex: Exchange, up: UpstreamProtocol) -> None:
        self.up = up
        up.start(self, ex)
        self._send(ex)
        if self.paused & _CONNECTING:
            self.resume_reading(_CONNECTING)

    def _uncount(self, ex: Exchange) -> None:
        pool = ex.pool
        if ex.counted and pool is not None:
            ex.counted = False
            pool.in_flight -= 1
            pool.rev.in_flight -= 1
            pool.rev.bytes_in += ex.body_bytes

    def _attempt_failed(self, ex: Exchange, *, replay: bool, stale: bool) -> None:
        """An attempt failed before any response byte: retry elsewhere when allowed, else answer 502 (504)."""
        self._uncount(ex)
        self.up = None
        if stale and ex.stale < MAX_STALE:
            ex.stale += 1
        else:
            ex.attempts += 1
            if ex.pool is not None:
                if ex.tried is None:
                    ex.tried = {ex.pool}
                else:
                    ex.tried.add(ex.pool)
        if ex.attempts >= MAX_ATTEMPTS or (replay and not ex.replayable):
            self._bad_gateway(ex)
            return
        if replay:
            ex.head_sent = False
            if ex.sent is not None:
                ex.wbuf = ex.sent if ex.wbuf is None else ex.sent + ex.wbuf
                ex.wsize += ex.sent_size
                ex.sent = None
                ex.sent_size = 0
        self._dispatch(ex)

    # -- called by the upstream side --

    def flush(self) -> None:
        """Write the response bytes gathered so far to the client."""
        wbuf = self.wbuf
        if wbuf:
            if not self.closing:
                n = len(wbuf)
                if n == 1:
                    self.transport.write(wbuf[0])
                elif n == 2 and len(wbuf[1]) < 16384:
                    self.transport.write(wbuf[0] + wbuf[1])  # a head and a small body: one plain send
                else:
                    self.transport.writelines(wbuf)
            wbuf.clear()

    def response_done(self, up: UpstreamProtocol) -> None:
        """The response on ``up`` ended: count it, pool the connection and go on with the next request."""
        ex = self.current
        if ex is None:
            up.close()
            return
        pool = up.pool
        if pool.failures:
            pool.failures = 0
            pool.ejections = 0
        rev = pool.rev
        # RevisionCounters.record, inline: this runs once per request.
        elapsed = monotonic() - ex.started
        klass = up.status // 100 - 1
        if 0 <= klass < 5:
            rev.responses[klass] += 1
        rev.latency_counts[bisect_left(LATENCY_BOUNDS, elapsed)] += 1
        rev.latency_sum += elapsed
        rev.latency_count += 1
        if ex.counted:
            ex.counted = False
            pool.in_flight -= 1
            rev.in_flight -= 1
            rev.bytes_in += ex.body_bytes
        self.up = None
        if up.keep_alive and ex.request_done and not up.close_delimited:
            up.down = None
            up.ex = None
            if up.read_paused:
                up.resume_reading()
            idle = pool.idle
            if pool.removed or up.closed or len(idle) >= MAX_IDLE:
                up.close()
            else:  # BackendPool.release, inline
                up.idle = True
                up.idle_swept = False
                idle.append(up)
        else:
            up.close()
        if ex.keep_alive and ex.request_done and self.queue is None and not self.upgrading:
            self.current = None  # the common case, done inline: wait for the next request
            router = self.router
            if router.closing:
                self._exchange_ended(False)
            else:
                self.waiting = router.idle
                self.since = router.now
                router.idle[self] = None
        else:
            self._exchange_ended(ex.keep_alive and ex.request_done and not self.upgrading)

    def upstream_failed(self, up: UpstreamProtocol) -> None:
        """The connection of the current exchange broke or sent garbage."""
        ex = self.current
        up.abort()
        if ex is None or self.up is not up:
            return
        self.up = None
        pool = up.pool
        if not up.got_bytes:
            self._attempt_failed(ex, replay=True, stale=up.reused)
            return
        pool.connection_errors += 1
        if not up.headers_done:
            self._uncount(ex)
            self._bad_gateway(ex)
            return
        # The response was cut off after its head went out: the client must see a broken connection.
        pool.rev.record(up.status, monotonic() - ex.started)
        self._uncount(ex)
        self.flush()
        self.current = None
        self.closing = True
        self.transport.abort()

    def start_tunnel(self, up: UpstreamProtocol) -> None:
        """The backend accepted an upgrade: from now on bytes are piped both ways until one side closes."""
        ex = self.current
        if ex is None:
            up.close()
            return
        up.pool.rev.record(101, monotonic() - ex.started)
        self.tunnel = up
        self._send(ex)
        if self.paused:
            self.paused = 0
            self.transport.resume_reading()

    def tunnel_closed(self) -> None:
        """The backend closed an upgraded connection: close the client's after what is buffered."""
        ex = self.current
        self.tunnel = None
        self.current = None
        if ex is not None:
            self._uncount(ex)
            self.up = None
        self.closing = True
        self.transport.close()

    # -- answers of the router itself --

    def _gateway_timeout(self, ex: Exchange) -> None:
        pool = ex.pool
        if pool is not None:
            pool.rev.record(504, monotonic() - ex.started)
        self._local_response(ex, 504, b"Gateway Timeout", b"no backend answered in time\n")

    def _bad_gateway(self, ex: Exchange) -> None:
        """Every attempt failed: 502, or 504 when a backend did not answer in time."""
        if ex.timed_out:
            self._gateway_timeout(ex)
            return
        pool = ex.pool
        if pool is not None:
            pool.rev.connection_errors += 1
            pool.rev.record(502, monotonic() - ex.started)
        self._local_response(ex, 502, b"Bad Gateway", b"no backend answered\n")

    def _local_response(self, ex: Exchange, status: int, reason: bytes, body: bytes) -> None:
        keep = ex.keep_alive and ex.request_done and not self.upgrading and not self.router.closing
        head = local_head(status, reason, len(body), keep_alive=keep)
        self.wbuf.append(head if ex.is_head else head + body)
        self.flush()
        self._exchange_ended(keep)

    def _bad_request(self, exc: HttpParserError) -> None:
        too_large = isinstance(exc, HeadTooLarge)
        if too_large:
            self.router.oversized_heads += 1
        if self.current is None and not self.closing:
            self.wbuf.append(TOO_LARGE if too_large else BAD_REQUEST)
            self.flush()
        elif self.current is not None:
            self.connection_lost(None)
        self.closing = True
        self.transport.close()

    def _exchange_ended(self, keep_alive: bool) -> None:
        self.current = None
        if not keep_alive or self.closing:
            self.closing = True
            self.queue = None
            self.transport.close()
            return
        queue = self.queue
        if queue:
            ex = self.current = queue.popleft()
            if not queue:
                self.resume_reading(_PIPELINED)
            self._dispatch(ex)
        elif self.router.closing:
            self.closing = True
            self.transport.close()
        else:
            self._wait(self.router.idle, self.router.now)
