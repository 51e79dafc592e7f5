"""The router's admin API: HTTP/1.1 over a unix socket, served on the router's own event loop.

It is a handful of JSON endpoints used only by the control plane (plus ``GET /metrics`` in Prometheus
text format, built from the same counters as ``GET /stats``), so a small ``asyncio`` streams
handler is enough; nothing here blocks the loop (the config file is written in a worker thread).
The socket is created with mode 0600 and every endpoint but ``GET /healthz`` needs the bearer token,
compared by sha256 digest in constant time, so the plaintext token never stays in memory.

A ``PUT /config`` is validated, refused when older than the current version, applied, persisted, and
only then answered: a 200 means a restarted router comes back with that config. (Applied before the
fsyncs, so new weights hold at once; when the file cannot be written the answer is a 500 that says the
config is in force but not saved, and the control plane pushes it again.)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gapless.router.config import RouterConfig
from gapless.router.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gapless.router.metrics import RouterMetrics
from gapless.router.persist import save_config, validation_message
from gapless.router.proxy import Router

__all__ = ["AdminServer"]

log = logging.getLogger(__name__)

_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    500: "Internal Server Error",
}


class _Reply:
    __slots__ = ("body", "content_type", "status")

    def __init__(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.status = status
        self.body = body
        self.content_type = content_type

    @classmethod
    def json(cls, status: int, data: Any) -> _Reply:
        return cls(status, json.dumps(data).encode())

    @classmethod
    def error(cls, status: int, message: str) -> _Reply:
        return cls.json(status, {"error": message})


class AdminServer:
    """Serves the admin API of ``router`` on ``socket_path`` once started."""

    def __init__(
        self,
        router: Router,
        socket_path: str | Path,
        token_digest: str,
        config_file: str | Path,
        *,
        pid: int | None = None,
    ) -> None:
        self.router = router
        self._supervisor = pid  # the supervisor's pid, which outlives workers
        self.socket_path = Path(socket_path)
        self.config_file = Path(config_file)
        self._digest = token_digest.encode()
        self._put_lock = asyncio.Lock()
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._metrics = RouterMetrics(lambda: (router.stats(), router.config))

    def pid(self) -> int:
        """The supervisor's pid while it lives (the process group to signal), else this process's."""
        if self._supervisor is not None and os.getppid() == self._supervisor:
            return self._supervisor
        return os.getpid()

    async def start(self) -> None:
        """Bind the socket (removing a stale one first) with mode 0600 and start serving."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path))
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, 0o600)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._clients):
            writer.close()
        await self._server.wait_closed()
        self.socket_path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the client went away or sent an oversized head: just close
        finally:
            self._clients.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection should close."""
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_HEAD:
            return False
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            await self._write(writer, _Reply.error(400, "malformed request line"), keep_alive=False)
            return False
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            length = -1
        if length < 0:
            await self._write(writer, _Reply.error(400, "bad Content-Length"), keep_alive=False)
            return False
        if length > _MAX_BODY:
            await self._write(writer, _Reply.error(413, "body too large"), keep_alive=False)
            return False
        body = await reader.readexactly(length) if length else b""
        keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        reply = await self._route(method, target.split("?", 1)[0], headers, body)
        await self._write(writer, reply, keep_alive=keep_alive)
        return keep_alive

    async def _write(self, writer: asyncio.StreamWriter, reply: _Reply, *, keep_alive: bool) -> None:
        head = (
            f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}\r\n"
            f"Content-Type: {reply.content_type}\r\nContent-Length: {len(reply.body)}\r\n"
            f"{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n"
        )
        writer.write(head.encode() + reply.body)
        await writer.drain()

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        digest = hashlib.sha256(token.strip().encode()).hexdigest().encode()
        return hmac.compare_digest(digest, self._digest)

    async def _route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> _Reply:
        router = self.router
        if path == "/healthz":
            if method != "GET":
                return _Reply.error(405, "use GET")
            return _Reply.json(
                200,
                {
                    "name": router.name,
                    "pid": self.pid(),
                    "worker_pid": os.getpid(),
                    "supervised": self._supervisor is not None and os.getppid() == self._supervisor,
                    "restarts": router.restarts,
                    "config_version": router.config.version,
                    "config_applied_monotonic": router.applied_at,
                    "weights_changed_monotonic": router.weights_changed_at,
                    "listen": router.listen,
                },
            )
        if path not in ("/config", "/stats", "/metrics"):
            return _Reply.error(404, f"no such endpoint: {path}")
        if not self._authorized(headers):
            return _Reply.error(401, "missing or wrong bearer token")
        if path == "/stats":
            if method != "GET":
                return _Reply.error(405, "use GET")
            return _Reply(200, router.stats().model_dump_json().encode())
        if path == "/metrics":
            if method != "GET":
                return _Reply.error(405, "use GET")
            return _Reply(200, self._metrics.render(), METRICS_CONTENT_TYPE)
        if method == "GET":
            return _Reply(200, router.config.model_dump_json().encode())
        if method == "PUT":
            return await self._put_config(body)
        return _Reply.error(405, "use GET or PUT")

    async def _put_config(self, body: bytes) -> _Reply:
        try:
            config = RouterConfig.model_validate_json(body)
        except ValidationError as exc:
            return _Reply.error(400, validation_message(exc))
        async with self._put_lock:
            current = self.router.config.version
            if config.version < current:
                return _Reply.error(409, f"version: {config.version} is older than the current {current}")
            # In force first, durable second: the new weights (an abort's "all traffic to stable") hold
            # from here, not two fsyncs later. The answer still waits for the file, so a 200 keeps its
            # meaning; a router that dies in between restarts with the old file and the control plane,
            # which got no 200, pushes again.
            self.router.apply(config)
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, save_config, self.config_file, config)
            except OSError as exc:
                log.error(
                    "config version %d applied but not saved to %s: %s", config.version, self.config_file, exc
                )
                return _Reply.error(500, f"the config is in force but could not be saved: {exc}")
        log.info("config version %d applied: %d backend(s)", config.version, len(config.backends))
        return _Reply.json(200, {"version": config.version})
