"""Following a rollout until a condition holds, while showing its progress.

``outcome`` is the pure rule (a status and what is waited for -> done, failed or not yet); the loop only
polls, prints and keeps time. Exit codes follow ``kubectl rollout status``: 0 the condition holds, 1 the
rollout failed or was aborted, 3 the timeout passed first.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from rich.console import Console
from rich.live import Live
from rich.markup import escape

from gapless.cli.client import ApiClient
from gapless.cli.render import summary_line

__all__ = ["CONDITIONS", "EXIT_FAILED", "EXIT_OK", "EXIT_TIMEOUT", "Condition", "outcome", "wait_for_rollout"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 3
ROUTER_GRACE = 5.0
"""Seconds a router start failure (e.g. its address in use) may last before waiting gives up."""

Condition = Literal["settled", "complete", "healthy", "paused"]
CONDITIONS: tuple[Condition, ...] = ("complete", "healthy", "paused")
"""What ``gapless wait --for`` accepts. ``settled`` (complete, or stopped at a pause) is what
``apply --wait`` and ``up`` wait for: a canary that pauses for ``gapless promote`` has done its part."""


def outcome(status: dict[str, Any], generation: int, condition: Condition = "settled") -> int | None:
    """0 when ``condition`` holds, 1 when the rollout failed or was aborted, None while neither.

    ``complete``: generation ``generation`` (or a later one) was rolled out and the rollout is Healthy;
    ``healthy``: the rollout is Healthy, whatever generation; ``paused``: it is Paused (by ``gapless
    pause`` or waiting for ``gapless promote``); ``settled``: complete or paused.
    """
    phase = status.get("phase")
    current = status.get("observedGeneration", 0) >= generation
    if condition == "healthy" and phase == "Healthy":
        return EXIT_OK
    if condition == "paused" and phase == "Paused":
        return EXIT_OK
    if not current and condition in ("complete", "settled"):
        return None
    if status.get("aborted") or phase == "Failed":
        return EXIT_FAILED
    if phase == "Healthy" and condition in ("complete", "settled"):
        return EXIT_OK
    if phase == "Paused" and condition == "settled":
        return EXIT_OK
    return None


async def wait_for_rollout(
    client: ApiClient,
    name: str,
    generation: int,
    console: Console,
    timeout: float | None = None,
    condition: Condition = "settled",
) -> int:
    """Poll the status until ``condition`` holds (0), the rollout fails (1) or ``timeout`` passes (3).

    On a terminal one live summary line; otherwise one printed line per change.
    """
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
            result = outcome(status, generation, condition)
            router_error = (status.get("router") or {}).get("error")
            if result is None and router_error:
                since_router_error = since_router_error or time.monotonic()
                if time.monotonic() - since_router_error > ROUTER_GRACE:
                    console.print(f"[red]the router cannot serve {name}:[/] {escape(str(router_error))}")
                    return EXIT_FAILED
            else:
                since_router_error = None
            if result is not None:
                _explain(console, name, status, result, condition)
                return result
            if deadline is not None and time.monotonic() > deadline:
                from gapless.cli.times import format_duration

                console.print(
                    f"[red]timed out after {format_duration(timeout or 0)} waiting for {name} "
                    f"to be {'complete' if condition == 'settled' else condition}[/] "
                    f"(phase {status.get('phase', '-')})",
                    highlight=False,
                )
                return EXIT_TIMEOUT
            await asyncio.sleep(0.2)
    finally:
        if live is not None:
            live.stop()


def _explain(console: Console, name: str, status: dict[str, Any], result: int, condition: Condition) -> None:
    """The last line: why waiting ended."""
    if status.get("aborted") and result == EXIT_FAILED:
        console.print(f"[red]rollout aborted:[/] {escape(str(status.get('message')))}")
    elif result == EXIT_FAILED:
        console.print(f"[red]rollout failed:[/] {escape(str(status.get('message') or status.get('phase')))}")
    elif condition == "settled" and status.get("phase") == "Paused":
        if (status.get("strategy") or {}).get("waitingForPromote"):
            console.print(f"{name} waits for `gapless promote {name}`")
        else:
            console.print(f"{name} is paused; resume with `gapless resume {name}`")
    elif condition in ("complete", "healthy", "paused"):
        console.print(f"[green]{name} is {condition}[/]")
