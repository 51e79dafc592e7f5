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
import logging
import os
import re
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

log = logging.getLogger(__name__)

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


_FAST = re.compile(
    rb"gl1 ([A-Za-z0-9_:-]{1,64})\.[A-Za-z0-9_.:-]{1,64} [0-9]{1,3} ([0-9]{1,7}) (?:-1|[0-9]{1,7})\n?"
)
"""The common line, matched in one step: a server named ``<revision>.<instance>``, a status and timers
below 10,000 s. Any line it matches ``parse_line`` accepts with the same meaning (a property test
checks it); anything else takes the slow path."""

_CACHE_MAX = 4096
"""Revisions remembered by server name; the cache starts again when it is full (names are a few dozen)."""


@dataclass
class LatencyBook:
    """Histograms per revision, fed with log lines."""

    revisions: dict[str, RevisionLatency] = field(default_factory=dict)
    malformed: int = 0
    """Datagrams that were not a log line of gapless's format."""
    unrouted: int = 0
    """Lines of requests that reached no revision's server (``<NOSRV>``, or no timing)."""
    _by_revision: dict[bytes, RevisionLatency] = field(default_factory=dict, repr=False, compare=False)

    @property
    def lines(self) -> int:
        """Datagrams read so far: histogram counts, malformed and unrouted ones."""
        return self.malformed + self.unrouted + sum(r.count for r in self.revisions.values())

    def add(self, data: bytes) -> None:
        """Count one datagram: a regular expression for the usual line (a few microseconds: the reader
        shares a core with the proxy), the full parser for anything else."""
        m = _FAST.fullmatch(data)
        if m is not None:
            revision, active = m.groups()
            rev = self._by_revision.get(revision)
            if rev is None:
                if len(self._by_revision) >= _CACHE_MAX:
                    self._by_revision.clear()
                rev = self.revisions.setdefault(revision.decode(), RevisionLatency())
                self._by_revision[revision] = rev
            self._count(rev, int(active))
            return
        line = parse_line(data)
        if line is None:
            self.malformed += 1
            return
        parsed = parse_server_name(line.server)
        if parsed is None or line.active_ms < 0:
            self.unrouted += 1
            return
        self._count(self.revisions.setdefault(parsed[0], RevisionLatency()), line.active_ms)

    @staticmethod
    def _count(rev: RevisionLatency, active_ms: int) -> None:
        seconds = (active_ms + 0.5) / 1000
        rev.counts[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
        rev.total_seconds += seconds
        rev.count += 1


BATCH = 4096
"""Datagrams read per wakeup at most, so a flood cannot hold the event loop for long."""


class LogReader:
    """A unix datagram socket at ``path`` (0600) whose datagrams feed ``book``; inert until ``start()``.

    One wakeup of the event loop reads every datagram queued (up to ``BATCH``), until the socket would
    block: at thousands of lines a second the loop then pays one ``epoll_wait`` per batch instead of
    one per line, which is what let an earlier reader (one callback per datagram) fall behind. Nothing
    is dropped silently: a line HAProxy cannot send because the queue is full is counted by HAProxy
    itself (``DroppedLogs`` in ``show info``), and the controller reports it next to the lines read.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.book = LatencyBook()
        self.wakeups = 0
        """Times the loop woke the reader (lines per wakeup shows how much batching helps)."""
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

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
            loop.add_reader(sock.fileno(), self._drain)
        except BaseException:
            sock.close()
            raise
        self._sock, self._loop = sock, loop

    def _drain(self) -> None:
        """Read what is queued, until the socket would block or ``BATCH`` lines were read."""
        sock = self._sock
        if sock is None:
            return
        self.wakeups += 1
        recv, add = sock.recv, self.book.add
        for _ in range(BATCH):
            try:
                data = recv(MAX_LINE + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("request log socket %s: %s", self.path, e)
                return
            add(data)

    @property
    def running(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        """Stop reading and remove the socket file."""
        sock, loop = self._sock, self._loop
        self._sock = self._loop = None
        if sock is not None:
            if loop is not None and not loop.is_closed():
                loop.remove_reader(sock.fileno())
            sock.close()
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
