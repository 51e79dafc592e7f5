"""Official Node SDKs against a real ``gapless flags serve``: ``unleash-client`` and OpenFeature's OFREP provider.

``node/sdks.mjs`` runs the SDKs (versions pinned by ``node/package-lock.json``) and prints their answers;
they must be gapless's Python SDK's for the same flags and contexts (test_python_sdks's flags). A
streaming ``unleash-client`` with a 60 s poll interval must see a kill switch thrown with the gapless CLI
within seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gapless.flags.sdk import FlagClient
from gapless.flags.transport import HttpTransport
from tests.flags_sdks.conftest import NODE_DIR, missing
from tests.flags_sdks.test_python_sdks import FLAGS, gapless_unleash_view, shop, wait_until
from tests.flags_sdks.test_unleash_export import contexts, gapless_context
from tests.flags_service.test_delivery import ServiceProcess

pytestmark = pytest.mark.slow
__all__ = ["shop"]  # the fixture, shared with the Python SDKs' test

CONTEXTS = 1_000
KILL = [sys.executable, "-m", "gapless", "flags", "kill", "shop", "kill-me", "production"]


def node() -> str:
    found = shutil.which("node")
    if found is None:
        missing("node is not installed: the Node SDKs need Node.js 18 or later")
    return str(found)


def run_node(job: dict[str, Any], timeout: float = 120) -> list[dict[str, Any]]:
    result = subprocess.run(
        [node(), str(NODE_DIR / "sdks.mjs")],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=NODE_DIR,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_node_sdks_answer_as_gapless(node_modules: Path, shop: tuple[ServiceProcess, str, str]) -> None:
    """unleash-client and the OFREP provider (Node) give gapless's answers for 1,000 contexts x 6 flags."""
    svc, token, _ = shop
    ctxs = contexts(CONTEXTS, seed=23)
    (answers,) = run_node(
        {
            "mode": "evaluate",
            "url": svc.url,
            "token": token,
            "flags": FLAGS,
            "contexts": ctxs,
            "ofrepEvery": 4,
        }
    )
    flags = FlagClient(transport=HttpTransport(svc.url, token=token)).start()
    try:
        wait_until(lambda: flags.revision is not None, 20, "gapless's SDK to have the flags")
        differences = []
        pairs = [(ctx, flag) for ctx in ctxs for flag in FLAGS]
        for (ctx, flag), theirs, of in zip(pairs, answers["unleash"], answers["ofrep"], strict=True):
            ours = gapless_unleash_view(flags, flag, ctx)
            if list(ours) != theirs:
                differences.append(("unleash", flag, ctx, ours, theirs))
            if of is not None:
                ev = flags.evaluate(flag, gapless_context(ctx), False)
                if of != [ev.value, ev.variant, ev.reason.value]:
                    differences.append(("ofrep", flag, ctx, ev, of))
        assert not differences, differences[:5]
        assert sum(of is not None for of in answers["ofrep"]) == len(FLAGS) * CONTEXTS // 4
    finally:
        flags.close()


def test_kill_switch_reaches_streaming_node_sdk(
    node_modules: Path, shop: tuple[ServiceProcess, str, str]
) -> None:
    """A streaming unleash-client (60 s poll interval) sees ``gapless flags kill`` within seconds."""
    svc, token, admin_token = shop
    job = {"mode": "watch", "url": svc.url, "token": token, "flag": "kill-me", "context": {"userId": "u1"}}
    proc = subprocess.Popen(
        [node(), str(NODE_DIR / "sdks.mjs")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=NODE_DIR,
    )
    try:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(json.dumps(job))
        proc.stdin.close()
        assert json.loads(proc.stdout.readline()) == {"ready": True}
        started = time.monotonic()
        subprocess.run(
            [*KILL, "--url", svc.url, "--token", admin_token],
            check=True,
            capture_output=True,
            timeout=30,
        )
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        assert "off" in json.loads(line)
        assert time.monotonic() - started < 5
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
