"""Waiting for a rollout to finish while showing live progress."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from rich.console import Console
from rich.live import Live

from gapless.cli.client import ApiClient
from gapless.cli.render import summary_line

__all__ = ["EXIT_FAILED", "EXIT_OK", "wait_for_rollout"]

EXIT_OK = 0
EXIT_FAILED = 1
ROUTER_GRACE = 5.0
"""Seconds a router start failure (e.g. its address in use) may last before waiting gives up."""


def outcome(status: dict[str, Any], generation: int) -> int | None:
    """0 when the rollout of ``generation`` is complete, 1 when it failed, None while in progress."""
    if status.get("observedGeneration", 0) < generation:
        return None
    phase = status.get("phase")
    if status.get("aborted"):
        return EXIT_FAILED
    if phase == "Healthy":
        return EXIT_OK
    if phase == "Failed":
        return EXIT_FAILED
    if phase == "Paused":
        return EXIT_OK
    return None


async def wait_for_rollout(
    client: ApiClient, name: str, generation: int, console: Console, timeout: float | None = None
) -> int:
    """Poll the status until the rollout completes (0) or fails (1); show one live summary line."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = ""
    since_router_error: float | None = None
    live = Live(console=console, refresh_per_second=8, transient=False) if console.is_terminal else None
    try:
        if live is not None:
            live.start()
        while True:
            status = await client.status(name)
            line = summary_line(status)
            if live is not None:
                live.update(line)
            elif line.plain != last:
                console.print(line)
                last = line.plain
            result = outcome(status, generation)
            router_error = (status.get("router") or {}).get("error")
            if result is None and router_error:
                since_router_error = since_router_error or time.monotonic()
                if time.monotonic() - since_router_error > ROUTER_GRACE:
                    console.print(f"[red]the router cannot serve {name}:[/] {router_error}")
                    return EXIT_FAILED
            else:
                since_router_error = None
            if result is not None:
                if status.get("aborted"):
                    console.print(f"[red]rollout aborted:[/] {status.get('message')}")
                elif status.get("phase") == "Paused" and (status.get("strategy") or {}).get(
                    "waitingForPromote"
                ):
                    console.print(f"{name} waits for `gapless promote {name}`")
                elif status.get("phase") == "Paused":
                    console.print(f"{name} is paused; resume with `gapless resume {name}`")
                elif result == EXIT_FAILED:
                    console.print(f"[red]rollout failed:[/] {status.get('message') or status.get('phase')}")
                return result
            if deadline is not None and time.monotonic() > deadline:
                console.print(f"[red]timed out after {timeout:g}s waiting for {name}[/]")
                return EXIT_FAILED
            await asyncio.sleep(0.2)
    finally:
        if live is not None:
            live.stop()
