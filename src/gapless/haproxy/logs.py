"""Per-revision latency from HAProxy's log lines, sent to a unix datagram socket gapless reads.

``show stat`` has only averages, and analysis and the dashboard need a histogram. HAProxy logs one
line per request in gapless's own format (``LOG_FORMAT``: server, status, ``%Ta`` the request's active
time and ``%Tr`` the server's response time, in milliseconds) with ``format raw`` to a datagram socket
in the state directory; ``LatencyBook`` sorts each into the built-in router's latency buckets for the
server's revision. HAProxy's timers are whole milliseconds (a value ``n`` means ``n <= t < n+1``), so a
line counts at ``n + 0.5`` ms: quantiles are good to half a millisecond, not to the built-in router's 4 %.

Lines come from a socket only the owner can write to, but the parser still treats them as hostile:
anything that is not exactly a line of this format is counted as malformed and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from gapless.haproxy.config import MAX_LINE, parse_server_name
from gapless.router.stats import LATENCY_BOUNDS

__all__ = [
    "LatencyBook",
    "LogLine",
    "LogReader",
    "RevisionLatency",
    "parse_line",
]

_MAX_MS = 86_400_000

RECEIVE_BUFFER = 4 * 1024 * 1024
"""Bytes of queued log lines asked for (the kernel may grant less); a full queue drops new lines."""


@dataclass(frozen=True)
class LogLine:
    """One request as HAProxy logged it."""

    server: str
    status: int
    active_ms: int
    """``%Ta``: from the request's first byte to the response's last (no idle keep-alive time)."""
    response_ms: int
    """``%Tr``: the server's time to the response head; -1 when none came."""


def parse_line(data: bytes) -> LogLine | None:
    """The request in one datagram, or None when it is not exactly a line of ``LOG_FORMAT``."""
    if len(data) > MAX_LINE:
        return None
    try:
        text = data.decode("ascii").rstrip("\n")
    except UnicodeDecodeError:
        return None
    parts = text.split(" ")
    if len(parts) != 5 or parts[0] != "gl1":
        return None
    _, server, status, active, response = parts
    if not server or not all(_is_int(x) for x in (status, active, response)):
        return None
    s, a, r = int(status), int(active), int(response)
    if not (0 <= s <= 999 and -1 <= a <= _MAX_MS and -1 <= r <= _MAX_MS):
        return None
    return LogLine(server, s, a, r)


def _is_int(text: str) -> bool:
    body = text[1:] if text.startswith("-") else text
    return 0 < len(body) <= 12 and body.isascii() and body.isdigit()


@dataclass
class RevisionLatency:
    """One revision's latency histogram on the built-in router's bounds."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    total_seconds: float = 0.0
    count: int = 0


@dataclass
class LatencyBook:
    """Histograms per revision, fed with log lines."""

    revisions: dict[str, RevisionLatency] = field(default_factory=dict)
    malformed: int = 0
    """Datagrams that were not a log line of gapless's format."""
    unrouted: int = 0
    """Lines of requests that reached no revision's server (``<NOSRV>``, or no timing)."""

    def add(self, data: bytes) -> None:
        """Count one datagram."""
        line = parse_line(data)
        if line is None:
            self.malformed += 1
            return
        parsed = parse_server_name(line.server)
        if parsed is None or line.active_ms < 0:
            self.unrouted += 1
            return
        seconds = (line.active_ms + 0.5) / 1000
        rev = self.revisions.setdefault(parsed[0], RevisionLatency())
        rev.counts[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
        rev.total_seconds += seconds
        rev.count += 1


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, book: LatencyBook) -> None:
        self._book = book

    def datagram_received(self, data: bytes, addr: object) -> None:
        self._book.add(data)


class LogReader:
    """A unix datagram socket at ``path`` (0600) whose datagrams feed ``book``; inert until ``start()``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.book = LatencyBook()
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        """Bind the socket (replacing a stale one of an earlier control plane) and read in the loop."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            # Room for bursts while the event loop is busy; the kernel caps it at net.core.rmem_max.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            old = os.umask(0o177)
            try:
                _bind(sock, self.path)
            finally:
                os.umask(old)
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self.book), sock=sock)
        except BaseException:
            sock.close()
            raise
        self._transport = transport

    @property
    def running(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def close(self) -> None:
        """Stop reading and remove the socket file."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


SOCKET_PATH_MAX = 107


def _bind(sock: socket.socket, path: Path) -> None:
    """Bind ``path``, through ``/proc/self/fd/N/`` of its directory when it is too long for a unix socket."""
    if len(os.fsencode(path)) <= SOCKET_PATH_MAX:
        sock.bind(str(path))
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        sock.bind(f"/proc/self/fd/{fd}/{path.name}")
    finally:
        os.close(fd)
