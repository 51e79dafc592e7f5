"""The rolling planner: bounds hold at every step, progress deadlines fail, one kind of change per pass."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from gapless.strategies.plan import InstanceView, Plan, RolloutView, Start, Terminate
from gapless.strategies.rolling import plan_rolling

T0 = 1000.0


def view(**kw: object) -> RolloutView:
    base = RolloutView(
        replicas=10,
        max_surge=2,
        max_unavailable=1,
        min_ready_seconds=0,
        progress_deadline_seconds=600,
        paused=False,
        target="new",
        target_failed=False,
        target_complete=False,
        stable="old",
        progress_at=T0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def inst(
    i: int, rev: str, *, ready: bool = True, phase: str = "running", since: float = T0 - 100
) -> InstanceView:
    return InstanceView(f"{rev}-{i}", rev, phase, ready, since if ready else None, T0 - 200 + i)  # type: ignore[arg-type]


class Sim:
    """A toy world for the planner: started instances become ready after ``ready_after`` ticks."""

    def __init__(self, v: RolloutView, instances: list[InstanceView], ready_after: int | None = 1) -> None:
        self.v = v
        self.instances = instances
        self.ready_after = ready_after
        self.born: dict[str, int] = {}
        self.ids = itertools.count()
        self.now = T0
        self.ready_born_from = -1

    def step(self, tick: int) -> Plan:
        self.now += 1
        for i, x in enumerate(self.instances):
            b = self.born.get(x.id)
            if (
                b is not None
                and self.ready_after is not None
                and tick - b >= self.ready_after
                and not x.ready
            ):
                self.instances[i] = replace(x, ready=True, ready_since=self.now)
        # terminating instances finish after one tick
        self.instances = [
            x for x in self.instances if x.phase != "terminating" or self.born.get(x.id, -9) == tick
        ]
        plan = plan_rolling(self.v, self.instances, self.now)
        if plan.start:
            for _ in range(plan.start.count):
                n = next(self.ids)
                x = InstanceView(f"s{n}", plan.start.revision, "running", False, None, self.now)
                self.instances.append(x)
                self.born[x.id] = tick
        ids = {t.instance_id for t in plan.terminate}
        self.instances = [replace(x, phase="terminating") if x.id in ids else x for x in self.instances]
        for x in self.instances:
            if x.id in ids:
                self.born[x.id] = tick + 1
        return plan


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "max_total", "min_available"),
    [
        (10, 2, 1, 12, 9),
        (10, "25%", "25%", 13, 8),
        (4, "25%", "25%", 5, 3),
        (4, 0, 1, 4, 3),
        (4, 1, 0, 5, 4),
        (3, "0%", "0%", 3, 2),
        (1, "25%", "25%", 2, 0),
        (5, "100%", 0, 10, 5),
    ],
)
def test_rolling_update_respects_bounds(
    replicas: int, surge: int | str, unavailable: int | str, max_total: int, min_available: int
) -> None:
    """A full rolling update never exceeds replicas+surge instances nor drops below replicas-unavailable available."""
    v = view(replicas=replicas, max_surge=surge, max_unavailable=unavailable)
    sim = Sim(v, [inst(i, "old") for i in range(replicas)])
    for tick in range(200):
        plan = sim.step(tick)
        assert len(sim.instances) <= max_total, (tick, sim.instances)
        avail = sum(1 for x in sim.instances if x.phase == "running" and x.available(sim.now, 0))
        assert avail >= min_available, (tick, avail)
        if plan.outcome == "complete":
            break
    else:
        pytest.fail("rolling update never completed")
    assert {x.revision for x in sim.instances if x.phase != "terminating"} == {"new"}


def test_one_kind_of_change_per_pass() -> None:
    """A pass either starts instances or terminates them, never both."""
    v = view(max_surge=3, max_unavailable=3)
    sim = Sim(v, [inst(i, "old") for i in range(10)])
    for tick in range(100):
        plan = sim.step(tick)
        assert not (plan.start and plan.terminate)
        if plan.outcome:
            break


def test_unready_new_revision_fails_after_deadline_and_restores_stable() -> None:
    """A revision that never becomes ready fails at its deadline; then old is restored and new removed."""
    v = view(replicas=4, max_surge=1, max_unavailable=1, progress_deadline_seconds=30)
    sim = Sim(v, [inst(i, "old") for i in range(4)], ready_after=None)
    outcome = None
    for tick in range(100):
        plan = sim.step(tick)
        avail = sum(1 for x in sim.instances if x.revision == "old" and x.available(sim.now, 0))
        assert avail >= 3
        if plan.outcome == "failed":
            outcome = plan
            break
    assert outcome is not None
    assert "made no progress" in outcome.reason
    sim.v = replace(v, target_failed=True)
    sim.ready_after, sim.ready_born_from = 1, 100
    for tick in range(100, 200):
        sim.step(tick)
    live = [x for x in sim.instances if x.phase != "terminating"]
    assert sorted(x.revision for x in live) == ["old"] * 4
    assert all(x.ready for x in live)


def test_unhealthy_old_instances_are_removed_first() -> None:
    """Old instances that are not ready are terminated before healthy ones."""
    v = view(replicas=4, max_surge=0, max_unavailable=1)
    instances = [inst(0, "old", ready=False), inst(1, "old"), inst(2, "old"), inst(3, "old")]
    plan = plan_rolling(v, instances, T0)
    assert [t.instance_id for t in plan.terminate] == ["old-0"]


def test_scale_up_and_down_without_template_change() -> None:
    """Scaling a complete revision starts or stops instances without touching the revision."""
    v = view(replicas=6, target="old", target_complete=True, stable="old")
    plan = plan_rolling(v, [inst(i, "old") for i in range(4)], T0)
    assert plan.start is not None
    assert (plan.start.revision, plan.start.count) == ("old", 2)
    v = view(replicas=2, target="old", target_complete=True, stable="old")
    plan = plan_rolling(v, [inst(i, "old") for i in range(4)], T0)
    assert len(plan.terminate) == 2


def test_paused_rollout_changes_nothing() -> None:
    """A paused rollout neither starts nor stops instances."""
    plan = plan_rolling(view(paused=True), [inst(i, "old") for i in range(10)], T0)
    assert plan == Plan()


def test_min_ready_seconds_delays_availability() -> None:
    """An instance ready for less than minReadySeconds is not available and old is not scaled down."""
    v = view(replicas=1, max_surge=1, max_unavailable=0, min_ready_seconds=10)
    instances = [inst(0, "old"), InstanceView("n", "new", "running", True, T0 - 5, T0 - 6)]
    plan = plan_rolling(v, instances, T0)
    assert plan.terminate == ()
    assert plan.requeue_at == T0 + 5
    plan = plan_rolling(v, instances, T0 + 5)
    assert [t.instance_id for t in plan.terminate] == ["old-0"]


def test_complete_marks_outcome_once() -> None:
    """When all target instances are available and no old remain, the target is marked complete once."""
    instances = [inst(i, "new") for i in range(10)]
    assert plan_rolling(view(), instances, T0).outcome == "complete"
    assert plan_rolling(view(target_complete=True), instances, T0).outcome is None


def test_deletion_order_worst_first() -> None:
    """Not running, then not ready, then not yet available, then the newest: the order instances go in."""
    from gapless.strategies.rolling import deletion_order

    now, min_ready = T0, 10.0
    instances = [
        InstanceView("old-available", "r", "running", True, T0 - 100, T0 - 300),
        InstanceView("new-available", "r", "running", True, T0 - 100, T0 - 100),
        InstanceView("warming", "r", "running", True, T0 - 5, T0 - 200),
        InstanceView("unready", "r", "running", False, None, T0 - 400),
        InstanceView("backoff", "r", "backoff", False, None, T0 - 500),
        InstanceView("starting", "r", "starting", False, None, T0 - 50),
    ]
    order = [i.id for i in deletion_order(instances, now, min_ready)]
    assert order == ["starting", "backoff", "unready", "warming", "new-available", "old-available"]


def test_scale_down_removes_unhealthy_old_first_within_the_budget() -> None:
    """Old instances that are not available go first, but never more than availability allows."""
    v = view(replicas=4, max_surge=0, max_unavailable=1)
    instances = [
        inst(0, "old"),
        inst(1, "old", ready=False),
        inst(2, "old", ready=False),
        inst(3, "old", ready=False),
        inst(0, "new"),
        inst(1, "new", ready=False),
    ]
    plan = plan_rolling(v, instances, T0)
    # 6 live, 3 must stay available, 1 new instance not yet available: 2 may go, the worst old ones.
    assert plan.start is None
    assert [(t.instance_id, t.reason) for t in plan.terminate] == [
        ("old-3", "old revision, unhealthy"),
        ("old-2", "old revision, unhealthy"),
    ]


def test_scale_down_replaces_healthy_old_down_to_the_minimum() -> None:
    """With every instance available, old ones go until replicas - maxUnavailable remain available."""
    v = view(replicas=4, max_surge=1, max_unavailable=1)
    instances = [inst(i, "old") for i in range(3)] + [inst(0, "new"), inst(1, "new", ready=False)]
    plan = plan_rolling(v, instances, T0)
    assert [(t.instance_id, t.reason) for t in plan.terminate] == [("old-2", "old revision, replaced")]


def test_rolling_outcomes_and_wake_ups() -> None:
    """Complete once all new are available and old gone; fail at the deadline; wake when an instance becomes available."""
    v = view(replicas=2, min_ready_seconds=10)
    done = [inst(0, "new"), inst(1, "new")]
    assert plan_rolling(v, done, T0) == Plan(outcome="complete", reason="NewReplicaSetAvailable")
    assert plan_rolling(replace(v, target_complete=True), done, T0) == Plan()
    warming = [inst(0, "new"), inst(1, "new", since=T0 - 4)]
    assert plan_rolling(v, warming, T0) == Plan(requeue_at=T0 + 6)
    late = plan_rolling(
        replace(v, progress_deadline_seconds=30), [inst(0, "new"), inst(1, "new", ready=False)], T0 + 30
    )
    assert late.outcome == "failed"
    assert late.reason == "revision new made no progress for 30s (1 of 2 instances available)"
    early = plan_rolling(
        replace(v, progress_deadline_seconds=30), [inst(0, "new"), inst(1, "new", ready=False)], T0 + 29
    )
    assert (early.outcome, early.requeue_at) == (None, T0 + 30)


def test_rolling_pause_holds_but_a_failed_target_is_restored() -> None:
    """Paused: nothing happens; a failed target is still replaced by stable (or removed when there is none)."""
    instances = [inst(0, "old"), inst(0, "new", ready=False)]
    assert plan_rolling(view(replicas=2, paused=True), instances, T0) == Plan()
    restore = plan_rolling(view(replicas=2, paused=True, target_failed=True), instances, T0)
    assert restore.start == Start("old", 1)
    alone = plan_rolling(
        view(replicas=2, target_failed=True, stable=None), [inst(0, "new"), inst(1, "new")], T0
    )
    assert [t.instance_id for t in alone.terminate] == ["new-1", "new-0"]
    gone = plan_rolling(view(replicas=2, target_failed=True, stable=None), [], T0)
    assert gone == Plan()


def test_rolling_lowered_replicas_remove_the_extra() -> None:
    """Fewer replicas: the extra target instances go, worst first."""
    instances = [inst(0, "new"), inst(1, "new", ready=False), inst(2, "new")]
    plan = plan_rolling(view(replicas=2, target_complete=True), instances, T0)
    assert [(t.instance_id, t.reason) for t in plan.terminate] == [("new-1", "scaled down")]


def test_rolling_changes_come_back_by_the_deadline() -> None:
    """Starts and scale-downs ask to be woken by the progress deadline; a full target starts nothing more."""
    v = view(replicas=2, max_surge=1, max_unavailable=0, progress_deadline_seconds=30)
    start = plan_rolling(v, [inst(0, "old"), inst(1, "old")], T0)
    assert start == Plan(start=Start("new", 1), requeue_at=T0 + 30)
    extra = plan_rolling(v, [inst(0, "new"), inst(1, "new"), inst(2, "new", ready=False)], T0)
    assert extra == Plan(terminate=(Terminate("new-2", "scaled down"),), requeue_at=T0 + 30)
    full = plan_rolling(v, [inst(0, "old"), inst(0, "new"), inst(1, "new", ready=False)], T0)
    assert full.start is None
    assert full.requeue_at == T0 + 30
    paused = plan_rolling(replace(v, paused=True, min_ready_seconds=5), [inst(0, "new", since=T0 - 1)], T0)
    assert paused == Plan(requeue_at=T0 + 4)
