"""Rewriting request and response heads on their way through the router.

The router re-frames every message it forwards (bodies arrive decoded from ``httptools``), so the
hop-by-hop headers of RFC 9110 section 7.6.1 are dropped and the router writes its own framing and
``Connection`` headers.

Heads are taken raw from the bytes that arrived (``response_head``, ``request_head_raw``): one
lower-cased copy is searched once for the few headers that need work, and when there are none (the
usual case) the head is forwarded as it came, with the version set to HTTP/1.1, the X-Forwarded-*
headers of a request appended and at most a framing header added to a response, so forwarding a head
costs about the same however many headers it has. Otherwise the head is rebuilt header by header,
like those that ``httptools`` reports one by one (requests with chunked bodies or upgrades): each raw
header name is looked up in a small table that remembers how names spelt that way are handled
(``KIND_PASS`` for almost all), ordinary headers are appended to a parts list straight away, and the
few special ones are kept aside for ``finish_*_head``. The table is keyed by the raw spelling, filled
from the lower-cased name the first time a spelling is seen, and bounded.
"""

from __future__ import annotations

import re

__all__ = [
    "KIND_CONTENT_LENGTH",
    "KIND_HOST",
    "KIND_PASS",
    "RAW_PARSE",
    "RAW_PLAIN",
    "RAW_REWRITE",
    "REQUEST_KINDS",
    "REQUEST_SPECIAL_RE",
    "RESPONSE_SPECIAL_RE",
    "content_length",
    "finish_request_head",
    "finish_response_head",
    "request_head_raw",
    "request_header_kind",
    "request_kind",
    "response_head",
    "response_header_kind",
]

KIND_PASS = 0
"""Forwarded as is."""
KIND_HOST = 1
KIND_CONTENT_LENGTH = 1  # in responses
KIND_SPECIAL = 2
"""Kept aside: framing, ``Connection``, ``Upgrade``, ``X-Forwarded-*`` and other hop-by-hop headers."""

RAW_PLAIN = 0
"""A raw request head forwarded as it came, plus the X-Forwarded-* headers."""
RAW_REWRITE = 1
"""A raw request head rebuilt header by header (hop-by-hop or X-Forwarded-* headers in it)."""
RAW_PARSE = 2
"""A request only the per-header parser can frame (chunked body, upgrade, leading empty line)."""

_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
_REQUEST_SPECIAL = _HOP_BY_HOP | {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
_CONNECTION_OPTIONS = frozenset({b"close", b"keep-alive", b"upgrade"})
_TABLE_LIMIT = 4096

_request_kinds: dict[bytes, int] = {}
_response_kinds: dict[bytes, int] = {}


def request_header_kind(name: bytes) -> int:
    """How a request header spelt ``name`` is handled (the slow path of the protocols' table look-up)."""
    kind = _request_kinds.get(name)
    if kind is None:
        lname = name.lower()
        if lname == b"host":
            kind = KIND_HOST
        elif lname in _REQUEST_SPECIAL:
            kind = KIND_SPECIAL
        else:
            kind = KIND_PASS
        if len(_request_kinds) < _TABLE_LIMIT:
            _request_kinds[name] = kind
    return kind


def response_header_kind(name: bytes) -> int:
    """How a response header spelt ``name`` is handled."""
    kind = _response_kinds.get(name)
    if kind is None:
        lname = name.lower()
        if lname == b"content-length":
            kind = KIND_CONTENT_LENGTH
        elif lname in _HOP_BY_HOP:
            kind = KIND_SPECIAL
        else:
            kind = KIND_PASS
        if len(_response_kinds) < _TABLE_LIMIT:
            _response_kinds[name] = kind
    return kind


REQUEST_KINDS = _request_kinds
"""The request table itself, for the protocol's inline look-up before calling ``request_header_kind``."""


def _listed_in_connection(connection: bytes) -> frozenset[bytes]:
    """Header names listed in a ``Connection`` value besides the standard options; they are hop-by-hop."""
    names = {t.strip().lower() for t in connection.split(b",")}
    return frozenset(n for n in names if n and n not in _CONNECTION_OPTIONS)


def _drop(parts: list[bytes], start: int, names: frozenset[bytes]) -> list[bytes]:
    """Remove ``name: value\\r\\n`` quadruples whose name is in ``names`` from ``parts[start:]``."""
    out = parts[:start]
    for i in range(start, len(parts), 4):
        if parts[i].lower() not in names:
            out.extend(parts[i : i + 4])
    return out


def finish_request_head(
    parts: list[bytes],
    special: list[tuple[bytes, bytes]] | None,
    host: bytes,
    client_ip: bytes,
    upgrade: bool,
) -> tuple[bytes, bool, bool]:
    """Complete an upstream request head; returns ``(head, chunked, has_connection_header)``.

    ``parts`` starts with the request line and holds the forwarded headers; ``special`` the headers
    kept aside. ``X-Forwarded-For`` is extended with the client's address, ``X-Forwarded-Proto`` and
    ``X-Forwarded-Host`` are set, a chunked body stays chunked (the caller re-encodes it), and an
    upgrade request keeps ``Upgrade`` with ``Connection: Upgrade``.
    """
    xff = b""
    chunked = False
    connection = b""
    upgrade_value = b""
    if special is not None:
        for name, value in special:
            lname = name.lower()
            if lname == b"x-forwarded-for":
                xff = value if not xff else xff + b", " + value
            elif lname == b"transfer-encoding":
                chunked = chunked or b"chunked" in value.lower()
            elif lname == b"connection":
                connection = value if not connection else connection + b", " + value
            elif lname == b"upgrade":
                upgrade_value = value
        if connection:
            listed = _listed_in_connection(connection)
            if listed:
                parts = _drop(parts, 1, listed)
    parts.extend((b"X-Forwarded-For: ", xff + b", " + client_ip if xff else client_ip, b"\r\n"))
    if host:
        parts.extend((b"X-Forwarded-Proto: http\r\nX-Forwarded-Host: ", host, b"\r\n"))
    else:
        parts.append(b"X-Forwarded-Proto: http\r\n")
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if upgrade and upgrade_value:
        parts.extend((b"Connection: Upgrade\r\nUpgrade: ", upgrade_value, b"\r\n"))
    parts.append(b"\r\n")
    return b"".join(parts), chunked, bool(connection)


def finish_response_head(
    parts: list[bytes],
    special: list[tuple[bytes, bytes]] | None,
    status: int,
    has_length: bool,
    *,
    no_body: bool,
    client_http10: bool,
    keep_alive: bool,
) -> tuple[bytes, bool, bool, bool]:
    """Complete the head sent to the client; returns ``(head, rechunk, keep_alive, close_delimited)``.

    ``parts`` starts with the status line. ``rechunk`` says the caller must chunk-encode the body it
    forwards: the upstream sent it chunked or delimited by closing, and the client speaks HTTP/1.1. An
    HTTP/1.0 client gets such a body delimited by closing the connection instead, so ``keep_alive`` may
    come back false. ``close_delimited`` says the upstream's body ends when the upstream closes.
    """
    chunked = False
    upgrade_value = b""
    if special is not None:
        connection = b""
        for name, value in special:
            lname = name.lower()
            if lname == b"transfer-encoding":
                chunked = chunked or b"chunked" in value.lower()
            elif lname == b"connection":
                connection = value
            elif lname == b"upgrade":
                upgrade_value = value
        if connection:
            listed = _listed_in_connection(connection)
            if listed:
                parts = _drop(parts, 1, listed)
    if status == 101:
        parts.extend((b"Connection: Upgrade\r\nUpgrade: ", upgrade_value, b"\r\n\r\n"))
        return b"".join(parts), False, True, False
    rechunk = False
    if not no_body and (chunked or not has_length):
        if client_http10:
            keep_alive = False
        else:
            rechunk = True
            parts.append(b"Transfer-Encoding: chunked\r\n")
    if not keep_alive:
        parts.append(b"Connection: close\r\n\r\n")
    elif client_http10:
        parts.append(b"Connection: keep-alive\r\n\r\n")
    else:
        parts.append(b"\r\n")
    return b"".join(parts), rechunk, keep_alive, not no_body and not chunked and not has_length


# Headers that make a response head need rewriting, searched in the lower-cased head in one pass.
RESPONSE_SPECIAL_RE = re.compile(
    rb"\n(?:connection|transfer-encoding|keep-alive|upgrade|proxy-connection|trailer|te):"
)


def response_head(
    raw: bytes, status: int, *, no_body: bool, client_http10: bool, keep_alive: bool
) -> tuple[bytes, bool, bool, bool]:
    """The head for the client from the backend's raw head (status line to blank line, CRLFs).

    Returns ``(head, rechunk, keep_alive, close_delimited)`` like ``finish_response_head``. A head
    without hop-by-hop headers is forwarded unchanged but for the version (always HTTP/1.1) and the
    framing and ``Connection`` headers the router adds.
    """
    lower = raw.lower()
    if RESPONSE_SPECIAL_RE.search(lower) is not None:
        return _response_head_rebuilt(
            raw, status, no_body=no_body, client_http10=client_http10, keep_alive=keep_alive
        )
    if not raw.startswith(b"HTTP/1.1 "):
        raw = b"HTTP/1.1" + raw[8:]
    has_length = b"\ncontent-length:" in lower
    extra = b""
    rechunk = False
    if not no_body and not has_length:
        if client_http10:
            keep_alive = False
        else:
            rechunk = True
            extra = b"Transfer-Encoding: chunked\r\n"
    if not keep_alive:
        extra += b"Connection: close\r\n"
    elif client_http10:
        extra += b"Connection: keep-alive\r\n"
    head = raw[:-2] + extra + b"\r\n" if extra else raw
    return head, rechunk, keep_alive, not no_body and not has_length


def _response_head_rebuilt(
    raw: bytes, status: int, *, no_body: bool, client_http10: bool, keep_alive: bool
) -> tuple[bytes, bool, bool, bool]:
    lines = raw.split(b"\r\n")
    parts = [b"HTTP/1.1" + lines[0][8:] + b"\r\n"]
    special: list[tuple[bytes, bytes]] = []
    has_length = False
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        value = value.strip()
        kind = response_header_kind(name)
        if kind == KIND_PASS:
            parts.extend((name, b": ", value, b"\r\n"))
        elif kind == KIND_CONTENT_LENGTH:
            has_length = True
            parts.extend((name, b": ", value, b"\r\n"))
        else:
            special.append((name, value))
    return finish_response_head(
        parts,
        special,
        status,
        has_length,
        no_body=no_body,
        client_http10=client_http10,
        keep_alive=keep_alive,
    )


# Request headers the router rewrites or drops, or that change the framing or the connection.
REQUEST_SPECIAL_RE = re.compile(
    rb"\n(?:connection|keep-alive|proxy-connection|te|trailer|transfer-encoding|upgrade|"
    rb"x-forwarded-for|x-forwarded-proto|x-forwarded-host):"
)
# Of those, the ones whose requests must be parsed header by header (chunked bodies, upgrades).
_REQUEST_FRAMING = re.compile(rb"\n(?:transfer-encoding|upgrade):")


def request_kind(lower: bytes) -> int:
    """How a lower-cased raw request head is handled: ``RAW_PLAIN``, ``RAW_REWRITE`` or ``RAW_PARSE``."""
    if lower.startswith(b"\r\n"):
        return RAW_PARSE
    if REQUEST_SPECIAL_RE.search(lower) is None:
        return RAW_PLAIN
    return RAW_PARSE if _REQUEST_FRAMING.search(lower) is not None else RAW_REWRITE


def content_length(head: bytes, lower: bytes) -> int:
    """The Content-Length of a raw head the HTTP parser already accepted (0 without one)."""
    i = lower.find(b"\ncontent-length:")
    if i < 0:
        return 0
    return int(head[i + 16 : head.find(b"\r\n", i + 16)])


def request_head_raw(head: bytes, lower: bytes, kind: int, client_ip: bytes) -> tuple[bytes, bool]:
    """The upstream head for a raw request head (request line to blank line); see ``finish_request_head``.

    Returns ``(head, has_connection_header)``. Without headers to rewrite (the usual case) the head is
    forwarded as it came, with the version set to HTTP/1.1 and the X-Forwarded-* headers added.
    """
    line_end = head.find(b"\r\n")
    line = head[:line_end]
    if not line.endswith(b" HTTP/1.1"):
        line = line[:-8] + b"HTTP/1.1"
    if kind == RAW_PLAIN:
        i = lower.find(b"\nhost:")
        host = head[i + 6 : head.find(b"\r\n", i + 6)].strip() if i >= 0 else b""
        return (
            b"".join(
                (
                    line,
                    head[line_end:-2],
                    b"X-Forwarded-For: ",
                    client_ip,
                    b"\r\nX-Forwarded-Proto: http\r\n",
                    b"X-Forwarded-Host: " + host + b"\r\n\r\n" if host else b"\r\n",
                )
            ),
            False,
        )
    parts = [line + b"\r\n"]
    special: list[tuple[bytes, bytes]] = []
    host = b""
    for raw in head[line_end + 2 : -4].split(b"\r\n"):
        if not raw:
            continue
        name, _, value = raw.partition(b":")
        value = value.strip()
        kind = request_header_kind(name)
        if kind == KIND_PASS:
            parts.extend((name, b": ", value, b"\r\n"))
        elif kind == KIND_HOST:
            host = value
            parts.extend((name, b": ", value, b"\r\n"))
        else:
            special.append((name, value))
    data, _, has_connection = finish_request_head(parts, special, host, client_ip, False)
    return data, has_connection
