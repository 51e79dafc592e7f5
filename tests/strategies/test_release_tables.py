"""The release planner's decisions, case by case, with everything they return (phase, indexes, message).

The rule tests (``test_release_rules.py``, ``test_release_executor.py``,
``test_release_migration_rules.py``) check the rules over random releases; this file pins each decision
table exactly, so a decision that changes its verdict, its wake-up time or the words that
``gapless release status`` shows is noticed even with few Hypothesis examples (the mutation profile).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from gapless.strategies.release import (
    RETRY_AFTER,
    UNDO_ATTEMPTS,
    MigrationSeen,
    Progress,
    ReleasePlan,
    StepDecision,
    StepFacts,
    decide_analysis_check,
    decide_check,
    decide_migration,
    decide_migration_undo,
    decide_running,
    decide_undoing,
    judge_with_analysis,
    order_problems,
    plan_release,
    undo_blockers,
)

RECORD = {"before": "off", "target": "on"}


def step(kind: str, phase: str = "pending", **kw: object) -> StepFacts:
    return StepFacts(kind, phase=phase, **kw)  # type: ignore[arg-type]


# -- decide_running ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "progress", "observed", "expected"),
    [
        ("flag", Progress("running", RECORD), None, StepDecision("act", "setting the flag")),
        ("rollout", Progress("running", RECORD), None, StepDecision("act", "applying")),
        ("flag", Progress("running", RECORD, acted=True), None, StepDecision("succeeded", "flag set")),
        (
            "rollout",
            Progress("running", RECORD, acted=True),
            "complete",
            StepDecision("succeeded", "the revision is fully rolled out"),
        ),
        *[
            (
                "rollout",
                Progress("running", RECORD, acted=True),
                seen,
                StepDecision("failed", f"the rollout's revision is {seen}"),
            )
            for seen in ("failed", "aborted", "superseded", "missing")
        ],
        (
            "rollout",
            Progress("running", RECORD, acted=True),
            "progressing",
            StepDecision("wait", "rolling out"),
        ),
        ("rollout", Progress("running", RECORD, acted=True), None, StepDecision("wait", "rolling out")),
        ("approve", Progress("running"), None, StepDecision("wait", "waiting for gapless release promote")),
    ],
)
def test_decide_running(kind: str, progress: Progress, observed: str | None, expected: StepDecision) -> None:
    assert decide_running(kind, progress, observed, 100.0) == expected


def test_a_monitoring_window_from_its_start_and_by_default_none() -> None:
    started = Progress("running", started_at=10.0)
    assert decide_running("wait", started, None, 39.9, 30.0) == StepDecision(
        "wait", "monitoring window until +30 s", requeue_at=40.0
    )
    assert decide_running("wait", started, None, 40.0, 30.0) == StepDecision(
        "succeeded", "monitoring window of 30 s passed"
    )
    # Not yet marked started: the window starts now.
    assert decide_running("wait", Progress("running"), None, 50.0, 2.5) == StepDecision(
        "wait", "monitoring window until +2.5 s", requeue_at=52.5
    )
    # Without a duration a window has passed at once.
    assert decide_running("wait", Progress("running", started_at=5.0), None, 5.0) == StepDecision(
        "succeeded", "monitoring window of 0 s passed"
    )


def test_decide_running_refuses_what_it_cannot_run() -> None:
    with pytest.raises(
        ValueError, match=r"^a step that changes something runs only once its record is written$"
    ):
        decide_running("rollout", Progress("running"), None, 0.0)
    with pytest.raises(ValueError, match="step kind 'verify' does not run in the control plane yet"):
        decide_running("verify", Progress("running"), None, 0.0)


# -- decide_undoing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "progress", "observed", "expected"),
    [
        ("wait", Progress("undoing", RECORD), None, StepDecision("undone", "nothing to undo")),
        ("flag", Progress("undoing"), None, StepDecision("undone", "nothing to undo")),
        (
            "flag",
            Progress("undoing", RECORD),
            None,
            StepDecision("act", "putting back the state from before the step"),
        ),
        (
            "rollout",
            Progress("undoing", RECORD),
            "complete",
            StepDecision("act", "putting back the state from before the step"),
        ),
        ("flag", Progress("undoing", RECORD, undo_acted=True), None, StepDecision("undone", "put back")),
        (
            "rollout",
            Progress("undoing", RECORD, undo_acted=True),
            "complete",
            StepDecision("undone", "put back"),
        ),
        (
            "rollout",
            Progress("undoing", RECORD, undo_acted=True),
            "removed",
            StepDecision("undone", "put back"),
        ),
        *[
            (
                "rollout",
                Progress("undoing", RECORD, undo_acted=True),
                seen,
                StepDecision("wait", f"the revision put back is {seen}: see gapless status"),
            )
            for seen in ("failed", "aborted", "superseded")
        ],
        (
            "rollout",
            Progress("undoing", RECORD, undo_acted=True),
            "progressing",
            StepDecision("wait", "rolling back to the revision before"),
        ),
        (
            "migrate",
            Progress("undoing", RECORD, undo_acted=True),
            "progressing",
            StepDecision("undone", "put back"),
        ),
    ],
)
def test_decide_undoing(kind: str, progress: Progress, observed: str | None, expected: StepDecision) -> None:
    assert decide_undoing(kind, progress, observed) == expected


# -- decide_migration ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "seen", "expected"),
    [
        *[
            (
                "migrate",
                MigrationSeen(phase),
                StepDecision("succeeded", "migration m1 expanded and backfilled"),
            )
            for phase in ("started", "completing", "completed")
        ],
        (
            "complete",
            MigrationSeen("completed"),
            StepDecision("succeeded", "migration m1 completed (contracted)"),
        ),
        (
            "migrate",
            MigrationSeen("starting", "running"),
            StepDecision("wait", "expanding and backfilling m1"),
        ),
        ("migrate", MigrationSeen(None, "running"), StepDecision("wait", "expanding and backfilling m1")),
        ("complete", MigrationSeen("completing", "running"), StepDecision("wait", "completing m1")),
        ("migrate", MigrationSeen("starting", error="boom"), StepDecision("failed", "boom")),
        ("complete", MigrationSeen("started", error="boom"), StepDecision("failed", "boom")),
        (
            "complete",
            MigrationSeen("starting"),
            StepDecision("failed", "migration m1 cannot be completed: its start did not finish"),
        ),
        *[
            (
                "complete",
                MigrationSeen(phase),
                StepDecision("failed", "migration m1 cannot be completed: it is not in progress"),
            )
            for phase in (None, "rolling_back", "rolled_back")
        ],
        (
            "migrate",
            MigrationSeen("rolling_back"),
            StepDecision("failed", "migration m1 is being rolled back outside the release"),
        ),
        ("migrate", MigrationSeen(None), StepDecision("act", "starting")),
        ("migrate", MigrationSeen("starting"), StepDecision("act", "starting")),
        ("migrate", MigrationSeen("rolled_back"), StepDecision("act", "starting")),
        ("complete", MigrationSeen("started"), StepDecision("act", "completing")),
        ("complete", MigrationSeen("completing"), StepDecision("act", "completing")),
        (
            "migrate",
            MigrationSeen(None, retry="busy"),
            StepDecision("act", "busy", requeue_at=100.0 + RETRY_AFTER),
        ),
        (
            "complete",
            MigrationSeen("started", retry="clients connected"),
            StepDecision("act", "clients connected", requeue_at=100.0 + RETRY_AFTER),
        ),
    ],
)
def test_decide_migration(kind: str, seen: MigrationSeen, expected: StepDecision) -> None:
    assert decide_migration(kind, seen, 100.0, "m1") == expected


def test_decide_migration_refuses_other_kinds() -> None:
    with pytest.raises(ValueError, match="'rollout' is not a migration step"):
        decide_migration("rollout", MigrationSeen(None), 0.0, "m1")


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (MigrationSeen(None), StepDecision("undone", "migration m1 rolled back")),
        (MigrationSeen("rolled_back"), StepDecision("undone", "migration m1 rolled back")),
        (MigrationSeen(None, "running"), StepDecision("undone", "migration m1 rolled back")),
        (
            MigrationSeen("starting", "running"),
            StepDecision("wait", "waiting for the work on m1 to stop before rolling it back"),
        ),
        (
            MigrationSeen("completed"),
            StepDecision("wait", "migration m1 is completed: it cannot be rolled back"),
        ),
        (
            MigrationSeen("started", error="lock"),
            StepDecision("act", "rollback failed (lock); trying again", requeue_at=100.0 + RETRY_AFTER),
        ),
        (
            MigrationSeen("rolling_back", retry="wait"),
            StepDecision("act", "wait", requeue_at=100.0 + RETRY_AFTER),
        ),
        (
            MigrationSeen("started"),
            StepDecision("act", "rolling back m1 (rows the new version wrote are kept)"),
        ),
        (
            MigrationSeen("starting"),
            StepDecision("act", "rolling back m1 (rows the new version wrote are kept)"),
        ),
    ],
)
def test_decide_migration_undo(seen: MigrationSeen, expected: StepDecision) -> None:
    assert decide_migration_undo(seen, 100.0, "m1") == expected


# -- checks and analysis -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("running", "outcome", "expected"),
    [
        (False, None, StepDecision("act", "checking")),
        (True, None, StepDecision("wait", "checking")),
        (True, (True, "0 rows"), StepDecision("succeeded", "0 rows")),
        (False, (False, "3 NULLs"), StepDecision("failed", "3 NULLs")),
    ],
)
def test_decide_check(running: bool, outcome: tuple[bool, str] | None, expected: StepDecision) -> None:
    assert decide_check(running, outcome) == expected


@pytest.mark.parametrize("phase", ["failed", "error", "inconclusive"])
def test_a_failing_analysis_fails_the_step_naming_the_run(phase: str) -> None:
    own = StepDecision("succeeded", "flag set")
    assert judge_with_analysis(own, phase, "error-rate 7 %", "analysis") == StepDecision(
        "failed", f"analysis {phase}: error-rate 7 %"
    )
    assert decide_analysis_check(phase, "p99 9 ms", "check", timed_out=False) == StepDecision(
        "failed", f"check {phase}: p99 9 ms"
    )


@pytest.mark.parametrize("phase", [None, "running", "successful", "pending"])
def test_an_analysis_not_failing_leaves_the_step_alone(phase: str | None) -> None:
    own = StepDecision("wait", "rolling out", requeue_at=3.0)
    assert judge_with_analysis(own, phase, "x", "analysis") is own


def test_decide_analysis_check() -> None:
    assert decide_analysis_check("successful", "2 of 2", "check", timed_out=True) == StepDecision(
        "succeeded", "check successful: 2 of 2"
    )
    assert decide_analysis_check("running", "", "check", timed_out=False) == StepDecision(
        "wait", "check running"
    )
    assert decide_analysis_check(None, "", "check", timed_out=True) == StepDecision(
        "failed", "check did not conclude within the step's timeoutSeconds"
    )


# -- plan_release: every field of every outcome --------------------------------------------------------


def test_plan_progressing_starts_the_first_pending_step() -> None:
    steps = [step("flag", "succeeded"), step("wait"), step("approve")]
    assert plan_release(steps) == ReleasePlan("Progressing", start=1, message="starting step 1 (wait)")


def test_plan_progressing_waits_for_a_running_step_and_for_promote_at_a_gate() -> None:
    assert plan_release([step("flag", "succeeded"), step("wait", "running"), step("flag")]) == ReleasePlan(
        "Progressing", message="step 1 (wait): running"
    )
    assert plan_release([step("approve", "running"), step("flag")]) == ReleasePlan(
        "Progressing", message="step 0 (approve): waiting for gapless release promote"
    )


def test_plan_succeeded_carries_the_point_of_no_rollback() -> None:
    steps = [
        step("migrate", "succeeded", migration="m1", database="db"),
        step("complete", "succeeded", migration="m1", database="db"),
    ]
    assert plan_release(steps) == ReleasePlan(
        "Succeeded", point_of_no_rollback=1, message="every step succeeded"
    )
    steps.append(step("flag"))
    assert plan_release(steps) == ReleasePlan(
        "Progressing", start=2, point_of_no_rollback=1, message="starting step 2 (flag)"
    )
    steps[2] = step("flag", "running")
    assert plan_release(steps) == ReleasePlan(
        "Progressing", point_of_no_rollback=1, message="step 2 (flag): running"
    )


def test_plan_paused_names_the_first_failed_step() -> None:
    steps = [
        step("migrate", "succeeded", migration="m1", database="db"),
        step("complete", "succeeded", migration="m1", database="db"),
        step("flag", "failed", on_failure="pause"),
        step("verify", "failed", on_failure="pause"),
    ]
    assert plan_release(steps) == ReleasePlan(
        "Paused",
        point_of_no_rollback=1,
        message="step 2 (flag) failed and pauses the release: promote to retry it, abort to roll back",
    )


def test_plan_rolling_back_undoes_effects_and_stops_watchers_newest_first() -> None:
    steps = [step("flag", "succeeded"), step("rollout", "succeeded", rollout="shop"), step("wait", "failed")]
    assert plan_release(steps) == ReleasePlan(
        "RollingBack", undo=2, message="rolling back: stop step 2 (wait)"
    )
    steps[2] = step("wait", "undone")
    assert plan_release(steps) == ReleasePlan(
        "RollingBack", undo=1, message="rolling back: undo step 1 (rollout)"
    )
    steps[1] = step("rollout", "undone", rollout="shop")
    steps[0] = step("flag", "undoing")
    assert plan_release(steps) == ReleasePlan(
        "RollingBack", undo=0, message="rolling back: undo step 0 (flag)"
    )
    steps[0] = step("flag", "undone")
    assert plan_release(steps) == ReleasePlan("RolledBack", message="rolled back")


def test_an_abort_rolls_back_even_a_paused_release_and_skips_steps_never_started() -> None:
    steps = [step("flag", "succeeded"), step("flag", "failed", on_failure="pause"), step("flag")]
    assert plan_release(steps, aborted=True) == ReleasePlan(
        "RollingBack", undo=1, message="rolling back: undo step 1 (flag)"
    )
    assert plan_release([step("flag"), step("wait")], aborted=True) == ReleasePlan(
        "RolledBack", message="rolled back"
    )


def test_plan_after_the_point_of_no_rollback_lists_what_stays() -> None:
    steps = [
        step("migrate", "succeeded", migration="m1", database="db"),
        step("rollout", "succeeded", rollout="shop", requires="m1"),
        step("complete", "succeeded", migration="m1", database="db"),
        step("flag", "failed"),
    ]
    complete = (2, "migration m1 is completed: its old schema is gone and cannot be brought back")
    rollout = (
        1,
        "the revision before it needs the schema from before the release, which completing m1 at step 2 removed",
    )
    migrate = (0, "migration m1 was completed at step 2; it can no longer be rolled back")
    assert plan_release(steps) == ReleasePlan(
        "RollingBack", undo=3, point_of_no_rollback=2, message="rolling back: undo step 3 (flag)"
    )
    steps[3] = step("flag", "undone")
    assert plan_release(steps) == ReleasePlan(
        "Failed",
        point_of_no_rollback=2,
        not_undoable=(complete, rollout, migrate),
        message="rolled back all but 3 step(s) that cannot be undone",
    )


def test_a_blocked_step_does_not_stop_the_rollback_of_older_ones() -> None:
    steps = [
        step("flag", "succeeded"),
        step("migrate", "succeeded", migration="m1", database="db"),
        step("complete", "failed", migration="m1", database="db"),
    ]
    assert plan_release(steps) == ReleasePlan(
        "RollingBack",
        undo=0,
        point_of_no_rollback=2,
        not_undoable=(
            (2, "migration m1 is completed: its old schema is gone and cannot be brought back"),
            (1, "migration m1 was completed at step 2; it can no longer be rolled back"),
        ),
        message="rolling back: undo step 0 (flag)",
    )


# -- undo_blockers: the revision before a rollout step -------------------------------------------------


def test_the_revision_before_is_the_same_rollouts_earlier_step() -> None:
    steps = [
        step("migrate", "succeeded", migration="m1", database="db"),
        step("rollout", "succeeded", rollout="shop", requires="m1"),
        step("migrate", "succeeded", migration="m2", database="other"),
        step("rollout", "succeeded", rollout="admin", requires="m2"),
        step("rollout", "succeeded", rollout="shop", requires="m2"),
        step("complete", "running", migration="m2", database="other"),
    ]
    assert undo_blockers(steps, 4) == (
        "the revision before it needs schema m1, which completing m2 at step 5 removed"
    )
    # admin had no earlier step: what it ran before the release.
    assert undo_blockers(steps, 3) == (
        "the revision before it needs the schema from before the release, which completing m2 at step 5 removed"
    )
    # shop's first step needs m1, which no started complete removed.
    assert undo_blockers(steps, 1) is None


def test_a_rollout_after_the_complete_or_already_on_the_schema_stays_undoable() -> None:
    steps = [
        step("migrate", "succeeded", migration="m1", database="db"),
        step("rollout", "succeeded", rollout="shop", requires="m1"),
        step("rollout", "succeeded", rollout="shop", requires="m1"),
        step("complete", "succeeded", migration="m1", database="db"),
        step("rollout", "running", rollout="shop", requires="m1"),
    ]
    assert undo_blockers(steps, 2) is None  # the revision before needs m1 too
    assert undo_blockers(steps, 4) is None  # after the complete: its revision before needs m1
    assert undo_blockers(steps, 1) is not None
    pending = [*steps[:3], step("complete", "pending", migration="m1", database="db")]
    assert undo_blockers(pending, 1) is None  # a complete not started removes nothing yet


# -- order_problems: each refusal, where and in which words --------------------------------------------


def test_order_problems_name_each_step_and_reason() -> None:
    steps = [
        step("rollout", rollout="shop", requires="m9"),
        step("migrate", migration="m1", database="db"),
        step("migrate", migration="m2", database="db"),
        step("migrate", migration="m1", database="other"),
        step("complete", migration="m3", database="db"),
    ]
    assert order_problems(steps) == [
        (0, "the revision requires schema m9, which no earlier migrate step provides"),
        (2, "database db has migration m1 (step 1) in progress: complete it before starting another"),
        (3, "migration m1 is started twice (first at step 1)"),
        (4, "completes migration m3, which no earlier migrate step starts"),
    ]


def test_a_complete_while_rollouts_still_run_old_code_names_them_in_step_order() -> None:
    steps = [
        step("migrate", migration="m0", database="db"),
        step("rollout", rollout="beta", requires="m0"),
        step("rollout", rollout="web", requires="m0"),
        step("rollout", rollout="zeta", requires="m0"),
        step("complete", migration="m0", database="db"),  # every rollout moved to m0 first: fine
        step("migrate", migration="m1", database="db"),  # db's m0 is completed: a new one may start
        step("rollout", rollout="zeta", requires="m0"),
        step("rollout", rollout="beta", requires="m0"),
        step("rollout", rollout="web", requires="m1"),
        step("complete", migration="m1", database="db"),
        step("rollout", rollout="beta", requires="m0"),
    ]
    still = "rollout {} (step {}) still runs code for schema m0, which completing m1 removes: roll it to a revision requiring m1 first"
    assert order_problems(steps) == [
        (9, still.format("zeta", 6)),  # by step, not by when the rollout first appeared
        (9, still.format("beta", 7)),
        (10, "the revision requires schema m0, which completing m1 (step 9) removed"),
    ]


def test_a_complete_before_the_move_to_new_code_is_refused_once_per_rollout() -> None:
    steps = [
        step("migrate", migration="m1", database="db"),
        step("complete", migration="m1", database="db"),
        step("flag"),
        step("rollout", rollout="shop", requires="m1"),
        step("rollout", rollout="shop", requires="m1"),
        step("rollout", rollout="web", requires="m1"),
    ]
    message = "completes m1 before rollout {} (step {}) moves to code for it: the old schema would go while the old code still serves"
    assert order_problems(steps) == [(1, message.format("shop", 3)), (1, message.format("web", 5))]
    moved_first = [steps[0], steps[3], steps[1]]
    assert order_problems(moved_first) == []
    right_after = [steps[0], steps[1], steps[5]]
    assert order_problems(right_after) == [(1, message.format("web", 2))]
    # A rollout that moved to m1 and then to a revision needing no particular schema is not "moving later".
    back_to_any = [steps[0], steps[3], step("rollout", rollout="shop"), steps[1]]
    assert order_problems(back_to_any) == []


def test_a_rollout_needing_a_schema_on_another_database_is_not_blocked_by_a_complete() -> None:
    steps = [
        step("migrate", migration="m1", database="db"),
        step("migrate", migration="m2", database="other"),
        step("rollout", rollout="shop", requires="m2"),
        step("complete", migration="m1", database="db"),
        step("rollout", rollout="web", requires="m2"),
        step("migrate", migration="m3", database="db"),  # db's m1 is completed: a new one may start
    ]
    assert order_problems(steps) == []


def test_a_complete_of_nothing_started_is_refused_alone() -> None:
    assert order_problems([step("complete", migration="m3", database="db")]) == [
        (0, "completes migration m3, which no earlier migrate step starts")
    ]


def test_the_revision_before_is_found_however_far_back() -> None:
    steps = [
        step("migrate", "succeeded", migration="m1", database="db"),
        step("migrate", "succeeded", migration="m2", database="other"),
        step("rollout", "succeeded", rollout="shop", requires="m1"),
        step("rollout", "succeeded", rollout="admin", requires="m2"),
        step("rollout", "succeeded", rollout="shop", requires="m2"),
        step("complete", "succeeded", migration="m2", database="other"),
    ]
    assert undo_blockers(steps, 4) == (
        "the revision before it needs schema m1, which completing m2 at step 5 removed"
    )


def test_a_rollback_goes_on_while_the_failed_step_is_being_undone() -> None:
    steps = [step("flag", "succeeded"), step("flag", "undoing")]
    assert plan_release(steps) == ReleasePlan(
        "RollingBack", undo=1, message="rolling back: undo step 1 (flag)"
    )


def test_each_step_that_cannot_be_undone_is_listed_once() -> None:
    steps = [
        step("migrate", "succeeded", migration="m1", database="db"),
        step("complete", "failed", migration="m1", database="db"),
    ]
    assert plan_release(steps) == ReleasePlan(
        "Failed",
        point_of_no_rollback=1,
        not_undoable=(
            (1, "migration m1 is completed: its old schema is gone and cannot be brought back"),
            (0, "migration m1 was completed at step 1; it can no longer be rolled back"),
        ),
        message="rolled back all but 2 step(s) that cannot be undone",
    )


def test_a_migration_rollback_that_keeps_failing_is_given_up_after_its_attempts() -> None:
    """Each failed rollback before the last is tried again; the UNDO_ATTEMPTS-th gives up, naming the error."""
    seen = MigrationSeen("rolling_back", error="view full_names uses full_name")
    for failures in range(UNDO_ATTEMPTS - 1):
        assert decide_migration_undo(seen, 100.0, "m1", failures).verdict == "act"
    assert decide_migration_undo(seen, 100.0, "m1", UNDO_ATTEMPTS - 1) == StepDecision(
        "failed", f"the rollback of m1 failed {UNDO_ATTEMPTS} times: view full_names uses full_name"
    )
    # Counted failures do not matter when nothing failed this time.
    assert decide_migration_undo(MigrationSeen("started"), 100.0, "m1", UNDO_ATTEMPTS).verdict == "act"


def test_a_given_up_undo_is_not_undoable_and_the_rollback_goes_on_then_ends_failed() -> None:
    steps = [
        StepFacts("migrate", migration="m1", database="db", phase="undoing", undo_error="refused"),
        StepFacts("flag", phase="succeeded"),
        StepFacts("approve", phase="running"),
    ]
    p = plan_release(steps, aborted=True)
    assert (p.phase, p.undo) == ("RollingBack", 2)
    steps[2] = replace(steps[2], phase="undone")
    assert plan_release(steps, aborted=True).undo == 1
    steps[1] = replace(steps[1], phase="undone")
    p = plan_release(steps, aborted=True)
    assert (p.phase, p.not_undoable) == ("Failed", ((0, "refused"),))
    steps[0] = replace(steps[0], undo_error=None)  # abort again: tried again
    assert plan_release(steps, aborted=True).undo == 0
