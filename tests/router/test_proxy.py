"""The data path through a router served in-process, against real upstream servers on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from gapless.router.config import Backend
from tests.router.backends import TestBackend
from tests.router.conftest import RouterHarness

MakeBackend = Callable[..., Awaitable[TestBackend]]
MB = 1024 * 1024


@contextlib.asynccontextmanager
async def _raw(harness: RouterHarness) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw TCP connection to the router, for what HTTP clients hide (pipelining, upgrades)."""
    host, port = harness.router.listen.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return lines[0].encode(), headers, body


async def test_keep_alive_both_sides(harness: RouterHarness, backends: MakeBackend) -> None:
    """Many requests over one client connection reuse one upstream connection per backend."""
    b1 = await backends("b1")
    await harness.route([b1])
    for _ in range(50):
        r = await harness.http.get("/")
        assert r.status_code == 200
        assert r.text == "hello from b1"
    assert b1.connections == 1
    assert len(harness.router.connections) == 1


async def test_forwarded_headers_and_hop_by_hop(harness: RouterHarness, backends: MakeBackend) -> None:
    """X-Forwarded-For is extended, X-Forwarded-Proto/Host are set and hop-by-hop headers are dropped."""
    await harness.route([await backends("b1")])
    r = await harness.http.get(
        "/headers",
        headers={
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "Connection": "keep-alive, X-Private",
            "X-Private": "secret",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
        },
    )
    seen = r.json()
    assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-forwarded-host"] == harness.router.listen
    for hop in ("x-private", "keep-alive", "te", "connection"):
        assert hop not in seen


async def test_chunked_both_ways(harness: RouterHarness, backends: MakeBackend) -> None:
    """A chunked upload reaches the upstream chunked and a chunked download reaches the client whole."""
    await harness.route([await backends("b1")])

    async def pieces() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"z" * 1000

    r = await harness.http.post("/upload", content=pieces())
    assert r.json() == {"length": 100_000, "chunked": True}
    r = await harness.http.get("/download", params={"size": 3_000_000, "chunked": 1})
    assert r.headers["transfer-encoding"] == "chunked"
    assert len(r.content) == 3_000_000


async def test_response_streams_before_upstream_finishes(
    harness: RouterHarness, backends: MakeBackend
) -> None:
    """The first chunk of a response reaches the client while the upstream still holds the rest."""
    b1 = await backends("b1")
    await harness.route([b1])
    async with harness.http.stream("GET", "/stream") as r:
        chunks = r.aiter_raw()
        first = await asyncio.wait_for(anext(chunks), 2)
        assert first == b"first"
        assert not b1.release.is_set()
        b1.release.set()
        rest = b"".join([c async for c in chunks])
    assert rest == b"last"


async def test_head_204_304_have_no_body(harness: RouterHarness, backends: MakeBackend) -> None:
    """HEAD keeps Content-Length without a body, 204 and 304 have none, and the connection stays usable."""
    await harness.route([await backends("b1")])
    async with _raw(harness) as (reader, writer):
        writer.write(
            b"HEAD /download?size=12345 HTTP/1.1\r\nHost: x\r\n\r\nGET /?status=204 HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        writer.write(b"GET /?status=304 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Content-Length: 12345" in head
        for status in (b"204", b"304"):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 " + status)
        status, _, body = await _read_response(reader)
        assert status.startswith(b"HTTP/1.1 200")
        assert body == b"hello from b1"


async def test_connection_close_both_sides(harness: RouterHarness, backends: MakeBackend) -> None:
    """An upstream closing after its response does not break the next request; a client's close is honoured."""
    await harness.route([await backends("b1")])
    r = await harness.http.get("/close")
    assert r.status_code == 200
    assert "connection" not in r.headers
    assert (await harness.http.get("/")).status_code == 200
    async with _raw(harness) as (reader, writer):
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        _, headers, body = await _read_response(reader)
        assert headers["connection"] == "close"
        assert body == b"hello from b1"
        assert await reader.read() == b""


async def test_http10_client_gets_close_delimited_body(harness: RouterHarness, backends: MakeBackend) -> None:
    """An HTTP/1.0 client gets a chunked upstream body delimited by the close of the connection."""
    await harness.route([await backends("b1")])
    async with _raw(harness) as (reader, writer):
        writer.write(b"GET /download?size=100000&chunked=1 HTTP/1.0\r\n\r\n")
        data = await reader.read(-1)
        head, _, body = data.partition(b"\r\n\r\n")
        assert b"Transfer-Encoding" not in head
        assert len(body) == 100_000


async def test_pipelined_requests_answer_in_order(harness: RouterHarness, backends: MakeBackend) -> None:
    """Requests pipelined in one write are answered in order, each from a backend."""
    await harness.route([await backends("b1"), await backends("b2")])
    async with _raw(harness) as (reader, writer):
        writer.write(b"".join(b"GET /?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(10)))
        bodies = [(await _read_response(reader))[2] for _ in range(10)]
        assert bodies == [b"hello from b1", b"hello from b2"] * 5


async def test_websocket_upgrade_pipes_raw_bytes(harness: RouterHarness, backends: MakeBackend) -> None:
    """After a 101 the router pipes raw bytes both ways until a side closes."""
    await harness.route([await backends("b1")])
    async with _raw(harness) as (reader, writer):
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        assert b"Upgrade: websocket" in head
        for msg in (b"ping", b"\x00\x01binary\xff"):
            writer.write(msg)
            assert await reader.readexactly(5 + len(msg)) == b"echo:" + msg
        writer.write_eof()
        assert await reader.read() == b""


async def test_weights_split_exactly(harness: RouterHarness, backends: MakeBackend) -> None:
    """Weights 1:3 give revision b exactly 75 % of 400 requests; without weights backends share evenly."""
    a1, b1, b2 = await backends("a1"), await backends("b1"), await backends("b2")
    await harness.route([(a1, "a"), (b1, "b"), (b2, "b")], weights={"a": 1, "b": 3})
    seen = Counter([(await harness.http.get("/")).headers["x-backend"] for _ in range(400)])
    assert seen == {"a1": 100, "b1": 150, "b2": 150}
    await harness.route([(a1, "a"), (b1, "b"), (b2, "b")], weights=None)
    seen = Counter([(await harness.http.get("/")).headers["x-backend"] for _ in range(300)])
    assert seen == {"a1": 100, "b1": 100, "b2": 100}
    await harness.route([(a1, "a"), (b1, "b")], weights={"a": 0, "b": 1, "c": 5})
    seen = Counter([(await harness.http.get("/")).headers["x-backend"] for _ in range(20)])
    assert seen == {"b1": 20}


async def test_no_backend_gives_503(harness: RouterHarness) -> None:
    """Without a routable backend the router answers 503 with a short body."""
    r = await harness.http.get("/")
    assert r.status_code == 503
    assert r.text == "no backend available\n"
    await harness.push([], weights={"a": 1})
    assert (await harness.http.get("/")).status_code == 503


async def test_refused_backend_is_retried(harness: RouterHarness, backends: MakeBackend) -> None:
    """Requests routed to a refused backend are retried on another, so none fails, and it is ejected after 3."""
    good = await backends("good")
    dead = await backends("dead")
    await dead.stop()
    await harness.route([dead, good])
    statuses = Counter()
    for i in range(40):
        r = await (harness.http.get("/") if i % 2 else harness.http.post("/upload", content=b"abc"))
        statuses[r.status_code] += 1
    assert statuses == {200: 40}
    stats = harness.router.stats()
    assert stats.backends["dead"].connection_errors == 3  # then the balancer passes it over
    assert stats.backends["dead"].ejected
    assert stats.revisions["a"].connection_errors == 0


async def test_all_backends_refused_gives_502(harness: RouterHarness, backends: MakeBackend) -> None:
    """When every attempt fails the client gets a 502, counted as a connection error of the revision."""
    dead = await backends("dead")
    await dead.stop()
    await harness.route([dead])
    r = await harness.http.get("/")
    assert r.status_code == 502
    stats = harness.router.stats().revisions["a"]
    assert stats.connection_errors == 1
    assert stats.responses["5xx"] == 1
    assert stats.in_flight == 0


async def test_stale_pooled_connection_never_fails(harness: RouterHarness, backends: MakeBackend) -> None:
    """Pooled connections the upstream closed while idle are skipped or retried, never surfaced."""
    b1 = await backends("b1", idle_close=0.05)
    await harness.route([b1])
    for i in range(6):
        r = await (harness.http.get("/") if i % 2 else harness.http.post("/upload", content=b"x"))
        assert r.status_code == 200
        await asyncio.sleep(0.15)
    # Race the upstream's close: requests sent just as the idle timeout fires.
    for _ in range(5):
        await harness.http.get("/")
        await asyncio.sleep(0.05)
        assert (await harness.http.get("/")).status_code == 200
    assert b1.connections > 1


async def test_drain_lets_in_flight_finish(harness: RouterHarness, backends: MakeBackend) -> None:
    """A removed backend finishes its slow in-flight request while new requests go elsewhere."""
    b1, b2 = await backends("b1"), await backends("b2")
    await harness.route([b1])
    slow = asyncio.create_task(harness.http.get("/slow", params={"s": 2}))
    async with httpx.AsyncClient(base_url=harness.url) as other:
        while harness.router.stats().backends["b1"].in_flight == 0:
            await asyncio.sleep(0.01)
        await harness.route([b2])
        stats = await harness.admin_client.stats()
        assert stats.backends["b1"].in_flight == 1
        assert stats.backends["b1"].removed
        assert harness.router.pools.get("b1") is None
        for _ in range(10):
            assert (await other.get("/")).headers["x-backend"] == "b2"
        assert not await harness.admin_client.wait_drained("b1", timeout=0.2)
        r = await slow
        assert r.status_code == 200
        assert r.text == "slow from b1"
        assert await harness.admin_client.wait_drained("b1", timeout=1.0)
    assert "b1" not in (await harness.admin_client.stats()).backends


async def test_upstream_dying_mid_response_breaks_client_connection(
    harness: RouterHarness, backends: MakeBackend
) -> None:
    """When an upstream dies after the response head, the client sees a cut connection, not a clean end."""
    b1 = await backends("b1")
    await harness.route([b1])
    async with harness.http.stream("GET", "/stream") as r:
        chunks = r.aiter_raw()
        assert await anext(chunks) == b"first"
        await b1.stop()
        try:
            rest = b"".join([c async for c in chunks])
        except httpx.HTTPError:
            rest = None
    assert rest is None
    assert harness.router.stats().revisions["a"].in_flight == 0


async def test_config_swap_keeps_routed_requests(harness: RouterHarness, backends: MakeBackend) -> None:
    """Re-pushing a backend with a new revision drains the old entry and routes by the new one."""
    b1 = await backends("b1")
    await harness.push([Backend(id="b1", port=b1.port, revision="a")])
    assert (await harness.http.get("/")).status_code == 200
    await harness.push([Backend(id="b1", port=b1.port, revision="b")])
    assert (await harness.http.get("/")).status_code == 200
    stats = harness.router.stats()
    assert stats.backends["b1"].revision == "b"
    assert stats.revisions["b"].requests == 1
    assert json.loads(stats.model_dump_json())["config_version"] == 2


async def test_upload_backpressure(harness: RouterHarness, backends: MakeBackend) -> None:
    """A backend that does not read makes the router stop reading the client instead of buffering."""
    b1 = await backends("b1")
    await harness.route([b1])
    size = 32 * MB
    async with _raw(harness) as (reader, writer):
        writer.write(b"POST /stall HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)

        async def send() -> None:
            piece = b"s" * MB
            for _ in range(size // MB):
                writer.write(piece)
                await writer.drain()

        sender = asyncio.create_task(send())
        conn = next(iter(harness.router.connections))
        for _ in range(500):
            if conn.paused:
                break
            await asyncio.sleep(0.01)
        assert conn.paused
        assert conn.current is not None
        assert conn.up is not None
        assert conn.up.transport.get_write_buffer_size() < MB
        assert not sender.done()
        b1.release.set()
        await sender
        _, _, body = await _read_response(reader)
    assert json.loads(body) == {"length": size, "chunked": False}


async def test_download_backpressure(harness: RouterHarness, backends: MakeBackend) -> None:
    """A client that does not read makes the router stop reading the backend instead of buffering."""
    await harness.route([await backends("b1")])
    size = 64 * MB
    async with _raw(harness) as (reader, writer):
        writer.write(b"GET /download?size=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
        conn = next(iter(harness.router.connections))
        for _ in range(500):
            if conn.current is not None and conn.up is not None and conn.up.read_paused:
                break
            await asyncio.sleep(0.01)
        assert conn.write_paused
        assert conn.transport.get_write_buffer_size() < 2 * MB
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"Content-Length: %d" % size in head
        received = 0
        while received < size:
            received += len(await reader.read(MB))
    assert received == size


async def test_expect_100_continue(harness: RouterHarness, backends: MakeBackend) -> None:
    """A backend's 100 Continue reaches the client before the final response."""
    await harness.route([await backends("b1")])
    async with _raw(harness) as (reader, writer):
        writer.write(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
        writer.write(b"hello")
        status, _, body = await _read_response(reader)
    assert status.startswith(b"HTTP/1.1 200")
    assert json.loads(body) == {"length": 5, "chunked": False}


async def test_interim_and_split_response_heads(harness: RouterHarness, backends: MakeBackend) -> None:
    """A 103 sent together with its final response, and a head split over two reads, both arrive whole."""
    await harness.route([await backends("b1")])
    async with _raw(harness) as (reader, writer):
        writer.write(
            b"GET /early-hints HTTP/1.1\r\nHost: x\r\n\r\nGET /split-head HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        interim = await reader.readuntil(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        status, _, body = await _read_response(reader)
        assert (status, body) == (b"HTTP/1.1 200 Fine", b"ok")
        status, headers, body = await _read_response(reader)
        assert (status, body) == (b"HTTP/1.1 200 OK", b"split")
        assert headers["x-backend"] == "b1"


async def test_request_framing_across_reads(harness: RouterHarness, backends: MakeBackend) -> None:
    """Heads and bodies split over reads, bodies followed by pipelined requests and chunked uploads all frame right."""
    await harness.route([await backends("b1")])
    async with _raw(harness) as (reader, writer):
        # A head in three pieces, then a Content-Length body in two.
        for piece in (b"POST /upl", b"oad HTTP/1.1\r\nHost: x\r\nContent-Le", b"ngth: 10\r\n\r\nhello"):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.write(b"world")
        assert json.loads((await _read_response(reader))[2]) == {"length": 10, "chunked": False}
        # A body, a chunked upload and a plain GET pipelined in one write, after an empty line.
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"\r\nPOST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            b"GET /headers HTTP/1.1\r\nHost: x\r\nX-Forwarded-Host: evil\r\n\r\n"
        )
        assert json.loads((await _read_response(reader))[2]) == {"length": 3, "chunked": False}
        assert json.loads((await _read_response(reader))[2]) == {"length": 3, "chunked": True}
        seen = json.loads((await _read_response(reader))[2])
        assert seen["x-forwarded-host"] == "x"
        # Back to framing requests itself after the chunked one.
        assert not next(iter(harness.router.connections)).slow_mode
        writer.write(b"GET /headers HTTP/1.0\r\nHost: x\r\n\r\n")
        seen = json.loads((await _read_response(reader))[2])
        assert seen["x-forwarded-for"] == "127.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-forwarded-host"] == "x"


async def test_oversized_or_broken_head_gets_4xx(harness: RouterHarness, backends: MakeBackend) -> None:
    """A head over 64 KiB gets a 431, a malformed one or one with bare LF line ends a 400; both close."""
    await harness.route([await backends("b1")])
    for request, expected in (
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 70_000, b"HTTP/1.1 431 Request Header Fields Too Large"),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
        (b"GET / HTTP/1.1\nHost: x\n\n", b"HTTP/1.1 400 Bad Request"),
    ):
        async with _raw(harness) as (reader, writer):
            writer.write(request)
            status, _, _ = await _read_response(reader)
            assert status == expected
            assert await reader.read() == b""


async def test_plain_and_rewritten_heads_share_a_connection(
    harness: RouterHarness, backends: MakeBackend
) -> None:
    """Heads forwarded as they came and heads with headers to rewrite, with bodies, alternate on one connection."""
    await harness.route([await backends("b1")])
    async with _raw(harness) as (reader, writer):
        writer.write(
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            b"POST /upload HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\nContent-Length: 4\r\n\r\nabcd"
            b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab"
        )
        assert json.loads((await _read_response(reader))[2]) == {"length": 3, "chunked": False}
        assert json.loads((await _read_response(reader))[2]) == {"length": 4, "chunked": False}
        writer.write(b"cde")
        assert json.loads((await _read_response(reader))[2]) == {"length": 5, "chunked": False}
        # An HTTP/1.0 client that asks to keep alive is kept alive; then one that says close is closed.
        writer.write(b"GET /headers HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
        _, headers, body = await _read_response(reader)
        assert headers["connection"] == "keep-alive"
        assert json.loads(body)["x-forwarded-for"] == "127.0.0.1"
        writer.write(
            b"GET /headers HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.2\r\nConnection: close\r\n\r\n"
        )
        _, headers, body = await _read_response(reader)
        assert headers["connection"] == "close"
        assert json.loads(body)["x-forwarded-for"] == "10.0.0.2, 127.0.0.1"
        assert await reader.read() == b""
