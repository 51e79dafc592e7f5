"""Where the ``flags`` verbs find their flag service, and the blocking client they reach it with.

The flag service runs in one of two places: mounted at ``/flags`` of the control plane's API (``gapless
up``; reached on the unix socket ``api.sock`` of the state directory), or on its own (``gapless flags
serve``, which writes its URL to ``flags.url`` there). A verb tries, in order: ``--url``, else
``$GAPLESS_FLAGS_URL`` (either one is then the only place tried; an ``http(s)://`` URL or a socket,
``unix:PATH[:BASE]``); else the control plane's socket,
``flags.url``, and the historical default ``http://127.0.0.1:8787``, going on to the next when one does
not answer. The admin token is ``--token``, else ``$GAPLESS_FLAGS_TOKEN``, else the file
``flags-admin-token`` the service wrote in the state directory (made while the mounted service loads,
so right after ``gapless up`` the client waits out the service's 503 before reading it).

Only the standard library's ``http.client``: a verb that sends one request should cost Python's start
and little more, not httpx's and pydantic's imports.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from gapless.core.files import API_SOCKET, FLAGS_ADMIN_TOKEN, FLAGS_URL_FILE

__all__ = ["DEFAULT_URL", "Endpoint", "FlagsClient", "FlagsError", "api_path", "candidates"]

DEFAULT_URL = "http://127.0.0.1:8787"
STARTING_WAIT = 30.0
"""Seconds a verb waits for the control plane's flag service to finish loading (it answers 503 until then)."""


def api_path(*parts: str) -> str:
    """``/api/v1/`` and the parts, each quoted: a key with a ``/`` or ``?`` names only itself."""
    return "/api/v1/" + "/".join(quote(str(p), safe="") for p in parts)


class FlagsError(Exception):
    """A verb's failure: the exit code and the lines to print (the first after ``error:``)."""

    def __init__(self, code: int, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details or []


class Endpoint(NamedTuple):  # not a dataclass: see gapless.core.errors.Problem
    """One place a flag service may answer: a base URL, or the control plane's unix socket."""

    source: str
    """How it was found, for messages: ``--url``, ``$GAPLESS_FLAGS_URL``, ``the control plane``, ..."""
    url: str = ""
    socket: Path | None = None
    base: str = "/flags"
    """Over a socket: the path the service is mounted at (the control plane's: ``/flags``)."""

    @property
    def prefix(self) -> str:
        return self.base if self.socket is not None else urlsplit(self.url).path.rstrip("/")

    def describe(self) -> str:
        where = f"{self.socket} ({self.base or '/'})" if self.socket is not None else self.url
        return f"{self.source} at {where}"


def _named(address: str, source: str) -> Endpoint:
    """The endpoint an ``http(s)://`` URL or a ``unix:PATH[:BASE]`` address names (exit 2 when malformed)."""
    if address.startswith("unix:"):
        # Imported only for a socket: the verbs import nothing of gapless.flags otherwise
        # (tests/cli/test_flags_startup.py); the parser is the SDK's, a small standard-library module.
        from gapless.flags.address import parse_address

        try:
            parsed = parse_address(address, source)
        except ValueError as e:
            raise FlagsError(2, str(e)) from e
        return Endpoint(source, socket=Path(parsed.socket or ""), base=parsed.base)
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FlagsError(
            2,
            f"{source} {address!r}: expected http://HOST[:PORT][/PATH], https://... or unix:/path/to.sock[:/base]",
        )
    try:
        parts.port  # noqa: B018 -- raises on a port that is not a number from 0 to 65535
    except ValueError as e:
        raise FlagsError(2, f"{source} {address!r}: {e}") from e
    return Endpoint(source, address.rstrip("/"))


def candidates(url: str | None, state_dir: Path, env: dict[str, str] | os._Environ[str]) -> list[Endpoint]:
    """The places to try, in order (only the one named when ``--url`` or ``$GAPLESS_FLAGS_URL`` is set)."""
    if url:
        return [_named(url, "--url")]
    if env.get("GAPLESS_FLAGS_URL"):
        return [_named(env["GAPLESS_FLAGS_URL"], "$GAPLESS_FLAGS_URL")]
    found = [Endpoint("the control plane", socket=state_dir / API_SOCKET)]
    try:
        written = (state_dir / FLAGS_URL_FILE).read_text().strip()
    except OSError:
        written = ""
    if written and urlsplit(written).scheme in ("http", "https"):
        found.append(Endpoint(f"`gapless flags serve` ({state_dir / FLAGS_URL_FILE})", written.rstrip("/")))
    if all(e.url != DEFAULT_URL for e in found):
        found.append(Endpoint("the default", DEFAULT_URL))
    return found


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("gapless", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _connection(endpoint: Endpoint, timeout: float) -> http.client.HTTPConnection:
    if endpoint.socket is not None:
        return _UnixConnection(endpoint.socket, timeout)
    parts = urlsplit(endpoint.url)
    host = parts.hostname or ""
    if parts.scheme == "https":
        return http.client.HTTPSConnection(host, parts.port, timeout=timeout)
    return http.client.HTTPConnection(host, parts.port, timeout=timeout)


_UNREACHABLE = (ConnectionRefusedError, FileNotFoundError, socket.gaierror, ConnectionResetError)


class FlagsClient:
    """Blocking client of one flag service's admin API; the first endpoint that answers is kept."""

    def __init__(
        self,
        endpoints: list[Endpoint],
        state_dir: Path,
        token: str | None = None,
        *,
        timeout: float = 10.0,
    ) -> None:
        self.endpoints = endpoints
        self.state_dir = state_dir
        self.timeout = timeout
        self._token = token
        self._endpoint: Endpoint | None = None
        self._conn: http.client.HTTPConnection | None = None

    @property
    def endpoint(self) -> Endpoint | None:
        """The endpoint that answered (None before the first request)."""
        return self._endpoint

    def __enter__(self) -> FlagsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def token(self) -> str:
        if self._token is None:
            path = self.state_dir / FLAGS_ADMIN_TOKEN
            try:
                self._token = path.read_text().strip()
            except OSError as e:
                raise FlagsError(
                    2,
                    f"no admin token: give --token, set GAPLESS_FLAGS_TOKEN, or start the flag service "
                    f"(`gapless up` or `gapless flags serve`) for this state directory ({path}: {e.strerror})",
                ) from e
        return self._token

    def _connect(self, endpoint: Endpoint) -> http.client.HTTPConnection:
        if self._conn is None:
            conn = _connection(endpoint, self.timeout)
            try:
                conn.connect()  # before the token is read: a service that is not there is the error
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _send(
        self, endpoint: Endpoint, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        conn = self._connect(endpoint)
        try:
            conn.request(method, endpoint.prefix + path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except BaseException:
            self.close()
            raise

    def _exchange(self, endpoint: Endpoint, method: str, path: str, body: Any) -> tuple[int, bytes]:
        """One request, waiting out the control plane's 503 while its flag service loads."""
        deadline = time.monotonic() + STARTING_WAIT
        while True:
            self._connect(endpoint)
            headers = {"Accept": "application/json"}
            if endpoint.socket is not None and self._token is None:
                # the token file is written as the mounted service loads: see that it has first
                status, data = self._send(endpoint, "GET", "/healthz", None, headers)
                if status == 503 and b"is starting" in data and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
            headers["Authorization"] = f"Bearer {self.token()}"
            payload = None
            if body is not None:
                payload = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            status, data = self._send(endpoint, method, path, payload, headers)
            starting = status == 503 and endpoint.socket is not None and b"is starting" in data
            if starting and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            return status, data

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, parsed JSON body or None); raises ``FlagsError`` (1) when no endpoint answers."""
        tried: list[str] = []
        for endpoint in [self._endpoint] if self._endpoint is not None else self.endpoints:
            try:
                status, data = self._exchange(endpoint, method, path, body)
            except _UNREACHABLE as e:
                tried.append(f"  {endpoint.describe()}: {e.strerror or e}")
                continue
            except TimeoutError as e:
                raise FlagsError(
                    1, f"the flag service ({endpoint.describe()}) did not answer within {self.timeout:g}s"
                ) from e
            except (OSError, http.client.HTTPException) as e:
                raise FlagsError(1, f"the flag service ({endpoint.describe()}) broke off: {e}") from e
            self._endpoint = endpoint
            try:
                parsed = json.loads(data) if data else None
            except ValueError:
                parsed = {"error": data.decode(errors="replace")}
            return status, parsed
        raise FlagsError(1, "no flag service answers; tried:", tried)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The parsed answer of a request that must succeed: 4xx is ``FlagsError`` 2 (409: 1), 5xx 1."""
        status, data = self.request(method, path, body)
        if status < 400:
            return data if data is not None else {}
        if not isinstance(data, dict):
            data = {"error": str(data)}
        problems = data.get("problems") or []
        details = [
            f"  {p['path'] + ': ' if p.get('path') else ''}{p.get('message', '')}"
            for p in problems
            if p.get("path") or p.get("message") != data.get("error")
        ]
        message = f"{method} {path} answered {status}"
        if data.get("error"):
            message += f": {data['error']}"
        if data.get("detail") and not problems:
            message += f": {data['detail']}"
        raise FlagsError(2 if 400 <= status < 500 and status != 409 else 1, message, details)
