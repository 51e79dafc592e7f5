"""A small real HTTP/1.1 server for the load generator tests (asyncio streams on a real socket).

It listens on 127.0.0.1 on a free port, keeps connections alive and behaves by path:

- ``/ok``: ``200`` with ``X-Version: <version>`` (the attribute, changeable while serving);
- ``/v/NAME``: ``200`` with ``X-Version: NAME``;
- ``/noversion``: ``200`` without the header;
- ``/status/CODE``: that status;
- ``/every/N/CODE``: ``CODE`` for every N-th request to this path, ``200`` otherwise;
- ``/slow/SECONDS``: ``200`` after a delay;
- ``/hang``: never answers;
- ``/close``: closes the connection without answering;
- ``/reset``: resets the connection (SO_LINGER 0) without answering;
- ``/chunked``: ``200`` with a chunked body;
- ``/eof``: ``200`` whose body ends when the connection closes (no Content-Length);
- ``/connection-close``: ``200`` with ``Connection: close``, then closes.

It counts what it actually did (``responses`` by status, ``dropped`` for close/reset, ``connections``),
so tests can compare the load generator's counts with the server's instead of with guesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import Counter

__all__ = ["LocalServer"]


class LocalServer:
    """One HTTP/1.1 server on 127.0.0.1; ``async with`` starts and stops it."""

    def __init__(self, version: str = "v1") -> None:
        self.version = version
        self.port = 0
        self.connections = 0
        self.responses: Counter[int] = Counter()
        self.dropped = 0
        self._path_counts: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def __aenter__(self) -> LocalServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            for task in list(self._handlers):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                path = head.split(b" ", 2)[1].decode()
                if not await self._respond(path, writer):
                    return
        finally:
            self._handlers.discard(task)
            if not writer.transport.is_closing():
                writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _respond(self, path: str, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; return whether the connection stays open."""
        self._path_counts[path] += 1
        parts = path.strip("/").split("/")
        version: str | None = self.version
        status = 200
        match parts:
            case ["v", name]:
                version = name
            case ["noversion"]:
                version = None
            case ["status", code]:
                status = int(code)
            case ["every", n, code]:
                status = int(code) if self._path_counts[path] % int(n) == 0 else 200
            case ["slow", seconds]:
                await asyncio.sleep(float(seconds))
            case ["hang"]:
                await asyncio.Event().wait()
            case ["close"]:
                self.dropped += 1
                writer.close()
                return False
            case ["reset"]:
                self.dropped += 1
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return False
            case ["chunked"]:
                self._send(writer, 200, version, b"Transfer-Encoding: chunked\r\n", b"2\r\nok\r\n0\r\n\r\n")
                return True
            case ["eof"]:
                self._send(writer, 200, version, b"", b"body until close")
                writer.close()
                return False
            case ["connection-close"]:
                self._send(writer, 200, version, b"Connection: close\r\nContent-Length: 2\r\n", b"ok")
                writer.close()
                return False
        self._send(writer, status, version, b"Content-Length: 2\r\n", b"ok")
        return True

    def _send(
        self, writer: asyncio.StreamWriter, status: int, version: str | None, extra: bytes, body: bytes
    ) -> None:
        self.responses[status] += 1
        header = f"X-Version: {version}\r\n".encode() if version is not None else b""
        writer.write(f"HTTP/1.1 {status} Whatever\r\n".encode() + header + extra + b"\r\n" + body)
