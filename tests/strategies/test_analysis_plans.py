"""Where analysis runs in the planners: canary steps, background analysis, blue-green pre/post promotion."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gapless.spec.strategy import (
    AnalysisTemplateRef,
    BackgroundAnalysis,
    BlueGreen,
    Canary,
    CanaryStep,
    RolloutAnalysis,
)
from gapless.strategies.bluegreen import POST_PROMOTION, PRE_PROMOTION, plan_blue_green
from gapless.strategies.canary import BACKGROUND, plan_canary, step_key
from gapless.strategies.plan import StepState
from tests.strategies.test_canary_bluegreen import T0, ready, view

REF = RolloutAnalysis(templates=[AnalysisTemplateRef(template_name="t")])
STEPS = [CanaryStep(set_weight=20), CanaryStep(analysis=REF), CanaryStep(set_weight=60)]
INSTANCES = ready("S", 4) + ready("C", 1)


def at_analysis() -> StepState:
    p = plan_canary(view(), Canary(steps=STEPS), StepState(), INSTANCES, T0)
    assert p.state is not None
    return p.state


def test_analysis_step_asks_for_its_run_and_waits() -> None:
    st = at_analysis()
    assert (st.index, st.weight) == (1, 20)
    p = plan_canary(view(), Canary(steps=STEPS), st, INSTANCES, T0 + 1)
    assert p.analyses == (step_key(1),)
    assert p.state is not None
    assert p.state.index == 1
    assert "analysis of step 2 running" in p.waiting
    assert p.traffic is not None
    assert p.traffic.weights == (("C", 20), ("S", 80))
    running = plan_canary(view(analyses={"step-1": "running"}), Canary(steps=STEPS), st, INSTANCES, T0 + 2)
    assert running.analyses == ("step-1",)


def test_successful_analysis_moves_on() -> None:
    st = at_analysis()
    p = plan_canary(view(analyses={"step-1": "successful"}), Canary(steps=STEPS), st, INSTANCES, T0 + 1)
    assert p.analyses == ()
    assert p.state is not None
    assert p.state.index == 2  # growing the canary towards 60%
    assert p.start is not None


@pytest.mark.parametrize("phase", ["failed", "error"])
def test_failed_or_errored_analysis_aborts_to_stable(phase: str) -> None:
    st = at_analysis()
    p = plan_canary(view(analyses={"step-1": phase}), Canary(steps=STEPS), st, INSTANCES, T0 + 1)
    assert p.state is not None
    assert p.state.aborted_at == T0 + 1
    assert p.state.abort_reason == f"analysis of step 2 {phase}"
    assert p.traffic is not None
    assert p.traffic.weights == (("S", 100),)
    after = plan_canary(
        view(), Canary(steps=STEPS, abort_scale_down_delay_seconds=0), p.state, INSTANCES, T0 + 2
    )
    assert [t.instance_id for t in after.terminate] == ["C0"]


def test_inconclusive_analysis_pauses_until_promote() -> None:
    st = at_analysis()
    v = view(analyses={"step-1": "inconclusive"})
    p = plan_canary(v, Canary(steps=STEPS), st, INSTANCES, T0 + 1)
    assert p.state is not None
    assert p.state.index == 1
    assert p.analyses == ()
    assert "inconclusive" in p.waiting
    promoted = plan_canary(v, Canary(steps=STEPS), replace(st, promote=True), INSTANCES, T0 + 2)
    assert promoted.state is not None
    assert promoted.state.index == 2


def test_background_analysis_runs_from_its_starting_step_until_the_switch() -> None:
    bg = BackgroundAnalysis(templates=[AnalysisTemplateRef(template_name="t")], starting_step=1)
    spec = Canary(steps=[CanaryStep(set_weight=20), CanaryStep(set_weight=40)], analysis=bg)
    first = plan_canary(view(), spec, StepState(), INSTANCES, T0)
    assert first.state is not None
    assert first.state.index == 1
    assert BACKGROUND in first.analyses  # index 1 reached in this pass
    not_yet = plan_canary(view(), spec, StepState(), ready("S", 4), T0)  # canary not started: step 0
    assert not_yet.state is not None
    assert not_yet.state.index == 0
    assert BACKGROUND not in not_yet.analyses
    failed = plan_canary(view(analyses={BACKGROUND: "failed"}), spec, first.state, INSTANCES, T0 + 1)
    assert failed.state is not None
    assert failed.state.abort_reason == "background analysis failed"
    held = plan_canary(view(analyses={BACKGROUND: "inconclusive"}), spec, first.state, INSTANCES, T0 + 1)
    assert held.state == first.state
    assert "inconclusive" in held.waiting
    switched = replace(first.state, switched_at=T0, weight=100, index=2)
    done = plan_canary(view(), spec, switched, INSTANCES, T0 + 1)
    assert BACKGROUND not in done.analyses


def test_blue_green_pre_promotion_analysis_gates_the_switch() -> None:
    spec = BlueGreen(pre_promotion_analysis=REF, auto_promotion_seconds=0)
    inst = ready("S", 4) + ready("C", 4)
    p = plan_blue_green(view(), spec, StepState(), inst, T0)
    assert p.analyses == (PRE_PROMOTION,)
    assert p.state is not None
    assert p.state.switched_at is None
    ok = plan_blue_green(view(analyses={PRE_PROMOTION: "successful"}), spec, p.state, inst, T0 + 1)
    assert ok.state is not None
    assert ok.state.switched_at == T0 + 1
    bad = plan_blue_green(view(analyses={PRE_PROMOTION: "failed"}), spec, p.state, inst, T0 + 1)
    assert bad.state is not None
    assert bad.state.aborted_at == T0 + 1
    assert bad.traffic is not None
    assert bad.traffic.weights == (("S", 100),)


def test_blue_green_post_promotion_analysis_keeps_blue_warm_then_rolls_back_on_failure() -> None:
    spec = BlueGreen(post_promotion_analysis=REF, scale_down_delay_seconds=5)
    inst = ready("S", 4) + ready("C", 4)
    switched = StepState(switched_at=T0, weight=100, ready_at=T0)
    p = plan_blue_green(view(), spec, switched, inst, T0 + 100)  # long past the scale-down delay
    assert p.analyses == (POST_PROMOTION,)
    assert p.terminate == ()
    assert p.traffic is not None
    assert p.traffic.weights == (("C", 100),)
    bad = plan_blue_green(view(analyses={POST_PROMOTION: "failed"}), spec, switched, inst, T0 + 101)
    assert bad.state is not None
    assert bad.state.abort_reason == "post-promotion analysis failed"
    assert bad.traffic is not None
    assert bad.traffic.weights == (("S", 100),)
    ok = plan_blue_green(view(analyses={POST_PROMOTION: "successful"}), spec, switched, inst, T0 + 101)
    assert ok.state is not None
    passed = ok.state.extra["post_promotion_passed_at"]
    assert passed == T0 + 101
    wait = plan_blue_green(view(analyses={POST_PROMOTION: "successful"}), spec, ok.state, inst, T0 + 103)
    assert wait.terminate == ()
    assert wait.requeue_at == T0 + 106
    down = plan_blue_green(view(analyses={POST_PROMOTION: "successful"}), spec, ok.state, inst, T0 + 107)
    assert len(down.terminate) == 4
