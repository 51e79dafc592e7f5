"""The router as a real OS process: its title, big streamed bodies, SIGTERM drain and restart."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import psutil

import gapless
from gapless.router.client import RouterClient, RouterUnavailableError
from gapless.router.config import Backend, RouterConfig
from tests.ports import free_port as _free_port
from tests.router.backends import TestBackend

MakeBackend = Callable[..., Awaitable[TestBackend]]
SRC = str(Path(gapless.__file__).resolve().parent.parent)
MB = 1024 * 1024


def _peak_rss(pid: int) -> int:
    """The process's peak resident set size in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


class RouterProcess:
    """``python -m gapless.router`` started with files in ``tmp``."""

    def __init__(self, tmp: Path, port: int, token: str) -> None:
        self.socket = tmp / "admin.sock"
        self.port = port
        self.token_file = tmp / "token"
        self.token_file.write_text(token)
        self.token_file.chmod(0o600)
        self.config_file = tmp / "router.json"
        self.log = tmp / "router.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = RouterClient(self.socket, token)
        self.preexec: Callable[[], None] | None = None  # e.g. a lower open-file limit

    async def start(self) -> int:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gapless.router", "--name", "proc-test", "--listen",
                 f"127.0.0.1:{self.port}", "--admin-socket", str(self.socket), "--token-file",
                 str(self.token_file), "--config-file", str(self.config_file)],
                env=env, stdout=log, stderr=log, preexec_fn=self.preexec,  # noqa: PLW1509 -- only sets an rlimit
            )  # fmt: skip
        for _ in range(200):
            try:
                health = await self.client.healthz()
            except RouterUnavailableError:
                assert self.proc.poll() is None, self.log.read_text()
                await asyncio.sleep(0.025)
                continue
            assert health["pid"] == self.proc.pid
            assert health["listen"] == f"127.0.0.1:{self.port}"
            return self.proc.pid
        raise AssertionError(f"router did not start: {self.log.read_text()}")

    async def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        for _ in range(400):
            code = self.proc.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.025)
        self.proc.kill()
        raise AssertionError("router did not stop within 10 s")


async def _upload(http: httpx.AsyncClient, size: int) -> httpx.Response:
    piece = b"u" * MB

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // MB):
            yield piece

    return await http.post("/upload", content=body(), headers={"Content-Length": str(size)})


async def test_router_process(tmp_path: Path, backends: MakeBackend) -> None:
    """The process is titled, streams 50 MB each way in little memory, drains on SIGTERM and restarts."""
    b1 = await backends("b1")
    router = RouterProcess(tmp_path, _free_port(), secrets.token_hex(16))
    try:
        pid = await router.start()
        title = " ".join(psutil.Process(pid).cmdline()).strip()
        assert title == "gapless router proc-test"
        if shutil.which("ps"):
            ps = subprocess.run(
                ["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=True
            )
            assert ps.stdout.strip() == "gapless router proc-test"

        config = RouterConfig(version=7, backends=(Backend(id="b1", port=b1.port, revision="a"),))
        await router.client.put_config(config)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}", timeout=30) as http:
            assert (await http.get("/")).text == "hello from b1"
            before = _peak_rss(pid)
            r = await _upload(http, 50 * MB)
            assert r.json() == {"length": 50 * MB, "chunked": False}
            received = 0
            async with http.stream("GET", "/download", params={"size": 50 * MB}) as resp:
                async for chunk in resp.aiter_raw():
                    received += len(chunk)
            assert received == 50 * MB
            assert _peak_rss(pid) - before < 20 * MB

            slow = asyncio.create_task(http.get("/slow", params={"s": 0.5}))
            while (await router.client.stats()).revisions["a"].in_flight == 0:
                await asyncio.sleep(0.01)
            assert await router.stop() == 0
            assert (await slow).status_code == 200

        await router.start()
        assert (await router.client.healthz())["config_version"] == 7
        assert await router.client.get_config() == config
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{router.port}") as http:
            assert (await http.get("/")).text == "hello from b1"
        assert await router.stop() == 0
        assert not router.socket.exists()
    finally:
        await router.client.aclose()
        if router.proc is not None and router.proc.poll() is None:
            router.proc.kill()
            router.proc.wait()


async def _fresh_connection_requests(port: int, count: int, interval: float) -> list[str]:
    """``count`` requests, each on a new connection, one every ``interval`` s; the failures."""
    failures: list[str] = []

    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            if not data.startswith(b"HTTP/1.1 200"):
                failures.append(repr(data[:40]))
        except (OSError, TimeoutError) as exc:
            failures.append(repr(exc))

    tasks = []
    for _ in range(count):
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(interval)
    await asyncio.gather(*tasks)
    return failures


async def test_killed_worker_is_restarted_and_refuses_no_connection(
    tmp_path: Path, backends: MakeBackend
) -> None:
    """SIGKILLs of the worker refuse no new connection: the supervisor's socket queues them for the next one.

    A connection the dying worker had already accepted dies with it (an empty answer): that cannot be
    saved inside one process, so at most one such per kill is allowed; a refusal never is.
    """
    b1 = await backends("b1")
    router = RouterProcess(tmp_path, _free_port(), secrets.token_hex(16))
    try:
        supervisor = await router.start()
        await router.client.put_config(
            RouterConfig(version=1, backends=(Backend(id="b1", port=b1.port, revision="a"),))
        )
        load = asyncio.create_task(_fresh_connection_requests(router.port, 600, 0.005))
        for _ in range(3):
            await asyncio.sleep(0.8)
            [worker] = psutil.Process(supervisor).children()
            os.kill(worker.pid, signal.SIGKILL)
        failures = await load
        assert not [f for f in failures if "Refused" in f or "Errno 111" in f], failures
        assert len(failures) <= 3, failures
        assert all(f == "b''" or "Reset" in f for f in failures), failures
        health = await router.client.healthz()
        assert health["pid"] == supervisor
        assert health["restarts"] == 3
        assert health["supervised"]
        assert (await router.client.stats()).restarts == 3
        assert router.log.read_text().count("was killed by SIGKILL") == 3
        assert await router.stop() == 0
    finally:
        await router.client.aclose()
        if router.proc is not None and router.proc.poll() is None:
            router.proc.kill()
            router.proc.wait()


async def test_worker_serves_on_when_its_supervisor_is_killed(tmp_path: Path, backends: MakeBackend) -> None:
    """A SIGKILLed supervisor leaves its worker serving; the worker says so in its log and /healthz."""
    b1 = await backends("b1")
    router = RouterProcess(tmp_path, _free_port(), secrets.token_hex(16))
    worker: psutil.Process | None = None
    try:
        supervisor = await router.start()
        await router.client.put_config(
            RouterConfig(version=1, backends=(Backend(id="b1", port=b1.port, revision="a"),))
        )
        [worker] = psutil.Process(supervisor).children()
        assert router.proc is not None
        router.proc.kill()
        router.proc.wait()
        assert await _fresh_connection_requests(router.port, 100, 0.01) == []
        health = await router.client.healthz()
        assert health["pid"] == worker.pid
        assert not health["supervised"]
        for _ in range(100):
            if "supervisor (pid" in router.log.read_text():
                break
            await asyncio.sleep(0.05)
        assert f"the router's supervisor (pid {supervisor}) is gone" in router.log.read_text()
    finally:
        await router.client.aclose()
        if worker is not None and worker.is_running():
            worker.kill()
