"""The control plane's client of a router's admin API (HTTP over the router's unix socket).

Constructed inert: the HTTP client is made on first use, so building a ``RouterClient`` does no I/O.
Refusals come back as typed errors (``StaleConfigError`` for an older version, ``InvalidConfigError``
for a bad config) and an unreachable router as ``RouterUnavailableError``, a ``TemporaryError`` the
caller retries with backoff (and a ``ConnectionError``, so ``except OSError`` catches it too); no
``httpx`` exception escapes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from gapless.core.errors import GaplessError, TemporaryError
from gapless.router.config import Limits, RouterConfig
from gapless.router.stats import RouterStats

__all__ = [
    "InvalidConfigError",
    "RouterAdminError",
    "RouterClient",
    "RouterUnavailableError",
    "StaleConfigError",
    "UnauthorizedError",
]


class RouterAdminError(GaplessError):
    """The router refused an admin request."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"router answered {status}: {message}")


class InvalidConfigError(RouterAdminError):
    """The router found the config invalid (400); the message names the field."""


class StaleConfigError(RouterAdminError):
    """The config's version is older than the router's (409)."""


class UnauthorizedError(RouterAdminError):
    """The token was missing or wrong (401)."""


class RouterUnavailableError(TemporaryError, ConnectionError):
    """The router's admin socket could not be reached (also a ``ConnectionError``, so an OSError)."""


_DEFAULT_LIMITS = Limits()

_ERRORS: dict[int, type[RouterAdminError]] = {
    400: InvalidConfigError,
    401: UnauthorizedError,
    409: StaleConfigError,
}


class RouterClient:
    """Talks to one router's admin API; use ``async with`` or call ``aclose()``."""

    def __init__(self, socket_path: str | Path, token: str, *, timeout: float = 5.0) -> None:
        self.socket_path = str(socket_path)
        self._token = token
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # verify=False: plain HTTP on a unix socket, never TLS; a verifying transport would load
            # the CA bundle for nothing (35 ms of CPU) and fail on a broken SSL_CERT_FILE.
            self._http = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=self.socket_path, verify=False),
                base_url="http://router",
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=self._timeout,
            )
        return self._http

    async def _request(self, method: str, path: str, json_body: str | None = None) -> Any:
        try:
            response = await self._client().request(
                method,
                path,
                content=json_body,
                headers={"Content-Type": "application/json"} if json_body is not None else None,
            )
        except httpx.TransportError as exc:
            raise RouterUnavailableError(f"router admin socket {self.socket_path}: {exc!r}") from exc
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            message = str(data.get("error", response.text)) if isinstance(data, dict) else response.text
            raise _ERRORS.get(response.status_code, RouterAdminError)(response.status_code, message)
        if data is None:
            raise RouterAdminError(response.status_code, f"not JSON: {response.text[:200]!r}")
        return data

    async def healthz(self) -> dict[str, Any]:
        """``{"name", "pid", "config_version", "config_applied_monotonic", "weights_changed_monotonic",
        "listen", ...}``; needs no token. The two ``*_monotonic`` are the router's CLOCK_MONOTONIC readings
        (comparable with ``time.monotonic()`` of any process on the same host)."""
        data: dict[str, Any] = await self._request("GET", "/healthz")
        return data

    async def get_config(self) -> RouterConfig:
        return RouterConfig.model_validate(await self._request("GET", "/config"))

    async def put_config(self, config: RouterConfig) -> None:
        """Push a whole config; raises ``StaleConfigError`` or ``InvalidConfigError`` when refused.

        Default limits are left out, so a router started by an older gapless (which knows no limits)
        keeps taking configs after the control plane was upgraded.
        """
        exclude = {"limits"} if config.limits == _DEFAULT_LIMITS else None
        await self._request("PUT", "/config", config.model_dump_json(exclude=exclude))

    async def stats(self) -> RouterStats:
        return RouterStats.model_validate(await self._request("GET", "/stats"))

    async def metrics(self) -> str:
        """The ``GET /metrics`` body: every counter of ``stats()`` in Prometheus text format."""
        try:
            response = await self._client().get("/metrics")
        except httpx.TransportError as exc:
            raise RouterUnavailableError(f"router admin socket {self.socket_path}: {exc!r}") from exc
        if response.status_code >= 400:
            try:
                data = response.json()
            except ValueError:
                data = None
            message = str(data.get("error", response.text)) if isinstance(data, dict) else response.text
            raise _ERRORS.get(response.status_code, RouterAdminError)(response.status_code, message)
        return response.text

    async def wait_drained(self, backend_id: str, timeout: float, *, interval: float = 0.05) -> bool:
        """Wait until ``backend_id`` has no request in flight; False if that did not happen in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            stats = await self.stats()
            backend = stats.backends.get(backend_id)
            if backend is None or backend.in_flight == 0:
                return True
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))
