"""The revision rules as tables: stable, fresh rollouts, where undo goes, the progress clock, pass writes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gapless.store.records import RevisionRecord
from gapless.strategies.plan import InstanceView, Plan, Start, StepState, Terminate
from gapless.strategies.revisions import (
    after_pass,
    fresh_rollout,
    history_to_prune,
    progress_clock,
    stable_of,
    target_writes,
    undo_target,
)

NOW = 5000.0


def rev(h: str, number: int, phase: str = "superseded", **kw: object) -> RevisionRecord:
    return RevisionRecord("shop", h, number, {"command": [h]}, created_at=100.0 * number, phase=phase, **kw)  # type: ignore[arg-type]


def test_stable_is_the_highest_numbered_complete_revision() -> None:
    """Stable is the last revision that completed; none when nothing completed."""
    assert stable_of([rev("a", 1, "complete"), rev("b", 2, "progressing")]).hash == "a"  # type: ignore[union-attr]
    assert stable_of([rev("b", 3, "complete"), rev("a", 1, "complete")]).hash == "b"  # type: ignore[union-attr]
    assert stable_of([rev("a", 1, "failed"), rev("b", 2, "superseded")]) is None
    assert stable_of([]) is None


def test_target_writes_create_the_revision_and_supersede_others_in_progress() -> None:
    """A new template gets the next number and a fresh clock; any other revision in progress is replaced."""
    revisions = [rev("a", 1, "complete"), rev("b", 2, "progressing"), rev("c", 3, "failed")]
    writes = target_writes(revisions, "shop", "d", {"command": ["d"]}, NOW)
    new = next(w for w in writes if w.hash == "d")
    assert (new.number, new.phase, new.progress_at, new.created_at, new.rollout) == (
        4,
        "progressing",
        NOW,
        NOW,
        "shop",
    )
    assert new.template == {"command": ["d"]}
    assert [(w.hash, w.phase, w.message) for w in writes if w.hash != "d"] == [
        ("b", "superseded", "replaced")
    ]
    assert target_writes([rev("a", 1, "progressing")], "shop", "a", {}, NOW) == []
    assert target_writes([], "shop", "a", {}, NOW)[0].number == 1


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("complete", "complete"),
        ("superseded", "progressing"),
        ("failed", "progressing"),
        ("progressing", "progressing"),
    ],
)
def test_fresh_rollout_resets_clock_steps_and_verdict(phase: str, expected: str) -> None:
    """A fresh rollout: next number, clock now, first step, no message; complete only if it was complete."""
    old = rev("a", 1, phase, message="made no progress", progress_at=1.0, step_state={"index": 3})
    fresh = fresh_rollout(old, [old, rev("b", 2), rev("c", 3)], NOW)
    assert (fresh.number, fresh.phase, fresh.message, fresh.progress_at, fresh.step_state) == (
        4,
        expected,
        "",
        NOW,
        {},
    )


def test_fresh_rollout_of_the_highest_number_keeps_it() -> None:
    """The newest revision started again keeps its number (nothing was added after it)."""
    top = rev("c", 3, "failed")
    assert fresh_rollout(top, [rev("a", 1), top], NOW).number == 3


def test_undo_goes_to_the_revision_that_last_served() -> None:
    """Undo skips revisions that never completed and picks the latest completion, not the highest number."""
    revisions = [
        rev("a", 1, completed_at=10.0),
        rev("b", 2, completed_at=30.0),
        rev("c", 3),  # replaced before it completed
        rev("d", 4, completed_at=20.0),  # an undo target that completed earlier
        rev("e", 5, "progressing"),
    ]
    assert undo_target(revisions, "e", None).hash == "b"  # type: ignore[union-attr]
    assert undo_target(revisions, "b", None).hash == "d"  # type: ignore[union-attr]


def test_undo_prefers_the_serving_stable() -> None:
    """The stable (complete) revision wins over one that completed later in an older record."""
    revisions = [rev("a", 1, "complete"), rev("b", 2, completed_at=NOW), rev("c", 3, "progressing")]
    assert undo_target(revisions, "c", None).hash == "a"  # type: ignore[union-attr]
    tie = [rev("a", 1, completed_at=5.0), rev("b", 2, completed_at=5.0), rev("c", 3, "progressing")]
    assert undo_target(tie, "c", None).hash == "b"  # type: ignore[union-attr]


def test_undo_without_any_served_revision_goes_to_the_previous_number() -> None:
    """With no revision that ever completed, undo follows Kubernetes: the previous revision by number."""
    revisions = [rev("a", 1), rev("b", 2), rev("c", 3, "progressing"), rev("d", 4)]
    assert undo_target(revisions, "c", None).hash == "b"  # type: ignore[union-attr]
    assert undo_target([*revisions, rev("e", 5, "progressing")], "e", None).hash == "d"  # type: ignore[union-attr]
    assert undo_target([rev("a", 1, "progressing")], "a", None) is None
    assert undo_target([rev("b", 2), rev("a", 1)], "x", None).hash == "b"  # type: ignore[union-attr]


def test_undo_to_a_revision_number() -> None:
    """--to-revision N picks revision N whatever it did, or nothing when N is unknown."""
    revisions = [rev("a", 1, completed_at=1.0), rev("b", 2), rev("c", 3, "progressing")]
    assert undo_target(revisions, "c", 2).hash == "b"  # type: ignore[union-attr]
    assert undo_target(revisions, "c", 3).hash == "c"  # type: ignore[union-attr]
    assert undo_target(revisions, "c", 9) is None


def view(i: str, revision: str, *, ready: bool = True, since: float | None = 4000.0) -> InstanceView:
    return InstanceView(i, revision, "running", ready, since, 3000.0)


def test_progress_clock_moves_when_an_instance_of_the_target_becomes_available() -> None:
    """The clock is the recorded one or the latest time an instance of the target became available."""
    target = rev("t", 2, "progressing", progress_at=3500.0)
    assert progress_clock(target, [], 0, NOW) == 3500.0
    instances = [view("1", "t", since=4000.0), view("2", "t", since=4100.0), view("3", "s", since=4900.0)]
    assert progress_clock(target, instances, 0, NOW) == 4100.0
    assert progress_clock(target, instances, 100, NOW) == 4200.0
    assert progress_clock(target, instances, 1000, NOW) == 5000.0  # 4000 + 1000 = now counts
    assert progress_clock(target, instances, 1001, NOW) == 3500.0
    assert progress_clock(target, [view("4", "t", ready=False, since=4800.0)], 0, NOW) == 3500.0
    assert progress_clock(target, [view("5", "t", since=None)], 0, NOW) == 3500.0
    assert progress_clock(replace(target, progress_at=None), [], 0, NOW) == 200.0  # created_at


def test_after_pass_records_a_step_with_a_fresh_clock() -> None:
    """A new step index, switch, check result or step mark restarts the clock; a pause start does not."""
    target = rev("t", 2, "progressing", progress_at=1.0, step_state=StepState().to_json())
    revisions = [rev("s", 1, "complete"), target]
    for new in (
        StepState(index=1),
        StepState(switched_at=NOW),
        StepState(checks="running"),
        StepState(extra={"promoting_at": NOW}),
    ):
        [w] = after_pass(revisions, "t", Plan(state=new), NOW)
        assert (w.step_state, w.progress_at) == (new.to_json(), NOW)
    [w] = after_pass(revisions, "t", Plan(state=StepState(pause_started_at=NOW)), NOW)
    assert w.progress_at == 1.0
    assert after_pass(revisions, "t", Plan(state=StepState()), NOW) == []
    assert after_pass(revisions, "t", Plan(), NOW) == []


def test_after_pass_complete_supersedes_the_old_stable() -> None:
    """Completing records completed_at and supersedes every other complete revision."""
    revisions = [rev("s", 1, "complete"), rev("t", 2, "progressing", message="x")]
    writes = {w.hash: w for w in after_pass(revisions, "t", Plan(outcome="complete"), NOW)}
    assert (writes["t"].phase, writes["t"].completed_at, writes["t"].message) == ("complete", NOW, "")
    assert writes["s"].phase == "superseded"


def test_after_pass_failed_records_the_reason() -> None:
    """A failed outcome keeps the controller's fuller reason, else the plan's."""
    revisions = [rev("t", 2, "progressing")]
    [w] = after_pass(revisions, "t", Plan(outcome="failed", reason="deadline"), NOW)
    assert (w.phase, w.message) == ("failed", "deadline")
    [w] = after_pass(
        revisions, "t", Plan(outcome="failed", reason="deadline"), NOW, failure="deadline; crash"
    )
    assert w.message == "deadline; crash"


def test_after_pass_moves_the_clock_on_instance_changes_and_while_paused() -> None:
    """Starting or stopping instances, or being paused, is not a lack of progress."""
    revisions = [rev("t", 2, "progressing", progress_at=1.0)]
    for plan in (Plan(start=Start("t", 1)), Plan(terminate=(Terminate("i", "x"),))):
        [w] = after_pass(revisions, "t", plan, NOW)
        assert w.progress_at == NOW
    [w] = after_pass(revisions, "t", Plan(), NOW, paused=True)
    assert w.progress_at == NOW
    assert after_pass([rev("t", 2, "complete", progress_at=1.0)], "t", Plan(start=Start("t", 1)), NOW) == []
    assert after_pass([rev("t", 2, "failed", progress_at=1.0)], "t", Plan(), NOW, paused=True) == []


def test_step_state_round_trips_through_json() -> None:
    """A step state survives the store: header routes as a list in JSON, a tuple back; unknown keys ignored."""
    route = ({"headerName": "X", "headerValue": {"exact": "1"}},)
    st = StepState(index=2, weight=30, header_route=route, extra={"promoting_at": NOW})
    data = st.to_json()
    assert data["header_route"] == list(route)
    assert StepState.from_json(data) == st
    assert StepState.from_json(data | {"future_field": 1}) == st
    assert StepState.from_json({"index": 1}) == StepState(index=1)
    assert StepState.from_json({"index": 1, "header_route": None}).header_route == ()
    assert StepState.from_json(None) == StepState()
    assert StepState.from_json({}) == StepState()


CAUSES = st.text(max_size=20)
HISTORIES = st.lists(
    st.tuples(st.sampled_from(["complete", "superseded", "failed", "progressing"]), CAUSES),
    max_size=5,
).map(lambda rows: [rev(f"h{i}", i + 1, phase, change_cause=cause) for i, (phase, cause) in enumerate(rows)])


@given(HISTORIES, st.sampled_from(["h0", "h1", "new"]), CAUSES)
def test_change_cause_goes_to_the_revision_a_change_makes(
    revisions: list[RevisionRecord], h: str, cause: str
) -> None:
    """Only a new revision takes the change's cause; every other write keeps the cause it had."""
    before = {r.hash: r.change_cause for r in revisions}
    for w in target_writes(revisions, "shop", h, {"command": [h]}, NOW, cause):
        assert w.change_cause == before.get(w.hash, cause)


@given(HISTORIES, st.none() | CAUSES)
def test_fresh_rollout_keeps_or_takes_the_cause(revisions: list[RevisionRecord], cause: str | None) -> None:
    """Rolled out again, a revision takes the new cause when one is given, else keeps its own."""
    for r in revisions:
        fresh = fresh_rollout(r, revisions, NOW, cause)
        assert fresh.change_cause == (r.change_cause if cause is None else cause)
        assert (fresh.hash, fresh.template) == (r.hash, r.template)


PHASES = st.sampled_from(["complete", "superseded", "failed", "progressing", "pending"])


@given(
    st.lists(PHASES, max_size=14).map(lambda ps: [rev(f"h{i}", i + 1, p) for i, p in enumerate(ps)]),
    st.sets(st.sampled_from([f"h{i}" for i in range(14)])),
    st.integers(0, 4),
    st.randoms(use_true_random=False),
)
def test_history_keeps_the_newest_old_revisions_up_to_the_limit(
    revisions: list[RevisionRecord], in_use: set[str], limit: int, order: Any
) -> None:
    """At most ``limit`` old revisions stay, the newest ones; a running, target or stable revision never goes."""
    shuffled = revisions[:]
    order.shuffle(shuffled)  # the store's order is by number; the rule must not depend on it
    gone = history_to_prune(shuffled, in_use, limit)
    old = [r for r in revisions if r.phase in ("superseded", "failed") and r.hash not in in_use]
    assert len(gone) == max(0, len(old) - limit)
    assert gone == [r.hash for r in old[: len(gone)]], "the oldest go first"
    for r in revisions:
        if r.hash in gone:
            assert r.phase in ("superseded", "failed")
            assert r.hash not in in_use


def test_history_of_a_rollout_aborted_again_and_again_stays_bounded() -> None:
    """Every new revision supersedes the aborted one before it; pruning at each write keeps the limit."""
    revisions = [rev("h0", 1, "complete")]
    for n in range(2, 40):
        revisions = [r if r.phase == "complete" else replace(r, phase="superseded") for r in revisions]
        revisions.append(rev(f"h{n}", n, "progressing"))
        gone = set(history_to_prune(revisions, {"h0", f"h{n}"}, 3))
        revisions = [r for r in revisions if r.hash not in gone]
        assert len(revisions) <= 5
