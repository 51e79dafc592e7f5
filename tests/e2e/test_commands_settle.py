"""A command is in force when the CLI returns: the control plane applies it to its rollout at once.

Rule: when `gapless promote`, `abort` or `undo` exits 0, the router already holds the weights the
command asks for, whatever the reconcile loop was busy with (here: a second rollout's pass).
"""

from __future__ import annotations

from typing import Any

import pytest

from gapless.cli.client import ApiClient
from gapless.core.files import router_socket
from gapless.router.client import RouterClient
from gapless.server.auth import read_token
from tests.e2e.harness import Gapless, rollout_doc, wait_for
from tests.ports import free_port

pytestmark = pytest.mark.slow


def canary(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"canary": {"steps": steps, "scaleDownDelaySeconds": 1, "abortScaleDownDelaySeconds": 1}}


def at_step(index: int) -> Any:
    return lambda st: st["strategy"].get("stepIndex") == index and st["strategy"].get("waitingForPromote")


async def weights(g: Gapless, rollout: str) -> dict[str, int] | None:
    state = g.state_dir.resolve()
    async with RouterClient(router_socket(state, rollout), read_token(state)) as client:
        return (await client.get_config()).weights


async def test_promote_abort_and_undo_are_in_force_when_the_cli_returns(g: Gapless) -> None:
    # A fixed canary scale: the weights change without waiting for instances to start.
    steps = [
        {"setCanaryScale": {"replicas": 1}},
        {"setWeight": 20},
        {"pause": {}},
        {"setWeight": 60},
        {"pause": {}},
    ]
    port, other = free_port(), free_port()
    for name, p in (("c", port), ("other", other)):
        code, out, err = await g.acli(
            "up", "-f", str(g.write(rollout_doc(name, p, "v1", replicas=2, strategy=canary(steps))))
        )
        assert code == 0, out + err
    code, out, err = await g.acli(
        "apply", "-f", str(g.write(rollout_doc("c", port, "v2", replicas=2, strategy=canary(steps))))
    )
    assert code == 0, out + err
    st = await wait_for(g, "c", at_step(2))
    stable = next(r["hash"] for r in st["revisions"] if r["number"] == 1)
    canary_hash = next(r["hash"] for r in st["revisions"] if r["number"] == 2)
    assert await weights(g, "c") == {stable: 80, canary_hash: 20}

    # Through the API, with both connections open beforehand, the weights are read the moment the
    # answer arrives: without the command's own pass they would still be the old ones.
    state = g.state_dir.resolve()
    async with (
        ApiClient(state) as control,
        RouterClient(router_socket(state, "c"), read_token(state)) as router,
    ):
        await router.get_config()
        await control.request("POST", "/api/v1/rollouts/c/promote", {})
        assert (await router.get_config()).weights == {stable: 40, canary_hash: 60}
        await wait_for(g, "c", at_step(4))
        await control.request("POST", "/api/v1/rollouts/c/abort")
        after = (await router.get_config()).weights or {}
        assert after[stable] == 100
        assert after.get(canary_hash, 0) == 0

    # The same through the CLI (its quick path), on a new canary.
    code, _, err = await g.acli("retry", "c")
    assert code == 0, err
    await wait_for(g, "c", at_step(2))
    code, _, err = await g.acli("promote", "c")
    assert code == 0, err
    assert await weights(g, "c") == {stable: 40, canary_hash: 60}

    await wait_for(g, "c", at_step(4))
    code, _, err = await g.acli("abort", "c")
    assert code == 0, err
    after = await weights(g, "c") or {}
    assert after[stable] == 100
    assert after.get(canary_hash, 0) == 0

    # Undo of a blue-green switch: the previous revision's instances still run, so traffic goes back
    # to them before the command returns.
    bg = {"blueGreen": {"scaleDownDelaySeconds": 600}}
    code, out, err = await g.acli(
        "apply", "-f", str(g.write(rollout_doc("other", other, "v1", replicas=2, strategy=bg)))
    )
    assert code == 0, out + err
    await wait_for(g, "other", lambda st: st["phase"] == "Healthy")
    code, out, err = await g.acli(
        "apply", "-f", str(g.write(rollout_doc("other", other, "v2", replicas=2, strategy=bg)))
    )
    assert code == 0, out + err
    st = await wait_for(g, "other", lambda st: (st.get("strategy") or {}).get("promoted"))
    before = await weights(g, "other")
    code, _, err = await g.acli("undo", "other")
    assert code == 0, err
    after = await weights(g, "other")
    assert after != before
    assert after is not None
    assert sorted(after.values())[-1] == 100
