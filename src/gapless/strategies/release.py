"""The release planner: is the order possible, what runs next, what a rollback undoes (pure).

A release is a line of steps (``gapless.spec.release``). Two pure functions decide everything about it:

- ``order_problems`` refuses an order that cannot work, naming the step: a rollout whose
  ``requiresSchema`` no earlier ``migrate`` provides, a ``complete`` without its ``migrate`` or while a
  rollout of the release still runs code for the old schema (or moves to the new one only after it),
  a rollout after a ``complete`` that needs
  the schema the complete removed, a second ``migrate`` on a database whose first is not completed.
- ``plan_release`` reads the steps' phases (and whether the release was aborted) and returns the one
  thing to do next: start a step, undo a step, or nothing. Steps run one at a time, in order. A
  failure of a step with ``onFailure: rollback`` (or an abort) undoes every started step newest
  first: flags back to where they were, rollouts back to the revision before, migrations rolled back.
  A ``complete`` that has started is the **point of no rollback** for what depends on the old schema:
  the completed migration cannot be rolled back, nor can a rollout whose previous revision needs the
  schema it removed; those are listed with the reason, and the rest is still undone.

Commands change the phases (``promote`` passes a running ``approve`` step or sets a paused failed step
back to pending; ``abort`` sets ``aborted``); the planner never remembers anything itself, so a
restarted control plane simply continues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ANALYSIS_FAILED",
    "EFFECTS",
    "MIGRATION_KINDS",
    "RUNS_IN_CONTROL_PLANE",
    "TERMINAL",
    "MigrationSeen",
    "Progress",
    "ReleasePlan",
    "StepDecision",
    "StepFacts",
    "StepPhase",
    "decide_analysis_check",
    "decide_check",
    "decide_migration",
    "decide_migration_undo",
    "decide_running",
    "decide_undoing",
    "judge_with_analysis",
    "order_problems",
    "plan_release",
    "point_of_no_rollback",
    "undo_blockers",
]

StepPhase = Literal["pending", "running", "succeeded", "failed", "undoing", "undone"]
ReleasePhase = Literal["Progressing", "Paused", "Succeeded", "RollingBack", "RolledBack", "Failed"]
STARTED: frozenset[str] = frozenset({"running", "succeeded", "failed", "undoing"})
EFFECTS: frozenset[str] = frozenset({"migrate", "rollout", "flag", "complete"})
"""Step kinds that change something a rollback must put back (the others only watch or wait)."""


@dataclass(frozen=True)
class StepFacts:
    """What the planner knows of one step, read from its spec and the files it names."""

    kind: str
    on_failure: Literal["rollback", "pause"] = "rollback"
    migration: str | None = None
    """``migrate``: the migration the file starts; ``complete``: the migration it completes."""
    database: str | None = None
    rollout: str | None = None
    """``rollout``: the Rollout's name."""
    requires: str | None = None
    """``rollout``: the revision's ``requiresSchema`` (None: it needs no particular schema)."""
    phase: StepPhase = "pending"
    undo_error: str | None = None
    """Why undoing the step failed for good (``UNDO_ATTEMPTS`` failures in a row); None while it may work."""


@dataclass(frozen=True)
class ReleasePlan:
    phase: ReleasePhase
    start: int | None = None
    undo: int | None = None
    point_of_no_rollback: int | None = None
    not_undoable: tuple[tuple[int, str], ...] = field(default_factory=tuple)
    message: str = ""


def order_problems(steps: Sequence[StepFacts]) -> list[tuple[int, str]]:
    """``(step index, message)`` for every step whose place in the order cannot work."""
    problems: list[tuple[int, str]] = []
    provided: dict[str, int] = {}  # migration -> index of its migrate step
    open_on: dict[str, int] = {}  # database -> index of its migrate step not yet completed
    completed: dict[str, int] = {}  # migration -> index of its complete step
    last_rollout: dict[str, int] = {}  # rollout -> index of its latest step so far

    def same_database(schema: str | None, database: str | None) -> bool:
        return schema in provided and steps[provided[schema]].database == database

    for i, s in enumerate(steps):
        if s.kind == "migrate" and s.migration is not None:
            if s.migration in provided:
                problems.append(
                    (i, f"migration {s.migration} is started twice (first at step {provided[s.migration]})")
                )
            elif s.database in open_on:
                j = open_on[s.database]
                problems.append((i, f"database {s.database} has migration {steps[j].migration} (step {j}) in "
                                    "progress: complete it before starting another"))  # fmt: skip
            provided.setdefault(s.migration, i)
            if s.database is not None:
                open_on[s.database] = i
        elif s.kind == "rollout":
            if s.requires is not None and s.requires not in provided:
                problems.append(
                    (i, f"the revision requires schema {s.requires}, which no earlier migrate step provides")
                )
            for m, k in completed.items():
                c = steps[k]
                if (
                    s.requires not in (None, m)
                    and same_database(s.requires, c.database)
                    and provided[s.requires] < k
                ):
                    problems.append((i, f"the revision requires schema {s.requires}, which completing {m} "
                                        f"(step {k}) removed"))  # fmt: skip
            if s.rollout is not None:
                last_rollout[s.rollout] = i
        elif s.kind == "complete" and s.migration is not None:
            if s.migration not in provided:
                problems.append(
                    (i, f"completes migration {s.migration}, which no earlier migrate step starts")
                )
            for rollout, j in sorted(last_rollout.items(), key=lambda x: x[1]):
                needs = steps[j].requires
                if needs not in (None, s.migration) and same_database(needs, s.database):
                    problems.append((i, f"rollout {rollout} (step {j}) still runs code for schema {needs}, which "
                                        f"completing {s.migration} removes: roll it to a revision requiring "
                                        f"{s.migration} first"))  # fmt: skip
            moved: set[str | None] = {r for r, j in last_rollout.items() if steps[j].requires == s.migration}
            for j in range(i + 1, len(steps)):
                later = steps[j]
                if later.kind == "rollout" and later.requires == s.migration and later.rollout not in moved:
                    moved.add(later.rollout)
                    problems.append((i, f"completes {s.migration} before rollout {later.rollout} (step {j}) moves to "
                                        "code for it: the old schema would go while the old code still serves"))  # fmt: skip
            completed[s.migration] = i
            if s.database is not None and open_on.get(s.database) == provided.get(s.migration):
                open_on.pop(s.database, None)
    return problems


def point_of_no_rollback(steps: Sequence[StepFacts]) -> int | None:
    """The first ``complete`` step that has started: from there the old schema is (being) removed."""
    return next((i for i, s in enumerate(steps) if s.kind == "complete" and s.phase in STARTED), None)


def _previous_schema(steps: Sequence[StepFacts], j: int) -> str | None:
    """The schema the revision before rollout step ``j`` needs: its rollout's earlier step, else unknown."""
    rollout = steps[j].rollout
    for k in range(j - 1, -1, -1):
        if steps[k].kind == "rollout" and steps[k].rollout == rollout:
            return steps[k].requires
    return None


def undo_blockers(steps: Sequence[StepFacts], j: int) -> str | None:
    """Why step ``j`` cannot be undone any more, or None when it can."""
    s = steps[j]
    if s.undo_error is not None:
        return s.undo_error
    started_completes = [(k, c) for k, c in enumerate(steps) if c.kind == "complete" and c.phase in STARTED]
    if s.kind == "complete":
        return f"migration {s.migration} is completed: its old schema is gone and cannot be brought back"
    if s.kind == "migrate":
        for k, c in started_completes:
            if c.migration == s.migration:
                return f"migration {s.migration} was completed at step {k}; it can no longer be rolled back"
    if s.kind == "rollout" and s.requires is not None:
        previous = _previous_schema(steps, j)
        for k, c in started_completes:
            if k > j and c.migration == s.requires and previous != s.requires:
                what = f"schema {previous}" if previous else "the schema from before the release"
                return (f"the revision before it needs {what}, which completing {c.migration} at step {k} "
                        "removed")  # fmt: skip
    return None


def plan_release(steps: Sequence[StepFacts], *, aborted: bool = False) -> ReleasePlan:
    """The one thing to do next, from the steps' phases and whether the release was aborted."""
    ponr = point_of_no_rollback(steps)
    failed = [i for i, s in enumerate(steps) if s.phase == "failed"]
    # An undone step exists only in a rollback: once the failed step itself is undone, the rollback goes on.
    undoing = any(s.phase in ("undoing", "undone") for s in steps)
    rolling_back = aborted or undoing or any(steps[i].on_failure == "rollback" for i in failed)
    if rolling_back:
        blocked: list[tuple[int, str]] = []
        for j in range(len(steps) - 1, -1, -1):
            s = steps[j]
            if s.phase not in STARTED:
                continue
            reason = undo_blockers(steps, j) if s.kind in EFFECTS else None
            if reason is not None:
                blocked.append((j, reason))
                continue
            what = "undo" if s.kind in EFFECTS else "stop"
            return ReleasePlan(
                "RollingBack", undo=j, point_of_no_rollback=ponr, not_undoable=tuple(blocked),
                message=f"rolling back: {what} step {j} ({s.kind})",
            )  # fmt: skip
        phase: ReleasePhase = "Failed" if blocked else "RolledBack"
        message = (
            "rolled back"
            if not blocked
            else f"rolled back all but {len(blocked)} step(s) that cannot be undone"
        )
        return ReleasePlan(phase, point_of_no_rollback=ponr, not_undoable=tuple(blocked), message=message)
    if failed:
        i = failed[0]
        return ReleasePlan(
            "Paused", point_of_no_rollback=ponr,
            message=f"step {i} ({steps[i].kind}) failed and pauses the release: promote to retry it, abort to roll back",
        )  # fmt: skip
    for i, s in enumerate(steps):
        if s.phase == "succeeded":
            continue
        if s.phase == "pending":
            return ReleasePlan(
                "Progressing", start=i, point_of_no_rollback=ponr, message=f"starting step {i} ({s.kind})"
            )
        waiting = "waiting for gapless release promote" if s.kind == "approve" else "running"
        return ReleasePlan(
            "Progressing", point_of_no_rollback=ponr, message=f"step {i} ({s.kind}): {waiting}"
        )
    return ReleasePlan("Succeeded", point_of_no_rollback=ponr, message="every step succeeded")


# -- the executor's decisions for one step (pure; the release controller carries them out) -----------

RUNS_IN_CONTROL_PLANE: frozenset[str] = frozenset(
    {"migrate", "rollout", "flag", "verify", "wait", "approve", "complete"}
)
"""Step kinds the control plane runs today; a release with another kind is refused when applied."""
TERMINAL: frozenset[str] = frozenset({"Succeeded", "RolledBack", "Failed"})


@dataclass(frozen=True)
class Progress:
    """What the store holds of one step between passes; the controller keeps nothing else.

    ``record`` is what undoing the step needs (a flag's state before it, the rollout's revision before
    it) together with the target the step moves to, both read and written *before* the step acts, so
    an action repeated after a crash moves to the same target instead of one further. ``acted`` and
    ``undo_acted`` are written after the change was made.
    """

    phase: StepPhase = "pending"
    record: dict[str, Any] | None = None
    acted: bool = False
    undo_acted: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    message: str = ""
    undo_failures: int = 0
    """Failed attempts in a row at undoing the step (a migration's rollback that raised)."""
    undo_error: str | None = None
    """Set when undoing gave up after ``UNDO_ATTEMPTS`` failures: the step then counts as not undoable."""


@dataclass(frozen=True)
class StepDecision:
    """``act`` (make the change again: it is idempotent), ``succeeded``, ``failed``, ``undone`` or ``wait``."""

    verdict: Literal["act", "succeeded", "failed", "undone", "wait"]
    message: str = ""
    requeue_at: float | None = None


def decide_running(
    kind: str, p: Progress, observed: str | None, now: float, duration: float = 0.0
) -> StepDecision:
    """What a running step needs now. ``observed``: a rollout's revision phase (complete, failed,
    aborted, superseded, progressing, missing); unused for the other kinds."""
    if kind in EFFECTS and p.record is None:
        raise ValueError("a step that changes something runs only once its record is written")
    if kind in ("rollout", "flag") and not p.acted:
        return StepDecision("act", "applying" if kind == "rollout" else "setting the flag")
    if kind == "flag":
        return StepDecision("succeeded", "flag set")
    if kind == "rollout":
        if observed == "complete":
            return StepDecision("succeeded", "the revision is fully rolled out")
        if observed in ("failed", "aborted", "superseded", "missing"):
            return StepDecision("failed", f"the rollout's revision is {observed}")
        return StepDecision("wait", "rolling out")
    if kind == "wait":
        start = p.started_at if p.started_at is not None else now
        if now >= start + duration:
            return StepDecision("succeeded", f"monitoring window of {duration:g} s passed")
        return StepDecision("wait", f"monitoring window until +{duration:g} s", requeue_at=start + duration)
    if kind == "approve":
        return StepDecision("wait", "waiting for gapless release promote")
    raise ValueError(f"step kind {kind!r} does not run in the control plane yet")


def decide_undoing(kind: str, p: Progress, observed: str | None) -> StepDecision:
    """What a step being undone needs now; ``observed``: the phase of the revision put back (rollout)."""
    if kind not in EFFECTS or p.record is None:
        return StepDecision("undone", "nothing to undo")  # it never changed anything
    if not p.undo_acted:
        return StepDecision("act", "putting back the state from before the step")
    if kind == "rollout" and observed not in ("complete", "removed"):
        if observed in ("failed", "aborted", "superseded"):
            return StepDecision("wait", f"the revision put back is {observed}: see gapless status")
        return StepDecision("wait", "rolling back to the revision before")
    return StepDecision("undone", "put back")


# -- migrate and complete steps: decided from what the migration engine's own state says ---------------

MIGRATION_KINDS: frozenset[str] = frozenset({"migrate", "complete"})
DONE_STARTING: frozenset[str] = frozenset({"started", "completing", "completed"})
"""Engine phases in which a migration's expand and backfill are finished (never run again)."""


@dataclass(frozen=True)
class MigrationSeen:
    """A step's migration as the engine's state table holds it, and the step's work in this process.

    ``phase`` is the engine's phase of the migration (None: it has no record: never started).
    ``job`` says whether work of this step (start, complete or rollback) runs now; ``error`` is why the
    last one failed for good, ``retry`` why it could not go on for now (clients still connected, the
    database unreachable, another ``gapless migrate`` holding the schema).
    """

    phase: str | None
    job: Literal["idle", "running"] = "idle"
    error: str | None = None
    retry: str | None = None


RETRY_AFTER = 2.0
UNDO_ATTEMPTS = 3
"""A migration's rollback that fails this many times in a row is given up: the rollback of the release
goes on with the earlier steps and ends ``Failed``, naming the error (``gapless release abort`` of the
failed release tries the given-up steps again, e.g. once the database is fixed)."""
"""Seconds before work that could not go on for now is tried again."""


def decide_migration(kind: str, seen: MigrationSeen, now: float, migration: str) -> StepDecision:
    """What a running ``migrate`` or ``complete`` step needs now.

    Work is launched only when none runs and the engine's state says it is not done: a finished expand
    and backfill (``started``) is never started again, a completed migration never completed again.
    The engine resumes a start or complete that stopped at the step it recorded, so launching again
    after a crash repeats nothing the engine had finished.
    """
    if kind not in MIGRATION_KINDS:
        raise ValueError(f"{kind!r} is not a migration step")
    done = DONE_STARTING if kind == "migrate" else frozenset({"completed"})
    if seen.phase in done:
        what = "expanded and backfilled" if kind == "migrate" else "completed (contracted)"
        return StepDecision("succeeded", f"migration {migration} {what}")
    if seen.job == "running":
        what = "expanding and backfilling" if kind == "migrate" else "completing"
        return StepDecision("wait", f"{what} {migration}")
    if seen.error is not None:
        return StepDecision("failed", seen.error)
    if kind == "complete" and seen.phase not in ("started", "completing"):
        why = "its start did not finish" if seen.phase == "starting" else "it is not in progress"
        return StepDecision("failed", f"migration {migration} cannot be completed: {why}")
    if kind == "migrate" and seen.phase == "rolling_back":
        return StepDecision("failed", f"migration {migration} is being rolled back outside the release")
    if seen.retry is not None:
        return StepDecision("act", seen.retry, requeue_at=now + RETRY_AFTER)
    return StepDecision("act", "starting" if kind == "migrate" else "completing")


def decide_migration_undo(seen: MigrationSeen, now: float, migration: str, failures: int = 0) -> StepDecision:
    """What undoing a ``migrate`` step needs now: wait for its running work, then roll back once.

    A start still running is waited for (the engine cannot be interrupted between its steps from
    outside); a migration with no record or already rolled back is undone; a rollback that could not
    go on (clients of the new schema still connected) is tried again. A rollback that raised is tried
    again until it has failed ``UNDO_ATTEMPTS`` times in a row (``failures`` counts the earlier ones),
    then given up (``failed``). A completed migration is never rolled back (the planner does not ask;
    this is the guard).
    """
    if seen.phase in (None, "rolled_back"):
        return StepDecision("undone", f"migration {migration} rolled back")
    if seen.job == "running":
        return StepDecision("wait", f"waiting for the work on {migration} to stop before rolling it back")
    if seen.phase == "completed":
        return StepDecision("wait", f"migration {migration} is completed: it cannot be rolled back")
    if seen.error is not None:
        if failures + 1 >= UNDO_ATTEMPTS:
            return StepDecision(
                "failed", f"the rollback of {migration} failed {failures + 1} times: {seen.error}"
            )
        return StepDecision(
            "act", f"rollback failed ({seen.error}); trying again", requeue_at=now + RETRY_AFTER
        )
    if seen.retry is not None:
        return StepDecision("act", seen.retry, requeue_at=now + RETRY_AFTER)
    return StepDecision("act", f"rolling back {migration} (rows the new version wrote are kept)")


def decide_check(running: bool, outcome: tuple[bool, str] | None) -> StepDecision:
    """What a running ``verify`` step needs now: launch its check, wait for it, or end with its outcome.

    A check that was running when the control plane died left no outcome and runs no more: it is
    launched again (a check changes nothing, so running it twice is harmless).
    """
    if outcome is not None:
        passed, message = outcome
        return StepDecision("succeeded" if passed else "failed", message)
    if running:
        return StepDecision("wait", "checking")
    return StepDecision("act", "checking")


ANALYSIS_FAILED: frozenset[str] = frozenset({"failed", "error", "inconclusive"})
"""Analysis run phases that fail the step they watch."""


def judge_with_analysis(
    own: StepDecision, run_phase: str | None, run_message: str, what: str
) -> StepDecision:
    """A step with ``analysis``: its run failing (naming the metric) fails the step whatever the step
    itself is doing; otherwise the step's own decision stands (a run still going is stopped when the
    step ends, and only a failure it then reports fails the step)."""
    if run_phase in ANALYSIS_FAILED:
        return StepDecision("failed", f"{what} {run_phase}: {run_message}")
    return own


def decide_analysis_check(
    run_phase: str | None, run_message: str, what: str, timed_out: bool
) -> StepDecision:
    """A ``verify`` step that is an analysis run: it passes when the run ends successful, fails when
    the run fails, errs or is inconclusive (naming the metric), and fails when the run has not
    concluded within the step's ``timeoutSeconds`` (its metrics need a ``count`` to conclude)."""
    if run_phase == "successful":
        return StepDecision("succeeded", f"{what} successful: {run_message}")
    if run_phase in ANALYSIS_FAILED:
        return StepDecision("failed", f"{what} {run_phase}: {run_message}")
    if timed_out:
        return StepDecision("failed", f"{what} did not conclude within the step's timeoutSeconds")
    return StepDecision("wait", f"{what} running")
