"""Regression tests of issue 14: a lost ``state.db`` never kills what serves, and the rollout can be adopted.

Before, a control plane started next to a deleted or emptied ``state.db`` SIGKILLed the router and every
instance as orphans (no drain), ``gapless up`` exited 0 and started everything anew. Now the processes
are left serving, ``up`` refuses naming them and the way out, and ``up --adopt`` rebuilds the records.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from tests.e2e.harness import Gapless, Load, free_port, rollout_doc, wait_for

pytestmark = pytest.mark.slow


def _lose_state(state_dir: Path, how: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{state_dir / 'state.db'}{suffix}")
        if how == "deleted":
            path.unlink(missing_ok=True)
        elif path.exists():
            path.write_bytes(b"")


@pytest.mark.parametrize("how", ["deleted", "emptied"])
async def test_lost_state_db_keeps_serving_refuses_up_and_adopts(g: Gapless, how: str) -> None:
    """With state.db lost under a live rollout, `up` refuses and kills nothing (0 failed requests); `up --adopt` restores it and `apply` updates it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    v1 = g.write(rollout_doc("web", port, "v1", replicas=3))
    code, out, err = await g.acli("up", "-f", str(v1))
    assert code == 0, out + err
    before = {p.pid for p in g.processes("instance")}
    [router] = g.processes("router")
    load = Load(url, rps=200)
    try:
        [cp] = g.processes("control-plane")
        os.kill(cp.pid, signal.SIGKILL)
        await asyncio.sleep(0.3)
        _lose_state(g.state_dir, how)

        code, out, err = await g.acli("up", "-f", str(v1))
        assert code != 0, out + err
        assert "no record of them in state.db" in err
        assert "--adopt" in err
        assert f"router pid {router.pid}" in err
        await asyncio.sleep(1.0)  # a control plane that killed them would have done so by now
        assert {p.pid for p in g.processes("instance")} == before
        assert [p.pid for p in g.processes("router")] == [router.pid]

        code, out, err = await g.acli("up", "--adopt", "-f", str(v1))
        assert code == 0, out + err
        assert "adopted 3 running instance(s), 3 of them in traffic" in err
        st = await g.status("web")
        assert st["phase"] == "Healthy", st
        assert {i["pid"] for i in st["instances"]} == before
        assert st["currentRevision"] == 1

        v2 = g.write(rollout_doc("web", port, "v2", replicas=3))
        code, out, err = await g.acli("apply", "-f", str(v2), "--wait", "--timeout", "60")
        assert code == 0, out + err
        st = await wait_for(g, "web", lambda s: s["phase"] == "Healthy" and s["currentRevision"] == 2)
    finally:
        report = await load.stop()
    assert report.failed == 0, report.failures
    assert report.ok > 0
    assert {i["pid"] for i in st["instances"]}.isdisjoint(before)
    assert [p.pid for p in g.processes("router")] == [router.pid]  # the same router throughout
    code, out, err = await g.acli("history", "web", "-o", "json")
    assert code == 0, err
    assert '"number": 1' in out
    assert '"number": 2' in out
