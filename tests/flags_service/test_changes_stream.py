"""A project's change stream (``GET /api/v1/projects/{p}/changes``): every committed change, for dashboards.

The stream never ends on its own, and httpx's ASGI transport reads a body whole, so these tests drive
the app at the ASGI level: the body is read chunk by chunk as the app sends it, and the client
"disconnects" at the end.
"""

from __future__ import annotations

import asyncio
import json
import time
from types import TracebackType
from typing import Any

import pytest

from gapless.flags.service import app as app_module
from gapless.flags.service.hub import Hub, ProjectChange
from gapless.flags.service.serve import advance_due
from tests.flags_service.conftest import Service, flag_doc

CHANGES = "/api/v1/projects/shop/changes"
KILL = "/api/v1/projects/shop/flags/new-checkout/environments/production/kill"


class Stream:
    """One GET to an ASGI app whose body is read as it is sent; leaving the block disconnects."""

    def __init__(self, app: Any, path: str, token: str | None = None, *, query_token: str | None = None):
        self.app = app
        self.path = path
        self.headers = [(b"host", b"flags")]
        if token is not None:
            self.headers.append((b"authorization", f"Bearer {token}".encode()))
        self.query = f"token={query_token}".encode() if query_token is not None else b""
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.body = b""
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.gone = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._requested = False

    async def _receive(self) -> dict[str, Any]:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status.set_result(message["status"])
        elif message["type"] == "http.response.body":
            await self.chunks.put(message.get("body", b""))

    async def __aenter__(self) -> Stream:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": self.query,
            "root_path": "",
            "headers": self.headers,
            "client": ("127.0.0.1", 50000),
            "server": ("flags", 80),
        }
        self.task = asyncio.create_task(self.app(scope, self._receive, self._send))
        await asyncio.wait_for(asyncio.shield(self.status), 5)
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.gone.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 5)

    async def block(self, timeout: float = 5) -> str:
        """The next SSE block (up to a blank line), comments and ``retry:`` included."""
        while b"\n\n" not in self.body:
            self.body += await asyncio.wait_for(self.chunks.get(), timeout)
        block, self.body = self.body.split(b"\n\n", 1)
        return block.decode()

    async def event(self, timeout: float = 5) -> tuple[str, dict[str, Any]]:
        """The next named event and its data, skipping comments (heartbeats) and ``retry:``."""
        deadline = time.monotonic() + timeout
        while True:
            block = await self.block(max(0.01, deadline - time.monotonic()))
            fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
            if "event" in fields:
                return fields["event"], json.loads(fields["data"])

    async def nothing(self, seconds: float = 0.2) -> None:
        with pytest.raises(TimeoutError):
            await self.event(seconds)


async def _project(service: Service) -> None:
    async with service.client() as c:
        r = await c.put("/api/v1/projects/shop", json={"environments": ["staging", "production"]})
        assert r.status_code == 200, r.text
        assert (await c.post("/api/v1/projects/shop/flags", json=flag_doc())).status_code == 201


async def test_every_change_of_the_project_is_announced_with_its_revisions(service: Service) -> None:
    """The current revisions at once; then kill, enable, replace, archive, segments and an owner-only
    change, each with the action, the flag and the new revisions; a no-op announces nothing."""
    await _project(service)
    async with service.client() as c:
        before = (await c.get("/api/v1/projects/shop")).json()["revisions"]
        async with Stream(service.app, CHANGES, service.admin_token) as s:
            assert (await s.block()).startswith("retry: ")
            assert await s.event() == ("revisions", {"project": "shop", "revisions": before})

            r = await c.post(KILL)
            assert r.status_code == 200
            name, data = await s.event()
            assert name == "change"
            assert data == {
                "project": "shop",
                "action": "flag.kill",
                "flag": "new-checkout",
                "environment": "production",
                "revisions": {"production": r.json()["revisions"]["production"]},
            }
            assert (await c.post(KILL)).status_code == 200  # already off: nothing committed
            await s.nothing()

            assert (await c.post(KILL.replace("/kill", "/enable"))).status_code == 200
            assert (await s.event())[1]["action"] == "flag.enable"

            # An owner is not in the ruleset: no new revision, still a change of the project.
            r = await c.put(
                "/api/v1/projects/shop/flags/new-checkout", json=flag_doc() | {"owner": "someone"}
            )
            assert r.status_code == 200, r.text
            assert (await s.event())[1] == {
                "project": "shop",
                "action": "flag.put",
                "flag": "new-checkout",
                "environment": None,
                "revisions": {},
            }
            segment = {"conditions": [{"attribute": "plan", "operator": "in", "values": ["pro"]}]}
            assert (await c.put("/api/v1/projects/shop/segments/pros", json=segment)).status_code == 200
            assert (await s.event())[1]["action"] == "segment.put"
            assert (await c.delete("/api/v1/projects/shop/segments/pros")).status_code == 200
            assert (await s.event())[1]["action"] == "segment.delete"
            assert (await c.delete("/api/v1/projects/shop/flags/new-checkout")).status_code == 200
            archived = (await s.event())[1]
            assert archived["action"] == "flag.archive"
            assert set(archived["revisions"]) == {"staging", "production"}  # gone from both


async def test_release_plan_timer_and_other_projects(service: Service) -> None:
    """An advance by the release-plan timer is announced (action null); another project's changes are not."""
    await _project(service)
    stages = [
        {"name": "10%", "rollout": {"variant": "off"}, "monitoringWindow": "10m"},
        {"name": "100%", "rollout": {"variant": "on"}},
    ]
    async with service.client() as c:
        r = await c.put("/api/v1/projects/other", json={"environments": ["production"]})
        assert r.status_code == 200
        started = "2026-01-01T00:00:00+00:00"
        staged = flag_doc("gradual", rules=[], releasePlan={"stages": stages, "stageStartedAt": started})
        assert (await c.post("/api/v1/projects/shop/flags", json=staged)).status_code == 201
        async with Stream(service.app, CHANGES, service.admin_token) as s:
            await s.event()  # revisions
            assert (await c.post("/api/v1/projects/other/flags", json=flag_doc())).status_code == 201
            await s.nothing()
            assert advance_due(service.store, service.hub, time.time()) == 1
            name, data = await s.event()
            assert (name, data["action"], data["flag"]) == ("change", None, None)
            assert set(data["revisions"]) == {"production"}


async def test_auth_query_token_and_unknown_project(service: Service) -> None:
    """No, a wrong or an SDK token: 401/403 and no watcher; ``?token=`` works (EventSource); 404 for no project."""
    await _project(service)
    async with service.client() as c:
        r = await c.post(
            "/api/v1/tokens",
            json={"kind": "sdk", "name": "web", "project": "shop", "environment": "production"},
        )
        sdk = r.json()["token"]
        for headers, status in (
            ({"Authorization": ""}, 401),
            ({"Authorization": "Bearer gfl_000000000000_x"}, 401),
            ({"Authorization": f"Bearer {sdk}"}, 403),
        ):
            r = await c.get(CHANGES, headers=headers)
            assert r.status_code == status, r.text
            assert r.json()["problems"]
        r = await c.get(CHANGES, headers={"Authorization": ""}, params={"token": sdk})
        assert r.status_code == 403
        assert (await c.get("/api/v1/projects/nope/changes")).status_code == 404
    assert service.hub.watching("shop") == 0
    async with Stream(service.app, CHANGES, query_token=service.admin_token) as s:
        assert (await s.event())[0] == "revisions"
        assert service.hub.watching("shop") == 1
    assert service.hub.watching("shop") == 0  # the disconnect unsubscribed it


async def test_heartbeats_and_the_stream_ends(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """A heartbeat comment while nothing changes; the stream ends after its lifetime (the browser reconnects)."""
    await _project(service)
    monkeypatch.setattr(app_module, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(app_module, "CHANGES_STREAM_SECONDS", 0.5)
    async with Stream(service.app, CHANGES, service.admin_token) as s:
        await s.event()
        assert (await s.block()) == ": heartbeat"
        assert s.task is not None
        await asyncio.wait_for(s.task, 5)  # ended on its own
    assert service.hub.watching("shop") == 0


async def test_a_slow_watcher_gets_changes_merged() -> None:
    """A queue of one: unread changes merge (newest action, every revision), never block the publisher."""
    hub = Hub()
    queue = hub.subscribe_project("shop")
    hub.publish([], ProjectChange("shop", "flag.kill", "a", "production", {"production": 3}))
    hub.publish([], ProjectChange("shop", "flag.put", "b", None, {"staging": 7, "production": 4}))
    change = queue.get_nowait()
    assert (change.action, change.flag, dict(change.revisions)) == (
        "flag.put",
        "b",
        {"production": 4, "staging": 7},
    )
    assert queue.empty()
    hub.unsubscribe_project("shop", queue)
    assert hub.watching("shop") == 0
