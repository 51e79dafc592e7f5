"""SIGKILL of the control plane in the middle of a rollout loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.e2e.harness import Gapless, Load, free_port, rollout_doc

pytestmark = pytest.mark.slow


async def test_control_plane_sigkill_mid_rollout(g: Gapless) -> None:
    """Killing the control plane mid-rollout fails no request; a restart completes it with no duplicates or orphans."""
    port = free_port()
    code, out, err = await g.acli(
        "up", "-f", str(g.write(rollout_doc("cart", port, "v1", app_args=("--ready-delay", "1"))))
    )
    assert code == 0, out + err
    load = Load(f"http://127.0.0.1:{port}/", rps=250)
    v2 = rollout_doc("cart", port, "v2", app_args=("--ready-delay", "1"))
    code, out, err = await g.acli("apply", "-f", str(g.write(v2)))
    assert code == 0, out + err
    # Wait until the update is under way, then kill the control plane.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        st = await g.status("cart")
        if st.get("currentRevision") == 2 and st["updatedReplicas"] >= 1:
            break
        await asyncio.sleep(0.1)
    [cp] = g.processes("control-plane")
    os.kill(cp.pid, signal.SIGKILL)
    await asyncio.sleep(2)  # the router keeps serving alone
    assert g.processes("router")
    code, out, err = await g.acli("up", "-f", str(g.write(v2)))
    assert code == 0, out + err
    await asyncio.sleep(0.5)
    report = await load.stop()
    assert report.failed == 0, report.failures

    st = await g.status("cart")
    assert st["phase"] == "Healthy"
    assert st["totalInstances"] == 4
    assert {i["revision"] for i in st["instances"]} == {2}
    known = {i["pid"] for i in st["instances"]}
    running = {p.pid for p in g.processes("instance")}
    # Every running instance process is one the control plane knows: no orphans, no duplicates.
    assert running == known
    assert len(g.processes("control-plane")) == 1
    assert len(g.processes("router")) == 1
