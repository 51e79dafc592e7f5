"""One backend as the data path sees it: its idle keep-alive connections and its counters.

Idle upstream connections are kept in a LIFO stack so that the most recently used (the least likely to
have been closed by the upstream) is reused first. A connection left idle for about ``IDLE_TIMEOUT``
is closed instead of reused: most servers close idle keep-alive connections after 2-5 s, and reusing
one just as the server closes it is the one failure a retry cannot always hide (a non-idempotent
request already written). Expiry is mark-and-sweep by the router's housekeeping, every
``IDLE_TIMEOUT / 2`` seconds (a connection idle at two sweeps in a row is closed), so taking and
returning a connection costs no clock read. A backend removed from the config is marked ``removed``: its idle
connections close at once and busy ones close when their response ends.

Passive outlier detection (as Envoy's): a backend whose connections fail or whose responses time out
``eject_after`` times in a row is ``ejected``, and the balancer passes it over for the ejection time,
doubled for each ejection in a row, so a hung instance stops taking requests after its first few
timeouts instead of after its liveness probe. Any response resets the streak; the housekeeping lets an
ejected backend back in when its time is up.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Generic, Protocol, TypeVar

from gapless.router.config import Backend
from gapless.router.counters import RevisionCounters
from gapless.router.stats import BackendStats

__all__ = ["IDLE_TIMEOUT", "MAX_EJECTION", "MAX_IDLE", "BackendPool", "Pooled"]

log = logging.getLogger(__name__)

MAX_IDLE = 64
"""Idle keep-alive connections kept per backend; more are closed when their response ends."""

IDLE_TIMEOUT = 1.5
"""Seconds an idle upstream connection may wait in the pool (give or take half) before it is closed."""

MAX_EJECTION = 300.0
"""Seconds an ejection lasts at most, however many came in a row."""


class Pooled(Protocol):
    """What the pool needs of a backend connection (``upstream.UpstreamProtocol`` has it).

    Declared here so that the pool does not import the connection above it.
    """

    idle: bool  # in the pool right now
    idle_swept: bool  # idle at the last sweep
    closed: bool

    def close(self) -> None: ...


C = TypeVar("C", bound=Pooled)


class BackendPool(Generic[C]):
    """A backend's address, idle upstream connections (of type ``C``) and counters."""

    __slots__ = (
        "backend",
        "connection_errors",
        "ejected",
        "ejected_until",
        "ejections",
        "failures",
        "host",
        "id",
        "idle",
        "in_flight",
        "port",
        "removed",
        "requests",
        "rev",
        "timeouts",
    )

    def __init__(self, backend: Backend, rev: RevisionCounters) -> None:
        self.backend = backend
        self.id = backend.id
        self.host = backend.host
        self.port = backend.port
        self.rev = rev
        self.idle: deque[C] = deque()
        self.removed = False
        self.in_flight = 0
        self.requests = 0
        self.connection_errors = 0
        self.timeouts = 0
        self.failures = 0  # connection failures and timeouts in a row
        self.ejections = 0  # ejections in a row
        self.ejected = False
        self.ejected_until = 0.0

    def failed(self, now: float, eject_after: int, ejection: float) -> None:
        """A connection failed or a response timed out: eject the backend after ``eject_after`` in a row."""
        self.failures += 1
        if self.failures < eject_after or self.ejected:
            return
        self.ejections += 1
        seconds = min(MAX_EJECTION, ejection * 2 ** (self.ejections - 1))
        self.ejected = True
        self.ejected_until = now + seconds
        log.warning(
            "backend %s (%s:%d) ejected for %gs after %d failures in a row",
            self.id,
            self.host,
            self.port,
            seconds,
            self.failures,
        )

    def readmit(self, now: float) -> None:
        """Let an ejected backend back in once its time is up (its next failure ejects it again)."""
        if self.ejected and now >= self.ejected_until:
            self.ejected = False
            self.failures = 0
            log.info("backend %s back in the balancer", self.id)

    def acquire(self) -> C | None:
        """Take the most recently used idle connection that is still open, or None."""
        idle = self.idle
        while idle:
            up = idle.pop()
            up.idle = False
            if not up.closed:
                return up
        return None

    def release(self, up: C) -> None:
        """Return a connection whose response ended; it is closed if the backend drains or the pool is full."""
        if self.removed or up.closed or len(self.idle) >= MAX_IDLE:
            up.close()
            return
        up.idle = True
        up.idle_swept = False
        self.idle.append(up)

    def forget(self, up: C) -> None:
        """Drop a connection that closed while idle."""
        try:
            self.idle.remove(up)
        except ValueError:
            return

    def sweep(self) -> None:
        """Close connections that were idle at the previous sweep too; mark the others."""
        keep: deque[C] = deque()
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
            timeouts=self.timeouts,
            ejected=self.ejected,
            ejections=self.ejections,
            removed=self.removed,
        )
