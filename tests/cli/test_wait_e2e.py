"""``gapless wait`` and ``--timeout`` on real rollouts: exit 0 when the condition holds, 1 when the rollout
failed or was aborted, 3 when the timeout passes first, 2 for a malformed duration (nothing waited for)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.harness import Gapless, rollout_doc
from tests.ports import free_port

pytestmark = pytest.mark.slow


def canary(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"canary": {"steps": list(steps), "scaleDownDelaySeconds": 1, "abortScaleDownDelaySeconds": 1}}


async def test_wait_exit_codes(g: Gapless) -> None:
    """complete -> 0; a canary paused for promotion: --for paused 0, --for complete 3 on timeout; aborted -> 1."""
    port = free_port()
    strategy = canary({"setWeight": 50}, {"pause": {}})
    code, out, err = await g.acli(
        "up", "-f", str(g.write(rollout_doc("w", port, "v1", replicas=2, strategy=strategy)))
    )
    assert code == 0, out + err

    code, out, err = await g.acli("wait", "w", "--timeout", "30s")
    assert code == 0, out + err
    assert "w is complete" in err

    code, out, err = await g.acli(
        "apply", "-f", str(g.write(rollout_doc("w", port, "v2", replicas=2, strategy=strategy)))
    )
    assert code == 0, out + err
    code, out, err = await g.acli("wait", "w", "--for", "paused", "--timeout", "1m")
    assert code == 0, out + err

    started = time.monotonic()
    code, out, err = await g.acli("wait", "w", "--for", "complete", "--timeout", "1500ms")
    took = time.monotonic() - started
    assert code == 3, out + err
    assert "timed out after 1s500ms waiting for w to be complete" in err
    assert 1.5 <= took < 15
    assert "Paused" in err  # progress lines while waiting

    code, _, err = await g.acli("abort", "w")
    assert code == 0, err
    code, out, err = await g.acli("wait", "w", "--timeout", "30s")
    assert code == 1, out + err
    assert "aborted" in err

    # A rollout that fails (never ready, short deadline): 1, before any timeout.
    code, out, err = await g.acli(
        "apply",
        "-f",
        str(
            g.write(
                rollout_doc("w", port, "v3", replicas=2, app_args=("--never-ready",), deadline=2),
                "w-v3.yaml",
            )
        ),
        "--wait",
        "--timeout",
        "2m",
    )
    assert code == 1, out + err
    assert "rollout failed" in err


@pytest.mark.timeout(300)  # three rollouts, one with an 8 s readiness, and six refused commands
async def test_timeouts_and_bad_durations(g: Gapless) -> None:
    """apply --wait and undo --wait exit 3 on timeout; a malformed --timeout exits 2 naming it, changing nothing."""
    port = free_port()
    slow_v1 = rollout_doc("t", port, "v1", replicas=1, app_args=("--ready-delay", "8"))
    code, out, err = await g.acli("up", "-f", str(g.write(slow_v1)))
    assert code == 0, out + err
    code, out, err = await g.acli(
        "apply", "-f", str(g.write(rollout_doc("t", port, "v2", replicas=1))), "--wait"
    )
    assert code == 0, out + err

    # Back to v1, whose instance takes 8 s to become ready (the undo answers once its own pass is
    # applied, up to 2 s on a loaded machine, and the 0.5 s timeout runs from then).
    code, out, err = await g.acli("undo", "t", "--wait", "--timeout", "0.5")
    assert code == 3, out + err
    assert "timed out after 500ms" in err

    slow = rollout_doc("t", port, "v3", replicas=1, app_args=("--ready-delay", "30"), deadline=120)
    code, out, err = await g.acli("apply", "-f", str(g.write(slow)), "--wait", "--timeout", "1s")
    assert code == 3, out + err
    assert "timed out after 1s" in err

    before = (await g.status("t"))["generation"]
    for argv in (
        ["apply", "-f", str(g.write(rollout_doc("t", port, "v9", replicas=1))), "--wait", "--timeout", "5x"],
        ["undo", "t", "--wait", "--timeout", "-1s"],
        ["wait", "t", "--timeout", "forever"],
        ["wait", "t", "--for", "done"],
        ["events", "--since", "yesterday"],
        ["status", "t", "-o", "xml"],
    ):
        code, out, err = await g.acli(*argv)
        assert code == 2, (argv, out, err)
        bad = argv[-1]
        assert repr(bad) in err, (argv, err)
    assert (await g.status("t"))["generation"] == before


async def test_down_timeout(g: Gapless) -> None:
    """down --timeout: an instance that ignores SIGTERM outlasts the graceful stop; down exits 3, no process is left."""
    port = free_port()
    stubborn = rollout_doc("d", port, "v1", replicas=1, app_args=("--ignore-sigterm",), grace=60)
    code, out, err = await g.acli("up", "-f", str(g.write(stubborn)))
    assert code == 0, out + err
    assert g.processes("instance")
    started = time.monotonic()
    code, out, err = await g.acli("down", "--timeout", "2s")
    took = time.monotonic() - started
    assert code == 3, out + err
    assert "timed out after 2s" in err
    assert took < 40  # not the 60 s grace period
    assert g.processes() == []
