"""The answers the router gives itself, as bytes ready to write: no backend is involved in them.

Kept apart from the connection code so that what a client can see from the router alone (400, 408,
431, 502, 503, 504) reads in one place.
"""

from __future__ import annotations

__all__ = ["BAD_REQUEST", "OVER_LIMIT", "REQUEST_TIMEOUT", "TOO_LARGE", "local_head"]

_LOCAL_HEAD = b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%s\r\n"

BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbad request\n"
"""A malformed request head; the connection closes."""

REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
"""A request head not finished within the header timeout."""

TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 20\r\nConnection: close\r\n\r\n"
    b"request head too big"
)
"""A request head over the size limit."""

OVER_LIMIT = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
"""A connection past the limit while every other one has a request in flight."""


def local_head(status: int, reason: bytes, length: int, *, keep_alive: bool) -> bytes:
    """The head of an answer with a plain-text body of ``length`` bytes (502, 503, 504)."""
    return _LOCAL_HEAD % (status, reason, length, b"" if keep_alive else b"Connection: close\r\n")
