"""Which URLs the load generator may hit: loopback only, checked before the first request.

A load generator pointed at the wrong host is a denial-of-service tool, so the rule is narrow and
fails closed: the URL must be ``http://`` and its host must be ``localhost``, an address in
``127.0.0.0/8`` or ``::1``. Names are resolved and *every* address must be loopback; a name that does
not resolve is refused too, so the check never depends on an outside network being reachable.

The addresses that passed the check are the ones connected to (``Target.addresses``): the name is
not resolved a second time, so a resolver that answers differently later (DNS rebinding) cannot move
the traffic. The ``Host`` header still carries the name from the URL.

Parsing and judging are pure functions (:func:`parse_url`, :func:`check_loopback`); only
:func:`resolve_target` does I/O.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from gapless.loadgen.settings import LoadInputError

__all__ = ["ParsedUrl", "Target", "check_loopback", "parse_url", "resolve_target"]

RESOLVE_TIMEOUT = 5.0
"""Seconds a name lookup may take before the target is refused."""


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """The parts of a load target URL that the client needs."""

    url: str
    host: str
    port: int
    target: str
    """The request target sent on the request line: path plus query, ``/`` when empty."""
    host_header: str


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed URL and the loopback addresses, checked, that connections go to."""

    parsed: ParsedUrl
    addresses: tuple[str, ...]


def parse_url(url: str) -> ParsedUrl:
    """Split an ``http://`` URL into host, port and request target, or raise :class:`LoadInputError`."""
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        raise LoadInputError("url", f"must not contain spaces or control characters: {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise LoadInputError("url", f"is not a valid URL ({exc}): {url!r}") from exc
    if parts.scheme.lower() != "http":
        shown = f"{parts.scheme}://" if parts.scheme else "no scheme"
        raise LoadInputError("url", f"must start with http:// (got {shown}): {url!r}")
    host = parts.hostname
    if not host:
        raise LoadInputError("url", f"has no host: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise LoadInputError("url", f"must not carry credentials: {url!r}")
    path = parts.path or "/"
    target = f"{path}?{parts.query}" if parts.query else path
    if not target.isascii():
        raise LoadInputError("url", f"path and query must be ASCII (percent-encode them): {url!r}")
    if port is None:
        port = 80
    # netloc minus credentials, as written, so a name-based virtual host sees what the user typed.
    host_header = parts.netloc.rpartition("@")[2]
    if not host_header.isascii():
        raise LoadInputError("url", f"host must be ASCII: {url!r}")
    return ParsedUrl(url=url, host=host, port=port, target=target, host_header=host_header)


def check_loopback(host: str, addresses: list[str]) -> tuple[str, ...]:
    """Return ``addresses`` if every one is loopback, else raise :class:`LoadInputError`.

    An empty list is refused: a name with no address is not known to be local.
    """
    if not addresses:
        raise LoadInputError("url", f"host {host!r} did not resolve to any address; refusing to send")
    foreign = [a for a in addresses if not _is_loopback(a)]
    if foreign:
        hint = " (0.0.0.0 is a bind address; use 127.0.0.1)" if "0.0.0.0" in foreign else ""  # noqa: S104
        raise LoadInputError(
            "url",
            f"host {host!r} resolves to non-loopback address(es) {', '.join(foreign)}; the load "
            f"generator only targets localhost, 127.0.0.0/8 or ::1{hint}",
        )
    return tuple(dict.fromkeys(addresses))


async def resolve_target(url: str) -> Target:
    """Parse ``url``, resolve its host and check every address is loopback; no request is sent."""
    parsed = parse_url(url)
    literal = _ip_literal(parsed.host)
    if literal is not None:
        return Target(parsed=parsed, addresses=check_loopback(parsed.host, [literal]))
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT):
            infos = await loop.getaddrinfo(parsed.host, parsed.port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
        raise LoadInputError(
            "url", f"host {parsed.host!r} could not be resolved ({reason}); refusing to send"
        ) from exc
    addresses = [str(info[4][0]) for info in infos]
    return Target(parsed=parsed, addresses=check_loopback(parsed.host, addresses))


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def _is_loopback(address: str) -> bool:
    # A scoped IPv6 address ("::1%lo") is still the loopback address.
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        # ::ffff:127.0.0.1 reaches 127.0.0.1; Python < 3.13 does not call it loopback by itself.
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback
