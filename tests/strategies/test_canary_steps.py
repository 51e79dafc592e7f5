"""Canary steps one by one, as tables: what each kind of step does to the state, the split and the instances."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gapless.spec.strategy import (
    Canary,
    CanaryStep,
    HeaderRoute,
    Pause,
    RouteMatch,
    SetCanaryScale,
    StringMatch,
)
from gapless.strategies.canary import plan_canary
from gapless.strategies.plan import InstanceView, Start, StepState, Terminate, Traffic
from tests.strategies.test_canary_bluegreen import T0, ready, view

BOTH = ready("S", 4) + ready("C", 4)


def test_stable_is_restored_before_any_step() -> None:
    """A stable that lost an instance is brought back to full size first, with the split unchanged."""
    st = StepState(weight=25, index=1)
    spec = Canary(steps=[CanaryStep(set_weight=25), CanaryStep(set_weight=50)])
    p = plan_canary(view(), spec, st, ready("S", 3) + ready("C", 1), T0)
    assert (p.start, p.state, p.terminate) == (Start("S", 1), st, ())
    assert p.traffic == Traffic(weights=(("C", 25), ("S", 75)))


@pytest.mark.parametrize(
    ("scale", "expected"),
    [
        (SetCanaryScale(replicas=2), {"replicas": 2}),
        (SetCanaryScale(weight=50), {"weight": 50}),
        (SetCanaryScale(match_traffic_weight=True), {"matchTrafficWeight": True}),
    ],
)
def test_set_canary_scale_is_recorded(scale: SetCanaryScale, expected: dict[str, object]) -> None:
    """setCanaryScale records its scale (spec field names) and goes on to the next step in the same pass."""
    spec = Canary(steps=[CanaryStep(set_canary_scale=scale), CanaryStep(pause=Pause())])
    p = plan_canary(view(), spec, StepState(promote=True), BOTH, T0)
    assert p.state is not None
    assert (p.state.canary_scale, p.state.index, p.state.promote, p.state.pause_started_at) == (
        expected,
        1,
        False,
        T0,
    )


def test_header_route_step_is_recorded() -> None:
    """setHeaderRoute records its matches (spec field names) and routes them to the canary."""
    route = HeaderRoute(match=[RouteMatch(header_name="X-Beta", header_value=StringMatch(prefix="on"))])
    spec = Canary(steps=[CanaryStep(set_header_route=route), CanaryStep(pause=Pause())])
    p = plan_canary(view(), spec, StepState(weight=5), BOTH, T0)
    assert p.state is not None
    assert (p.state.header_route, p.state.index) == (
        ({"headerName": "X-Beta", "headerValue": {"prefix": "on"}},),
        1,
    )
    assert p.traffic is not None
    assert p.traffic.route_revision == "C"


def test_timed_pause_counts_from_its_start() -> None:
    """A timed pause records when it started, wakes at its end, then moves on."""
    spec = Canary(steps=[CanaryStep(pause=Pause(duration=30)), CanaryStep(pause=Pause())])
    p = plan_canary(view(), spec, StepState(weight=10), BOTH, T0)
    assert p.state is not None
    assert (p.state.pause_started_at, p.requeue_at, p.state.index) == (T0, T0 + 30, 0)
    again = plan_canary(view(), spec, p.state, BOTH, T0 + 29)
    assert (again.state, again.requeue_at) == (p.state, T0 + 30)
    done = plan_canary(view(), spec, p.state, BOTH, T0 + 30)
    assert done.state is not None
    assert (done.state.index, done.state.pause_started_at) == (
        1,
        T0 + 30,
    )  # the next (indefinite) pause began
    assert done.requeue_at is None
    assert done.traffic == Traffic(weights=(("C", 10), ("S", 90)))


def test_after_the_steps_grow_switch_wait_scale_down_complete() -> None:
    """After the last step: canary to full size, all traffic, stable kept for the delay, then removed, then complete."""
    spec = Canary(steps=[CanaryStep(set_weight=50)], scale_down_delay_seconds=20)
    st = StepState(index=1, weight=50, header_route=({"headerName": "X", "headerValue": {"exact": "1"}},))
    grow = plan_canary(view(), spec, st, ready("S", 4) + ready("C", 2), T0)
    assert (grow.start, grow.state) == (Start("C", 1), st)  # maxSurge 25% of 4: one at a time
    assert grow.traffic is not None
    assert grow.traffic.weights == (("C", 50), ("S", 50))
    switch = plan_canary(view(), spec, st, BOTH, T0)
    assert switch.state is not None
    assert (switch.state.weight, switch.state.switched_at, switch.state.header_route) == (100, T0, ())
    assert switch.requeue_at == T0 + 20
    assert switch.traffic == Traffic(weights=(("C", 100), ("S", 0)))
    switched = switch.state
    wait = plan_canary(view(), spec, switched, BOTH, T0 + 19)
    assert (wait.terminate, wait.requeue_at, wait.state) == ((), T0 + 20, switched)
    down = plan_canary(view(), spec, switched, BOTH, T0 + 20)
    assert down.terminate == tuple(Terminate(f"S{i}", "canary promoted") for i in range(4))
    done = plan_canary(view(), spec, switched, ready("C", 4), T0 + 21)
    assert (done.outcome, done.reason) == ("complete", "NewReplicaSetAvailable")
    assert done.traffic == Traffic(weights=(("C", 100), ("S", 0)))


def test_full_promotion_skips_every_step() -> None:
    """promote --full skips the remaining steps and grows the canary to full size at the split in force."""
    spec = Canary(steps=[CanaryStep(set_weight=10), CanaryStep(pause=Pause()), CanaryStep(set_weight=50)])
    st = StepState(index=1, weight=10, full=True, promote=True)
    p = plan_canary(view(), spec, st, ready("S", 4) + ready("C", 1), T0)
    assert (p.outcome, p.start, p.requeue_at) == (None, Start("C", 1), T0 + 600)
    assert p.traffic == Traffic(weights=(("C", 10), ("S", 90)))


def test_aborted_canary_restores_stable_first() -> None:
    """After an abort, a stable short of instances is restored before the canary is touched."""
    spec = Canary(steps=[CanaryStep(set_weight=50)], abort_scale_down_delay_seconds=0)
    st = StepState(aborted_at=T0, weight=50)
    p = plan_canary(view(), spec, st, ready("S", 3) + ready("C", 2), T0 + 1)
    assert (p.start, p.terminate) == (Start("S", 1), ())
    assert p.traffic == Traffic(weights=(("S", 100),))
    gone = plan_canary(view(), spec, st, ready("S", 4) + ready("C", 2) + ready("OLD", 1), T0 + 1)
    assert {t.instance_id for t in gone.terminate} == {"C0", "C1", "OLD0"}
    assert {t.reason for t in gone.terminate} == {"canary aborted"}
    quiet = plan_canary(view(), spec, st, ready("S", 4), T0 + 1)
    assert (quiet.terminate, quiet.requeue_at) == ((), None)


def test_set_weight_waits_for_canary_instances_then_takes_the_weight() -> None:
    """A weight is given only once enough canary instances are available (promote skips the wait)."""
    spec = Canary(steps=[CanaryStep(set_weight=50), CanaryStep(pause=Pause())])
    short = ready("S", 4) + ready("C", 1)
    wait = plan_canary(view(), spec, StepState(), short, T0)
    assert (wait.start, wait.state) == (Start("C", 1), StepState())
    assert wait.traffic == Traffic(weights=(("C", 0), ("S", 100)))
    forced = plan_canary(view(), spec, StepState(promote=True), short, T0)
    assert forced.state == StepState(index=1, weight=50, promote=False)
    assert forced.requeue_at == T0
    stepped = plan_canary(view(), spec, replace(StepState(), index=0), ready("S", 4) + ready("C", 2), T0)
    assert stepped.state == StepState(index=1, weight=50)
    assert stepped.traffic == Traffic(weights=(("C", 50), ("S", 50)))
    assert stepped.requeue_at == T0


def test_a_step_taken_restarts_the_progress_clock_while_growing() -> None:
    """Growing right after a step counts from the step, not from an old clock."""
    spec = Canary(steps=[CanaryStep(pause=Pause(duration=1)), CanaryStep(set_weight=50)])
    st = StepState(pause_started_at=T0 - 5000)
    old_clock = view(progress_at=T0 - 5000, progress_deadline_seconds=600)
    p = plan_canary(
        old_clock, spec, st, [*ready("S", 4), InstanceView("C0", "C", "running", False, None, T0)], T0
    )
    assert p.outcome is None
    assert p.requeue_at == T0 + 600
    assert p.state is not None
    assert p.state.index == 1


@pytest.mark.parametrize("phase", ["failed", "error"])
def test_background_analysis_failure_aborts(phase: str) -> None:
    """A failed or errored background run aborts, naming the phase."""
    from gapless.spec.strategy import AnalysisTemplateRef, BackgroundAnalysis

    spec = Canary(
        steps=[CanaryStep(set_weight=50)],
        analysis=BackgroundAnalysis(templates=[AnalysisTemplateRef(template_name="t")]),
    )
    p = plan_canary(view(analyses={"background": phase}), spec, StepState(weight=50), BOTH, T0)
    assert p.state is not None
    assert (p.state.aborted_at, p.state.abort_reason) == (T0, f"background analysis {phase}")


def test_inconclusive_analyses_hold_the_split_until_promote() -> None:
    """An inconclusive background or step run holds the current split and says which, until promote."""
    from gapless.spec.strategy import AnalysisTemplateRef, BackgroundAnalysis, RolloutAnalysis

    ref = [AnalysisTemplateRef(template_name="t")]
    background = Canary(steps=[CanaryStep(set_weight=50)], analysis=BackgroundAnalysis(templates=ref))
    st = StepState(weight=20, index=0)
    held = plan_canary(view(analyses={"background": "inconclusive"}), background, st, BOTH, T0)
    assert (held.state, held.waiting) == (st, "background analysis inconclusive: `gapless promote` continues")
    assert held.traffic == Traffic(weights=(("C", 20), ("S", 80)))
    moved = plan_canary(
        view(analyses={"background": "inconclusive"}), background, replace(st, promote=True), BOTH, T0
    )
    assert moved.state == StepState(weight=50, index=1)
    step = Canary(
        steps=[
            CanaryStep(set_weight=20),
            CanaryStep(analysis=RolloutAnalysis(templates=ref)),
            CanaryStep(pause=Pause()),
        ]
    )
    st2 = StepState(weight=20, index=1)
    waiting = plan_canary(view(analyses={"step-1": "inconclusive"}), step, st2, BOTH, T0)
    assert (waiting.state, waiting.waiting) == (
        st2,
        "analysis of step 2 inconclusive: `gapless promote` continues",
    )
    assert waiting.traffic == Traffic(weights=(("C", 20), ("S", 80)))
    passed = plan_canary(view(analyses={"step-1": "successful"}), step, replace(st2, promote=True), BOTH, T0)
    assert passed.state == StepState(weight=20, index=2, pause_started_at=T0)


def test_canary_abort_delay_edge_and_third_revision_reason() -> None:
    """The canary goes exactly at the abort delay; a third revision is removed as replaced."""
    spec = Canary(steps=[CanaryStep(set_weight=50)], abort_scale_down_delay_seconds=10)
    st = StepState(aborted_at=T0)
    at = plan_canary(view(), spec, st, BOTH, T0 + 10)
    assert len(at.terminate) == 4
    assert at.traffic == Traffic(weights=(("S", 100),))
    over = plan_canary(view(), spec, st, ready("S", 4), T0 + 10)
    assert (over.requeue_at, over.terminate) == (None, ())
    third = plan_canary(view(), spec, StepState(weight=5), [*BOTH, *ready("OLD", 1)], T0)
    assert third.terminate == (Terminate("OLD0", "replaced by a newer revision"),)
    assert third.traffic == Traffic(weights=(("C", 5), ("S", 95)))


def test_switch_and_steps_clear_the_promote_request() -> None:
    """Every step taken on a promote request consumes it; the switch clears it too."""
    spec = Canary(steps=[CanaryStep(pause=Pause(duration=5)), CanaryStep(pause=Pause())])
    p = plan_canary(view(), spec, StepState(promote=True, pause_started_at=T0), BOTH, T0 + 1)
    assert p.state == StepState(index=1, pause_started_at=T0 + 1)
    route = HeaderRoute(match=[RouteMatch(header_name="X", header_value=StringMatch(exact="1"))])
    hr = plan_canary(
        view(),
        Canary(steps=[CanaryStep(set_header_route=route), CanaryStep(pause=Pause())]),
        StepState(promote=True),
        BOTH,
        T0,
    )
    assert hr.state is not None
    assert hr.state.promote is False
    done = plan_canary(view(), Canary(steps=[]), StepState(promote=True, full=True), BOTH, T0)
    assert done.state is not None
    assert (done.state.promote, done.state.switched_at) == (False, T0)
    waiting = plan_canary(view(), Canary(steps=[], scale_down_delay_seconds=9), done.state, BOTH, T0 + 1)
    assert waiting.traffic == Traffic(weights=(("C", 100), ("S", 0)))
