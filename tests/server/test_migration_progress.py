"""Backfill progress: ``PUT``/``GET /api/v1/migrations/{database}/progress``, its push on the stream, and the
CLI's poster that sends it off the backfill's thread."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gapless.cli.client import ApiError, NotRunningError
from gapless.core.errors import GaplessError
from gapless.migrations.backfill import BackfillProgress
from gapless.server.dashboard import MigrationProgress, progress_body, stream_events
from gapless.store.sqlite import Store

PATH = "/api/v1/migrations/shop/progress"


def reading(**change: Any) -> dict[str, Any]:
    return {
        "migration": "m1",
        "table": "users",
        "rowsDone": 300,
        "rowsEstimate": 1000,
        "rowsPerSecond": 150.5,
        "throttled": False,
        "delay": 0.1,
        "done": False,
    } | change


async def test_progress_needs_the_token_and_nothing_changes(api: tuple[httpx.AsyncClient, Store]) -> None:
    client, store = api
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope"}):
        r = await client.put(PATH, json=reading(), headers=headers)
        assert r.status_code == 401
        assert (await client.get(PATH, headers=headers)).status_code == 401
    assert (await client.get(PATH)).json() == {"items": []}
    assert store.audit(0, 100) == []


async def test_a_bad_body_is_400_naming_each_field_and_nothing_is_kept(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    client, store = api
    bad = reading(rowsDone="many", rowsEstimate=-1, rowsPerSecond=-2.5, throttled="yes", extra=1)
    del bad["migration"]
    r = await client.put(PATH, json=bad)
    assert r.status_code == 400
    paths = {p["path"] for p in r.json()["problems"]}
    assert paths == {"migration", "rowsDone", "rowsEstimate", "rowsPerSecond", "throttled", "extra"}
    # A number JSON cannot carry back (1e999 is infinity) is refused while parsing, naming the number.
    r = await client.put(PATH, content=json.dumps(reading()).replace('"rowsDone": 300', '"rowsDone": 1e999'))
    assert r.status_code == 400
    assert "1e999 is out of range" in r.json()["error"]
    for body, field in (
        (reading(table=""), "table"),
        (reading(done=1), "done"),
        (reading(rowsDone=True), "rowsDone"),
        (reading(delay=-0.5), "delay"),
        (reading(migration="m\n1"), "migration"),
        ([reading()], ""),
    ):
        r = await client.put(PATH, json=body)
        assert r.status_code == 400, body
        assert [p["path"] for p in r.json()["problems"]] == [field]
    assert (await client.put(PATH, content=b"{not json")).status_code == 400
    assert (await client.get(PATH)).json() == {"items": []}
    # Refused reports are audited like any refused change; accepted ones (one a second) are not.
    assert {a["status"] for a in store.audit(0, 100)} == {400}


async def test_the_latest_reading_per_table_is_kept_in_memory_not_as_an_event(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    client, store = api
    audited = len(store.audit(0, 100))
    r = await client.put(PATH, json=reading())
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["stream"] == "migrations:shop"
    assert (first["database"], first["rowsDone"], first["rowsPerSecond"]) == ("shop", 300, 150.5)
    assert (await client.put(PATH, json=reading(rowsDone=600, rowsPerSecond=None))).status_code == 200
    assert (await client.put(PATH, json=reading(table="orders", rowsDone=5))).status_code == 200
    other = "/api/v1/migrations/other%20db/progress"
    assert (await client.put(other, json=reading())).status_code == 200
    items = (await client.get(PATH)).json()["items"]
    assert [(i["table"], i["rowsDone"], i["rowsPerSecond"]) for i in items] == [
        ("users", 600, None),
        ("orders", 5, 150.5),
    ]
    assert items[0]["seq"] > first["seq"]
    assert [i["database"] for i in (await client.get(other)).json()["items"]] == ["other db"]
    assert (await client.get("/api/v1/events")).json()["items"] == []  # no event, so no annotation
    assert len(store.audit(0, 100)) == audited


async def test_the_stream_of_all_rollouts_pushes_new_progress(state_dir: Path) -> None:
    """``event: progress`` with what is new since the last push, on the stream of all rollouts only."""
    store = Store(state_dir / "state.db").open()
    progress = MigrationProgress()
    progress.put(progress_body("shop", reading()))

    async def connected() -> bool:
        return False

    try:
        chunks = stream_events(store, None, 0, connected, seconds=10, progress=progress)
        seen: list[dict[str, Any]] = []
        async for chunk in chunks:
            if chunk.startswith("event: progress"):
                seen.append(json.loads(chunk.split("data: ", 1)[1]))
                if len(seen) == 1:
                    progress.put(progress_body("shop", reading(rowsDone=1000, done=True)))
                else:
                    break
        await chunks.aclose()
        assert [[(i["rowsDone"], i["done"]) for i in s["items"]] for s in seen] == [
            [(300, False)],
            [(1000, True)],
        ]
    finally:
        store.close()


def test_only_the_newest_entries_are_kept() -> None:
    progress = MigrationProgress(limit=2)
    for table in ("a", "b", "c"):
        progress.put(progress_body("shop", reading(table=table)))
    assert [i["table"] for i in progress.items()] == ["b", "c"]
    assert [i["table"] for i in progress.since(progress.items()[0]["seq"])] == ["c"]


# -- the CLI's side -----------------------------------------------------------------------------------


class FakePlane:
    """Stands in for ``request_if_running``: records each call, optionally slow or failing."""

    def __init__(self, delay: float = 0.0, error: Exception | None = None) -> None:
        self.delay = delay
        self.error = error
        self.calls: list[tuple[float, str, str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, state_dir: Path, method: str, path: str, body: Any = None, *, timeout: float) -> Any:
        assert timeout <= 2.0
        time.sleep(self.delay)
        with self.lock:
            self.calls.append((time.monotonic(), method, path, body))
        if self.error is not None:
            raise self.error
        return body

    def bodies(self) -> list[dict[str, Any]]:
        with self.lock:
            return [c[3] for c in self.calls]


def until(holds: Any, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not holds():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _cp(monkeypatch: pytest.MonkeyPatch, plane: FakePlane, tmp_path: Path) -> Any:
    from gapless.cli import client, migrate_cmd

    monkeypatch.setattr(client, "request_if_running", plane)
    return migrate_cmd._ControlPlane(tmp_path, "postgresql://postgres@127.0.0.1/my%20db")


def _event(done: int, *, finished: bool = False, table: str = "users") -> BackfillProgress:
    return BackfillProgress(table, done, 1000, 0.05, False, finished)


def test_the_cli_posts_progress_throttled_off_its_thread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Many readings a second become about one PUT a second (the newest), a finished table goes at once,
    and the final reading is sent before the next event is posted."""
    plane = FakePlane()
    cp = _cp(monkeypatch, plane, tmp_path)
    started = time.monotonic()
    for i in range(1, 31):
        cp.progress("m1", _event(i * 10))
        time.sleep(0.05)  # 1.5 s of batches
    cp.progress("m1", _event(300, finished=True))
    until(lambda: any(b["done"] for b in plane.bodies()))
    assert time.monotonic() - started < 3
    bodies = plane.bodies()
    assert 2 <= len(bodies) <= 4, bodies  # the first at once, then at most one a second, then the last
    assert all(c[1:3] == ("PUT", "/api/v1/migrations/my%20db/progress") for c in plane.calls)
    assert bodies[-1] == {
        "migration": "m1",
        "table": "users",
        "rowsDone": 300,
        "rowsEstimate": 1000,
        "rowsPerSecond": bodies[-1]["rowsPerSecond"],
        "throttled": False,
        "delay": 0.05,
        "done": True,
    }
    assert 50 < bodies[-1]["rowsPerSecond"] < 400  # ~200 rows/s over the last seconds
    assert [b["rowsDone"] for b in bodies] == sorted(b["rowsDone"] for b in bodies)
    cp.progress("m1", _event(10, table="orders"))
    cp.flush_progress()  # as post() does before BackfillDone
    assert plane.bodies()[-1]["table"] == "orders"


def test_a_slow_control_plane_never_holds_up_the_backfill(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plane = FakePlane(delay=1.5)
    cp = _cp(monkeypatch, plane, tmp_path)
    started = time.monotonic()
    for i in range(200):
        cp.progress("m1", _event(i))
    assert time.monotonic() - started < 0.5
    cp.flush_progress(timeout=0.1)  # bounded, even while a PUT hangs
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    "error",
    [NotRunningError("none"), ApiError(404, "not found", [])],
    ids=["absent", "older control plane"],
)
def test_no_or_an_older_control_plane_stops_the_posting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: GaplessError
) -> None:
    plane = FakePlane(error=error)
    cp = _cp(monkeypatch, plane, tmp_path)
    cp.progress("m1", _event(1))
    until(lambda: len(plane.calls) == 1)
    time.sleep(0.05)
    cp.progress("m1", _event(2, finished=True))
    time.sleep(0.2)
    assert len(plane.calls) == 1


def test_a_timeout_is_a_warning_and_the_next_reading_is_tried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plane = FakePlane(error=GaplessError("the control plane did not answer: timeout"))
    cp = _cp(monkeypatch, plane, tmp_path)
    cp.progress("m1", _event(1))
    until(lambda: len(plane.calls) == 1)
    cp.progress("m1", _event(2, finished=True))
    until(lambda: len(plane.calls) == 2)
    cp.flush_progress()
    assert capsys.readouterr().err.count("could not report backfill progress") == 1
