"""Day-two operations through the CLI: pause and resume, scaling, history, undo to a revision, logs."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.e2e.harness import Gapless, rollout_doc
from tests.ports import free_port

pytestmark = pytest.mark.slow


async def test_pause_scale_undo_and_logs(g: Gapless) -> None:
    """A paused rollout holds; scaling makes no revision; undo returns to revision 1's template; logs show both."""
    port = free_port()
    code, out, err = await g.acli("up", "-f", str(g.write(rollout_doc("ops", port, "v1", replicas=2))))
    assert code == 0, out + err

    code, _, err = await g.acli("pause", "ops")
    assert code == 0, err
    code, out, err = await g.acli("apply", "-f", str(g.write(rollout_doc("ops", port, "v2", replicas=2))))
    assert code == 0, out + err
    # The new spec is stored, but a file that does not mention `paused` keeps the pause in force.
    await asyncio.sleep(1.5)
    st = await g.status("ops")
    assert st["phase"] == "Paused"
    assert st["currentRevision"] == 2
    assert {i["revision"] for i in st["instances"]} == {1}
    code, _, err = await g.acli("resume", "ops")
    assert code == 0, err
    code, out, err = await g.acli(
        "apply",
        "-f",
        str(g.write(rollout_doc("ops", port, "v2", replicas=3), "ops-v2-scaled.yaml")),
        "--wait",
    )
    assert code == 0, out + err
    st = await g.status("ops")
    assert st["phase"] == "Healthy"
    assert st["totalInstances"] == 3
    code, out, _ = await g.acli("history", "ops", "-o", "json")
    history = json.loads(out)
    assert [r["number"] for r in history] == [1, 2]

    code, out, err = await g.acli("undo", "ops", "--to-revision", "1", "--wait")
    assert code == 0, out + err
    async with httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{port}/")
    assert r.headers["x-version"] == "v1"
    code, out, _ = await g.acli("history", "ops", "-o", "json")
    assert [r["number"] for r in json.loads(out)] == [2, 3]

    code, out, err = await g.acli("logs", "ops")
    assert code == 0, err
    assert "version v1 listening" in out
    assert "version v2 listening" in out
    code, out, err = await g.acli("logs", "ops", "--revision", "2")
    assert code == 0, err
    assert "version v2 listening" in out
    assert "version v1 listening" not in out

    code, _, err = await g.acli("undo", "ops", "--to-revision", "9")
    assert code == 2
    assert "revision 9" in err


async def test_down_one_rollout_leaves_the_other(g: Gapless) -> None:
    """`gapless down NAME` removes one rollout with its router and keeps the other serving."""
    pa, pb = free_port(), free_port()
    for name, port in (("a", pa), ("b", pb)):
        code, out, err = await g.acli("up", "-f", str(g.write(rollout_doc(name, port, "v1", replicas=1))))
        assert code == 0, out + err
    code, out, err = await g.acli("down", "a")
    assert code == 0, out + err
    assert {p.rollout for p in g.processes() if p.rollout} == {"b"}
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{pb}/")).status_code == 200
    code, _, err = await g.acli("up", "-f", str(g.write(rollout_doc("c", pb, "v1", replicas=1))))
    assert code == 2
    assert "spec.listen" in err
