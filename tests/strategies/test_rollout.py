"""The shared entry point: which planner runs, what the planners see, and that a pause holds every strategy."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gapless.spec.models import Rollout
from gapless.spec.strategy import Strategy
from gapless.store.records import RevisionRecord
from gapless.strategies.plan import InstanceView, RolloutView, StepState, Traffic
from gapless.strategies.rollout import PAUSED, plan_rollout, rollout_view, traffic_in_force
from tests.strategies.views import make_view

T0 = 1000.0
ROUTE = ({"headerName": "X-Canary", "headerValue": {"exact": "1"}},)


def view(**kw: object) -> RolloutView:
    return make_view(**({"replicas": 2, "max_surge": 1, "progress_deadline_seconds": 600} | kw))


def ready(rev: str, n: int) -> list[InstanceView]:
    return [InstanceView(f"{rev}{i}", rev, "running", True, T0 - 50, T0 - 60) for i in range(n)]


CANARY = Strategy.model_validate({"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": 5}}]}})
BLUE_GREEN = Strategy.model_validate({"blueGreen": {"scaleDownDelaySeconds": 0}})
ROLLING = Strategy.model_validate({"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})


@pytest.mark.parametrize("strategy", [CANARY, BLUE_GREEN, ROLLING], ids=["canary", "blue-green", "rolling"])
def test_paused_rollout_starts_and_stops_nothing(strategy: Strategy) -> None:
    """Whatever the strategy, a paused rollout of a new revision starts nothing and stops nothing."""
    for instances in (ready("S", 2), ready("S", 2) + ready("C", 2)):
        plan = plan_rollout(strategy, view(paused=True), StepState(), instances, T0)
        assert (plan.start, plan.terminate, plan.outcome, plan.state) == (None, (), None, None)


def test_unpaused_rollouts_move() -> None:
    """The same rollouts move when not paused: the hold is the only difference."""
    for strategy in (CANARY, BLUE_GREEN, ROLLING):
        assert plan_rollout(strategy, view(), StepState(), ready("S", 2), T0).start is not None


def test_paused_canary_keeps_its_weight_and_runs() -> None:
    """A held canary keeps the weight and header route of its step, and keeps its analysis runs."""
    st = StepState(index=1, weight=50, header_route=ROUTE)
    held = plan_rollout(
        CANARY,
        view(paused=True, analyses={"background": "running"}),
        st,
        ready("S", 2) + ready("C", 1),
        T0 + 100,
    )
    assert held.traffic == Traffic(weights=(("C", 50), ("S", 50)), header_route=ROUTE, route_revision="C")
    assert held.analyses == ("background",)
    assert held.waiting == PAUSED
    assert held.requeue_at is None


def test_paused_blue_green_keeps_its_side_and_preview() -> None:
    """A held blue-green keeps blue before the switch, green after, and its preview."""
    bg = Strategy.model_validate(
        {"blueGreen": {"previewListen": "127.0.0.1:9", "autoPromotionEnabled": False}}
    )
    instances = ready("S", 2) + ready("C", 2)
    before = plan_rollout(bg, view(paused=True), StepState(), instances, T0)
    assert before.traffic == Traffic(weights=(("S", 100),), preview="C")
    after = plan_rollout(bg, view(paused=True), StepState(switched_at=T0), instances, T0)
    assert after.traffic is not None
    assert after.traffic.weights == (("C", 100),)


def test_an_abort_goes_through_a_pause() -> None:
    """A failed analysis while paused still moves all traffic back to stable, but starts and stops nothing."""
    strategy = Strategy.model_validate(
        {"canary": {"steps": [{"setWeight": 50}], "analysis": {"templates": [{"templateName": "t"}]}}}
    )
    st = StepState(weight=50)
    plan = plan_rollout(
        strategy, view(paused=True, analyses={"background": "failed"}), st, ready("S", 2) + ready("C", 1), T0
    )
    assert plan.state is not None
    assert plan.state.aborted_at == T0
    assert plan.traffic == Traffic(weights=(("S", 100),))
    assert (plan.start, plan.terminate, plan.requeue_at) == (None, (), None)
    aborted = plan_rollout(
        CANARY, view(paused=True), replace(st, aborted_at=T0), ready("S", 1) + ready("C", 1), T0 + 99
    )
    assert (aborted.start, aborted.terminate) == (None, ())
    assert aborted.traffic == Traffic(weights=(("S", 100),))


def test_one_revision_in_play_is_left_to_the_rolling_planner() -> None:
    """Undo to stable or a failed target is not held: the rolling planner restores (or holds) it."""
    failed = plan_rollout(CANARY, view(paused=True, target_failed=True), StepState(), ready("C", 2), T0)
    assert failed.start is not None
    assert failed.traffic == Traffic(weights=(("S", 100),))
    first = plan_rollout(CANARY, view(paused=True, stable=None), StepState(), [], T0)
    assert (first.start, first.waiting) == (None, "")


def test_traffic_in_force() -> None:
    """The split a step state stands for: stable after an abort, one side for blue-green, else the weight."""
    assert traffic_in_force(CANARY, view(), StepState(weight=30, aborted_at=T0)) == Traffic(
        weights=(("S", 100),)
    )
    assert traffic_in_force(BLUE_GREEN, view(), StepState()) == Traffic(weights=(("S", 100),))
    assert traffic_in_force(BLUE_GREEN, view(), StepState(switched_at=T0)) == Traffic(weights=(("C", 100),))
    assert traffic_in_force(CANARY, view(), StepState(weight=30)) == Traffic(weights=(("C", 30), ("S", 70)))


def revision(h: str, number: int, phase: str, **kw: object) -> RevisionRecord:
    return RevisionRecord("shop", h, number, {}, created_at=T0, phase=phase, progress_at=T0, **kw)  # type: ignore[arg-type]


def test_rollout_view_from_spec_and_revisions() -> None:
    """The view carries the spec's numbers, the stable revision, the progress clock and the target's runs."""
    spec = Rollout.model_validate(
        {
            "apiVersion": "gapless.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "shop"},
            "spec": {
                "replicas": 4,
                "listen": "127.0.0.1:8080",
                "minReadySeconds": 5,
                "progressDeadlineSeconds": 30,
                "paused": True,
                "template": {"command": ["app"]},
                "strategy": {"canary": {"maxSurge": 2, "maxUnavailable": 1}},
            },
        }
    ).spec
    target = revision("C", 2, "progressing")
    revisions = [revision("S", 1, "complete"), target]
    instances = [InstanceView("c0", "C", "running", True, T0 + 10, T0)]
    v = rollout_view(spec, target, revisions, instances, {"step-0": "running"}, T0 + 20)
    assert (v.replicas, v.max_surge, v.max_unavailable, v.min_ready_seconds) == (4, 2, 1, 5)
    assert (v.progress_deadline_seconds, v.paused, v.target, v.stable) == (30, True, "C", "S")
    assert (v.target_failed, v.target_complete, v.progress_at) == (False, False, T0 + 15)
    assert v.analyses == {"step-0": "running"}
    done = rollout_view(spec, replace(target, phase="complete"), revisions, [], {"step-0": "failed"}, T0)
    assert (done.target_complete, done.analyses) == (True, {})
    failed = rollout_view(spec, replace(target, phase="failed"), revisions, [], {}, T0)
    assert failed.target_failed
