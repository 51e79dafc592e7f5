"""Where a flag service answers: an ``http(s)://`` URL, or a unix-domain socket written ``unix:PATH[:BASE]``.

The control plane serves the flag service at ``/flags`` of its API, which listens only on the unix
socket ``api.sock`` of its state directory (no TCP port to open, find or protect). Instances on the
same machine reach it there, so a flag service address names a socket as well as a URL. The form is
nginx's (``proxy_pass http://unix:/run/app.sock:/base``) without the scheme: ``unix:`` and the
socket's path, then optionally ``:`` and the HTTP path the service is mounted at:

    unix:/srv/shop/.gapless/api.sock:/flags     the control plane's mounted service
    unix:/run/flags.sock                        a service at the root of its own socket

A socket path therefore cannot contain ``:``. Standard library only: the SDK and the CLI's fast verbs
both parse addresses with it.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = ["ENV_URL", "UNIX_PREFIX", "FlagServiceAddress", "parse_address", "unix_address"]

ENV_URL = "GAPLESS_FLAGS_URL"
"""The variable naming the flag service: read by the SDK and the ``flags`` verbs, and set by the control
plane for its instances (its mounted service) unless its own environment or the template sets it."""
UNIX_PREFIX = "unix:"
_HOST = "gapless"  # the Host header of requests over a socket (any name would do)


class FlagServiceAddress(NamedTuple):
    """A parsed address: the base URL requests are made to, and the socket to make them on (None: TCP)."""

    url: str
    """``http://HOST[:PORT][/BASE]`` with no trailing ``/``; over a socket, ``http://gapless/BASE``."""
    socket: str | None = None
    base: str = ""
    """The HTTP path the service is mounted at (``/flags``), ``""`` at the root."""


def parse_address(address: str, what: str = "the flag service address") -> FlagServiceAddress:
    """Parse ``http(s)://HOST[:PORT][/PATH]`` or ``unix:PATH[:BASE]``; ``ValueError`` naming ``what`` otherwise."""
    expected = "expected http://HOST[:PORT][/PATH], https://... or unix:/path/to.sock[:/base]"
    if address.startswith(UNIX_PREFIX):
        rest = address[len(UNIX_PREFIX) :]
        sock, sep, base = rest.rpartition(":/")
        if not sep:
            sock, base = rest, ""
        else:
            base = "/" + base
        if not sock or ":" in sock:
            raise ValueError(f"{what} {address!r}: {expected} (a socket path cannot contain ':')")
        base = base.rstrip("/")
        if any(c in base for c in "?#: "):
            raise ValueError(
                f"{what} {address!r}: the base path {base!r} may not contain '?', '#', ':' or spaces"
            )
        return FlagServiceAddress(f"http://{_HOST}{base}", sock, base)
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} {address!r}: {expected}")
    try:
        parts.port  # noqa: B018 -- raises on a port that is not a number from 0 to 65535
    except ValueError as e:
        raise ValueError(f"{what} {address!r}: {e}") from e
    url = address.rstrip("/")
    return FlagServiceAddress(url, None, parts.path.rstrip("/"))


def unix_address(socket_path: str, base: str = "") -> str:
    """The address of a service on ``socket_path`` mounted at ``base``; ``ValueError`` if it cannot be written."""
    address = f"{UNIX_PREFIX}{socket_path}{':' + base if base else ''}"
    parse_address(address, f"socket {socket_path!r}")
    return address
