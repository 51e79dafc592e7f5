"""One backend as the data path sees it: its idle keep-alive connections and its counters.

Idle upstream connections are kept in a LIFO stack so that the most recently used (the least likely to
have been closed by the upstream) is reused first. A connection left idle for about ``IDLE_TIMEOUT``
is closed instead of reused: most servers close idle keep-alive connections after 2-5 s, and reusing
one just as the server closes it is the one failure a retry cannot always hide (a non-idempotent
request already written). Expiry is mark-and-sweep by the router's housekeeping, every
``IDLE_TIMEOUT / 2`` seconds (a connection idle at two sweeps in a row is closed), so taking and
returning a connection costs no clock read. A backend removed from the config is marked ``removed``: its idle
connections close at once and busy ones close when their response ends.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from gapless.router.config import Backend
from gapless.router.counters import RevisionCounters
from gapless.router.stats import BackendStats

if TYPE_CHECKING:
    from gapless.router.upstream import UpstreamProtocol

__all__ = ["IDLE_TIMEOUT", "MAX_IDLE", "BackendPool"]

MAX_IDLE = 64
"""Idle keep-alive connections kept per backend; more are closed when their response ends."""

IDLE_TIMEOUT = 1.5
"""Seconds an idle upstream connection may wait in the pool (give or take half) before it is closed."""


class BackendPool:
    """A backend's address, idle upstream connections and counters."""

    __slots__ = (
        "backend",
        "connection_errors",
        "host",
        "id",
        "idle",
        "in_flight",
        "port",
        "removed",
        "requests",
        "rev",
    )

    def __init__(self, backend: Backend, rev: RevisionCounters) -> None:
        self.backend = backend
        self.id = backend.id
        self.host = backend.host
        self.port = backend.port
        self.rev = rev
        self.idle: deque[UpstreamProtocol] = deque()
        self.removed = False
        self.in_flight = 0
        self.requests = 0
        self.connection_errors = 0

    def acquire(self) -> UpstreamProtocol | None:
        """Take the most recently used idle connection that is still open, or None."""
        idle = self.idle
        while idle:
            up = idle.pop()
            up.idle = False
            if not up.closed:
                return up
        return None

    def release(self, up: UpstreamProtocol) -> None:
        """Return a connection whose response ended; it is closed if the backend drains or the pool is full."""
        if self.removed or up.closed or len(self.idle) >= MAX_IDLE:
            up.close()
            return
        up.idle = True
        up.idle_swept = False
        self.idle.append(up)

    def forget(self, up: UpstreamProtocol) -> None:
        """Drop a connection that closed while idle."""
        try:
            self.idle.remove(up)
        except ValueError:
            return

    def sweep(self) -> None:
        """Close connections that were idle at the previous sweep too; mark the others."""
        keep: deque[UpstreamProtocol] = deque()
        for up in self.idle:
            if up.idle_swept or up.closed:
                up.idle = False
                up.close()
            else:
                up.idle_swept = True
                keep.append(up)
        self.idle = keep

    def drain(self) -> None:
        """Stop pooling: close idle connections now; busy ones close when their response ends."""
        self.removed = True
        while self.idle:
            up = self.idle.pop()
            up.idle = False
            up.close()

    def snapshot(self) -> BackendStats:
        return BackendStats(
            revision=self.rev.name,
            in_flight=self.in_flight,
            requests=self.requests,
            connection_errors=self.connection_errors,
            removed=self.removed,
        )
