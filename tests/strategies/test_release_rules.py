"""The release planner by its rules, over random releases and random event sequences (Hypothesis).

Rules (docs/releases.md):
1. Steps start one at a time, in order, and only when every earlier step has succeeded.
2. Nothing starts after a failure with ``onFailure: rollback`` or an abort; a paused release moves nothing.
3. A rollback undoes started steps newest first, each at most once, never one that did not start.
4. Every undoable started step is undone by the end of a rollback; the rest are exactly the steps
   ``undo_blockers`` names, and only a started ``complete``, or an undo given up after its attempts
   (a migration's rollback that kept failing), makes a step not undoable. A given-up undo, tried
   again, is planned again.
5. The point of no rollback is the first ``complete`` that started, and never moves back.
6. An ``approve`` step succeeds only through promote.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gapless.strategies.release import (
    EFFECTS,
    StepFacts,
    order_problems,
    plan_release,
    point_of_no_rollback,
    undo_blockers,
)


@st.composite
def releases(draw: st.DrawFn) -> list[StepFacts]:
    """A release that passes ``order_problems``: migrate m1, rollouts to it, flags, gates, maybe complete."""
    steps: list[StepFacts] = []
    policy = st.sampled_from(["rollback", "rollback", "pause"])
    if draw(st.booleans()):
        steps.append(StepFacts("migrate", draw(policy), migration="m1", database="db"))
        requires: str | None = "m1"
    else:
        requires = None
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["rollout", "flag", "verify", "wait", "approve"]))
        steps.append(
            StepFacts(
                kind,
                draw(policy),
                rollout="shop" if kind == "rollout" else None,
                requires=requires if kind == "rollout" else None,
            )
        )
    if requires is not None and draw(st.booleans()):
        steps.append(StepFacts("rollout", draw(policy), rollout="shop", requires="m1"))
        steps.append(StepFacts("complete", draw(policy), migration="m1", database="db"))
        for _ in range(draw(st.integers(0, 2))):
            kind = draw(st.sampled_from(["rollout", "flag", "wait"]))
            steps.append(
                StepFacts(
                    kind,
                    draw(policy),
                    rollout="shop" if kind == "rollout" else None,
                    requires="m1" if kind == "rollout" else None,
                )
            )
    if not steps:
        steps.append(StepFacts("wait"))
    assert order_problems(steps) == [], order_problems(steps)
    return steps


class ReleaseMachine(RuleBasedStateMachine):
    """The controller's side, simulated: it does what each plan says; the world makes steps pass or fail."""

    @initialize(steps=releases())
    def setup(self, steps: list[StepFacts]) -> None:
        self.steps = steps
        self.aborted = False
        self.started: list[int] = []
        self.undone: list[int] = []
        self.ponr: int | None = None
        self.promoted_approvals: set[int] = set()

    def plan(self):  # type: ignore[no-untyped-def]
        return plan_release(self.steps, aborted=self.aborted)

    def set(self, i: int, phase: str) -> None:
        self.steps[i] = replace(self.steps[i], phase=phase)  # type: ignore[arg-type]

    @rule(give_up=st.booleans())
    def controller_pass(self, give_up: bool) -> None:
        """One reconcile pass: start or undo what the plan says (an undo completes at once here, or, for
        a migration, may fail for good: the controller then records why)."""
        p = self.plan()
        note(f"plan {p}")
        if p.start is not None:
            i = p.start
            # Rule 1: in order, one at a time, every earlier step succeeded.
            assert all(s.phase == "succeeded" for s in self.steps[:i])
            assert not any(s.phase == "running" for s in self.steps)
            assert not self.aborted
            assert not any(s.phase == "failed" for s in self.steps)
            self.set(i, "running")
            self.started.append(i)
        if p.undo is not None:
            j = p.undo
            # Rule 3: newest first, once, only started steps.
            assert self.steps[j].phase in ("running", "succeeded", "failed", "undoing")
            assert j not in self.undone
            assert all(j < k for k in self.undone)
            assert undo_blockers(self.steps, j) is None or self.steps[j].kind not in EFFECTS
            assert self.steps[j].undo_error is None  # a given-up undo is not tried again by itself
            if give_up and self.steps[j].kind == "migrate":
                self.steps[j] = replace(self.steps[j], phase="undoing", undo_error="the database refused")
                return
            self.set(j, "undone")
            self.undone.append(j)

    @precondition(lambda self: any(s.undo_error for s in self.steps))
    @rule()
    def abort_again(self) -> None:
        """`gapless release abort` of a release that failed to undo a step: the step is tried again."""
        if self.plan().phase != "Failed":
            return
        given_up = [i for i, s in enumerate(self.steps) if s.undo_error]
        for i in given_up:
            self.steps[i] = replace(self.steps[i], undo_error=None)
        assert self.plan().undo == given_up[-1]

    @precondition(lambda self: any(s.phase == "running" and s.kind != "approve" for s in self.steps))
    @rule(ok=st.booleans())
    def step_finishes(self, ok: bool) -> None:
        """The running step's subsystem reports success or failure."""
        i = next(i for i, s in enumerate(self.steps) if s.phase == "running")
        if self.steps[i].kind == "approve":
            return
        self.set(i, "succeeded" if ok else "failed")

    @precondition(
        lambda self: (
            any(s.phase == "running" for s in self.steps) or any(s.phase == "failed" for s in self.steps)
        )
    )
    @rule()
    def promote(self) -> None:
        """`gapless release promote`: passes a running approve gate, or retries a paused failed step."""
        if self.aborted or self.plan().phase == "RollingBack":
            return
        for i, s in enumerate(self.steps):
            if s.phase == "running" and s.kind == "approve":
                self.set(i, "succeeded")
                self.promoted_approvals.add(i)
                return
            if s.phase == "failed" and s.on_failure == "pause":
                self.set(i, "pending")
                return

    @rule()
    def abort(self) -> None:
        self.aborted = True

    @invariant()
    def paused_moves_nothing(self) -> None:
        """Rule 2: a paused release (a failed pause step, no abort) neither starts nor undoes."""
        p = self.plan()
        if p.phase == "Paused":
            assert p.start is None
            assert p.undo is None
        if self.aborted or any(s.phase == "failed" and s.on_failure == "rollback" for s in self.steps):
            assert p.start is None

    @invariant()
    def point_of_no_rollback_never_moves_back(self) -> None:
        """Rule 5."""
        ponr = point_of_no_rollback(self.steps)
        if self.ponr is not None:
            assert ponr == self.ponr
        self.ponr = ponr
        if ponr is not None:
            assert self.steps[ponr].kind == "complete"

    @invariant()
    def approvals_only_by_promote(self) -> None:
        """Rule 6."""
        for i, s in enumerate(self.steps):
            if s.kind == "approve" and s.phase == "succeeded":
                assert i in self.promoted_approvals

    @invariant()
    def finished_rollback_undid_everything_it_could(self) -> None:
        """Rule 4: once rolled back, the steps left are exactly those the blockers name, all after a complete."""
        p = self.plan()
        if p.phase not in ("RolledBack", "Failed"):
            return
        left = {
            i for i, s in enumerate(self.steps) if s.phase in ("running", "succeeded", "failed", "undoing")
        }
        assert left == {i for i, _ in p.not_undoable}
        if left:
            assert p.point_of_no_rollback is not None or any(self.steps[i].undo_error for i in left)
        assert p.phase == ("Failed" if left else "RolledBack")


TestReleaseRules = ReleaseMachine.TestCase


def facts(*kinds: str, **kw: str) -> list[StepFacts]:
    return [StepFacts(k, **kw) for k in kinds]  # type: ignore[arg-type]


def test_the_rename_release_is_accepted() -> None:
    """expand, canary to v2, flag stages, wait, drain v1 (v2 everywhere), contract: a valid order."""
    steps = [
        StepFacts("migrate", migration="m1", database="db"),
        StepFacts("rollout", rollout="shop", requires="m1"),
        StepFacts("flag"),
        StepFacts("wait"),
        StepFacts("approve"),
        StepFacts("complete", migration="m1", database="db"),
    ]
    assert order_problems(steps) == []


def test_mis_ordered_releases_are_refused_naming_the_step() -> None:
    """Each impossible order names the step that cannot work and why."""
    no_migrate = [StepFacts("rollout", rollout="shop", requires="m1")]
    assert order_problems(no_migrate) == [
        (0, "the revision requires schema m1, which no earlier migrate step provides")
    ]
    early_complete = [
        StepFacts("migrate", migration="m1", database="db"),
        StepFacts("rollout", rollout="shop", requires="m0x"),
        StepFacts("migrate", migration="m0x", database="other"),
        StepFacts("complete", migration="m2", database="db"),
    ]
    problems = dict(order_problems(early_complete))
    assert "no earlier migrate step provides" in problems[1]
    assert "which no earlier migrate step starts" in problems[3]
    stale = [
        StepFacts("migrate", migration="m0", database="db"),
        StepFacts("rollout", rollout="shop", requires="m0"),
        StepFacts("complete", migration="m0", database="db"),
        StepFacts("migrate", migration="m1", database="db"),
        StepFacts("complete", migration="m1", database="db"),
    ]
    assert order_problems(stale) == [
        (4, "rollout shop (step 1) still runs code for schema m0, which completing m1 removes: roll it to a "
            "revision requiring m1 first"),
    ]  # fmt: skip
    twice = [
        StepFacts("migrate", migration="m1", database="db"),
        StepFacts("migrate", migration="m2", database="db"),
    ]
    assert "in progress: complete it before starting another" in order_problems(twice)[0][1]
    gone = [
        StepFacts("migrate", migration="m0", database="db"),
        StepFacts("complete", migration="m0", database="db"),
        StepFacts("migrate", migration="m1", database="db"),
        StepFacts("complete", migration="m1", database="db"),
        StepFacts("rollout", rollout="shop", requires="m0"),
    ]
    assert order_problems(gone) == [
        (1, "completes m0 before rollout shop (step 4) moves to code for it: the old schema would go while "
            "the old code still serves"),
        (4, "the revision requires schema m0, which completing m1 (step 3) removed"),
    ]  # fmt: skip


def test_after_the_point_of_no_rollback_abort_undoes_only_what_it_can() -> None:
    """Flags after the complete are undone; the migration and the rollout before it are named as not undoable."""
    steps = [
        StepFacts("migrate", migration="m1", database="db", phase="succeeded"),
        StepFacts("rollout", rollout="shop", requires="m1", phase="succeeded"),
        StepFacts("complete", migration="m1", database="db", phase="succeeded"),
        StepFacts("flag", phase="failed"),
    ]
    p = plan_release(steps)
    assert (p.phase, p.undo, p.point_of_no_rollback) == ("RollingBack", 3, 2)
    steps[3] = replace(steps[3], phase="undone")
    p = plan_release(steps)
    assert p.phase == "Failed"
    assert [i for i, _ in p.not_undoable] == [2, 1, 0]
    reasons = dict(p.not_undoable)
    assert "old schema is gone" in reasons[2]
    assert "the revision before it needs the schema from before the release" in reasons[1]
    assert "completed at step 2" in reasons[0]


@given(releases(), st.data())
def test_rollback_before_the_point_of_no_rollback_undoes_every_started_step(
    steps: list[StepFacts], data: st.DataObject
) -> None:
    """Whatever started before a failure (no complete among it) is undone, newest first, to RolledBack."""
    ponr = next((i for i, s in enumerate(steps) if s.kind == "complete"), len(steps))
    upto = data.draw(st.integers(0, min(ponr, len(steps)) - 1)) if min(ponr, len(steps)) > 0 else 0
    steps = (
        [replace(s, phase="succeeded") for s in steps[:upto]]
        + [replace(steps[upto], phase="failed", on_failure="rollback")]
        + steps[upto + 1 :]
    )
    order = []
    for _ in range(len(steps) + 1):
        p = plan_release(steps)
        if p.undo is None:
            break
        order.append(p.undo)
        steps[p.undo] = replace(steps[p.undo], phase="undone")
    assert order == list(range(upto, -1, -1))
    assert plan_release(steps).phase == "RolledBack"
