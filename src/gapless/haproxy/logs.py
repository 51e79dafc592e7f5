"""Per-revision latency from HAProxy's request log, read as a stream from its ring buffer.

``show stat`` has only averages, and analysis and the dashboard need a histogram. HAProxy logs one
line per sampled request in gapless's own format (``LOG_FORMAT``: a sequence number, the server, the
status, ``%Ta`` the request's active time and ``%Tr`` the server's response time, in milliseconds) into
an in-memory ring (``ring gl``, ``format raw``); ``RingReader`` follows it with ``show events gl -w``
on the runtime socket and ``LatencyBook`` sorts each line into the built-in router's latency buckets
for the server's revision. HAProxy's timers are whole milliseconds (a value ``n`` means ``n <= t <
n+1``), so a line counts at ``n + 0.5`` ms: quantiles are good to half a millisecond.

Why a ring and not a datagram socket: Linux queues at most ``net.unix.max_dgram_qlen`` (10) datagrams
on a unix datagram socket, so the reader had to wake every 2-3 lines and lost lines whenever it was
not scheduled for a few milliseconds. The ring holds a megabyte; HAProxy writes into memory (no
system call per line) and the stream delivers what accumulated in one read.

Nothing is lost silently. A ring overwrites its oldest lines when nobody reads them, and HAProxy drops
a line when the reader attached is too far behind; either way the line's sequence number never
arrives. ``LineSequence`` counts every number that did not arrive as lost (after a short reordering
window: two threads may write in the other order), and recognises a line read twice (a reconnection
reads the ring again from its start) so it is counted once.

Lines come from HAProxy only, but the parser still treats them as hostile: a line of gapless's tag
that is not exactly of this format is counted as malformed; HAProxy's own messages in the ring
(``Proxy gapless stopped``, ``N events dropped``) are counted as notices.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from gapless.haproxy.config import MAX_LINE, RING, parse_server_name
from gapless.router.stats import LATENCY_BOUNDS

__all__ = [
    "REORDER_WINDOW",
    "LatencyBook",
    "LineSequence",
    "LogLine",
    "RevisionLatency",
    "RingReader",
    "parse_line",
]

log = logging.getLogger(__name__)

_MAX_MS = 86_400_000
_MAX_SEQ = 10**18


@dataclass(frozen=True)
class LogLine:
    """One request as HAProxy logged it."""

    seq: int | None
    """The line's number within its HAProxy worker (1, 2, ...); None when the request was not tracked
    (a request HAProxy refused before its rules ran is logged without one)."""
    server: str
    status: int
    active_ms: int
    """``%Ta``: from the request's first byte to the response's last (no idle keep-alive time)."""
    response_ms: int
    """``%Tr``: the server's time to the response head; -1 when none came."""


def parse_line(data: bytes) -> LogLine | None:
    """The request in one line, or None when it is not exactly a line of ``LOG_FORMAT``."""
    if len(data) > MAX_LINE:
        return None
    try:
        text = data.decode("ascii").rstrip("\n")
    except UnicodeDecodeError:
        return None
    parts = text.split(" ")
    if len(parts) != 6 or parts[0] != "gl2":
        return None
    _, seq, server, status, active, response = parts
    if not server or not all(_is_int(x) for x in (status, active, response)):
        return None
    if seq != "-" and not (_is_int(seq, 18) and 0 < int(seq) <= _MAX_SEQ):
        return None
    s, a, r = int(status), int(active), int(response)
    if not (0 <= s <= 999 and -1 <= a <= _MAX_MS and -1 <= r <= _MAX_MS):
        return None
    return LogLine(None if seq == "-" else int(seq), server, s, a, r)


def _is_int(text: str, digits: int = 12) -> bool:
    body = text[1:] if text.startswith("-") else text
    return 0 < len(body) <= digits and body.isascii() and body.isdigit()


REORDER_WINDOW = 256
"""Numbers a line may arrive behind a later one (threads write in turn) before it counts as lost."""


@dataclass
class LineSequence:
    """Which numbered lines of one HAProxy worker arrived, which were lost and which came twice.

    ``start`` is the first number expected: 1 for a worker this control plane started (or reloaded),
    so lines overwritten before the first read count as lost; None for a worker found running (its
    lines before the first one read were logged before this control plane read, and the histograms
    start with this control plane anyway). A number above the next expected one leaves a gap: its
    numbers wait ``REORDER_WINDOW`` numbers for a late line, then count as lost.
    """

    start: int | None = 1
    lost: int = 0
    duplicates: int = 0
    _next: int | None = None
    _missing: collections.deque[int] = field(default_factory=collections.deque)
    """Numbers below ``_next`` not seen yet, ascending (gaps are found in increasing order)."""

    def __post_init__(self) -> None:
        self._next = self.start

    def accept(self, seq: int) -> bool:
        """Whether line ``seq`` is new (count it) rather than one already seen."""
        nxt = self._next
        if nxt is None:
            nxt = seq
        if seq >= nxt:
            gap_from = max(nxt, seq - REORDER_WINDOW)
            self.lost += gap_from - nxt
            missing = self._missing
            missing.extend(range(gap_from, seq))
            self._next = seq + 1
            floor = seq - REORDER_WINDOW
            while missing and missing[0] < floor:
                missing.popleft()
                self.lost += 1
            return True
        try:
            self._missing.remove(seq)
        except ValueError:
            self.duplicates += 1
            return False
        return True

    def finish(self) -> None:
        """The worker is gone or no longer read: every number still awaited is lost."""
        self.lost += len(self._missing)
        self._missing.clear()

    @property
    def awaited(self) -> int:
        """Numbers in a gap that may still arrive (not counted as lost yet)."""
        return len(self._missing)


@dataclass
class RevisionLatency:
    """One revision's latency histogram on the built-in router's bounds."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    total_seconds: float = 0.0
    count: int = 0


_FAST = re.compile(
    rb"gl2 ([1-9][0-9]{0,17}) ([A-Za-z0-9_:-]{1,64})\.[A-Za-z0-9_.:-]{1,64} [0-9]{1,3} ([0-9]{1,7})"
    rb" (?:-1|[0-9]{1,7})\n?"
)
"""The common line, matched in one step: a number, a server named ``<revision>.<instance>``, a status
and timers below 10,000 s. Any line it matches ``parse_line`` accepts with the same meaning (a property
test checks it); anything else takes the slow path."""

_DROPPED = re.compile(rb"([0-9]{1,10}) events? dropped\n?")
"""HAProxy's own note in the ring after lines it could not write (their numbers are missing too)."""

_CACHE_MAX = 4096
"""Revisions remembered by server name; the cache starts again when it is full (names are a few dozen)."""


@dataclass
class LatencyBook:
    """Histograms per revision, fed with log lines."""

    revisions: dict[str, RevisionLatency] = field(default_factory=dict)
    malformed: int = 0
    """Lines of gapless's tag that were not of its format."""
    unrouted: int = 0
    """Lines of requests that reached no revision's server (``<NOSRV>``, or no timing)."""
    notices: int = 0
    """HAProxy's own messages in the ring (a proxy stopping at a reload, dropped events); not requests."""
    announced_dropped: int = 0
    """Lines HAProxy said it could not write (``N events dropped``); also missing from the numbers."""
    _by_revision: dict[bytes, RevisionLatency] = field(default_factory=dict, repr=False, compare=False)

    @property
    def lines(self) -> int:
        """Request lines read so far, each once: histogram counts, malformed and unrouted ones."""
        return self.malformed + self.unrouted + sum(r.count for r in self.revisions.values())

    def add(self, data: bytes, sequence: LineSequence | None = None) -> None:
        """Count one line (unless ``sequence`` saw its number already): a regular expression for the
        usual line (a few microseconds), the full parser for anything else."""
        m = _FAST.fullmatch(data)
        if m is not None:
            seq, revision, active = m.groups()
            if sequence is not None and not sequence.accept(int(seq)):
                return
            rev = self._by_revision.get(revision)
            if rev is None:
                if len(self._by_revision) >= _CACHE_MAX:
                    self._by_revision.clear()
                rev = self.revisions.setdefault(revision.decode(), RevisionLatency())
                self._by_revision[revision] = rev
            self._count(rev, int(active))
            return
        if not data.startswith(b"gl"):
            self.notices += 1
            d = _DROPPED.fullmatch(data)
            if d is not None:
                self.announced_dropped += int(d.group(1))
            return
        line = parse_line(data)
        if line is None:
            self.malformed += 1
            return
        if line.seq is not None and sequence is not None and not sequence.accept(line.seq):
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


READ_BYTES = 256 * 1024
"""Bytes taken from the stream per ``recv``."""

READS_PER_WAKEUP = 16
"""``recv`` calls per wakeup at most, so a flood cannot hold the event loop for long."""

READ_INTERVAL = 0.1
"""Seconds the reader waits after a read before it watches the stream again. HAProxy sends each line
as it is written, so a reader woken by every send woke for about 5 lines (measured at 1 in 10 and
~7,000 requests/s); waiting lets lines gather in the socket (and, once its buffer is full, in the ring,
which HAProxy then stops sending from without losing anything), so one wakeup reads a tenth of a
second of lines."""

ATTACH_TIMEOUT = 5.0
"""Seconds HAProxy has to answer ``show info`` on a new stream."""

RETIRE_QUIET = 1.0
"""After a reload, the old worker's stream is closed once it has been quiet this long..."""

RETIRE_MAX = 10.0
"""...or this long after the reload at most: a stream attached keeps the old worker alive."""


class _Stream:
    """One ``show events`` connection to one worker."""

    def __init__(self, sock: socket.socket, pid: str, sequence: LineSequence) -> None:
        self.sock = sock
        self.pid = pid
        self.sequence = sequence
        self.partial = b""
        self.open = True
        self.last_data = 0.0


class RingReader:
    """Follows the request log ring of the HAProxy behind runtime socket ``path``; inert until ``follow()``.

    One connection per worker: ``show info;show events RING -w`` answers with the worker's ``show info``
    (its pid, so the reader knows which worker's numbers it reads), then every line of the ring from
    its oldest and, as long as the connection stays open, each new one. A wakeup of the event loop
    reads everything that accumulated (up to ``READS_PER_WAKEUP`` reads). After a reload the old
    worker's stream is read on until it is quiet (its last requests finish), then closed: an attached
    reader would keep the old worker from exiting. Between reads the reader waits ``READ_INTERVAL``, so
    a wakeup reads many lines.
    """

    def __init__(self, path: Path, ring: str = RING) -> None:
        self.path = path
        self.ring = ring
        self.book = LatencyBook()
        self.wakeups = 0
        """Times the loop woke the reader (lines per wakeup shows how much batching helps)."""
        self._current: _Stream | None = None
        self._retiring: list[_Stream] = []
        self._sequences: dict[str, LineSequence] = {}
        """Per worker pid: which of its lines arrived (kept across reconnections to the same worker)."""
        self._lost_before = 0
        """Lines lost by workers no longer followed."""
        self._expect_new = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def lost(self) -> int:
        """Lines numbered by HAProxy that were never read, over every worker followed."""
        return self._lost_before + sum(s.lost for s in self._sequences.values())

    @property
    def worker(self) -> str | None:
        """The pid of the worker followed now (None when no stream is open)."""
        return self._current.pid if self._current is not None and self._current.open else None

    def expect_new(self) -> None:
        """A worker is about to start (HAProxy started or reloaded by this control plane): the next
        worker this reader has not followed yet counts its lines from number 1, so lines the ring
        overwrote before the first read count as lost."""
        self._expect_new = True

    async def follow(self, pid: str | None = None) -> None:
        """Have a stream open to the worker answering on the socket now (``pid``, when known).

        A stream to another worker (before a reload) is retired; a stream that ended while its
        worker lives is opened again and reads the ring from its start (lines already read are
        recognised by their numbers).
        """
        cur = self._current
        if cur is not None and cur.open and (pid is None or cur.pid == pid):
            return
        if cur is not None and cur.open:
            self._retire(cur)
        self._current = None
        stream = await self._attach()
        self._current = stream
        followed = {stream.pid, *(s.pid for s in self._retiring)}
        for gone in [p for p in self._sequences if p not in followed]:
            self._finish(gone)

    async def _attach(self) -> _Stream:
        loop = asyncio.get_running_loop()
        self._loop = loop
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await asyncio.wait_for(_connect(loop, sock, self.path), ATTACH_TIMEOUT)
            await loop.sock_sendall(sock, f"show info;show events {self.ring} -w\n".encode())
            head = await asyncio.wait_for(_read_head(loop, sock), ATTACH_TIMEOUT)
        except BaseException:
            sock.close()
            raise
        info, _, rest = head.partition(b"\n\n")
        pid = _info_pid(info)
        if pid is None:
            sock.close()
            raise ConnectionError(f"not show info output: {info[:80]!r}")
        sequence = self._sequences.get(pid)
        if sequence is None:
            sequence = LineSequence(start=1 if self._expect_new else None)
            self._sequences[pid] = sequence
            self._expect_new = False
        stream = _Stream(sock, pid, sequence)
        stream.last_data = loop.time()
        self._feed(stream, rest)
        loop.add_reader(sock.fileno(), self._drain, stream)
        return stream

    def _drain(self, stream: _Stream) -> None:
        """Read what accumulated on ``stream``, until it would block or ``READS_PER_WAKEUP`` reads."""
        self.wakeups += 1
        recv = stream.sock.recv
        for _ in range(READS_PER_WAKEUP):
            try:
                data = recv(READ_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                log.warning("request log stream of worker %s: %s", stream.pid, e)
                self._close(stream)
                return
            if not data:
                self._close(stream)
                return
            self._feed(stream, data)
        loop = self._loop
        if loop is not None and stream.open:
            loop.remove_reader(stream.sock.fileno())
            loop.call_later(READ_INTERVAL, self._watch, stream)

    def _watch(self, stream: _Stream) -> None:
        """Watch ``stream`` again after ``READ_INTERVAL`` (unless it was closed meanwhile)."""
        loop = self._loop
        if stream.open and loop is not None and not loop.is_closed():
            loop.add_reader(stream.sock.fileno(), self._drain, stream)

    def _feed(self, stream: _Stream, data: bytes) -> None:
        if not data:
            return
        if self._loop is not None:
            stream.last_data = self._loop.time()
        lines = (stream.partial + data).split(b"\n")
        stream.partial = lines.pop()
        if len(stream.partial) > MAX_LINE:
            self.book.malformed += 1
            stream.partial = b""
        add, sequence = self.book.add, stream.sequence
        for line in lines:
            if line:
                add(line, sequence)

    def _retire(self, stream: _Stream) -> None:
        """Read ``stream`` (an old worker's) until it is quiet, then close it."""
        if not stream.open or self._loop is None:
            self._close(stream, finished=True)
            return
        self._retiring.append(stream)
        deadline = self._loop.time() + RETIRE_MAX
        self._loop.call_later(RETIRE_QUIET, self._check_retiring, stream, deadline)

    def _check_retiring(self, stream: _Stream, deadline: float) -> None:
        loop = self._loop
        if not stream.open or loop is None:
            return
        now = loop.time()
        if now >= deadline or now - stream.last_data >= RETIRE_QUIET:
            self._close(stream, finished=True)
            return
        loop.call_later(RETIRE_QUIET, self._check_retiring, stream, deadline)

    def _close(self, stream: _Stream, *, finished: bool = False) -> None:
        """Close ``stream``; ``finished``: its worker will not be read again (what it still awaits is lost)."""
        if stream.open:
            stream.open = False
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.remove_reader(stream.sock.fileno())
            stream.sock.close()
        if stream in self._retiring:
            self._retiring.remove(stream)
        if finished:
            self._finish(stream.pid)

    def _finish(self, pid: str) -> None:
        """Worker ``pid`` will not be read again: what its numbers still await is lost."""
        sequence = self._sequences.pop(pid, None)
        if sequence is not None:
            sequence.finish()
            self._lost_before += sequence.lost

    @property
    def running(self) -> bool:
        return self.worker is not None

    def close(self) -> None:
        """Close every stream (HAProxy keeps running; what its ring holds stays there)."""
        for stream in [*self._retiring, *([self._current] if self._current is not None else [])]:
            self._close(stream, finished=True)
        self._current = None


SOCKET_PATH_MAX = 107


async def _connect(loop: asyncio.AbstractEventLoop, sock: socket.socket, path: Path) -> None:
    """Connect to ``path``, through ``/proc/self/fd/N/`` of its directory when it is too long for a unix socket."""
    if len(os.fsencode(path)) <= SOCKET_PATH_MAX:
        await loop.sock_connect(sock, str(path))
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        await loop.sock_connect(sock, f"/proc/self/fd/{fd}/{path.name}")
    finally:
        os.close(fd)


async def _read_head(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """Bytes up to and past the empty line that ends ``show info``'s answer."""
    head = b""
    while b"\n\n" not in head:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            raise ConnectionResetError("HAProxy closed the request log stream")
        head += chunk
    return head


def _info_pid(info: bytes) -> str | None:
    for line in info.splitlines():
        if line.startswith(b"Pid:"):
            with contextlib.suppress(UnicodeDecodeError):
                return line[4:].strip().decode("ascii") or None
    return None
