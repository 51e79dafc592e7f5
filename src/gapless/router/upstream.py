"""The router's side of a connection to a backend: parse its responses and stream them to the client.

One ``UpstreamProtocol`` carries one exchange at a time (no pipelining towards backends) and is pooled
between exchanges. Everything a response produces while one chunk of bytes is parsed is appended to
the client connection's write list and written with one call afterwards, so a small response costs
one ``send`` however many pieces (head, body, chunk markers) it has. The response head is not
reported header by header: the parser only says where it ends, and ``headers.response_head`` takes
the raw bytes (usually forwarding them unchanged).

``httptools`` has no way to tell the response parser that a response has no body because it answers
a ``HEAD``; such a response is finished by hand after its head and the parser is replaced.

The usual response, a whole HTTP/1.1 message with a Content-Length and no hop-by-hop header arriving
in one read for a keep-alive HTTP/1.1 client, takes a shorter way (``_whole``): it is framed here, fed
to a second parser that calls back into Python for nothing, only to be validated, and written to the
client as it came, with one call. Python callbacks are most of what a response costs the router, and
this path makes none. Whenever that parser does not end the message exactly where the framing did (or
refuses it), it is replaced and the bytes take the general way instead, whose answer then stands.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, Protocol, TypeAlias

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from gapless.router.headers import RESPONSE_SPECIAL_RE, response_head
from gapless.router.pool import BackendPool

if TYPE_CHECKING:
    from gapless.router.exchange import Exchange

__all__ = ["UPSTREAM_FULL", "Pool", "ResponseSink", "RouterState", "UpstreamProtocol"]

UPSTREAM_FULL = 1
"""The reason bit with which the client is no longer read while the backend's send buffer is full."""


class RouterState(Protocol):
    """What a backend connection reads of the router: whether it is shutting down."""

    closing: bool


class ResponseSink(Protocol):
    """The client side of an exchange, as a backend connection sees it (``downstream`` meets it).

    Declared here so that this module does not import the one above it: a response goes up only
    through these members. Pieces of a response are appended to ``wbuf`` and written by ``flush``.
    """

    wbuf: list[bytes]
    write_paused: bool
    closing: bool

    @property
    def transport(self) -> asyncio.Transport: ...
    @property
    def router(self) -> RouterState: ...

    def flush(self) -> None: ...
    def response_done(self, up: UpstreamProtocol) -> None: ...
    def upstream_failed(self, up: UpstreamProtocol) -> None: ...
    def start_tunnel(self, up: UpstreamProtocol) -> None: ...
    def tunnel_closed(self) -> None: ...
    def pause_reading(self, reason: int) -> None: ...
    def resume_reading(self, reason: int) -> None: ...


_NO_BODY = (b"204", b"304")


class _Validator:
    """The callbacks of the parser that only validates whole responses: one C call when one ends."""

    __slots__ = ("on_message_complete",)

    def __init__(self, ended: list[None]) -> None:
        self.on_message_complete = partial(ended.append, None)


class UpstreamProtocol(asyncio.Protocol):
    """A keep-alive connection to one backend."""

    __slots__ = (
        "close_delimited",
        "closed",
        "down",
        "ended",
        "ex",
        "got_bytes",
        "head_buf",
        "head_pos",
        "headers_done",
        "idle",
        "idle_swept",
        "keep_alive",
        "parser",
        "pool",
        "read_paused",
        "rechunk",
        "response_done",
        "reused",
        "status",
        "transport",
        "tunnel",
        "validator",
        "whole",
    )

    transport: asyncio.Transport  # set by connection_made, before the protocol is handed out

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.parser = HttpResponseParser(self)
        self.ended: list[None] = []  # one item per response the validator saw end
        self.validator = HttpResponseParser(_Validator(self.ended))
        self.whole = False  # the exchange may take the short way (see _whole)
        self.down: ResponseSink | None = None
        self.ex: Exchange | None = None
        self.status = 0
        # The bytes of the response head being received; the current head starts at head_pos.
        self.head_buf = b""
        self.head_pos = 0
        self.headers_done = False
        self.got_bytes = False
        self.response_done = False
        self.keep_alive = True
        self.rechunk = False
        self.close_delimited = False
        self.idle = False
        self.idle_swept = False
        self.closed = False
        self.reused = False
        self.read_paused = False
        self.tunnel = False

    # -- exchange life cycle (called by the downstream side) --

    def start(self, down: ResponseSink, ex: Exchange) -> None:
        """Carry ``ex`` for ``down``: the caller then writes the request bytes."""
        self.down = down
        self.ex = ex
        self.status = 0
        self.headers_done = False
        self.got_bytes = False
        self.response_done = False
        self.head_buf = b""
        self.head_pos = 0
        self.whole = ex.keep_alive and not ex.http10 and not ex.is_head
        if down.write_paused:
            self.pause_reading()

    def close(self) -> None:
        self.closed = True
        self.down = None
        self.ex = None
        self.transport.close()

    def abort(self) -> None:
        self.closed = True
        self.down = None
        self.ex = None
        self.transport.abort()

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        down = self.down
        if down is None:
            # Bytes from an idle connection: the backend is confused; never reuse it.
            self.close()
            return
        if self.tunnel:
            down.transport.write(data)
            self.pool.rev.bytes_out += len(data)
            return
        self.got_bytes = True
        if not self.headers_done:
            if self.whole and not self.head_buf and self._whole(down, data):
                return
            if self.head_buf:
                self.head_buf += data  # a head split over reads: rare
            else:
                self.head_buf = data
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            rest = data[exc.args[0] :]
            if rest:
                down.wbuf.append(rest)
            down.flush()
            self.tunnel = True
            down.start_tunnel(self)
            return
        except HttpParserError:
            self.keep_alive = False
            down.upstream_failed(self)
            return
        down.flush()
        if self.head_pos:
            self.head_buf = self.head_buf[self.head_pos :]
            self.head_pos = 0
        if self.response_done:
            if self.ex is not None and self.ex.is_head:
                self.parser = HttpResponseParser(self)
            down.response_done(self)

    def _whole(self, down: ResponseSink, data: bytes) -> bool:
        """Forward ``data`` as it came if it is one whole plain response; False to take the general way."""
        end = data.find(b"\r\n\r\n") + 4
        if end < 4 or not data.startswith(b"HTTP/1.1 "):
            return False
        code = data[9:12]
        if code < b"200" or code > b"599" or code in _NO_BODY:
            return False
        lower = data[:end].lower()
        i = lower.find(b"\ncontent-length:")
        if i < 0 or RESPONSE_SPECIAL_RE.search(lower) is not None:
            return False
        length = lower[i + 16 : lower.find(b"\r\n", i + 16)].strip()
        if not length.isdigit() or end + int(length) != len(data) or down.router.closing:
            return False
        ended = self.ended
        try:
            self.validator.feed_data(data)
        except HttpParserError:
            ended.clear()
            self.validator = HttpResponseParser(_Validator(ended))
            return False  # the general parser says what is wrong
        if len(ended) != 1:
            ended.clear()
            self.validator = HttpResponseParser(_Validator(ended))
            return False
        ended.clear()
        self.status = int(code)
        self.headers_done = True
        self.response_done = True
        self.rechunk = False
        self.close_delimited = False
        self.pool.rev.bytes_out += len(data) - end
        if not down.closing:
            down.transport.write(data)
        down.response_done(self)
        return True

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.idle:
            self.idle = False
            self.pool.forget(self)
        down = self.down
        if down is None:
            return
        if self.tunnel:
            down.tunnel_closed()
        elif self.close_delimited and self.headers_done and not self.response_done:
            # The body ran until the backend closed: that ends the response normally.
            if self.rechunk:
                down.wbuf.append(b"0\r\n\r\n")
            down.flush()
            self.keep_alive = False
            down.response_done(self)
        else:
            down.upstream_failed(self)

    def pause_writing(self) -> None:
        if self.down is not None:
            self.down.pause_reading(UPSTREAM_FULL)

    def resume_writing(self) -> None:
        if self.down is not None:
            self.down.resume_reading(UPSTREAM_FULL)

    # -- httptools callbacks --

    def on_headers_complete(self) -> None:
        down = self.down
        ex = self.ex
        if down is None or ex is None:
            return
        status = self.status = self.parser.get_status_code()
        no_body = ex.is_head or status < 200 or status in (204, 304)
        buf = self.head_buf
        start = self.head_pos
        end = buf.find(b"\r\n\r\n", start) + 4
        if end < 4:
            raise ValueError("response head without CRLF CRLF")  # httptools reports it as a parse error
        if status < 200:
            self.head_pos = end  # another head follows the interim one
        else:
            self.head_buf = b""
            self.head_pos = 0
        raw = buf[start:end] if start or end != len(buf) else buf
        if status >= 200 and not no_body and ex.keep_alive and not ex.http10 and not down.router.closing:
            # The usual response, inline: a HTTP/1.1 head with a Content-Length and no hop-by-hop
            # headers goes to a keep-alive HTTP/1.1 client as it came.
            lower = raw.lower()
            if (
                raw.startswith(b"HTTP/1.1 ")
                and b"\ncontent-length:" in lower
                and RESPONSE_SPECIAL_RE.search(lower) is None
            ):
                down.wbuf.append(raw)
                self.rechunk = False
                self.headers_done = True
                self.close_delimited = False
                return
        head, self.rechunk, keep_alive, close_delimited = response_head(
            raw,
            status,
            no_body=no_body,
            client_http10=ex.http10,
            keep_alive=ex.keep_alive and not down.router.closing,
        )
        ex.keep_alive = keep_alive
        down.wbuf.append(head)
        if status < 200:
            return
        self.headers_done = True
        self.close_delimited = close_delimited
        if ex.is_head:
            self.keep_alive = True
            self.response_done = True

    def on_body(self, body: bytes) -> None:
        down = self.down
        if down is None or self.response_done:
            return
        self.pool.rev.bytes_out += len(body)
        if self.rechunk:
            down.wbuf.extend((b"%x\r\n" % len(body), body, b"\r\n"))
        else:
            down.wbuf.append(body)

    def on_message_complete(self) -> None:
        if self.status < 200 or self.response_done:
            return
        self.keep_alive = self.parser.should_keep_alive()
        if self.rechunk and self.down is not None:
            self.down.wbuf.append(b"0\r\n\r\n")
        self.response_done = True


Pool: TypeAlias = BackendPool[UpstreamProtocol]
"""A backend's pool of these connections."""
