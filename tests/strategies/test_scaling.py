"""The helpers the canary and blue-green planners share, as tables: live instances, scale steps, deadlines."""

from __future__ import annotations

from gapless.strategies.plan import InstanceView, RolloutView, Start, Traffic
from gapless.strategies.scaling import available, deadline_failure, live_of, scale_step, single_revision
from tests.strategies.views import make_view

T0 = 1000.0


def inst(
    i: str, *, ready: bool = True, phase: str = "running", since: float = T0 - 50, created: float = T0 - 60
) -> InstanceView:
    return InstanceView(i, "r", phase, ready, since if ready else None, created)  # type: ignore[arg-type]


def view(**kw: object) -> RolloutView:
    return make_view(**({"replicas": 4, "max_surge": 1, "progress_deadline_seconds": 60} | kw))


def test_live_of_leaves_out_terminating_and_other_revisions() -> None:
    """Live instances of a revision: every phase but terminating."""
    instances = [
        inst("a"),
        inst("b", phase="terminating"),
        inst("c", phase="backoff", ready=False),
        InstanceView("d", "x", "running", True, T0, T0),
    ]
    assert [i.id for i in live_of(instances, "r")] == ["a", "c"]
    assert available(instances, T0, 0) == 2
    assert available(instances, T0, 10) == 1  # d became ready at T0: not yet available


def test_scale_step_up_within_pending_budget() -> None:
    """Scaling up starts what is missing, but at most max_pending not-yet-available instances at a time."""
    assert scale_step("r", [inst("a")], 4, now=T0, min_ready=0) == (Start("r", 3), ())
    assert scale_step("r", [inst("a")], 4, now=T0, min_ready=0, max_pending=2) == (Start("r", 2), ())
    pending = [inst("a"), inst("b", ready=False)]
    assert scale_step("r", pending, 4, now=T0, min_ready=0, max_pending=2) == (Start("r", 1), ())
    assert scale_step("r", pending, 4, now=T0, min_ready=0, max_pending=1) == (None, ())
    assert scale_step("r", pending, 4, now=T0, min_ready=0, max_pending=0) == (
        None,
        (),
    )  # at least one at a time
    assert scale_step("r", [inst("a")], 4, now=T0, min_ready=0, max_pending=0) == (Start("r", 1), ())
    warming = [inst("a", since=T0 - 5)]  # ready, but not for min_ready yet: still pending
    assert scale_step("r", warming, 3, now=T0, min_ready=10, max_pending=1) == (None, ())


def test_scale_step_down_worst_first_and_steady() -> None:
    """Scaling down removes the worst instances first; at the desired count nothing happens."""
    live = [inst("a", created=T0 - 90), inst("b", ready=False), inst("c", created=T0 - 10)]
    start, stop = scale_step("r", live, 1, now=T0, min_ready=0)
    assert start is None
    assert [(t.instance_id, t.reason) for t in stop] == [("b", "scaled down"), ("c", "scaled down")]
    assert scale_step("r", live, 3, now=T0, min_ready=0) == (None, ())


def test_deadline_failure_only_while_progressing() -> None:
    """The deadline fails a progressing target at progress_at + deadline exactly, never a done one."""
    assert deadline_failure(view(), T0 + 59.9, "x") is None
    failed = deadline_failure(view(), T0 + 60, "0 of 4 ready")
    assert failed is not None
    assert (failed.outcome, failed.reason) == ("failed", "revision C made no progress for 60s (0 of 4 ready)")
    assert deadline_failure(view(target_complete=True), T0 + 999, "x") is None
    assert deadline_failure(view(target_failed=True), T0 + 999, "x") is None


def test_single_revision_cases() -> None:
    """One revision in play (first deployment, undo to stable, failed target) is a rolling update with one weight."""
    assert single_revision(view(), [], T0) is None
    first = single_revision(view(stable=None), [], T0)
    assert first is not None
    assert first.traffic == Traffic(weights=(("C", 100),))
    assert first.start == Start("C", 4)
    back = single_revision(view(target="S", target_complete=True), [], T0)
    assert back is not None
    assert back.traffic == Traffic(weights=(("S", 100),))
    failed = single_revision(view(target_failed=True), [], T0)
    assert failed is not None
    assert failed.traffic == Traffic(weights=(("S", 100),))
    alone = single_revision(view(target_failed=True, stable=None), [], T0)
    assert alone is not None
    assert alone.traffic == Traffic(weights=(("C", 100),))
