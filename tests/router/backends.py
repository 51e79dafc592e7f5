"""Small real HTTP/1.1 upstream servers for the router tests (asyncio streams on real sockets).

Each ``TestBackend`` answers with its id in ``X-Backend`` and behaves by path:

- ``/`` and anything else: ``200 hello from ID`` with Content-Length;
- ``/headers``: the request headers as a JSON object (lower-case names);
- ``/upload``: reads the whole body and answers its length and how it was framed;
- ``/stall``: like ``/upload``, but reads nothing before ``release`` is set;
- a request with ``Expect: 100-continue`` gets a ``100 Continue`` before its body is read;
- ``/download?size=N&chunked=1``: N bytes, Content-Length or chunked, written in 64 KiB pieces;
- ``/stream``: one chunk, then waits for ``release`` before the last chunk;
- ``/slow?s=S``: answers after S seconds;
- ``/early-hints``: a ``103`` and the final response in one write;
- ``/split-head``: a response head that arrives in two pieces;
- ``/close``: answers with ``Connection: close`` and closes;
- ``/ws``: answers ``101`` to an upgrade, then echoes raw bytes.

``idle_close`` makes the backend close a keep-alive connection that stays idle that long, like a
server's keep-alive timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from urllib.parse import parse_qs, urlsplit

__all__ = ["TestBackend"]


class TestBackend:
    """One upstream instance listening on 127.0.0.1 on a free port."""

    __test__ = False  # not a pytest test class

    def __init__(self, backend_id: str, *, idle_close: float | None = None) -> None:
        self.id = backend_id
        self.idle_close = idle_close
        self.port = 0
        self.requests = 0
        self.connections = 0
        self.release = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> TestBackend:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                try:
                    if self.idle_close is not None:
                        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_close)
                    else:
                        head = await reader.readuntil(b"\r\n\r\n")
                except (TimeoutError, asyncio.IncompleteReadError):
                    return
                if not await self._handle(head, reader, writer):
                    return
        except ConnectionError:
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _handle(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        self.requests += 1
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                key = name.strip().lower()
                headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        chunked = "chunked" in headers.get("transfer-encoding", "")
        length = int(headers.get("content-length", "0"))
        if path == "/stall":
            await self.release.wait()
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        received = await self._read_body(reader, chunked, length)
        base = f"X-Backend: {self.id}\r\n"
        if path == "/ws" and headers.get("upgrade", "").lower() == "websocket":
            writer.write(
                f"HTTP/1.1 101 Switching Protocols\r\n{base}Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n".encode()
            )
            while data := await reader.read(65536):
                writer.write(b"echo:" + data)
                await writer.drain()
            return False
        if path == "/headers":
            body = json.dumps(headers).encode()
        elif path in ("/upload", "/stall"):
            body = json.dumps({"length": received, "chunked": chunked}).encode()
        elif path == "/download":
            await self._download(
                writer, base, int(query.get("size", "0")), query.get("chunked") == "1", method
            )
            return True
        elif path == "/stream":
            writer.write(
                f"HTTP/1.1 200 OK\r\n{base}Transfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n".encode()
            )
            await writer.drain()
            await self.release.wait()
            writer.write(b"4\r\nlast\r\n0\r\n\r\n")
            await writer.drain()
            return True
        elif path == "/early-hints":
            writer.write(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
                b"HTTP/1.1 200 Fine\r\nX-Backend: " + self.id.encode() + b"\r\nContent-Length: 2\r\n\r\nok"
            )
            await writer.drain()
            return True
        elif path == "/split-head":
            writer.write(b"HTTP/1.1 200 OK\r\nX-Backend: " + self.id.encode() + b"\r\nContent-Le")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"ngth: 5\r\n\r\nsplit")
            await writer.drain()
            return True
        elif path == "/slow":
            await asyncio.sleep(float(query.get("s", "1")))
            body = f"slow from {self.id}".encode()
        elif path == "/close":
            writer.write(
                f"HTTP/1.1 200 OK\r\n{base}Connection: close\r\nContent-Length: 5\r\n\r\nbye\r\n".encode()
            )
            await writer.drain()
            return False
        else:
            body = f"hello from {self.id}".encode()
        status = query.get("status", "200")
        if status in ("204", "304"):
            writer.write(f"HTTP/1.1 {status} X\r\n{base}\r\n".encode())
        else:
            writer.write(
                f"HTTP/1.1 {status} X\r\n{base}Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + (b"" if method == "HEAD" else body)
            )
        await writer.drain()
        return True

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, chunked: bool, length: int) -> int:
        received = 0
        if chunked:
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return received
                while size:
                    piece = await reader.read(min(size, 1 << 20))
                    if not piece:
                        raise ConnectionError("body cut short")
                    received += len(piece)
                    size -= len(piece)
                await reader.readexactly(2)
        while received < length:
            piece = await reader.read(min(length - received, 1 << 20))
            if not piece:
                raise ConnectionError("body cut short")
            received += len(piece)
        return received

    @staticmethod
    async def _download(
        writer: asyncio.StreamWriter, base: str, size: int, chunked: bool, method: str
    ) -> None:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
        writer.write(f"HTTP/1.1 200 OK\r\n{base}{framing}\r\n\r\n".encode())
        if method == "HEAD":
            await writer.drain()
            return
        piece = b"x" * 65536
        left = size
        while left:
            part = piece[: min(left, len(piece))]
            writer.write(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part)
            left -= len(part)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
