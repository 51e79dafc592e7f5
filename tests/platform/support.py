"""Helpers shared by the platform tests: commands, specs, waiting, and a tiny scriptable HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from gapless.platform import InstanceSpec
from tests.conftest import EXAMPLES, PYTHON

APP = EXAMPLES / "app.py"

IGNORING_PARENT_WITH_GRANDCHILD = """
import signal, subprocess, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the child: it ignores SIGTERM too
child = subprocess.Popen(["sleep", "1000"])
print("grandchild", child.pid, flush=True)
time.sleep(1000)
"""


def app_command(*flags: str) -> list[str]:
    """The example app, listening on the port the platform assigns."""
    return [PYTHON, str(APP), "--port", "${PORT}", *flags]


def make_spec(
    tmp_path: Path,
    command: list[str],
    *,
    instance_id: str = "web-1",
    rollout: str = "web",
    revision: str = "r1",
    env: dict[str, str] | None = None,
    working_dir: str | None = None,
) -> InstanceSpec:
    """An instance spec whose log goes under ``tmp_path/logs``."""
    return InstanceSpec(
        rollout=rollout,
        instance_id=instance_id,
        revision=revision,
        command=command,
        env=env or {},
        working_dir=working_dir,
        log_path=tmp_path / "logs" / f"{instance_id}.log",
    )


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``condition`` every 20 ms until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_http(port: int, path: str = "/", timeout: float = 5.0) -> httpx.Response:
    """GET until the server answers at all (any status); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(trust_env=False) as client:
        while True:
            try:
                return await client.get(f"http://127.0.0.1:{port}{path}", timeout=1.0)
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``, found independently of the platform."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass
class TinyHTTP:
    """What the tiny server answers, and the requests it saw (request line and lower-cased headers)."""

    port: int = 0
    status: int = 200
    body: bytes = b"ok"
    delay: float = 0.0
    seen: list[dict[str, str]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def tiny_http(status: int = 200, body: bytes = b"ok", delay: float = 0.0) -> AsyncIterator[TinyHTTP]:
    """A one-response-per-connection HTTP server on a free loopback port, run in the test's loop."""
    state = TinyHTTP(status=status, body=body, delay=delay)
    handlers: set[asyncio.Task[None]] = set()
    # A late answer waits on this rather than being cancelled at the end: on Python 3.11 a cancelled
    # start_server handler leaves its transport unclosed (asyncio's done callback raises first), and
    # the ResourceWarning failed a test that had passed.
    closing = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            request: dict[str, str] = {"line": (await reader.readline()).decode().strip()}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode().partition(":")
                request[name.strip().lower()] = value.strip()
            state.seen.append(request)
            if state.delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closing.wait(), state.delay)
            head = (
                f"HTTP/1.1 {state.status} X\r\nContent-Length: {len(state.body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + state.body)
            await writer.drain()
        except ConnectionError:
            pass  # the probe gave up (timeout) and closed its side
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            handlers.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        async with server:
            yield state
    finally:
        closing.set()
        await asyncio.gather(*handlers, return_exceptions=True)
