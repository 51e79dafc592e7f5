"""The pure decisions of ``migrate`` and ``complete`` steps and their rollback, by their rules (Hypothesis).

Rules:
1. Work is launched only while none runs: never two pieces of work on one migration at once.
2. A finished expand and backfill (engine phase ``started`` or later) is never launched again, so a
   control plane restarted after it repeats neither; a completed migration is never completed again.
3. A running step launches work again exactly when nothing runs and the engine's phase says the work
   is not finished (``starting``: the engine resumes at its recorded step), so a crash at any line of
   the start ends with the migration started and every start step run once (the model below).
4. A permanent error fails the step; a temporary one launches again, later.
7. A step's analysis that fails, errs or is inconclusive fails the step, naming what the run said (the
   failing metric); a run still going or passed leaves the step's own decision untouched.
6. A verify check is launched only when none runs and no outcome waits, and its step ends with the
   outcome (passed: succeeded, else failed, with what the check said).
5. A rollback waits for running work, launches once nothing runs and the migration is in progress,
   is done when the engine says rolled back (or never started), and never rolls back a completed one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, note
from hypothesis import strategies as st

from gapless.strategies.release import (
    RETRY_AFTER,
    MigrationSeen,
    StepDecision,
    decide_analysis_check,
    decide_check,
    decide_migration,
    decide_migration_undo,
    judge_with_analysis,
)

PHASES = [None, "starting", "started", "completing", "completed", "rolling_back", "rolled_back"]
seen_states = st.builds(
    MigrationSeen,
    st.sampled_from(PHASES),
    st.sampled_from(["idle", "running"]),
    st.one_of(st.none(), st.just("boom")),
    st.one_of(st.none(), st.just("waiting: clients")),
)
kinds = st.sampled_from(["migrate", "complete"])
times = st.floats(0, 1e9)


@given(kinds, seen_states, times)
def test_work_is_launched_only_while_none_runs(kind: str, seen: MigrationSeen, now: float) -> None:
    """No verdict launches work while work of the step runs, for the step or its rollback."""
    if seen.job == "running":
        assert decide_migration(kind, seen, now, "m1").verdict != "act"
        assert decide_migration_undo(seen, now, "m1").verdict != "act"


@given(seen_states, times)
def test_a_finished_expand_and_backfill_is_never_started_again(seen: MigrationSeen, now: float) -> None:
    """From ``started`` on, a migrate step succeeds whatever else is seen: nothing is relaunched."""
    d = decide_migration("migrate", seen, now, "m1")
    if seen.phase in ("started", "completing", "completed"):
        assert d.verdict == "succeeded"
    if d.verdict == "act":
        assert seen.phase in (None, "starting", "rolled_back")


@given(seen_states, times)
def test_a_completed_migration_is_never_completed_again(seen: MigrationSeen, now: float) -> None:
    """A complete step succeeds once the engine says completed, and acts only on started/completing."""
    d = decide_migration("complete", seen, now, "m1")
    if seen.phase == "completed":
        assert d.verdict == "succeeded"
    if d.verdict == "act":
        assert seen.phase in ("started", "completing")


@given(kinds, seen_states, times)
def test_errors_fail_and_temporary_trouble_retries_later(kind: str, seen: MigrationSeen, now: float) -> None:
    """A permanent error of finished work fails an unfinished step; a temporary one relaunches after a pause."""
    d = decide_migration(kind, seen, now, "m1")
    done = ("started", "completing", "completed") if kind == "migrate" else ("completed",)
    if seen.phase in done or seen.job == "running":
        return
    if seen.error is not None:
        assert d.verdict == "failed"
        assert d.message == "boom"
    elif d.verdict == "act" and seen.retry is not None:
        assert d.requeue_at == now + RETRY_AFTER


@given(seen_states, times)
def test_a_rollback_never_touches_a_completed_migration(seen: MigrationSeen, now: float) -> None:
    """Completed: the rollback waits and says why; never started or rolled back: undone; else it acts."""
    d = decide_migration_undo(seen, now, "m1")
    if seen.phase in (None, "rolled_back"):
        assert d.verdict == "undone"
    elif seen.job == "running" or seen.phase == "completed":
        assert d.verdict == "wait"
        if seen.job == "idle":
            assert "cannot be rolled back" in d.message
    else:
        assert d.verdict == "act"


# -- a model of the engine and the controller's loop, with crashes ---------------------------------


@dataclass
class Engine:
    """The engine as the controller sees it: a phase and the steps it recorded (each run once)."""

    steps: int
    phase: str | None = None
    done: int = 0
    runs: list[int] = field(default_factory=list)

    def start(self, budget: int) -> None:
        """Run up to ``budget`` steps (then the process dies), resuming at the recorded step."""
        if self.phase is None:
            self.phase = "starting"
        while self.done < self.steps and budget > 0:
            self.runs.append(self.done)
            self.done += 1
            budget -= 1
        if self.done == self.steps:
            self.phase = "started"

    def rollback(self) -> None:
        self.phase = "rolled_back"


@given(st.integers(1, 12), st.lists(st.integers(0, 4), max_size=40))
def test_crashes_during_a_migrate_step_run_every_start_step_once(steps: int, budgets: list[int]) -> None:
    """Each pass launches work that dies after a random number of steps; the start ends with each step run once."""
    engine = Engine(steps)
    budget = iter(budgets)
    for _ in range(100):
        d = decide_migration("migrate", MigrationSeen(engine.phase), 0.0, "m1")
        if d.verdict == "succeeded":
            break
        assert d.verdict == "act"
        engine.start(next(budget, steps))
    note(f"runs={engine.runs}")
    assert engine.phase == "started"
    assert engine.runs == list(range(steps))


@given(st.integers(1, 12), st.integers(0, 12), st.integers(0, 3))
def test_an_abort_during_a_start_rolls_back_after_the_start_stops(steps: int, ran: int, waits: int) -> None:
    """While the start runs the rollback waits; once it stopped the rollback runs once and the step is undone."""
    engine = Engine(steps)
    engine.start(ran)
    for _ in range(waits):
        assert decide_migration_undo(MigrationSeen(engine.phase, "running"), 0.0, "m1").verdict == "wait"
    rollbacks = 0
    for _ in range(5):
        d = decide_migration_undo(MigrationSeen(engine.phase), 0.0, "m1")
        if d.verdict == "undone":
            break
        assert d.verdict == "act"
        engine.rollback()
        rollbacks += 1
    assert engine.phase == "rolled_back"
    assert rollbacks == 1


@given(st.booleans(), st.one_of(st.none(), st.tuples(st.booleans(), st.text(max_size=20))))
def test_a_verify_step_ends_with_its_checks_outcome(running: bool, outcome: tuple[bool, str] | None) -> None:
    """An outcome decides the step; without one the check is launched unless it runs already."""
    d = decide_check(running, outcome)
    if outcome is not None:
        assert d.verdict == ("succeeded" if outcome[0] else "failed")
        assert d.message == outcome[1]
    else:
        assert d.verdict == ("wait" if running else "act")


verdicts = st.sampled_from(["act", "succeeded", "failed", "undone", "wait"])
run_phases = st.sampled_from([None, "running", "successful", "failed", "error", "inconclusive"])


@given(verdicts, run_phases, st.text(max_size=30))
def test_a_failing_analysis_fails_its_step_naming_the_metric(
    verdict: str, phase: str | None, why: str
) -> None:
    """failed/error/inconclusive -> the step fails with the run's message; otherwise the step's own verdict."""
    own = StepDecision(verdict, "own")  # type: ignore[arg-type]
    d = judge_with_analysis(own, phase, why, "analysis shop-health")
    if phase in ("failed", "error", "inconclusive"):
        assert d.verdict == "failed"
        assert d.message == f"analysis shop-health {phase}: {why}"
    else:
        assert d == own


@given(run_phases, st.booleans())
def test_a_verify_analysis_passes_only_on_a_successful_run(phase: str | None, timed_out: bool) -> None:
    """successful -> succeeded; failed/error/inconclusive or a timeout while running -> failed; else wait."""
    d = decide_analysis_check(phase, "m: why", "analysis shop-check", timed_out)
    if phase == "successful":
        assert d.verdict == "succeeded"
    elif phase in ("failed", "error", "inconclusive"):
        assert d.verdict == "failed"
        assert "m: why" in d.message
    else:
        assert d.verdict == ("failed" if timed_out else "wait")
