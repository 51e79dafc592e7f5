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
from gapless.strategies.plan import InstanceView, StepState, Terminate, Traffic
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


@pytest.mark.parametrize(
    ("phase", "promote", "expect"),
    [
        (None, False, "pre-promotion analysis running"),
        ("running", False, "pre-promotion analysis running"),
        ("inconclusive", False, "pre-promotion analysis inconclusive: `gapless promote` continues"),
        ("inconclusive", True, "switch"),
        ("successful", False, "switch"),
        ("failed", False, "pre-promotion analysis failed"),
        ("error", False, "pre-promotion analysis error"),
    ],
)
def test_blue_green_pre_promotion_analysis_table(phase: str | None, promote: bool, expect: str) -> None:
    """Each phase of the pre-promotion run: wait (saying why) on blue, switch, or abort naming the phase."""
    spec = BlueGreen(pre_promotion_analysis=REF, auto_promotion_seconds=0)
    inst = ready("S", 4) + ready("C", 4)
    st = StepState(ready_at=T0, promote=promote)
    p = plan_blue_green(
        view(analyses={} if phase is None else {PRE_PROMOTION: phase}), spec, st, inst, T0 + 1
    )
    assert p.traffic is not None
    assert p.state is not None
    if expect == "switch":
        assert (p.traffic.weights, p.state.switched_at) == ((("C", 100),), T0 + 1)
    elif expect.endswith(("failed", "error")):
        assert (p.traffic.weights, p.state.abort_reason) == ((("S", 100),), expect)
    else:
        assert (p.traffic.weights, p.waiting, p.state) == ((("S", 100),), expect, st)
        assert p.analyses == ((PRE_PROMOTION,) if "running" in expect else ())


def test_blue_green_checks_pending_running_failed() -> None:
    """Checks start once green is ready (ready_at recorded), are awaited on blue, and a failure fails it."""
    from gapless.spec.strategy import HTTPCheck, PrePromotionCheck

    spec = BlueGreen(pre_promotion_checks=[PrePromotionCheck(http_get=HTTPCheck(path="/"))])
    inst = ready("S", 4) + ready("C", 4)
    start = plan_blue_green(view(), spec, StepState(), inst, T0)
    assert start.run_checks
    assert start.state == StepState(ready_at=T0, checks="running")
    assert start.traffic is not None
    assert start.traffic.weights == (("S", 100),)
    running = plan_blue_green(view(), spec, start.state, inst, T0 + 5)
    assert (running.run_checks, running.state, running.outcome) == (False, start.state, None)
    assert running.traffic is not None
    assert running.traffic.weights == (("S", 100),)
    failed = plan_blue_green(
        view(), spec, replace(start.state, checks="failed", checks_message="503"), inst, T0 + 6
    )
    assert (failed.outcome, failed.reason) == ("failed", "pre-promotion check failed: 503")
    assert failed.state is not None
    assert failed.state.ready_at == T0


def test_blue_green_auto_promotion_waits_its_seconds() -> None:
    """autoPromotionSeconds counts from when green was ready; without auto promotion it waits for promote."""
    inst = ready("S", 4) + ready("C", 4)
    st = StepState(ready_at=T0)
    auto = BlueGreen(auto_promotion_seconds=20)
    early = plan_blue_green(view(), auto, st, inst, T0 + 19)
    assert (early.requeue_at, early.state) == (T0 + 20, st)
    assert early.traffic is not None
    assert early.traffic.weights == (("S", 100),)
    on_time = plan_blue_green(view(), auto, st, inst, T0 + 20)
    assert on_time.state is not None
    assert on_time.state.switched_at == T0 + 20
    manual = plan_blue_green(view(), BlueGreen(auto_promotion_enabled=False), st, inst, T0 + 999)
    assert (manual.requeue_at, manual.state) == (None, st)


@pytest.mark.parametrize(
    ("phase", "promote", "expect"),
    [
        (None, False, "post-promotion analysis running"),
        ("running", False, "post-promotion analysis running"),
        ("inconclusive", False, "post-promotion analysis inconclusive: `gapless promote` continues"),
        ("inconclusive", True, "passed"),
        ("successful", False, "passed"),
        ("error", False, "post-promotion analysis error"),
    ],
)
def test_blue_green_post_promotion_analysis_table(phase: str | None, promote: bool, expect: str) -> None:
    """Each phase of the post-promotion run after the switch: wait on green, pass (then the delay), or roll back."""
    spec = BlueGreen(post_promotion_analysis=REF, preview_listen="127.0.0.1:9", scale_down_delay_seconds=5)
    inst = ready("S", 4) + ready("C", 4)
    st = StepState(switched_at=T0, weight=100, ready_at=T0, promote=promote)
    p = plan_blue_green(
        view(analyses={} if phase is None else {POST_PROMOTION: phase}), spec, st, inst, T0 + 50
    )
    assert p.terminate == ()
    assert p.state is not None
    if expect == "passed":
        assert p.state == replace(st, promote=False, extra={"post_promotion_passed_at": T0 + 50})
        assert (p.requeue_at, p.traffic) == (T0 + 50, Traffic(weights=(("C", 100),), preview="C"))
    elif expect.endswith("error"):
        assert (p.state.abort_reason, p.state.aborted_at) == (expect, T0 + 50)
        assert p.traffic == Traffic(weights=(("S", 100),))
    else:
        assert (p.state, p.waiting, p.traffic) == (st, expect, Traffic(weights=(("C", 100),), preview="C"))
        assert p.analyses == ((POST_PROMOTION,) if "running" in expect else ())


def test_blue_green_after_the_switch_blue_goes_at_the_delay_then_complete() -> None:
    """Blue stays for scaleDownDelaySeconds after the switch (exactly), is removed, then the revision completes."""
    spec = BlueGreen(preview_listen="127.0.0.1:9", scale_down_delay_seconds=30)
    st = StepState(switched_at=T0, weight=100, ready_at=T0)
    inst = ready("S", 4) + ready("C", 4)
    on_green = Traffic(weights=(("C", 100),), preview="C")
    wait = plan_blue_green(view(), spec, st, inst, T0 + 29.9)
    assert (wait.terminate, wait.requeue_at, wait.state, wait.traffic) == ((), T0 + 30, st, on_green)
    down = plan_blue_green(view(), spec, st, inst, T0 + 30)
    assert down.terminate == tuple(Terminate(f"S{i}", "blue scaled down after the switch") for i in range(4))
    assert (down.state, down.traffic) == (st, on_green)
    done = plan_blue_green(view(), spec, st, ready("C", 4), T0 + 31)
    assert (done.outcome, done.reason, done.state, done.traffic) == (
        "complete",
        "NewReplicaSetAvailable",
        st,
        on_green,
    )


def test_blue_green_abort_edges() -> None:
    """An abort removes green alone too, and stops asking to be woken once the delay is over."""
    spec = BlueGreen(abort_scale_down_delay_seconds=10)
    st = StepState(aborted_at=T0)
    green_only = plan_blue_green(view(), spec, st, ready("S", 4) + ready("C", 1), T0 + 10)
    assert [t.instance_id for t in green_only.terminate] == ["C0"]
    over = plan_blue_green(view(), spec, st, ready("S", 4), T0 + 10)
    assert (over.requeue_at, over.terminate) == (None, ())
    warming = [InstanceView(f"S{i}", "S", "running", True, T0 - 1, T0 - 60) for i in range(4)]
    held = plan_blue_green(view(min_ready_seconds=5), spec, st, warming, T0 + 1)
    assert (held.start, held.requeue_at) == (None, T0 + 10)


def test_blue_green_promotion_due_with_full_green_switches_with_the_preview() -> None:
    """Promotion due with green at full size switches in the same pass and keeps serving the preview."""
    spec = BlueGreen(preview_listen="127.0.0.1:9", preview_replica_count=2, auto_promotion_enabled=False)
    st = StepState(ready_at=T0, extra={"promoting_at": T0})
    p = plan_blue_green(view(), spec, st, ready("S", 4) + ready("C", 4), T0 + 1)
    assert p.traffic == Traffic(weights=(("C", 100),), preview="C")
    shrink = plan_blue_green(view(), spec, StepState(), ready("S", 4) + ready("C", 3), T0)
    assert [t.reason for t in shrink.terminate] == ["scaled down"]  # 3 green, preview wants 2
    assert shrink.traffic == Traffic(weights=(("S", 100),), preview="C")
