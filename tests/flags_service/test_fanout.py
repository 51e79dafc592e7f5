"""Streams written by the publisher: in one pass, a slow client keeps only the newest change, a stuck one
is evicted, a late or delayed SDK acknowledgement is dated when the SDK applied the revision."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import Message

from gapless.flags.service.app import build_flag_app
from gapless.flags.service.fanout import Sink
from gapless.flags.service.hub import Hub
from gapless.flags.service.store import FlagStore, RulesetChange
from tests.flags_service.conftest import Service, flag_doc
from tests.ports import free_port


def change(revision: int) -> RulesetChange:
    return RulesetChange("shop", "production", revision, f'{{"revision": {revision}}}', 0.0)


def encode(c: RulesetChange, previous: int | None) -> bytes:
    return f"{'first' if previous is None else 'next'} {c.revision}\n".encode()


class Client:
    """An ASGI ``send`` whose writes finish at once, or wait (flow control) while ``open`` is clear."""

    def __init__(self) -> None:
        self.body: list[bytes] = []
        self.open = asyncio.Event()
        self.open.set()
        self.sends = 0

    async def send(self, message: dict[str, Any]) -> None:
        self.sends += 1
        if not self.open.is_set():
            await self.open.wait()
        self.body.append(message["body"])


async def test_the_pass_takes_turns_between_kinds_of_stream() -> None:
    """Streams of each kind get a change in turns (gapless, Unleash, gapless, ...), whatever the order
    they connected in, so no kind waits for every reader of another; a kind that ran out is skipped."""
    hub = Hub()
    order: list[str] = []

    def sink(kind: str, name: str) -> Sink:
        async def send(message: Message) -> None:
            if message["body"].startswith(b"next"):
                order.append(name)

        s = Sink("shop", "production", encode, kind=kind)
        hub.attach(s)
        s.offer(change(2))
        s.bind(send)
        return s

    for i in range(3):
        sink("gapless", f"g{i}")
    for i in range(2):
        sink("unleash", f"u{i}")
    hub.detach(sink("gapless", "gone"))
    assert hub.connected("shop", "production") == 5
    hub.publish([change(3)])
    await asyncio.sleep(0)
    assert order == ["g0", "u0", "g1", "u1", "g2"]


async def test_a_change_is_written_to_every_sink_in_one_pass_without_a_task() -> None:
    hub = Hub()
    clients = [Client() for _ in range(3)]
    written: list[int] = []
    sinks = [Sink("shop", "production", encode, written.append) for _ in clients]
    for sink, client in zip(sinks, clients, strict=True):
        hub.attach(sink)
        sink.offer(change(2))
        sink.bind(client.send)
    assert [c.body for c in clients] == [[b"first 2\n"]] * 3
    assert hub.connected("shop", "production") == 3

    tasks = len(asyncio.all_tasks())
    hub.publish([change(3)])
    assert all(c.body == [b"first 2\n"] for c in clients)  # the caller answers first...
    await asyncio.sleep(0)  # ...and the next pass of the loop writes to all of them
    assert [c.body for c in clients] == [[b"first 2\n", b"next 3\n"]] * 3
    assert len(asyncio.all_tasks()) == tasks  # no task per stream
    assert written == [2, 2, 2, 3, 3, 3]

    hub.publish([change(3), change(1)])  # nothing older or equal is written again
    await asyncio.sleep(0)
    assert all(len(c.body) == 2 for c in clients)
    hub.detach(sinks[0])
    assert hub.connected("shop", "production") == 2


async def test_changes_before_the_response_starts_are_kept_newest_first_event_named_first() -> None:
    sink = Sink("shop", "production", encode)
    sink.offer(change(2))
    sink.offer(change(4))  # published between reading the state and the response starting
    sink.offer(change(3))  # older than what it has: ignored
    client = Client()
    sink.bind(client.send)
    assert client.body == [b"first 4\n"]


async def test_a_slow_client_keeps_only_the_newest_change_and_gets_it_when_it_reads() -> None:
    client = Client()
    sink = Sink("shop", "production", encode)
    sink.offer(change(2))
    sink.bind(client.send)
    client.open.clear()  # its write buffer is full: the next send waits
    sink.offer(change(3))
    assert sink.busy
    for revision in range(4, 50):
        sink.offer(change(revision))
    assert client.sends == 2  # the held-up write, nothing queued behind it but one change
    client.open.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert client.body == [b"first 2\n", b"next 3\n", b"next 49\n"]
    assert not sink.busy
    sink.offer(change(50))  # and writes at once again
    assert client.body[-1] == b"next 50\n"


async def test_a_client_that_takes_no_event_is_evicted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Sink, "stall_seconds", 0.05)
    client = Client()
    sink = Sink("shop", "production", encode)
    sink.offer(change(2))
    closed = sink.bind(client.send)
    client.open.clear()
    sink.offer(change(3))
    reason = await asyncio.wait_for(closed, 2)
    assert reason.startswith("evicted")
    assert sink.evictions == 1
    assert not sink.busy
    client.open.set()
    sink.offer(change(4))  # an ended sink writes nothing more
    await asyncio.sleep(0.01)
    assert client.body == [b"first 2\n"]


async def test_a_failing_write_ends_the_stream() -> None:
    async def broken(message: dict[str, Any]) -> None:
        raise ConnectionResetError("gone")

    sink = Sink("shop", "production", encode)
    sink.offer(change(2))
    closed = sink.bind(broken)
    assert closed.done()
    assert "gone" in closed.result()


async def test_a_delayed_ack_is_dated_when_the_sdk_applied_the_revision(service: Service) -> None:
    async with service.client() as c:
        await c.put("/api/v1/projects/shop", json={"environments": ["production"]})
        before_change = time.time()
        await c.post("/api/v1/projects/shop/flags", json=flag_doc())
        token = (
            await c.post(
                "/api/v1/tokens",
                json={"kind": "sdk", "name": "web", "project": "shop", "environment": "production"},
            )
        ).json()["token"]
    await asyncio.sleep(0.6)
    async with service.client(token) as c:
        # applied 0.1 s after the change, reported 0.5 s later; and one reported at once, without age
        r = await c.post("/sdk/v1/applied", json={"sdkId": "late", "revision": 2, "age": 0.5})
        assert r.status_code == 200, r.text
        assert (await c.post("/sdk/v1/applied", json={"sdkId": "now", "revision": 2})).status_code == 200
        reported = time.time()
        for bad in ("-1", '"1"', "true", "null"):
            r = await c.post(
                "/sdk/v1/applied",
                content=f'{{"sdkId": "x", "revision": 2, "age": {bad}}}',
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 400, (bad, r.text)
            assert r.json()["problems"][0]["path"] == "age"
    async with service.client() as c:
        d = (await c.get("/api/v1/projects/shop/environments/production/delivery")).json()
    assert d["applied"] == 2
    late, now = service.store.delivery("shop", "production", 2).latencies
    assert late < 0.4  # the late report counts from when the SDK applied the revision
    assert 0.55 <= now <= reported - before_change  # the one reported at once, at its arrival


def test_a_stuck_client_is_evicted_by_the_real_server_while_others_keep_getting_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn's own flow control holds the stuck client's write; the reading one is not held up."""
    monkeypatch.setattr(Sink, "stall_seconds", 1.0)
    store = FlagStore(f"sqlite:///{tmp_path / 'flags.db'}").open()
    hub = Hub()
    _, admin_token = store.create_token("admin", "test")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(build_flag_app(store, hub), host="127.0.0.1", port=port, http="h11", log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader = socket.socket()
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}) as admin:
            deadline = time.monotonic() + 10
            while not server.started:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            admin.put("/api/v1/projects/shop", json={"environments": ["production"]}).raise_for_status()
            doc = {
                "key": "big",
                "owner": "test",
                "kind": "string",
                "variants": [{"key": "a", "value": "a" * 200_000}, {"key": "b", "value": "b"}],
                "offVariant": "b",
                "environments": {"production": {"enabled": True, "defaultRollout": {"variant": "a"}}},
            }
            admin.post("/api/v1/projects/shop/flags", json=doc).raise_for_status()
            token = admin.post(
                "/api/v1/tokens",
                json={"kind": "sdk", "name": "web", "project": "shop", "environment": "production"},
            ).json()["token"]
            request = f"GET /sdk/v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
            for s in (stuck, reader):
                s.connect(("127.0.0.1", port))
                s.sendall(request.encode())
            received = bytearray()
            reader.settimeout(5)

            def read_until(marker: bytes) -> None:
                while marker not in received[-300_000:]:
                    received.extend(reader.recv(1 << 20))

            read_until(b"id: 2\n")
            deadline = time.monotonic() + 10
            while hub.connected("shop", "production") < 2:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            revision = 2
            for n in range(40):  # 8 MB to each stream: more than the stuck one's buffers hold
                action = "kill" if n % 2 == 0 else "enable"
                r = admin.post(f"/api/v1/projects/shop/flags/big/environments/production/{action}")
                revision = r.json()["revisions"]["production"]
                read_until(f"id: {revision}\n".encode())  # the reader is never held up
            deadline = time.monotonic() + 10
            while hub.connected("shop", "production") > 1:  # the stuck one: evicted
                assert time.monotonic() < deadline, "the stuck stream was not evicted"
                time.sleep(0.05)
            r = admin.post("/api/v1/projects/shop/flags/big/environments/production/kill")
            read_until(f"id: {r.json()['revisions']['production']}\n".encode())
            assert revision >= 42
            reader.close()  # a client that goes away is forgotten at once, not at the next heartbeat
            deadline = time.monotonic() + 5
            while hub.connected("shop", "production") > 0:
                assert time.monotonic() < deadline, "a closed stream was kept"
                time.sleep(0.02)
    finally:
        stuck.close()
        reader.close()
        server.should_exit = True
        thread.join(10)
        store.close()
