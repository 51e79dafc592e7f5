"""Reading HTTP/1.1 requests off a client connection, for the least work per request.

Most requests are a head and then nothing or a Content-Length body. ``RequestReader`` cuts such
requests out of the bytes itself and hands each head whole to an ``httptools`` parser that does not
report headers one by one: the parser validates the head and the router forwards its raw bytes (see
``headers.request_head_raw``), so a request with many headers costs about as much as one with few.
Requests whose end only a parser can find (a chunked body, an upgrade, an empty line before the
request line) go to a second parser that reports every header, together with everything after them,
until a read ends exactly between two requests; then framing resumes.

Each complete head becomes an ``Exchange`` passed to ``_start``, which the protocol defines.

A head may have at most ``max_head`` bytes however they arrive: a head that comes in pieces is
gathered in a ``bytearray`` and searched for its end only from where the last piece ended, so a client
sending one byte at a time costs linear work, not quadratic, and is cut off at the limit
(``HeadTooLarge``, answered 431). The per-header parser counts the bytes of the head it is in, too.
"""

from __future__ import annotations

import asyncio

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from gapless.router.exchange import Exchange, queue_body
from gapless.router.headers import (
    KIND_HOST,
    KIND_PASS,
    RAW_PARSE,
    RAW_REWRITE,
    REQUEST_KINDS,
    REQUEST_SPECIAL_RE,
    content_length,
    finish_request_head,
    request_head_raw,
    request_header_kind,
    request_kind,
)

__all__ = ["MAX_HEAD", "HeadTooLarge", "RequestReader"]

MAX_HEAD = 64 * 1024
"""Bytes a request head may have unless the router's limits say otherwise."""


class HeadTooLarge(HttpParserError):  # noqa: N818 -- named after the 431 it is answered with
    """The request head is over the limit."""


class _RawHeadCallbacks:
    """The callbacks of the parser that validates plain framed heads without reporting any header.

    It has no ``on_headers_complete``: the reader builds the exchange itself once ``feed_data`` of a
    head returns, which saves a call back into Python per request.
    """

    __slots__ = ("on_body", "on_message_complete")

    def __init__(self, reader: RequestReader) -> None:
        self.on_body = reader.on_body
        self.on_message_complete = reader.on_message_complete


class _RewriteHeadCallbacks(_RawHeadCallbacks):
    """The callbacks of the parser that validates framed heads with headers to rewrite (hop-by-hop ones,
    X-Forwarded-*): the head is rebuilt while the parser still knows whether the client keeps alive."""

    __slots__ = ("on_headers_complete",)

    def __init__(self, reader: RequestReader) -> None:
        super().__init__(reader)
        self.on_headers_complete = reader.on_raw_head_complete


class RequestReader(asyncio.Protocol):
    """The request-reading half of the client protocol; ``read`` takes the bytes of each read."""

    __slots__ = (
        "at_boundary",
        "body_left",
        "body_parser",
        "client_ip",
        "fast",
        "head",
        "head_bytes",
        "head_lower",
        "host",
        "in_head",
        "inbuf",
        "max_head",
        "parser",
        "parsing",
        "parts",
        "rewriter",
        "slow_mode",
        "special",
        "upgrading",
        "url",
    )

    def __init__(self) -> None:
        self.parser = HttpRequestParser(self)
        self.fast = HttpRequestParser(_RawHeadCallbacks(self))
        self.rewriter: HttpRequestParser | None = None
        self.body_parser = self.fast  # the raw-head parser that gets the body of the request being read
        self.slow_mode = False
        self.at_boundary = True
        self.inbuf = bytearray()  # a partial head; empty in the usual case
        self.max_head = MAX_HEAD
        self.in_head = False  # the per-header parser is inside a head
        self.head_bytes = 0  # bytes fed to the per-header parser since that head began
        self.body_left = 0
        self.head = b""
        self.head_lower = b""
        self.client_ip = b""
        self.url = bytearray()
        self.parts: list[bytes] = [b""]  # the request line goes first once the head is complete
        self.special: list[tuple[bytes, bytes]] | None = None
        self.host = b""
        self.parsing: Exchange | None = None
        self.upgrading = False

    def _start(self, ex: Exchange) -> None:
        """A request head is complete; the protocol routes or queues ``ex``."""
        raise NotImplementedError

    def read(self, data: bytes) -> None:
        """Parse the bytes of one read; raises ``HttpParserError`` on a malformed request."""
        if self.upgrading:
            if self.parsing is not None:
                queue_body(self.parsing, data)
        elif self.slow_mode:
            self._parse(data)
        else:
            self._frame(data)

    def _frame(self, data: bytes) -> None:
        """Cut requests out of ``data`` and give each, head then body, to the raw-head parser.

        The usual request (a head, then nothing or a Content-Length body) is framed here so that its
        head can be forwarded as raw bytes instead of header by header. A request with a chunked body
        or an upgrade, whose end only the parser can find, goes to the per-header parser together
        with everything after it, until a read ends exactly between two requests.
        """
        left = self.body_left
        if left:
            if len(data) <= left:
                self.body_left = left - len(data)
                self.body_parser.feed_data(data)
                return
            self.body_left = 0
            self.body_parser.feed_data(data[:left])
            data = data[left:]
        if self.inbuf:
            if not self._gather(data):
                return
            buf = bytes(self.inbuf)
            self.inbuf.clear()
        else:
            buf = data
        size = len(buf)
        pos = 0
        while pos < size:
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                if size - pos > self.max_head:
                    raise HeadTooLarge("request head too large")
                if buf.find(b"\n\n", pos) >= 0:
                    self.slow_mode = True  # bare LF line ends: let the parser judge (and refuse) them
                    self._parse(buf[pos:] if pos else buf)
                    return
                self.inbuf += memoryview(buf)[pos:]
                return
            if end - pos > self.max_head:
                raise HeadTooLarge("request head too large")
            end += 4
            head = buf[pos:end] if pos or end != size else buf
            lower = head.lower()
            self.at_boundary = False
            # The usual head, inline: no leading empty line and nothing to rewrite; else ask.
            if head[0] != 13 and REQUEST_SPECIAL_RE.search(lower) is None:
                parser = self.fast
                self.parsing = None  # a request without a body ends inside feed_data: not the last one's
                parser.feed_data(head)
                self._plain_head(head, lower)
            else:
                kind = request_kind(lower)
                if kind == RAW_PARSE:
                    self.slow_mode = True
                    self._parse(buf[pos:] if pos else buf)
                    return
                parser = self._rewriter()
                self.head = head
                self.head_lower = lower
                parser.feed_data(head)
            pos = end
            # The parser ends a request without a body at its head; otherwise it has a Content-Length.
            length = 0 if self.at_boundary else content_length(head, lower)
            if length:
                self.body_parser = parser
                if size - pos < length:
                    self.body_left = length - (size - pos)
                    if pos < size:
                        parser.feed_data(buf[pos:])
                    return
                parser.feed_data(buf[pos : pos + length])
                pos += length

    def _gather(self, data: bytes) -> bool:
        """Add a piece of a partial head; True once the head (and maybe more) is complete in ``inbuf``.

        The end of the head is searched only among the new bytes and the three before them, so a head
        sent in many small pieces costs time linear in its size.
        """
        inbuf = self.inbuf
        start = max(0, len(inbuf) - 3)
        inbuf += data
        if inbuf.find(b"\r\n\r\n", start) >= 0 or inbuf.find(b"\n\n", max(0, start - 1)) >= 0:
            return True
        if len(inbuf) > self.max_head:
            raise HeadTooLarge("request head too large")
        return False

    def _rewriter(self) -> HttpRequestParser:
        """The raw-head parser for heads with headers to rewrite, made when the first one comes."""
        parser = self.rewriter
        if parser is None:
            parser = self.rewriter = HttpRequestParser(_RewriteHeadCallbacks(self))
        return parser

    def _parse(self, data: bytes) -> None:
        """Give ``data`` to the per-header parser; go back to framing once a read ends between requests."""
        if self.in_head or self.at_boundary:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self.upgrading = True
            rest = data[exc.args[0] :]
            if self.parsing is not None and rest:
                queue_body(self.parsing, rest)
            return
        if self.in_head and self.head_bytes > self.max_head:
            raise HeadTooLarge("request head too large")
        if self.at_boundary:
            self.slow_mode = False

    def _plain_head(self, head: bytes, lower: bytes) -> None:
        """The raw-head parser accepted ``head``, which has nothing to rewrite: forward it as it came.

        Its version is set to HTTP/1.1 and the X-Forwarded-* headers are added (one join). Without a
        ``Connection`` header only the version decides keep-alive (the parser's own answer is gone
        once a request without a body has ended).
        """
        line_end = head.find(b"\r\n")
        line = head[:line_end]
        if line.endswith(b" HTTP/1.1"):
            keep_alive = True
            http10 = False
        else:
            version = self.fast.get_http_version()
            keep_alive = version[0] != "0" and version[2] != "0"
            http10 = not keep_alive and version == "1.0"
            line = line[:-8] + b"HTTP/1.1"
        i = lower.find(b"\nhost:")
        host = head[i + 6 : head.find(b"\r\n", i + 6)].strip() if i >= 0 else b""
        ex = Exchange(
            self.fast.get_method(),
            b"".join(
                (
                    line,
                    head[line_end:-2],
                    b"X-Forwarded-For: ",
                    self.client_ip,
                    b"\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: " + host + b"\r\n\r\n"
                    if host
                    else b"\r\nX-Forwarded-Proto: http\r\n\r\n",
                )
            ),
            False,
            keep_alive,
            http10,
        )
        ex.request_done = self.at_boundary  # the parser ends a request without a body at its head
        self._start(ex)

    def on_raw_head_complete(self) -> None:
        """The rewriting raw-head parser accepted ``self.head``: forward it with a few headers rewritten."""
        parser = self._rewriter()
        head, has_connection = request_head_raw(self.head, self.head_lower, RAW_REWRITE, self.client_ip)
        keep_alive = parser.should_keep_alive()
        http10 = (not keep_alive or has_connection) and parser.get_http_version() == "1.0"
        self._start(Exchange(parser.get_method(), head, False, keep_alive, http10))

    # -- httptools callbacks (the per-header parser; on_body and on_message_complete serve both) --

    def on_message_begin(self) -> None:
        self.at_boundary = False
        self.in_head = True

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        kind = REQUEST_KINDS.get(name)
        if kind is None:
            kind = request_header_kind(name)
        if kind == KIND_PASS:
            self.parts += (name, b": ", value, b"\r\n")
        elif kind == KIND_HOST:
            self.host = value
            self.parts += (name, b": ", value, b"\r\n")
        elif self.special is None:
            self.special = [(name, value)]
        else:
            self.special.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        parser = self.parser
        method = parser.get_method()
        parts = self.parts
        parts[0] = b"%s %s HTTP/1.1\r\n" % (method, self.url)
        head, chunked, has_connection = finish_request_head(
            parts, self.special, self.host, self.client_ip, parser.should_upgrade()
        )
        keep_alive = parser.should_keep_alive()
        # HTTP/1.1 keeps alive by default, so the version only matters without keep-alive or when the
        # client said Connection: (an HTTP/1.0 client asking for keep-alive).
        http10 = (not keep_alive or has_connection) and parser.get_http_version() == "1.0"
        # Ready for the next head (httptools has no cheaper place than here to reset).
        self.url = bytearray()
        self.parts = [b""]  # the request line goes first once the head is complete
        self.special = None
        self.host = b""
        self._start(Exchange(method, head, chunked, keep_alive, http10))

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None:
            return
        n = len(body)
        ex.body_bytes += n
        if ex.chunked:
            queue_body(ex, b"%x\r\n" % n)
            queue_body(ex, body)
            queue_body(ex, b"\r\n")
        else:
            queue_body(ex, body)

    def on_message_complete(self) -> None:
        self.at_boundary = True
        ex = self.parsing
        if ex is None:
            return
        ex.request_done = True
        if ex.chunked:
            queue_body(ex, b"0\r\n\r\n")
