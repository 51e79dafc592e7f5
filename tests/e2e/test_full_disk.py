"""Regression test of issue 14: a full state disk during a rollout loses no probe and fails nothing.

Before, the first readiness change written while the disk was full raised out of the probe's callback
and ended its task for good, so a healthy revision was failed at its progress deadline, and ``apply``
answered a bare "Internal Server Error". The state directory is a real tmpfs of a few MiB, really filled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from gapless.cli.client import ApiError
from gapless.loadgen import run_load
from tests.e2e.harness import Gapless, Load, api, rollout_doc, wait_for
from tests.ports import free_port
from tests.small_disk import fill, small_tmpfs

pytestmark = pytest.mark.slow


@pytest.fixture
def gd(tmp_path: Path) -> Iterator[Gapless]:
    """A gapless installation whose state directory is a small tmpfs; everything is stopped afterwards."""
    with small_tmpfs(tmp_path / "state", 32) as state:
        inst = Gapless(state)
        try:
            yield inst
        finally:
            (state / "filler").unlink(missing_ok=True)
            if (state / "state.db").exists():
                inst.down()
            for p in inst.processes():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pgid, signal.SIGKILL)


async def test_full_state_disk_during_rollout_completes_once_space_returns(gd: Gapless) -> None:
    """Instances that become ready while the disk is full are routed once it has space; 503 meanwhile; 0 failed requests."""
    g = gd
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    strategy = {"rollingUpdate": {"maxSurge": 2, "maxUnavailable": 0}}
    code, out, err = await g.acli(
        "up", "-f", str(g.write(rollout_doc("web", port, "v1", replicas=2, strategy=strategy)))
    )
    assert code == 0, out + err
    load = Load(url, rps=100)
    try:
        v2 = rollout_doc("web", port, "v2", replicas=2, strategy=strategy, app_args=("--ready-delay", "2.5"))
        code, out, err = await g.acli("apply", "-f", str(g.write(v2)))
        assert code == 0, out + err
        await wait_for(
            g,
            "web",
            lambda s: sum(i["revision"] == 2 and i["state"] == "running" for i in s["instances"]) == 2,
        )
        filler = fill(g.state_dir)

        st = await wait_for(
            g, "web", lambda s: any(c["type"] == "StateWritable" for c in s.get("conditions", [])), timeout=10
        )
        [condition] = [c for c in st["conditions"] if c["type"] == "StateWritable"]
        assert condition["status"] == "False"
        assert "disk is full" in condition["message"]
        with pytest.raises(ApiError) as refused:
            await api(g, "PUT", "/api/v1/rollouts/web", v2 | {"spec": v2["spec"] | {"replicas": 3}})
        assert refused.value.status == 503
        assert "disk is full" in str(refused.value)

        # A control plane killed now starts again on the full disk (it only reads to start) and adopts
        # the instances; their readiness probes pass while nothing can be written.
        [cp] = g.processes("control-plane")
        os.kill(cp.pid, signal.SIGKILL)
        code, out, err = await g.acli("up", "--detach", "-f", str(g.write(v2)))
        assert code == 0, out + err
        await asyncio.sleep(2.0)
        assert g.processes("control-plane")
        assert (await g.status("web"))["phase"] != "Failed"
        meanwhile = await run_load(url, rps=100, duration=1.0)  # a fresh client while nothing can be written
        assert meanwhile.failed == 0, meanwhile.failures
        filler.unlink()

        st = await wait_for(
            g, "web", lambda s: s["phase"] == "Healthy" and s["currentRevision"] == 2, timeout=15
        )
        # Healthy counts live instances only, as Kubernetes does: an old one may still be draining.
        live = [i for i in st["instances"] if i["state"] != "terminating"]
        assert len(live) == 2, st["instances"]
        assert all(i["ready"] and i["revision"] == 2 for i in live), st["instances"]
        assert not any(c["type"] == "StateWritable" for c in st.get("conditions", []))
    finally:
        report = await load.stop()
    assert report.failed == 0, report.failures
    code, out, err = await g.acli("events", "web", "-o", "json")
    assert code == 0, err
    assert "StateWriteFailed" in out
    assert "InstanceReady" in out
