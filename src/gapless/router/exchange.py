"""One request on its way through the router: what has been sent, where, and what may be replayed.

An ``Exchange`` lives from the end of a request's head until its response ends. It holds no link to a
connection: the client connection holds the backend connection of its current exchange (``up``). It keeps the head
and, while the request is idempotent and small, the body bytes already written, so that a request
whose backend failed before answering can be replayed on another backend.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gapless.router.pool import BackendPool

__all__ = [
    "CONNECT_TIMEOUT",
    "MAX_ATTEMPTS",
    "MAX_STALE",
    "PENDING_LIMIT",
    "REPLAY_LIMIT",
    "Exchange",
    "queue_body",
]

MAX_ATTEMPTS = 3
"""Backends tried for one request before the client gets a 502."""

MAX_STALE = 8
"""Closed pooled connections skipped for one request before the stale ones count as attempts."""

REPLAY_LIMIT = 64 * 1024
"""Request bytes kept for a replay on another backend; a longer idempotent request is not retried."""

CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection to a backend."""

PENDING_LIMIT = 256 * 1024
"""Request bytes buffered while connecting before the router stops reading the client."""

_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})


class Exchange:
    """One request of a client and its way through the router."""

    __slots__ = (
        "attempt_at",
        "attempts",
        "body_bytes",
        "chunked",
        "counted",
        "dispatched",
        "head",
        "head_sent",
        "http10",
        "is_head",
        "keep_alive",
        "pool",
        "replayable",
        "request_done",
        "sent",
        "sent_size",
        "stale",
        "started",
        "timed_out",
        "tried",
        "wbuf",
        "wsize",
    )

    def __init__(self, method: bytes, head: bytes, chunked: bool, keep_alive: bool, http10: bool) -> None:
        self.started = self.attempt_at = monotonic()
        self.is_head = method == b"HEAD"
        self.chunked = chunked
        self.keep_alive = keep_alive
        self.http10 = http10
        self.head = head
        self.head_sent = False
        # Body bytes not yet written upstream, and those written, kept for a replay on another backend
        # while the request is idempotent and its body small.
        self.wbuf: list[bytes] | None = None
        self.wsize = 0
        self.replayable = method in _IDEMPOTENT
        self.sent: list[bytes] | None = None
        self.sent_size = 0
        self.body_bytes = 0
        self.request_done = False
        self.dispatched = False
        self.counted = False
        self.pool: BackendPool[Any] | None = None
        self.tried: set[BackendPool[Any]] | None = None
        self.attempts = 0
        self.stale = 0
        self.timed_out = False  # an attempt ran out of the backend timeout


def queue_body(ex: Exchange, data: bytes) -> None:
    """Add request bytes to those waiting for the next write upstream."""
    if ex.wbuf is None:
        ex.wbuf = [data]
    else:
        ex.wbuf.append(data)
    ex.wsize += len(data)
