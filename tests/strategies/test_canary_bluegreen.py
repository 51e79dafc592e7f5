"""Canary and blue-green planners: steps, pauses, promote, abort, switch and scale-down, as tables."""

from __future__ import annotations

from dataclasses import replace

from gapless.spec.strategy import BlueGreen, Canary, CanaryStep, Pause
from gapless.strategies.bluegreen import plan_blue_green
from gapless.strategies.canary import canary_replicas, plan_canary
from gapless.strategies.plan import InstanceView, Plan, RolloutView, StepState, Traffic
from tests.strategies.views import make_view

T0 = 1000.0


def view(**kw: object) -> RolloutView:
    return make_view(**({"replicas": 4, "max_surge": "25%", "progress_deadline_seconds": 600} | kw))


def ready(rev: str, n: int, prefix: str = "") -> list[InstanceView]:
    return [InstanceView(f"{prefix}{rev}{i}", rev, "running", True, T0 - 50, T0 - 60) for i in range(n)]


class World:
    """Applies plans: started instances are ready on the next pass, terminated ones vanish."""

    def __init__(self, instances: list[InstanceView]) -> None:
        self.instances = instances
        self.state = StepState()
        self.now = T0
        self.weights: list[tuple[tuple[str, int], ...] | None] = []
        self.n = 0

    def apply(self, plan: Plan) -> None:
        gone = {t.instance_id for t in plan.terminate}
        self.instances = [i for i in self.instances if i.id not in gone]
        if plan.start:
            for _ in range(plan.start.count):
                self.n += 1
                self.instances.append(
                    InstanceView(f"n{self.n}", plan.start.revision, "running", True, self.now, self.now)
                )
        if plan.state is not None:
            self.state = plan.state
        if plan.traffic is not None:
            self.weights.append(plan.traffic.weights)

    def count(self, rev: str) -> int:
        return sum(1 for i in self.instances if i.revision == rev)


STEPS = [
    CanaryStep(set_weight=5),
    CanaryStep(set_weight=25),
    CanaryStep(set_weight=50),
    CanaryStep(pause=Pause(duration=10)),
]


def test_canary_replicas_follow_weight() -> None:
    """Without setCanaryScale the canary has ceil(replicas*weight/100) instances, at least 1."""
    assert [canary_replicas(4, w, None) for w in (0, 5, 25, 50, 100)] == [1, 1, 1, 2, 4]
    assert canary_replicas(10, 5, {"replicas": 3}) == 3
    assert canary_replicas(10, 5, {"weight": 50}) == 5


def test_canary_walks_steps_then_promotes_and_scales_stable_down() -> None:
    """5 -> 25 -> 50 -> pause -> full: weights rise only once canary instances are available, stable goes last."""
    spec = Canary(steps=STEPS, scale_down_delay_seconds=5)
    w = World(ready("S", 4))
    outcome = None
    for _ in range(60):
        w.now += 1
        plan = plan_canary(view(), spec, w.state, w.instances, w.now)
        w.apply(plan)
        assert w.count("S") == 4 or w.state.switched_at is not None
        if plan.outcome:
            outcome = plan.outcome
            break
    assert outcome == "complete"
    seen = [dict(x or ()).get("C") for x in w.weights]
    # The canary weight never decreases and passes through every step.
    assert seen == sorted(seen)
    assert {5, 25, 50, 100} <= set(seen)
    assert w.count("S") == 0
    assert w.count("C") == 4
    assert w.weights[-1] is not None
    assert w.weights[-1][0] == ("C", 100)


def test_indefinite_pause_waits_for_promote() -> None:
    """pause: {} holds until promote; then the next step runs."""
    spec = Canary(steps=[CanaryStep(set_weight=10), CanaryStep(pause=Pause()), CanaryStep(set_weight=60)])
    inst = ready("S", 4) + ready("C", 1)
    p = plan_canary(view(), spec, StepState(), inst, T0)
    assert p.state is not None
    assert (p.state.index, p.state.weight) == (1, 10)
    p2 = plan_canary(view(), spec, p.state, inst, T0 + 1000)
    assert p2.state is not None
    assert p2.state.index == 1
    p3 = plan_canary(view(), spec, replace(p2.state, promote=True), inst, T0 + 1001)
    assert p3.start is not None
    assert (p3.start.revision, p3.start.count) == ("C", 1)  # 60% of 4 -> 3 instances, 1 surge at a time
    assert p3.state is not None
    assert p3.state.weight == 10  # 60 applies only once 3 canary instances are available


def test_abort_moves_all_traffic_to_stable_then_scales_canary_down() -> None:
    """After abort stable takes 100% at once; the canary goes after the abort delay."""
    spec = Canary(steps=STEPS, abort_scale_down_delay_seconds=30)
    inst = ready("S", 4) + ready("C", 2)
    st = StepState(index=2, weight=25, aborted_at=T0)
    p = plan_canary(view(), spec, st, inst, T0 + 1)
    assert p.traffic is not None
    assert p.traffic.weights == (("S", 100),)
    assert p.terminate == ()
    assert p.requeue_at == T0 + 30
    p = plan_canary(view(), spec, st, inst, T0 + 31)
    assert {t.instance_id for t in p.terminate} == {"C0", "C1"}


def test_third_revision_is_removed_first() -> None:
    """A canary replaced by a newer revision gets no traffic and is terminated before anything else."""
    inst = ready("S", 4) + ready("OLD", 1) + ready("C", 1)
    p = plan_canary(view(), Canary(steps=STEPS), StepState(), inst, T0)
    assert {t.instance_id for t in p.terminate} == {"OLD0"}
    assert p.traffic is not None
    assert p.traffic.weights is not None
    assert {r for r, _ in p.traffic.weights} == {"S", "C"}


def test_header_route_state_and_sticky_order() -> None:
    """setHeaderRoute routes to the canary; weights list the canary first for sticky buckets."""
    from gapless.spec.strategy import HeaderRoute, RouteMatch, StringMatch

    route = HeaderRoute(match=[RouteMatch(header_name="X-Internal", header_value=StringMatch(exact="1"))])
    spec = Canary(
        steps=[CanaryStep(set_weight=5), CanaryStep(set_header_route=route), CanaryStep(pause=Pause())]
    )
    first = plan_canary(view(), spec, StepState(), ready("S", 4) + ready("C", 1), T0)
    assert first.state is not None
    assert first.requeue_at == T0  # the weight goes to the router before the next step
    p = plan_canary(view(), spec, first.state, ready("S", 4) + ready("C", 1), T0)
    assert p.traffic is not None
    assert p.traffic.route_revision == "C"
    assert p.traffic.header_route[0]["headerName"] == "X-Internal"
    assert p.traffic.weights == (("C", 5), ("S", 95))


def test_canary_deadline_fails_and_keeps_stable() -> None:
    """A canary that never becomes available fails at the progress deadline with stable at 100%."""
    spec = Canary(steps=STEPS)
    unready = [InstanceView("C0", "C", "running", False, None, T0)]
    p = plan_canary(view(progress_deadline_seconds=10), spec, StepState(), ready("S", 4) + unready, T0 + 11)
    assert p.outcome == "failed"
    assert p.traffic is not None
    assert p.traffic.weights == (("S", 100),)


def test_blue_green_full_cycle() -> None:
    """Green starts at full size, is previewed, switches in one step, and blue goes after the delay."""
    spec = BlueGreen(preview_listen="127.0.0.1:9", scale_down_delay_seconds=30)
    w = World(ready("S", 4))
    p = plan_blue_green(view(), spec, w.state, w.instances, T0)
    assert p.start is not None
    assert (p.start.revision, p.start.count) == ("C", 4)
    w.apply(p)
    p = plan_blue_green(view(), spec, w.state, w.instances, T0 + 1)
    assert p.traffic is not None
    assert p.traffic.weights == (("C", 100),)
    assert p.traffic.preview == "C"
    w.apply(p)
    switched = w.state.switched_at
    assert switched == T0 + 1
    p = plan_blue_green(view(), spec, w.state, w.instances, T0 + 10)
    assert p.terminate == ()
    assert p.requeue_at == switched + 30
    p = plan_blue_green(view(), spec, w.state, w.instances, T0 + 32)
    assert len(p.terminate) == 4
    w.apply(p)
    assert plan_blue_green(view(), spec, w.state, w.instances, T0 + 33).outcome == "complete"


def test_blue_green_checks_and_manual_promotion() -> None:
    """Checks run before any switch; a failure fails the revision; without auto promotion it waits for promote."""
    from gapless.spec.strategy import HTTPCheck, PrePromotionCheck

    spec = BlueGreen(
        pre_promotion_checks=[PrePromotionCheck(http_get=HTTPCheck(path="/"))], auto_promotion_enabled=False
    )
    inst = ready("S", 4) + ready("C", 4)
    p = plan_blue_green(view(), spec, StepState(), inst, T0)
    assert p.run_checks
    assert p.state is not None
    assert p.state.checks == "running"
    failed = plan_blue_green(
        view(), spec, replace(p.state, checks="failed", checks_message="503"), inst, T0 + 1
    )
    assert failed.outcome == "failed"
    assert failed.traffic is not None
    assert failed.traffic.weights == (("S", 100),)
    waiting = plan_blue_green(view(), spec, replace(p.state, checks="passed"), inst, T0 + 100)
    assert waiting.traffic is not None
    assert waiting.traffic.weights == (("S", 100),)
    assert waiting.state is not None
    promoted = plan_blue_green(view(), spec, replace(waiting.state, promote=True), inst, T0 + 101)
    assert promoted.traffic is not None
    assert promoted.traffic.weights == (("C", 100),)


def test_undo_to_stable_is_instant() -> None:
    """When the target is the stable revision again, all traffic goes to it in the same pass."""
    inst = ready("S", 4) + ready("C", 4)
    p = plan_blue_green(view(target="S", target_complete=True), BlueGreen(), StepState(), inst, T0)
    assert p.traffic is not None
    assert p.traffic.weights == (("S", 100),)
    assert p.start is None
    assert len(p.terminate) == 4


def test_blue_green_switch_state_and_scale_down_time() -> None:
    """The switch records weight 100, clears the promote request and comes back when blue may go."""
    spec = BlueGreen(auto_promotion_enabled=False, scale_down_delay_seconds=30)
    inst = ready("S", 4) + ready("C", 4)
    p = plan_blue_green(view(), spec, StepState(ready_at=T0, promote=True, full=True), inst, T0 + 5)
    assert p.state is not None
    assert (p.state.switched_at, p.state.weight, p.state.promote) == (T0 + 5, 100, False)
    assert p.requeue_at == T0 + 35


def test_abort_records_the_abort_and_comes_back_at_once() -> None:
    """An analysis abort clears promote requests and asks for the next pass now (to scale stable back)."""
    from gapless.strategies.canary import abort_plan

    p = abort_plan("S", StepState(promote=True, full=True, weight=40), T0, "analysis failed")
    assert p.state is not None
    assert (p.state.aborted_at, p.state.abort_reason, p.state.promote, p.state.full) == (
        T0,
        "analysis failed",
        False,
        False,
    )
    assert p.state.weight == 40
    assert p.requeue_at == T0
    assert p.traffic is not None
    assert p.traffic.weights == (("S", 100),)


def test_blue_green_preview_size_until_promotion_then_full_before_the_switch() -> None:
    """previewReplicaCount holds until promotion is due; then green grows to full size, then it switches."""
    spec = BlueGreen(preview_replica_count=1, auto_promotion_enabled=True, auto_promotion_seconds=10)
    p = plan_blue_green(view(), spec, StepState(), ready("S", 4), T0)
    assert p.start is not None
    assert (p.start.revision, p.start.count) == ("C", 1)
    inst = ready("S", 4) + ready("C", 1)
    p = plan_blue_green(view(), spec, StepState(), inst, T0)
    assert p.state is not None
    assert (p.state.ready_at, p.requeue_at, p.start) == (T0, T0 + 10, None)
    p = plan_blue_green(view(), spec, p.state, inst, T0 + 10)
    assert p.state is not None
    assert p.state.extra == {"promoting_at": T0 + 10}
    assert (p.requeue_at, p.state.switched_at) == (T0 + 10, None)
    assert p.traffic is not None
    assert p.traffic.weights == (("S", 100),)
    grow = plan_blue_green(view(), spec, p.state, inst, T0 + 11)
    assert grow.start is not None
    assert (grow.start.revision, grow.start.count) == ("C", 3)
    switch = plan_blue_green(view(), spec, p.state, ready("S", 4) + ready("C", 4), T0 + 12)
    assert switch.state is not None
    assert switch.state.switched_at == T0 + 12
    assert switch.traffic is not None
    assert switch.traffic.weights == (("C", 100),)


def test_blue_green_abort_restores_blue_then_removes_green_after_the_delay() -> None:
    """After an abort blue is brought back to full size first, green and any third revision go at the delay."""
    spec = BlueGreen(preview_listen="127.0.0.1:9", abort_scale_down_delay_seconds=30)
    st = StepState(aborted_at=T0, ready_at=T0 - 5)
    p = plan_blue_green(view(), spec, st, ready("S", 3) + ready("C", 4), T0 + 1)
    assert p.start is not None
    assert (p.start.revision, p.start.count, p.terminate) == ("S", 1, ())
    assert p.traffic == Traffic(weights=(("S", 100),))
    inst = ready("S", 4) + ready("C", 4) + ready("OLD", 1)
    waiting = plan_blue_green(view(), spec, st, inst, T0 + 29.5)
    assert (waiting.start, waiting.terminate, waiting.requeue_at) == (None, (), T0 + 30)
    assert waiting.traffic == Traffic(weights=(("S", 100),))
    gone = plan_blue_green(view(), spec, st, inst, T0 + 30)
    assert {(t.instance_id, t.reason) for t in gone.terminate} == {
        *((f"C{i}", "blue-green aborted") for i in range(4)),
        ("OLD0", "blue-green aborted"),
    }
    assert gone.traffic == Traffic(weights=(("S", 100),), preview="C")
    done = plan_blue_green(view(), spec, st, ready("S", 4), T0 + 31)
    assert (done.terminate, done.requeue_at) == ((), None)
    assert done.traffic == Traffic(weights=(("S", 100),))


def test_blue_green_third_revision_removed_on_the_side_in_force() -> None:
    """A replaced green's instances go first, while traffic stays on blue (or on green after the switch)."""
    spec = BlueGreen(scale_down_delay_seconds=30)
    inst = (
        ready("S", 4)
        + ready("OLD", 2)
        + ready("C", 4)
        + [InstanceView("X", "OLD", "terminating", False, None, T0)]
    )
    p = plan_blue_green(view(), spec, StepState(), inst, T0)
    assert {(t.instance_id, t.reason) for t in p.terminate} == {
        ("OLD0", "replaced by a newer revision"),
        ("OLD1", "replaced by a newer revision"),
    }
    assert p.traffic == Traffic(weights=(("S", 100),))
    after = plan_blue_green(view(), spec, StepState(switched_at=T0), inst, T0)
    assert after.traffic == Traffic(weights=(("C", 100),))


def test_blue_green_deadline_while_green_starts() -> None:
    """Green that never becomes available fails the revision at the deadline with blue serving."""
    spec = BlueGreen(preview_listen="127.0.0.1:9")
    unready = [InstanceView(f"C{i}", "C", "running", False, None, T0) for i in range(4)]
    st = StepState(ready_at=None)
    waiting = plan_blue_green(view(progress_deadline_seconds=10), spec, st, ready("S", 4) + unready, T0 + 9)
    assert (waiting.outcome, waiting.requeue_at, waiting.state) == (None, T0 + 10, st)
    assert waiting.traffic == Traffic(weights=(("S", 100),))  # no preview: green is not available
    failed = plan_blue_green(view(progress_deadline_seconds=10), spec, st, ready("S", 4) + unready, T0 + 10)
    assert failed.outcome == "failed"
    assert "0 of 4 green instances available" in failed.reason
    assert (failed.traffic, failed.state) == (Traffic(weights=(("S", 100),)), st)


def test_blue_green_preview_only_with_a_preview_address() -> None:
    """The preview is served only when previewListen is set and green has an available instance."""
    inst = ready("S", 4) + ready("C", 4)
    p = plan_blue_green(view(), BlueGreen(auto_promotion_enabled=False), StepState(), inst, T0)
    assert p.traffic == Traffic(weights=(("S", 100),))
    p = plan_blue_green(
        view(), BlueGreen(preview_listen="127.0.0.1:9", auto_promotion_enabled=False), StepState(), inst, T0
    )
    assert p.traffic == Traffic(weights=(("S", 100),), preview="C")


def test_canary_growing_keeps_the_split_and_fails_at_the_deadline() -> None:
    """While canary instances start the split stays; at the deadline the revision fails with stable at 100%."""
    spec = Canary(steps=[CanaryStep(set_weight=50)])
    unready = [InstanceView(f"C{i}", "C", "running", False, None, T0) for i in range(2)]
    st = StepState()
    grow = plan_canary(view(progress_deadline_seconds=10), spec, st, ready("S", 4) + unready, T0 + 9)
    assert (grow.start, grow.outcome, grow.requeue_at, grow.state) == (None, None, T0 + 10, st)
    assert grow.traffic == Traffic(weights=(("C", 0), ("S", 100)))
    failed = plan_canary(view(progress_deadline_seconds=10), spec, st, ready("S", 4) + unready, T0 + 10)
    assert failed.outcome == "failed"
    assert "0 of 2 canary instances available" in failed.reason
    assert (failed.traffic, failed.state) == (Traffic(weights=(("S", 100),)), st)


def test_canary_scaled_down_by_set_canary_scale() -> None:
    """Waiting for a smaller setCanaryScale, the extra canary instances go (the newest first) and the split stays."""
    spec = Canary(steps=[CanaryStep(set_weight=75)])
    st = StepState(weight=10, canary_scale={"replicas": 1})
    unready = [InstanceView(f"C{i}", "C", "running", False, None, T0 + i) for i in range(2)]
    p = plan_canary(view(), spec, st, ready("S", 4) + unready, T0 + 5)
    assert [(t.instance_id, t.reason) for t in p.terminate] == [("C1", "scaled down")]
    assert (p.start, p.state) == (None, st)
    assert p.traffic == Traffic(weights=(("C", 10), ("S", 90)))


def test_canary_replicas_floor_and_percent_rounding() -> None:
    """A canary always has one instance; percentages round up exactly."""
    from gapless.strategies.scaling import ceil_percent

    assert canary_replicas(4, 0, {"weight": 0}) == 1
    assert canary_replicas(4, 0, {"weight": 60}) == 3
    assert ceil_percent(200, 100) == 200
    assert ceil_percent(3, 34) == 2


def test_canary_traffic_without_a_header_route_names_no_route_revision() -> None:
    """Only a header route step sets a route revision."""
    p = plan_canary(
        view(),
        Canary(steps=[CanaryStep(pause=Pause())]),
        StepState(weight=10),
        ready("S", 4) + ready("C", 1),
        T0,
    )
    assert p.traffic == Traffic(weights=(("C", 10), ("S", 90)))
