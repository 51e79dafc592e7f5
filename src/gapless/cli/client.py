"""The CLI's way to the control plane: start it when needed, then speak its HTTP API on the unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gapless.cli.api import ApiError, NotRunningError, SyncClient, raise_for_error, resolve_state_dir
from gapless.core.errors import GaplessError, Problem, SpecError
from gapless.core.files import API_SOCKET, LOG_FILE, SOCKET_PATH_MAX, STDERR_FILE, TOKEN_FILE, longest_socket

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ApiClient",
    "ApiError",
    "NotRunningError",
    "request_if_running",
    "resolve_state_dir",
    "start_control_plane",
]


class ApiClient:
    """Async client of the control plane API. Inert until used; close with ``aclose()``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._client: httpx.AsyncClient | None = None

    @property
    def socket(self) -> Path:
        return self.state_dir / API_SOCKET

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            token_path = self.state_dir / TOKEN_FILE
            token = token_path.read_text().strip() if token_path.exists() else ""
            # verify=False: plain HTTP on a unix socket, never TLS. A verifying transport loads the CA
            # bundle all the same (35 ms of CPU on every command) and fails on a broken SSL_CERT_FILE.
            self._client = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(uds=str(self.socket), verify=False),
                base_url="http://gapless",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30.0,
            )
        return self._client

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def alive(self) -> bool:
        if not self.socket.exists():
            return False
        import httpx

        try:
            r = await self._http().get("/healthz", timeout=2.0)
        except (httpx.HTTPError, OSError):
            return False
        return r.status_code == 200

    async def request(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        if not self.socket.exists():
            raise NotRunningError(
                f"no control plane is running for {self.state_dir} (start one with `gapless up`)"
            )
        import httpx

        try:
            r = await self._http().request(method, path, json=body, params=params)
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError) as e:
            raise NotRunningError(f"no control plane answers on {self.socket}: {e}") from e
        raise_for_error(r.status_code, r.content)
        return r.json()

    async def status(self, name: str) -> dict[str, Any]:
        data = await self.request("GET", f"/api/v1/rollouts/{name}")
        return dict(data["status"])


def request_if_running(
    state_dir: Path, method: str, path: str, body: Any = None, *, timeout: float = 5.0
) -> Any:
    """One blocking request to the control plane of ``state_dir``, which is never started for it.

    For commands that work without a control plane and only tell it what they did (or ask it a
    question): raises ``NotRunningError`` when none answers, ``ApiError`` (or ``SpecError``) when it
    refuses, and ``GaplessError`` when it does not answer within ``timeout`` seconds.
    """

    with SyncClient(state_dir, timeout=timeout) as client:
        try:
            return client.request(method, path, body)
        except NotRunningError:
            raise NotRunningError(f"no control plane is running for {state_dir}") from None


async def start_control_plane(
    state_dir: Path,
    timeout: float = 20.0,
    *,
    metrics_listen: str | None = None,
    dashboard_listen: str | None = None,
    extra: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> bool:
    """Start a detached control plane unless one answers; returns whether one was started.

    ``metrics_listen`` and ``dashboard_listen`` (``HOST:PORT``) and ``extra`` options (``--grafana-url``
    and its token file) are passed on to a control plane this call starts, ``env`` (secrets such as
    ``GAPLESS_DATABASE_URL``, kept off the command line) is added to its environment.
    """
    import subprocess

    from gapless.platform.base import ROLE_CONTROL_PLANE, marker_env

    socket = longest_socket(state_dir.absolute())
    if len(os.fsencode(socket)) > SOCKET_PATH_MAX:
        raise SpecError(
            "--state-dir",
            [
                Problem(
                    str(state_dir),
                    f"too deep for the control plane's sockets ({len(os.fsencode(socket))} bytes in "
                    f"{socket}; a unix socket path has at most {SOCKET_PATH_MAX}): choose a shorter path",
                )
            ],
        )
    client = ApiClient(state_dir)
    try:
        if await client.alive():
            return False
        state_dir.mkdir(parents=True, exist_ok=True)
        log = state_dir / LOG_FILE
        stderr = state_dir / STDERR_FILE
        with contextlib.suppress(OSError):
            if stderr.stat().st_size > 1 << 20:  # only what escaped logging goes there; keep it small
                stderr.unlink()
        # SPT_NOENV: setproctitle must not overwrite the environment, where the markers live.
        env = (
            dict(os.environ)
            | marker_env(state_dir, ROLE_CONTROL_PLANE)
            | {"SPT_NOENV": "1"}
            | dict(env or {})
        )
        argv = [sys.executable, "-m", "gapless", "control-plane", "--state-dir", str(state_dir)]
        if metrics_listen is not None:
            argv += ["--metrics-listen", metrics_listen]
        if dashboard_listen is not None:
            argv += ["--dashboard-listen", dashboard_listen]
        argv += extra
        fd = os.open(stderr, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as out:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = child.poll()
            if code is not None and code != 3:
                lines = []
                for path in (log, stderr):
                    with contextlib.suppress(OSError):
                        lines += path.read_text(errors="replace").strip().splitlines()[-5:]
                tail = " | ".join(lines[-8:])
                raise GaplessError(f"the control plane exited with code {code}: {tail}")
            if await client.alive():
                return True
            await asyncio.sleep(0.05)
        raise GaplessError(f"the control plane did not answer within {timeout:g}s; see {log}")
    finally:
        await client.aclose()
