"""OFREP change notification (ADR 0008) on a real ``gapless flags serve``: the bulk answer names an event
stream, a kill switch thrown with the gapless CLI reaches a connected client as ``refetchEvaluation``,
and the re-fetch answers with the new value; a wrong or revoked channel is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.flags_service.test_delivery import ServiceProcess, admin
from tests.ports import free_port

pytestmark = pytest.mark.slow
KILL = [sys.executable, "-m", "gapless", "flags", "kill", "shop", "checkout", "production"]

FLAG = {
    "key": "checkout",
    "environments": {"production": {"enabled": True, "defaultRollout": {"variant": "on"}}},
}


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[ServiceProcess, str, str]]:
    svc = ServiceProcess(tmp_path / "state", free_port())
    svc.start()
    try:
        with admin(svc) as c:
            assert c.put("/api/v1/projects/shop", json={"environments": ["production"]}).status_code == 200
            assert c.post("/api/v1/projects/shop/flags", json=FLAG).status_code == 201
            sdk = c.post(
                "/api/v1/tokens",
                json={"kind": "sdk", "name": "ofrep", "project": "shop", "environment": "production"},
            ).json()
            yield svc, sdk["token"], c.headers["Authorization"].removeprefix("Bearer ")
    finally:
        svc.stop()
        svc.log.close()


def bulk(svc: ServiceProcess, token: str, query: str = "") -> dict[str, Any]:
    r = httpx.post(
        f"{svc.url}/ofrep/v1/evaluate/flags{query}",
        json={"context": {"targetingKey": "u1"}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def events(lines: Iterator[str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(id, event, data) of each server-sent event; comments skipped."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                yield fields.get("id", ""), fields.get("event", "message"), json.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def test_kill_switch_reaches_an_ofrep_event_stream(shop: tuple[ServiceProcess, str, str]) -> None:
    """bulk -> eventStreams -> connect; `gapless flags kill` arrives as refetchEvaluation; the re-fetch is off."""
    svc, token, admin_token = shop
    first = bulk(svc, token)
    assert first["flags"][0]["value"] is True
    [stream] = first["eventStreams"]
    assert stream["type"] == "sse"
    uri = stream["endpoint"]["requestUri"]
    assert uri.startswith("/ofrep/v1/events?channel=")
    assert token not in uri  # the URL carries a notify-only channel, never the token
    with httpx.Client(timeout=httpx.Timeout(10, read=20)) as c, c.stream("GET", svc.url + uri) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == ": connected"
        started = time.monotonic()
        kill = subprocess.run(
            [*KILL, "--url", svc.url, "--token", admin_token],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        returned = time.monotonic()
        assert kill.returncode == 0, kill.stdout + kill.stderr
        event_id, name, data = next(events(lines))
        seen = time.monotonic()
        assert name == "message"
        assert data["type"] == "refetchEvaluation"
        assert int(event_id) == int(data["etag"].strip('"')) > first["metadata"]["revision"]
        assert isinstance(data["lastModified"], int)
        again = bulk(
            svc, token, f"?flagConfigEtag={data['etag']}&flagConfigLastModified={data['lastModified']}"
        )
        assert again["flags"][0]["value"] is False
        print(
            f"kill: CLI took {returned - started:.3f} s; event {1000 * (seen - returned):.1f} ms after it returned"
        )


def test_channels_are_checked_and_missed_changes_replayed(shop: tuple[ServiceProcess, str, str]) -> None:
    """A forged channel is 401, a revoked token's channel too; an older Last-Event-ID is told to re-fetch at once."""
    svc, token, _ = shop
    uri = bulk(svc, token)["eventStreams"][0]["endpoint"]["requestUri"]
    channel = uri.partition("channel=")[2]
    forged = channel[:-1] + ("0" if channel[-1] != "0" else "1")
    r = httpx.get(f"{svc.url}/ofrep/v1/events?channel={forged}", timeout=10)
    assert r.status_code == 401
    assert "channel" in r.json()["errorDetails"]
    assert httpx.get(f"{svc.url}/ofrep/v1/events", timeout=10).status_code == 401  # no channel, no token
    with httpx.Client(timeout=httpx.Timeout(10, read=10)) as c:
        with c.stream("GET", svc.url + uri, headers={"Last-Event-ID": "0"}) as r:
            event_id, _, data = next(events(r.iter_lines()))
            assert data["type"] == "refetchEvaluation"
            assert int(event_id) >= 1
        with c.stream("GET", f"{svc.url}/ofrep/v1/events", headers={"X-API-Key": token}) as r:
            assert r.status_code == 200  # the SDK token as a header works too
    with admin(svc) as a:
        token_id = token.split("_")[1]
        assert a.delete(f"/api/v1/tokens/{token_id}").status_code == 200
    assert httpx.get(svc.url + uri, timeout=10).status_code == 401
