"""Drive gapless from outside, as a user does: the CLI as a subprocess, real processes and sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gapless.loadgen import LoadReport, run_load
from gapless.platform.base import DiscoveredProcess
from gapless.platform.local import LocalPlatform

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "examples" / "app.py"


def rollout_doc(
    name: str,
    port: int,
    version: str,
    *,
    strategy: dict[str, Any] | None = None,
    replicas: int = 4,
    app_args: tuple[str, ...] = (),
    surge: int | str = 1,
    unavailable: int | str = 0,
    deadline: float = 60,
    grace: float = 10,
    liveness: bool = False,
    extra_template: dict[str, Any] | None = None,
) -> dict[str, Any]:
    template: dict[str, Any] = {
        "command": [sys.executable, str(APP), "--version", version, *app_args],
        "readinessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 0.2, "failureThreshold": 1},
        "terminationGracePeriodSeconds": grace,
    }
    if liveness:
        template["livenessProbe"] = {
            "httpGet": {"path": "/livez"},
            "periodSeconds": 0.3,
            "failureThreshold": 2,
        }
    template |= extra_template or {}
    return {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "listen": f"127.0.0.1:{port}",
            "progressDeadlineSeconds": deadline,
            "template": template,
            "strategy": strategy or {"rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
        },
    }


@dataclass
class Gapless:
    """One gapless installation in its own state directory."""

    state_dir: Path
    specs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.specs = self.state_dir.parent / "specs"
        self.specs.mkdir(exist_ok=True)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("GAPLESS_HOME", None)
        env["COLUMNS"] = "200"
        return env

    def write(self, doc: dict[str, Any], filename: str | None = None) -> Path:
        path = self.specs / (
            filename or f"{doc['metadata']['name']}-{doc['spec']['template']['command'][3]}.yaml"
        )
        path.write_text(yaml.safe_dump(doc))
        return path

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gapless", *args, "--state-dir", str(self.state_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            check=False,
        )

    async def acli(self, *args: str, timeout: float = 180) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gapless",
            *args,
            "--state-dir",
            str(self.state_dir),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(),
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        return proc.returncode or 0, out.decode(), err.decode()

    async def status(self, name: str) -> dict[str, Any]:
        code, out, err = await self.acli("status", name, "-o", "json")
        assert code == 0, err
        return dict(json.loads(out))

    def processes(self, role: str | None = None) -> list[DiscoveredProcess]:
        procs = LocalPlatform(self.state_dir.resolve()).discover()
        return [p for p in procs if role is None or p.role == role]

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.cli("down", timeout=120)


class Load:
    """Steady load through the router in the background; ``stop()`` returns the report."""

    def __init__(self, url: str, rps: float = 250) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(run_load(url, rps=rps, duration=300, stop=self._stop, timeout=10))

    async def stop(self) -> LoadReport:
        self._stop.set()
        return await self._task


class BoundsMonitor:
    """Samples instance processes and ready instances until stopped; records the extremes."""

    def __init__(self, g: Gapless, name: str) -> None:
        self.g = g
        self.name = name
        self.max_processes = 0
        self.min_available: int | None = None
        self.samples = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        from gapless.cli.client import ApiClient

        client = ApiClient(self.g.state_dir.resolve())
        try:
            while True:
                procs = [p for p in self.g.processes("instance") if p.rollout == self.name]
                # Count instances (process groups), not processes: an instance may fork helpers.
                self.max_processes = max(self.max_processes, len({p.pgid for p in procs}))
                st = await client.status(self.name)
                avail = int(st.get("availableReplicas", 0))
                self.min_available = avail if self.min_available is None else min(self.min_available, avail)
                self.samples += 1
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def api(g: Gapless, method: str, path: str, body: Any = None) -> Any:
    """One call to the control plane's API, without the CLI's start-up time."""
    from gapless.cli.client import ApiClient

    async with ApiClient(g.state_dir.resolve()) as client:
        return await client.request(method, path, body)


WAIT_POLL = 0.5
"""Seconds between two looks of ``wait_for``: a CLI poll took 0.4-0.7 s, plus 0.1 s of sleep."""


async def wait_for(g: Gapless, name: str, predicate: Any, timeout: float = 30) -> dict[str, Any]:
    """Poll the status until ``predicate(status)`` holds.

    The status is read from the API, the document ``gapless status NAME -o json`` prints (``g.status``
    checks that path): a CLI process per poll cost about 0.2 s of CPU for every look, on a machine whose
    two cores also run the processes being waited for. It still looks about as often as the CLI could
    (every ``WAIT_POLL`` seconds): at ten looks a second ``test_full_disk`` once saw a rollout Healthy
    while the API still said its state could not be written, which its assertions do not expect;
    the assertions were written against the slower rate.
    """
    import time

    from gapless.cli.client import ApiClient

    deadline = time.monotonic() + timeout
    async with ApiClient(g.state_dir.resolve()) as client:
        while True:
            st = await client.status(name)
            if predicate(st):
                return st
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out; last status: {st.get('phase')} {st.get('strategy')} {st.get('message')}"
                )
            await asyncio.sleep(WAIT_POLL)


async def seconds_until_all(
    url: str, version: str, *, since: float | None = None, timeout: float = 10, streak: int = 20
) -> float:
    """Seconds from ``since`` (default: now) until the first of ``streak`` consecutive responses from ``version``."""
    import time

    import httpx

    started = time.monotonic() if since is None else since
    run_started = 0.0
    run = 0
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() - started < timeout:
            sent = time.monotonic()
            r = await client.get(url)
            if r.headers.get("x-version") == version:
                if run == 0:
                    run_started = sent
                run += 1
                if run >= streak:
                    return run_started - started
            else:
                run = 0
    raise AssertionError(f"{version} did not take all traffic within {timeout}s")
