"""Regression tests for the rules the model found broken (issue 14), each as the shortest sequence.

They run the real commands and the pure pass (``tests.controller.model.Sim``); the end-to-end versions
on real processes are in ``tests/e2e/test_trust.py``.
"""

from __future__ import annotations

from typing import Any

from gapless.strategies.plan import StepState
from tests.controller.model import Sim

CANARY = {
    "canary": {"steps": [{"setWeight": 34}, {"pause": {}}, {"setWeight": 67}], "scaleDownDelaySeconds": 0}
}
BLUE_GREEN = {"blueGreen": {"previewListen": "127.0.0.1:8081", "scaleDownDelaySeconds": 30}}


def deployed(strategy: dict[str, Any], version: str = "v1") -> Sim:
    """A rollout with ``version`` complete: every instance ready."""
    sim = Sim(strategy)
    sim.apply(version)
    run(sim, 6)
    assert sim.target().phase == "complete"
    return sim


def run(sim: Sim, passes: int, *, ready: bool = True, step: float = 1) -> None:
    """Passes one ``step`` apart; started instances pass their probe when ``ready``."""
    for _ in range(passes):
        sim.reconcile()
        if ready:
            sim.make_ready(10)
        sim.clock.advance(step)


def test_paused_canary_takes_no_step() -> None:
    """After `gapless pause`, a canary applied next starts nothing and keeps all traffic on stable."""
    sim = deployed(CANARY)
    sim.commands.set_paused("shop", True)
    sim.apply("v2")
    run(sim, 10)
    target = sim.target()
    assert StepState.from_json(target.step_state).index == 0
    stable = sim.passes[0].target.hash
    assert {i.revision for i in sim.instances} == {stable}
    assert (sim.weights or {}).get(stable) == 100
    assert sim.passes[-1].status["phase"] == "Paused"


def test_paused_canary_mid_rollout_holds_its_weight() -> None:
    """Pausing at 34% keeps 34%: no further step, no promotion, no scale-down, until resume."""
    sim = deployed({"canary": {"steps": [{"setWeight": 34}, {"pause": {"duration": 5}}, {"setWeight": 67}]}})
    sim.apply("v2")
    run(sim, 3)
    assert 34 in (sim.weights or {}).values()
    sim.commands.set_paused("shop", True)
    run(sim, 20, step=5)
    assert 34 in (sim.weights or {}).values()
    sim.commands.set_paused("shop", False)
    run(sim, 20, step=5)
    assert sim.target().phase == "complete"


def test_paused_blue_green_starts_no_green() -> None:
    """A paused blue-green rollout starts no green instance and does not switch."""
    sim = deployed(BLUE_GREEN)
    blue = sim.target().hash
    sim.commands.set_paused("shop", True)
    sim.apply("v2")
    run(sim, 10)
    assert {i.revision for i in sim.instances} == {blue}
    assert sim.weights == {blue: 100}


def test_resume_after_a_long_pause_does_not_fail_at_once() -> None:
    """The progress deadline does not count while paused: resuming after 10 minutes makes progress."""
    sim = deployed({"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    sim.commands.set_paused("shop", True)
    sim.apply("v2")
    run(sim, 2)
    sim.clock.advance(600)
    run(sim, 1)
    sim.commands.set_paused("shop", False)
    run(sim, 10)
    assert sim.target().phase == "complete"


def test_reapplying_an_earlier_template_starts_a_fresh_rollout() -> None:
    """Reverting to v1's template long after v1 was replaced rolls it out with a fresh progress clock."""
    sim = deployed(CANARY)
    sim.apply("v2")
    run(sim, 2)
    sim.commands.promote("shop", full=True)
    run(sim, 8)
    assert sim.target().phase == "complete"
    sim.clock.advance(3600)  # v1's clock is an hour old
    sim.apply("v1")
    target = sim.target()
    assert (target.phase, target.progress_at, target.step_state) == ("progressing", sim.clock.now(), {})
    assert target.number == 3
    first = sim.reconcile()
    assert first.plan.outcome != "failed", first.plan.reason
    assert first.plan.start is not None
    run(sim, 10)
    sim.commands.promote("shop", full=True)
    run(sim, 10)
    assert sim.target().phase == "complete"


def test_undo_after_blue_green_promote_goes_to_the_warm_blue() -> None:
    """Undo after v3 replaced v2 mid-rollout and was promoted goes to v1 (warm blue), instantly, unpaused."""
    sim = deployed(BLUE_GREEN | {"blueGreen": BLUE_GREEN["blueGreen"] | {"autoPromotionEnabled": False}})
    blue = sim.target().hash
    sim.apply("v2")
    run(sim, 3)
    sim.apply("v3")  # v2 is replaced before it ever took traffic
    run(sim, 4)
    sim.commands.promote("shop", full=False)
    run(sim, 2)
    assert sim.weights == {sim.target().hash: 100}
    pids = {i.id for i in sim.instances if i.revision == blue}
    sim.commands.undo("shop", None)
    assert sim.target().hash == blue
    record = sim.reconcile()
    assert record.weights == {blue: 100}
    assert record.plan.start is None
    assert {i.id for i in sim.instances if i.revision == blue} == pids
    assert record.status["phase"] != "Paused"
    assert not sim.spec().paused


def test_blue_green_keeps_preview_replica_count_until_promotion() -> None:
    """Green runs previewReplicaCount instances after its checks pass, until `gapless promote`."""
    bg = BLUE_GREEN["blueGreen"] | {
        "previewReplicaCount": 1,
        "autoPromotionEnabled": False,
        "prePromotionChecks": [{"httpGet": {"path": "/"}}],
    }
    sim = deployed({"blueGreen": bg})
    sim.apply("v2")
    run(sim, 3)
    sim.check(passed=True)
    run(sim, 5)
    green = sim.target().hash
    assert sum(1 for i in sim.instances if i.revision == green) == 1
    sim.commands.promote("shop", full=False)
    run(sim, 4)
    assert sum(1 for i in sim.instances if i.revision == green) == 3
    assert sim.weights == {green: 100}


def test_status_counts_stay_within_desired_and_steps() -> None:
    """After the last canary step: available is at most replicas, and the step index at most the steps."""
    sim = deployed({"canary": {"steps": [{"setWeight": 50}], "scaleDownDelaySeconds": 60}})
    sim.apply("v2")
    run(sim, 8)
    status = sim.passes[-1].status
    assert status["totalInstances"] == 6  # both revisions at full size inside the scale-down delay
    assert status["availableReplicas"] == 3
    assert status["strategy"]["stepIndex"] == status["strategy"]["steps"] == 1


def test_promoted_blue_green_growing_to_full_size_is_not_shown_paused() -> None:
    """After `gapless promote`, green growing from previewReplicaCount is Progressing, not waiting for promote."""
    bg = BLUE_GREEN["blueGreen"] | {"previewReplicaCount": 1, "autoPromotionEnabled": False}
    sim = deployed({"blueGreen": bg})
    sim.apply("v2")
    run(sim, 4)
    assert sim.passes[-1].status["phase"] == "Paused"  # waiting for promote at preview size
    sim.commands.promote("shop", full=False)
    run(sim, 2, ready=False)
    grown = [p for p in sim.passes[-2:] if p.plan.start is not None]
    assert grown
    assert all(p.status["phase"] == "Progressing" for p in sim.passes[-2:]), [
        p.status["phase"] for p in sim.passes[-2:]
    ]


def test_full_promotion_after_a_long_pause_step_grows_instead_of_failing() -> None:
    """`promote --full` an hour into `pause: {}` grows the canary to full size; it does not fail at once."""
    sim = deployed(
        {
            "canary": {
                "steps": [{"setWeight": 34}, {"pause": {}}, {"setWeight": 67}],
                "scaleDownDelaySeconds": 0,
            }
        }
    )
    sim.apply("v2")
    run(sim, 4)
    assert sim.passes[-1].status["phase"] == "Paused"  # waiting in `pause: {}`
    sim.clock.advance(3600)
    run(sim, 1, ready=False)
    sim.commands.promote("shop", full=True)
    first = sim.reconcile()
    assert first.plan.outcome != "failed", first.plan.reason
    run(sim, 10)
    assert sim.target().phase == "complete"
