"""The real flag service process and real SDK clients over HTTP: kill switch, outage, bootstrap, delivery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gapless.flags.sdk import FlagClient
from gapless.flags.service.serve import ADMIN_TOKEN_FILE
from gapless.flags.service.store import Actor, FlagStore
from gapless.flags.transport import HttpTransport
from tests.flags_service.conftest import flag_doc
from tests.ports import free_port

pytestmark = pytest.mark.slow

CLIENTS = 50


class ServiceProcess:
    def __init__(self, state_dir: Path, port: int) -> None:
        self.state_dir = state_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log = (state_dir / "service.log").open("ab")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gapless",
                "flags",
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--state-dir",
                str(self.state_dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 60  # a generous guard: the start took 19 s on a loaded machine
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("the flag service did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(tmp_path / "state", free_port())
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()
        svc.log.close()


def admin(svc: ServiceProcess) -> httpx.Client:
    token = (svc.state_dir / ADMIN_TOKEN_FILE).read_text().strip()
    return httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def wait_until(predicate: object, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.002)
    return time.monotonic() - started


def test_kill_switch_reaches_every_streaming_client_and_outages_are_survived(
    service: ServiceProcess, tmp_path: Path
) -> None:
    with admin(service) as c:
        assert c.put("/api/v1/projects/shop", json={"environments": ["production"]}).status_code == 200
        doc = flag_doc()
        doc["environments"]["production"]["defaultRollout"] = {"variant": "on"}
        assert c.post("/api/v1/projects/shop/flags", json=doc).status_code == 201
        sdk_token = c.post(
            "/api/v1/tokens",
            json={"kind": "sdk", "name": "web", "project": "shop", "environment": "production"},
        ).json()["token"]
    transports = [HttpTransport(service.url, sdk_token, flush_interval=0.5) for _ in range(CLIENTS)]
    clients = [
        FlagClient(transport=t, cache_file=tmp_path / f"cache-{i}.json").start()
        for i, t in enumerate(transports)
    ]
    try:
        wait_until(
            lambda: all(t.connected.is_set() for t in transports) and all(cl.revision == 2 for cl in clients),
            20,
            "clients",
        )
        ctx = {"targetingKey": "u1"}
        assert all(cl.is_enabled("new-checkout", ctx) for cl in clients)

        # Kill switch: every client's next evaluation reflects it.
        with admin(service) as c:
            t0 = time.monotonic()
            r = c.post("/api/v1/projects/shop/flags/new-checkout/environments/production/kill")
            returned = time.monotonic()
        assert r.json()["revisions"] == {"production": 3}
        seen: dict[int, float] = {}

        def all_off() -> bool:
            for i, cl in enumerate(clients):
                if i not in seen and not cl.is_enabled("new-checkout", ctx):
                    seen[i] = time.monotonic() - returned
            return len(seen) == CLIENTS

        wait_until(all_off, 10, "every client to see the kill switch")
        latencies = sorted(seen.values())
        print(
            f"\nkill switch: API call {1000 * (returned - t0):.1f} ms; clients saw it after P50 "
            f"{1000 * latencies[len(latencies) // 2]:.1f} ms, max {1000 * latencies[-1]:.1f} ms"
        )

        # The service records who applied the revision.
        with admin(service) as c:
            deadline = time.monotonic() + 10
            while (d := c.get("/api/v1/projects/shop/environments/production/delivery").json())[
                "applied"
            ] < CLIENTS:
                assert time.monotonic() < deadline, d
                time.sleep(0.05)
        assert d["revision"] == 3
        assert d["connected"] >= CLIENTS

        # Outage: clients keep serving the last ruleset; a change made meanwhile arrives on return.
        service.stop()
        time.sleep(0.5)
        assert not any(cl.is_enabled("new-checkout", ctx) for cl in clients)
        assert clients[0].evaluate("new-checkout", ctx).reason == "DISABLED"
        store = FlagStore(f"sqlite:///{service.state_dir / 'flags.db'}").open()
        try:

            def on(d: dict[str, object]) -> dict[str, object]:
                envs = dict(d["environments"])  # type: ignore[call-overload]
                envs["production"] = dict(envs["production"]) | {"enabled": True}
                return d | {"environments": envs}

            store.change_flag("shop", "new-checkout", Actor("test", "test"), "flag.enable", on)
        finally:
            store.close()
        service.start()
        wait_until(
            lambda: all(cl.is_enabled("new-checkout", ctx) for cl in clients), 30, "clients to reconnect"
        )
        assert all(cl.revision == 4 for cl in clients)
    finally:
        closing = time.monotonic()
        for cl in clients:
            cl.close()
        print(f"closing {CLIENTS} clients took {time.monotonic() - closing:.1f} s")

    # Evaluation counts were reported.
    with admin(service) as c:
        flags = c.get("/api/v1/projects/shop/flags").json()["items"]
    assert sum(flags[0]["evaluations"].values()) > 0

    # A fresh SDK with a bootstrap file (here: a client's cache) serves with no service at all.
    service.stop()
    cache = json.loads((tmp_path / "cache-0.json").read_text())
    boot = tmp_path / "bootstrap.json"
    boot.write_text(json.dumps(cache))
    fresh = FlagClient(bootstrap_file=boot).start()
    assert fresh.revision == 4
    assert fresh.is_enabled("new-checkout", {"targetingKey": "u1"})


def test_polling_fallback_uses_etags(service: ServiceProcess) -> None:
    with admin(service) as c:
        c.put("/api/v1/projects/shop", json={"environments": ["production"]})
        c.post("/api/v1/projects/shop/flags", json=flag_doc())
        sdk_token = c.post(
            "/api/v1/tokens",
            json={"kind": "sdk", "name": "poller", "project": "shop", "environment": "production"},
        ).json()["token"]
    transport = HttpTransport(service.url, sdk_token, stream=False, poll_interval=0.2)
    client = FlagClient(transport=transport).start()
    try:
        wait_until(lambda: client.revision == 2, 10, "the first poll")
        with admin(service) as c:
            c.post("/api/v1/projects/shop/flags/new-checkout/environments/production/kill")
        wait_until(lambda: client.revision == 3, 10, "the next poll")
        assert not client.is_enabled("new-checkout", {"targetingKey": "u1", "plan": "pro"})
    finally:
        client.close()


def test_a_forked_worker_streams_on_its_own(service: ServiceProcess) -> None:
    """gunicorn --preload forks after the client started: the child reconnects and gets later changes."""
    with admin(service) as c:
        c.put("/api/v1/projects/shop", json={"environments": ["production"]})
        c.post("/api/v1/projects/shop/flags", json=flag_doc())
        sdk_token = c.post(
            "/api/v1/tokens",
            json={"kind": "sdk", "name": "worker", "project": "shop", "environment": "production"},
        ).json()["token"]
    transport = HttpTransport(service.url, sdk_token)
    client = FlagClient(transport=transport).start()
    try:
        wait_until(lambda: client.revision == 2 and transport.connected.is_set(), 10, "the parent's stream")
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker: only this thread exists here
            code = 1
            try:
                os.close(read_end)
                deadline = time.monotonic() + 15
                while not transport.connected.is_set() and time.monotonic() < deadline:
                    time.sleep(0.01)
                os.write(write_end, b"connected\n" if transport.connected.is_set() else b"no stream\n")
                while client.revision != 3 and time.monotonic() < deadline:
                    time.sleep(0.01)
                os.write(write_end, f"revision {client.revision}\n".encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            assert pipe.readline() == b"connected\n"
            with admin(service) as c:
                c.post("/api/v1/projects/shop/flags/new-checkout/environments/production/kill")
            assert pipe.readline() == b"revision 3\n"
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        wait_until(lambda: client.revision == 3, 10, "the parent to get the change too")
    finally:
        client.close()
