"""Two ``gapless flags serve`` processes on one PostgreSQL: a kill switch thrown through one reaches SDKs
streaming from the other (LISTEN/NOTIFY), gapless's own and Unleash's."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gapless.flags.sdk import FlagClient
from gapless.flags.transport import HttpTransport
from tests.flags_service.test_delivery import ServiceProcess, admin, wait_until
from tests.ports import free_port

pytestmark = pytest.mark.slow


class PostgresService(ServiceProcess):
    """``gapless flags serve`` on a given database."""

    def __init__(self, state_dir: Path, port: int, database_url: str) -> None:
        super().__init__(state_dir, port)
        self.database_url = database_url

    def start(self) -> None:
        argv = [sys.executable, "-m", "gapless", "flags", "serve", "--listen", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(
            [*argv, "--state-dir", str(self.state_dir), "--database-url", self.database_url],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        wait_until(lambda: _healthy(self.url), 60, "the flag service to start")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def two(tmp_path: Path, postgres_url: str) -> Iterator[tuple[PostgresService, PostgresService]]:
    a = PostgresService(tmp_path / "a", free_port(), postgres_url)
    a.start()  # creates the schema and the admin token first
    b = PostgresService(tmp_path / "b", free_port(), postgres_url)
    b.start()
    try:
        yield a, b
    finally:
        for svc in (a, b):
            svc.stop()
            svc.log.close()


def test_kill_through_one_process_reaches_streams_of_the_other(
    two: tuple[PostgresService, PostgresService],
) -> None:
    """A gapless SDK and an Unleash stream on process B see a kill made through process A in under 2 s."""
    a, b = two
    with admin(a) as c:
        assert c.put("/api/v1/projects/shop", json={"environments": ["production"]}).status_code == 200
        flag = {
            "key": "kill-me",
            "environments": {"production": {"enabled": True, "defaultRollout": {"variant": "on"}}},
        }
        assert c.post("/api/v1/projects/shop/flags", json=flag).status_code == 201
        token = c.post(
            "/api/v1/tokens",
            json={"kind": "sdk", "name": "b", "project": "shop", "environment": "production"},
        ).json()["token"]
    flags = FlagClient(transport=HttpTransport(b.url, token=token)).start()
    try:
        wait_until(lambda: flags.is_enabled("kill-me", {}), 20, "the flag on, streamed from B")
        with httpx.stream(
            "GET", f"{b.url}/api/client/streaming", headers={"Authorization": token}, timeout=10
        ) as unleash_stream:
            lines = unleash_stream.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: unleash-connected"
            started = time.monotonic()
            with admin(a) as c:
                r = c.post("/api/v1/projects/shop/flags/kill-me/environments/production/kill")
                assert r.status_code == 200
            wait_until(lambda: not flags.is_enabled("kill-me", {}), 2, "B's gapless SDK to see A's kill")
            assert next(line for line in lines if line.startswith("event:")) == "event: unleash-updated"
            data = next(line for line in lines if line.startswith("data:"))
            assert '"enabled": false' in data
            assert time.monotonic() - started < 2
    finally:
        flags.close()
