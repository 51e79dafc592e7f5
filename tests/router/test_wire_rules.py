"""Rules of the bytes on the wire, checked on the protocols in-process with recording transports.

The short ways of the hot path (a whole plain response forwarded as it came) must end every exchange
exactly as the general way does: the general way is the oracle, and the inputs are random valid and
malformed messages split at random byte boundaries.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gapless.router.config import Backend, RouterConfig
from gapless.router.downstream import DownstreamProtocol
from gapless.router.proxy import Router
from gapless.router.upstream import UpstreamProtocol


class RecordingTransport:
    """A transport that keeps what is written and whether it was closed (a double at the socket seam)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.data += data

    def writelines(self, data: list[bytes]) -> None:
        for d in data:
            self.data += d

    def get_extra_info(self, name: str) -> Any:
        return ("192.0.2.1", 5555) if name == "peername" else None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


@contextmanager
def _general_way_only(general: bool) -> Iterator[None]:
    whole = UpstreamProtocol._whole
    if general:
        UpstreamProtocol._whole = lambda self, down, data: False  # type: ignore[method-assign]
    try:
        yield
    finally:
        UpstreamProtocol._whole = whole  # type: ignore[method-assign]


def _exchange(request: bytes, response_pieces: list[bytes], *, general: bool) -> tuple[object, ...]:
    """What the client and the backend connection see of one request and its response."""
    with _general_way_only(general):
        router = Router("t", RouterConfig(version=1, backends=(Backend(id="b", port=1, revision="r"),)))
        pool = router.pools["b"]
        up = UpstreamProtocol(pool)
        up_transport = RecordingTransport()
        up.connection_made(up_transport)  # type: ignore[arg-type]
        pool.release(up)
        down = DownstreamProtocol(router)
        client = RecordingTransport()
        down.connection_made(client)  # type: ignore[arg-type]
        down.data_received(request)
        for piece in response_pieces:
            if up.closed or up.down is None:
                break
            up.data_received(piece)
        rev = router.revisions["r"].snapshot()
        return (
            bytes(client.data),
            client.closed,
            client.aborted,
            up_transport.closed,
            up_transport.aborted,
            up.status,
            len(pool.idle),
            down.current is None,
            rev.responses,
            rev.bytes_out,
            rev.latency_count,
            bytes(up_transport.data),
        )


STATUS_LINES = (
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 200",
    b"HTTP/1.1 201 Created",
    b"HTTP/1.1 204 No Content",
    b"HTTP/1.1 304 Not Modified",
    b"HTTP/1.1 404 Not Found",
    b"HTTP/1.1 503 Unavailable",
    b"HTTP/1.1 599 X",
    b"HTTP/1.1 600 X",
    b"HTTP/1.1 100 Continue",
    b"HTTP/1.1 2x0 Bad",
    b"HTTP/1.0 200 OK",
    b"HTTP/1.1  200 OK",
    b"HTTX/1.1 200 OK",
)


RESPONSE_HEADERS = (
    b"Content-Type: text/plain",
    b"X-Long: " + b"v" * 300,
    b"Server:x",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Keep-Alive: timeout=5",
    b"X-Content-Length: 3",
    b"Transfer-Encoding: chunked",
    b" folded",
    b"Bad Header: x",
    b"Date: now",
)


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    body = draw(st.binary(max_size=40))
    headers = draw(st.lists(st.sampled_from(RESPONSE_HEADERS), max_size=3))
    length = draw(
        st.sampled_from(
            (
                str(len(body)).encode(),
                str(len(body) + 1).encode(),
                str(max(0, len(body) - 1)).encode(),
                b" " + str(len(body)).encode() + b" ",
                b"+" + str(len(body)).encode(),
                b"1_0",
                b"abc",
                b"",
                None,
            )
        )
    )
    if length is not None:
        name = draw(st.sampled_from((b"Content-Length", b"content-length", b"CONTENT-LENGTH")))
        headers.insert(draw(st.integers(0, len(headers))), name + b":" + length)
        if draw(st.integers(0, 9)) == 0:
            headers.append(name + b": " + length)  # twice
    if b"Transfer-Encoding: chunked" in headers and draw(st.booleans()):
        body = (b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    eol = draw(st.sampled_from((b"\r\n", b"\r\n", b"\r\n", b"\n")))
    head = draw(st.sampled_from(STATUS_LINES)) + eol + b"".join(h + eol for h in headers) + eol
    extra = draw(st.sampled_from((b"", b"", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b"junk")))
    return head + body + extra


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(len(data), c) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a] or [data]


REQUESTS = (
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(REQUESTS), responses(), st.lists(st.integers(0, 400), max_size=3), st.booleans())
def test_whole_responses_end_as_the_general_way_ends_them(
    request: bytes, response: bytes, cuts: list[int], whole: bool
) -> None:
    """A response in one read or in pieces reaches the client, the counters and the pool as it always did."""
    pieces = [response] if whole else _split(response, cuts)
    assert _exchange(request, pieces, general=False) == _exchange(request, pieces, general=True)


def test_a_plain_response_takes_the_short_way() -> None:
    """The usual response (one read, Content-Length, nothing hop-by-hop) is forwarded byte for byte."""
    response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    calls: list[bool] = []
    whole = UpstreamProtocol._whole

    def spy(self: UpstreamProtocol, down: DownstreamProtocol, data: bytes) -> bool:
        calls.append(whole(self, down, data))
        return calls[-1]

    UpstreamProtocol._whole = spy  # type: ignore[method-assign]
    try:
        seen = _exchange(REQUESTS[0], [response], general=False)
    finally:
        UpstreamProtocol._whole = whole  # type: ignore[method-assign]
    assert calls == [True]
    assert seen[0] == response
    assert seen[6] == 1  # the connection went back to the pool
