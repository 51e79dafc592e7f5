"""``gapless down``: stop everything of a state directory and prove that nothing is left.

The control plane does the stopping (drain, preStop, SIGTERM, grace, SIGKILL) because it knows each
instance's grace period; when none runs, one is started first, so a crashed control plane is adopted and
shut down properly. Afterwards every process still marked with the state directory (processes of a lost
``state.db`` that no record covers) gets SIGTERM, then SIGKILL after ``LEFTOVER_GRACE``: ``down`` never
leaves a process behind, whatever state it found.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from gapless.cli.client import ApiClient, NotRunningError, start_control_plane
from gapless.cli.times import format_duration
from gapless.core.errors import GaplessError
from gapless.platform.base import ROLE_CONTROL_PLANE
from gapless.platform.local import LocalPlatform

__all__ = ["down_all", "down_rollout"]

LEFTOVER_GRACE = 10.0
"""Processes the control plane did not stop (no record of them: a lost state.db) get SIGTERM and this
long to drain and exit before SIGKILL."""
POLL = 0.05
"""Seconds between looks at what is left while stopping."""


def _has_rollouts(db: Path) -> bool:
    """Whether ``db`` (the state database) records a rollout; True when it cannot be read.

    With no rollout recorded, no process marked for the state directory and no control plane answering,
    there is nothing for ``down`` to stop, and starting a control plane only to stop it is skipped.
    """
    if not db.exists():
        return False
    try:
        with contextlib.closing(
            sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=2)
        ) as con:
            return bool(con.execute("SELECT EXISTS (SELECT 1 FROM rollouts)").fetchone()[0])
    except sqlite3.Error:
        return True  # let the control plane read (and repair) it


async def down_all(state_dir: Path, console: Console, timeout: float = 600.0) -> int:
    """Stop everything; 3 when the control plane's graceful stop outlasted ``timeout`` (what is left is
    then stopped as leftovers are: SIGTERM, SIGKILL after ``LEFTOVER_GRACE``), else 0."""
    timed_out = False
    platform = LocalPlatform(state_dir)
    client = ApiClient(state_dir)
    if not platform.discover() and not _has_rollouts(state_dir / "state.db") and not await client.alive():
        await client.aclose()
        console.print(f"nothing runs for {escape(str(state_dir))}")
        return 0
    try:
        if (state_dir / "state.db").exists():
            await start_control_plane(state_dir)
            await client.request("POST", "/api/v1/shutdown")
            console.print("stopping instances, routers and the control plane...")
            deadline = time.monotonic() + timeout
            last = None
            while time.monotonic() < deadline:
                try:
                    items = (await client.request("GET", "/api/v1/rollouts"))["items"]
                except (NotRunningError, GaplessError):
                    break
                left = sum(int(i.get("totalInstances", 0)) for i in items)
                if left != last:
                    console.print(f"  {len(items)} rollout(s), {left} instance(s) left")
                    last = left
                await asyncio.sleep(POLL)
            await _wait_control_plane_gone(platform, deadline)
            timed_out = time.monotonic() >= deadline
    finally:
        await client.aclose()
    leftovers = platform.discover()
    for p in leftovers:
        console.print(f"[yellow]stopping leftover {p.role} process {p.pid} (SIGTERM, SIGKILL after 10s)[/]")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pgid, signal.SIGTERM)
    deadline = time.monotonic() + LEFTOVER_GRACE
    while leftovers and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        leftovers = platform.discover()
    for p in leftovers:
        console.print(f"[yellow]killing leftover {p.role} process {p.pid}[/]")
        await platform.kill_group(p.pgid)
    console.print("down: no gapless process is running for this state directory")
    if timed_out:
        console.print(
            f"[red]the graceful stop timed out after {format_duration(timeout)}[/]", highlight=False
        )
        return 3
    return 0


async def _wait_control_plane_gone(platform: LocalPlatform, deadline: float) -> None:
    while time.monotonic() < deadline:
        if not any(p.role == ROLE_CONTROL_PLANE for p in platform.discover()):
            return
        await asyncio.sleep(POLL)


async def down_rollout(state_dir: Path, name: str, console: Console, timeout: float = 600.0) -> int:
    client = ApiClient(state_dir)
    try:
        await client.request("DELETE", f"/api/v1/rollouts/{name}")
        console.print(f"removing {name}...")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = (await client.request("GET", "/api/v1/rollouts"))["items"]
            if not any(i.get("name") == name for i in items):
                console.print(f"{name} removed")
                return 0
            await asyncio.sleep(0.2)
        console.print(f"[red]timed out after {format_duration(timeout)}: {name} is not removed yet[/]")
        return 3
    finally:
        await client.aclose()
