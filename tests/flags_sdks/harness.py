"""Driving SDKs of other languages: a program (node/sdks.mjs, go/main.go) reads a JSON job on stdin and
prints JSON lines; these helpers run one and hold its answers against gapless's Python SDK."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from gapless.flags.sdk import FlagClient
from gapless.flags.transport import HttpTransport
from tests.flags_sdks.test_python_sdks import FLAGS, gapless_unleash_view, wait_until
from tests.flags_sdks.test_unleash_export import contexts, gapless_context
from tests.flags_service.test_delivery import ServiceProcess

CONTEXTS = 2_000
KILL = [sys.executable, "-m", "gapless", "flags", "kill", "shop", "kill-me", "production"]


def run_job(argv: list[str], job: dict[str, Any], cwd: Path, timeout: float = 180) -> list[dict[str, Any]]:
    """Run a driver with one job; its JSON lines."""
    result = subprocess.run(
        argv, input=json.dumps(job), capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def assert_same_answers(
    argv: list[str], cwd: Path, svc: ServiceProcess, token: str, seed: int, sdk: str, omitted: set[str]
) -> None:
    """The driver's Unleash SDK and OFREP provider answer as gapless's SDK, for 2,000 contexts x 6 flags.

    ``sdk`` is the SDK's ``unleash-sdk`` header: the service leaves out, for an SDK that does not know
    an operator, the flags that need it; ``omitted`` is what this SDK must not be served (and so is not
    compared for its Unleash client; its OFREP provider gets every flag).
    """
    features = httpx.get(
        f"{svc.url}/api/client/features", headers={"Authorization": token, "unleash-sdk": sdk}
    ).json()
    assert set(features["meta"]["omitted"]) & set(FLAGS) == omitted
    ctxs = contexts(CONTEXTS, seed=seed)
    job = {
        "mode": "evaluate",
        "url": svc.url,
        "token": token,
        "flags": FLAGS,
        "contexts": ctxs,
        "ofrepEvery": 4,
    }
    (answers,) = run_job(argv, job, cwd)
    flags = FlagClient(transport=HttpTransport(svc.url, token=token)).start()
    try:
        wait_until(lambda: flags.revision is not None, 20, "gapless's SDK to have the flags")
        differences = []
        pairs = [(ctx, flag) for ctx in ctxs for flag in FLAGS]
        for (ctx, flag), theirs, of in zip(pairs, answers["unleash"], answers["ofrep"], strict=True):
            ours = gapless_unleash_view(flags, flag, ctx)
            if flag not in omitted and list(ours) != theirs:
                differences.append(("unleash", flag, ctx, ours, theirs))
            if of is not None:
                ev = flags.evaluate(flag, gapless_context(ctx), False)
                if of != [ev.value, ev.variant, ev.reason.value]:
                    differences.append(("ofrep", flag, ctx, ev, of))
        assert not differences, differences[:5]
        assert sum(of is not None for of in answers["ofrep"]) == len(FLAGS) * CONTEXTS // 4
    finally:
        flags.close()


def seconds_to_see_kill(
    argv: list[str], cwd: Path, svc: ServiceProcess, token: str, admin_token: str, sdk: str = "unleash"
) -> float:
    """Start a driver watching flag kill-me with its Unleash client (``sdk="unleash"``) or its OFREP
    provider (``"ofrep"``), throw the kill switch with the CLI; seconds from the CLI's return until the
    driver saw it."""
    job = {
        "mode": "watch",
        "sdk": sdk,
        "url": svc.url,
        "token": token,
        "flag": "kill-me",
        "context": {"userId": "u1"},
    }
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    )
    try:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(json.dumps(job))
        proc.stdin.close()
        assert json.loads(proc.stdout.readline()) == {"ready": True}
        subprocess.run(
            [*KILL, "--url", svc.url, "--token", admin_token], check=True, capture_output=True, timeout=30
        )
        started = time.monotonic()  # from the CLI's return: its own start-up is not the stream's time
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        assert "off" in json.loads(line)
        return time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
