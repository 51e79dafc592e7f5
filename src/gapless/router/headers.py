"""Rewriting request and response heads on their way through the router.

The router re-frames every message it forwards (bodies arrive decoded from ``httptools``), so the
hop-by-hop headers of RFC 9110 section 7.6.1 are dropped and the router writes its own framing and
``Connection`` headers.

This runs for every header of every message, so the protocols build heads while ``httptools`` reports
headers: each raw header name is looked up once in a small table that remembers how names spelt that
way are handled (``KIND_PASS`` for almost all), ordinary headers are appended to a parts list straight
away, and only the few special ones are kept aside for ``finish_*_head`` to handle at the end of the
head. Names are matched case-insensitively: the table is keyed by the raw spelling, filled from the
lower-cased name the first time a spelling is seen, and bounded.
"""

from __future__ import annotations

__all__ = [
    "KIND_CONTENT_LENGTH",
    "KIND_HOST",
    "KIND_PASS",
    "finish_request_head",
    "finish_response_head",
    "request_header_kind",
    "response_header_kind",
]

KIND_PASS = 0
"""Forwarded as is."""
KIND_HOST = 1
KIND_CONTENT_LENGTH = 1  # in responses
KIND_SPECIAL = 2
"""Kept aside: framing, ``Connection``, ``Upgrade``, ``X-Forwarded-*`` and other hop-by-hop headers."""

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
RESPONSE_KINDS = _response_kinds


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
