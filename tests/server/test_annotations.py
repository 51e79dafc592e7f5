"""Deployment events reach a real HTTP server that implements Grafana's annotations endpoint.

The server below is a real one on a TCP port (not a mock transport): it accepts ``POST /api/annotations``
like Grafana, checks the bearer token, and can be told to fail the first requests with 503. Also: the
ready-made Grafana dashboard in the repository is valid JSON that queries gapless's own metric names.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gapless.controller.annotations import Annotation, AnnotationSender, annotation_body
from gapless.controller.reconcile import Controller
from gapless.controller.traffic import LocalRouters
from gapless.core.clock import FakeClock
from gapless.platform.local import LocalPlatform
from gapless.server.auth import ensure_token, read_token
from gapless.store.sqlite import Store
from tests.conftest import REPO
from tests.e2e.harness import Gapless, rollout_doc
from tests.ports import free_port

TOKEN = "grafana-test-token"  # noqa: S105 -- a test value


class FakeGrafana:
    """A real HTTP server speaking Grafana's ``POST /api/annotations``; records what it accepted."""

    def __init__(self, token: str = TOKEN, fail_first: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.attempts = 0
        self._fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.attempts += 1
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.path != "/api/annotations":
                    self._answer(404, {"message": "not found"})
                elif self.headers.get("authorization") != f"Bearer {token}":
                    self._answer(401, {"message": "invalid API key"})
                elif outer.attempts <= outer._fail_first:
                    self._answer(503, {"message": "try later"})
                else:
                    outer.received.append(json.loads(body))
                    self._answer(200, {"id": len(outer.received), "message": "Annotation added"})

            def _answer(self, code: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGrafana:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana() as server:
        yield server


async def _drain(sender: AnnotationSender, timeout: float = 10) -> None:
    task = asyncio.create_task(sender.run())
    try:
        await asyncio.wait_for(sender.wait_sent(), timeout)
    finally:
        task.cancel()


def test_body_has_time_in_ms_and_the_four_tags() -> None:
    """An annotation carries epoch milliseconds, a readable text and tags gapless, rollout, revision, type."""
    body = annotation_body(Annotation(1700000000.1234, "shop", "abc123", "TrafficShifted", "weights 2=20"))
    assert body == {
        "time": 1700000000123,
        "text": "shop: TrafficShifted - weights 2=20",
        "tags": ["gapless", "shop", "abc123", "TrafficShifted"],
    }
    assert annotation_body(Annotation(1.0, "shop", "", "Paused", ""))["tags"] == ["gapless", "shop", "Paused"]


async def test_one_annotation_per_event_with_tags_and_times(grafana: FakeGrafana, state_dir: Path) -> None:
    """Events given to the controller are stored and each reaches the server once, with its tags and time."""
    store = Store(state_dir / "state.db").open()
    ensure_token(state_dir, store)
    clock = FakeClock(start=1_700_000_000.0)
    platform = LocalPlatform(state_dir)
    sender = AnnotationSender(grafana.url, TOKEN)
    controller = Controller(
        store,
        platform,
        LocalRouters(state_dir, read_token(state_dir), platform),
        clock,
        state_dir,
        annotations=sender,
    )
    try:
        controller.event("shop", "h1", "RevisionCreated", "revision 1")
        clock.advance(1.5)
        controller.event("shop", "h2", "StepReached", "step 1/2")
        clock.advance(0.25)
        controller.event("shop", "h2", "TrafficShifted", "weights 1=80 2=20")
        await _drain(sender)
        stored = store.events("shop")
    finally:
        store.close()
    assert len(stored) == 3
    assert [(a["time"], a["tags"]) for a in grafana.received] == [
        (round(e.time * 1000), ["gapless", "shop", e.revision, e.type]) for e in stored
    ]
    assert [a["time"] for a in grafana.received] == [1_700_000_000_000, 1_700_000_001_500, 1_700_000_001_750]
    assert sender.statistics().sent == 3
    assert sender.statistics().failed == 0


async def test_retries_with_backoff_until_accepted() -> None:
    """A server answering 503 twice gets the annotation on the third attempt, once."""
    with FakeGrafana(fail_first=2) as server:
        sender = AnnotationSender(server.url, TOKEN, backoff=0.01)
        sender.submit(Annotation(10.0, "shop", "h1", "Promoted", "revision 2 takes all traffic"))
        await _drain(sender)
        assert server.attempts == 3
        assert len(server.received) == 1
    stats = sender.statistics()
    assert (stats.sent, stats.retries, stats.failed) == (1, 2, 0)


async def test_wrong_token_is_not_retried(caplog: pytest.LogCaptureFixture, grafana: FakeGrafana) -> None:
    """A 401 is permanent: one attempt, counted as failed, logged."""
    sender = AnnotationSender(grafana.url, "wrong", backoff=0.01)
    sender.submit(Annotation(10.0, "shop", "h1", "Aborted", "x"))
    with caplog.at_level(logging.WARNING, logger="gapless.annotations"):
        await _drain(sender)
    assert grafana.attempts == 1
    assert sender.statistics().failed == 1
    assert "HTTP 401" in caplog.text


async def test_unreachable_server_logs_and_never_blocks(
    caplog: pytest.LogCaptureFixture, state_dir: Path
) -> None:
    """With nothing listening, events are still stored at once, every annotation fails after its retries and is logged."""
    store = Store(state_dir / "state.db").open()
    ensure_token(state_dir, store)
    platform = LocalPlatform(state_dir)
    sender = AnnotationSender(f"http://127.0.0.1:{free_port()}", TOKEN, backoff=0.01, attempts=3)
    controller = Controller(
        store,
        platform,
        LocalRouters(state_dir, read_token(state_dir), platform),
        FakeClock(),
        state_dir,
        annotations=sender,
    )
    try:
        started = time.monotonic()
        for i in range(50):
            controller.event("shop", "h1", "InstanceReady", f"i{i}")
        assert time.monotonic() - started < 1.0  # queuing only, no network on the caller's path
        assert len(store.events("shop")) == 50
        with caplog.at_level(logging.WARNING, logger="gapless.annotations"):
            await _drain(sender, timeout=30)
    finally:
        store.close()
    stats = sender.statistics()
    assert (stats.sent, stats.failed, stats.retries) == (0, 50, 100)
    assert caplog.text.count("could not post annotation") == 50


def test_full_queue_drops_and_counts() -> None:
    """Beyond the queue's bound an annotation is dropped, counted, and submit returns at once."""
    sender = AnnotationSender("http://127.0.0.1:9", TOKEN, queue_size=2)
    results = [sender.submit(Annotation(float(i), "shop", "h", "X", "")) for i in range(3)]
    assert results == [True, True, False]
    assert sender.statistics().dropped == 1
    assert sender.statistics().queued == 2


def test_grafana_dashboard_is_valid_and_uses_gapless_metrics() -> None:
    """The shipped Grafana dashboard parses, has a Prometheus datasource variable and the gapless annotations."""
    doc = json.loads((REPO / "grafana" / "gapless-dashboard.json").read_text())
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    exprs = " ".join(t["expr"] for p in doc["panels"] for t in p.get("targets", []))
    for family in (
        "gapless_router_responses_total",
        "gapless_router_request_duration_seconds_bucket",
        "gapless_router_weight",
    ):
        assert family in exprs
    tags = [a.get("target", {}).get("tags") for a in doc["annotations"]["list"]]
    assert ["gapless"] in tags


@pytest.mark.slow
async def test_gapless_up_posts_every_stored_event(tmp_path: Path, grafana: FakeGrafana) -> None:
    """Through a real `gapless up --grafana-url`, every stored event of a rollout arrives as one annotation."""
    g = Gapless(tmp_path / "state")
    token_file = tmp_path / "grafana-token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    try:
        spec = g.write(rollout_doc("shop", port, "v1", replicas=1))
        code, _, err = await g.acli(
            "up", "-f", str(spec), "--grafana-url", grafana.url, "--grafana-token-file", str(token_file)
        )
        assert code == 0, err
        spec2 = g.write(rollout_doc("shop", port, "v2", replicas=1))
        code, _, err = await g.acli("apply", "-f", str(spec2), "--wait")
        assert code == 0, err
        code, out, err = await g.acli("events", "shop", "-o", "json")
        assert code == 0, err
        stored = [json.loads(line) for line in out.splitlines()]
        deadline = time.monotonic() + 10
        while len(grafana.received) < len(stored) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        g.down()
    # The CLI prints RFC 3339 times with milliseconds; Grafana got epoch milliseconds.
    want = sorted((round(datetime.fromisoformat(e["time"]).timestamp() * 1000), e["type"]) for e in stored)
    got = sorted((a["time"], a["tags"][-1]) for a in grafana.received)
    assert got[: len(want)] == want
    assert {"RevisionCreated", "RolloutComplete"} <= {e["type"] for e in stored}
    for a in grafana.received:
        assert a["tags"][:2] == ["gapless", "shop"]


@pytest.mark.slow
async def test_rollout_completes_with_grafana_unreachable_and_failures_are_logged(tmp_path: Path) -> None:
    """Nothing listens at the Grafana address: the rolling update still completes, each failure is logged."""
    g = Gapless(tmp_path / "state")
    token_file = tmp_path / "grafana-token"
    token_file.write_text(TOKEN + "\n")
    port, dead = free_port(), f"http://127.0.0.1:{free_port()}"
    try:
        spec = g.write(rollout_doc("shop", port, "v1", replicas=2))
        code, _, err = await g.acli(
            "up", "-f", str(spec), "--grafana-url", dead, "--grafana-token-file", str(token_file)
        )
        assert code == 0, err
        code, _, err = await g.acli(
            "apply", "-f", str(g.write(rollout_doc("shop", port, "v2", replicas=2))), "--wait"
        )
        assert code == 0, err
        assert (await g.status("shop"))["phase"] == "Healthy"
        log = g.state_dir / "control-plane.log"
        deadline = time.monotonic() + 15
        while "could not post annotation" not in log.read_text() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert "could not post annotation" in log.read_text()
    finally:
        g.down()
