"""The blocking way to the control plane for verbs that send one or two requests.

``status``, ``promote``, ``abort``, ``undo`` and their kind are typed during incidents: they import only
the standard library's ``http.client`` (httpx and asyncio together cost more than the 150 ms a verb may
take to start). Verbs that wait, follow or start things use the async ``gapless.cli.client.ApiClient``.
Both raise the same errors.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from gapless.core.errors import GaplessError, Problem, SpecError
from gapless.core.files import API_SOCKET, TOKEN_FILE

__all__ = [
    "ApiError",
    "NotRunningError",
    "SyncClient",
    "connection_error",
    "not_running",
    "raise_for_error",
    "report_error",
    "resolve_state_dir",
    "rollout_path",
]


class ApiError(GaplessError):
    def __init__(self, status: int, message: str, problems: list[Problem]) -> None:
        self.status = status
        self.problems = problems
        super().__init__(message)


class NotRunningError(GaplessError):
    """No control plane answers for this state directory."""


def resolve_state_dir(option: Path | None) -> Path:
    """``--state-dir``, else ``$GAPLESS_HOME``, else ``.gapless`` in the working directory."""
    if option is not None:
        return option.expanduser().resolve()
    home = os.environ.get("GAPLESS_HOME")
    if home:
        return Path(home).expanduser().resolve()
    return (Path.cwd() / ".gapless").resolve()


def rollout_path(name: str, *rest: str) -> str:
    """The API path of a rollout (or of one of its parts); the name is quoted, so it names only it."""
    return "/".join(["/api/v1/rollouts", quote(name, safe=""), *rest])


def report_error(e: BaseException) -> tuple[int | None, list[str]]:
    """(exit code, lines to print after ``error:``) for an error a command may end with; None for a bug.

    2: the request was refused as malformed (nothing changed); 1: the control plane is not running,
    refused the command in the rollout's present state (409), or failed.
    """
    if isinstance(e, SpecError):
        return 2, [f"{e.source}: {len(e.problems)} problem(s)", *(f"  {p}" for p in e.problems)]
    if isinstance(e, ApiError):
        return (2 if 400 <= e.status < 500 and e.status != 409 else 1), [str(e)]
    if isinstance(e, GaplessError):
        return 1, [str(e)]
    return None, []


def not_running(state_dir: Path | str) -> NotRunningError:
    """The error for a state directory without an API socket."""
    return NotRunningError(f"no control plane is running for {state_dir} (start one with `gapless up`)")


def connection_error(state_dir: Path | str, e: BaseException, timeout: float) -> GaplessError:
    """The error a failed exchange with the control plane's API ends a command with."""
    if isinstance(e, FileNotFoundError | ConnectionRefusedError):
        return NotRunningError(f"no control plane answers on {Path(state_dir) / API_SOCKET}: {e}")
    if isinstance(e, TimeoutError):
        return GaplessError(f"the control plane for {state_dir} did not answer within {timeout:g}s")
    return GaplessError(f"the control plane for {state_dir} broke off the answer: {e}")


def raise_for_error(status: int, body: bytes) -> None:
    """Turn an error answer of the API into ``SpecError`` (400 with problems) or ``ApiError``."""
    if status < 400:
        return
    text = body.decode(errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {"error": text}
    problems = [Problem(p.get("path", ""), p.get("message", "")) for p in data.get("problems", [])]
    if status == 400 and problems:
        raise SpecError("control plane", problems)
    raise ApiError(status, str(data.get("error", text)), problems)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("gapless", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class SyncClient:
    """Blocking client of the control plane API on its unix socket; one kept-alive connection."""

    def __init__(self, state_dir: Path, *, timeout: float = 30.0) -> None:
        self.state_dir = state_dir
        self.timeout = timeout
        self._conn: _UnixConnection | None = None

    @property
    def socket(self) -> Path:
        return self.state_dir / API_SOCKET

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _token(self) -> str:
        try:
            return (self.state_dir / TOKEN_FILE).read_text().strip()
        except FileNotFoundError:
            return ""

    def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        if not self.socket.exists():
            raise not_running(self.state_dir)
        if params:
            path += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self._conn is None:
            self._conn = _UnixConnection(str(self.socket), self.timeout)
        try:
            self._conn.request(method, path, body=payload, headers=headers)
            response = self._conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise connection_error(self.state_dir, e, self.timeout) from e
        raise_for_error(response.status, data)
        return json.loads(data)

    def status(self, name: str) -> dict[str, Any]:
        data = self.request("GET", f"/api/v1/rollouts/{name}")
        return dict(data["status"])
