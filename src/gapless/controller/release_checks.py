"""The checks of ``verify`` release steps: a program (argv, never a shell) or an HTTP GET.

A check runs as an asyncio task of its own, so a release pass never waits for it; the pass reads the
outcome with ``outcome()`` and the pure ``decide_check`` says what to do. A check changes nothing,
so a control plane killed while one runs simply runs it again: its outcome is written to the step
only once it is known.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any

import httpx

from gapless.platform.probes import run_exec
from gapless.spec.release import VerifyStep

__all__ = ["CheckJobs", "run_verify"]


async def run_verify(check: VerifyStep, release: str) -> tuple[bool, str]:
    """Run one verify check; (passed, what it said). The program gets ``GAPLESS_RELEASE`` in its environment."""
    if check.exec is not None:
        env = dict(os.environ) | {"GAPLESS_RELEASE": release}
        result = await run_exec(list(check.exec.command), env=env, timeout=check.timeout_seconds)
        return result.success, f"{' '.join(check.exec.command)}: {result.message}"
    if check.http_get is None or check.url is None:
        return False, "a verify step runs exec or httpGet here"
    url = check.url.rstrip("/") + check.http_get.path
    try:
        async with httpx.AsyncClient(timeout=check.timeout_seconds) as client:
            r = await client.get(url)
    except httpx.HTTPError as e:
        return False, f"GET {url}: {type(e).__name__}: {e}"
    ok = r.status_code == check.http_get.expect_status
    return ok, f"GET {url}: {r.status_code} (expected {check.http_get.expect_status})"


class CheckJobs:
    """Running checks by (release, step); each keeps its outcome until taken."""

    def __init__(self) -> None:
        self._tasks: dict[tuple[str, int], asyncio.Task[tuple[bool, str]]] = {}

    def launch(self, key: tuple[str, int], check: Coroutine[Any, Any, tuple[bool, str]]) -> None:
        if key in self._tasks:
            check.close()
            return
        self._tasks[key] = asyncio.get_running_loop().create_task(check, name=f"verify {key[0]} {key[1]}")

    def running(self, key: tuple[str, int]) -> bool:
        task = self._tasks.get(key)
        return task is not None and not task.done()

    def take(self, key: tuple[str, int]) -> tuple[bool, str] | None:
        """The outcome of a finished check (and forget it), or None while it runs or none was launched."""
        task = self._tasks.get(key)
        if task is None or not task.done():
            return None
        del self._tasks[key]
        if task.cancelled():
            return False, "the check was cancelled"
        exc = task.exception()
        if exc is not None:
            return False, f"the check could not run: {exc}"
        return task.result()

    def cancel(self, key: tuple[str, int]) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
