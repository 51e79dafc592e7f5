"""The release controller: runs each ``kind: Release`` through the services' own APIs, level-triggered.

Each pass reads a release's document and state from the store, asks the pure planner
(``gapless.strategies.release``) what comes next, and does exactly one thing: start a step (its undo
record written first), make a step's change, judge a running step, or undo one. The state is written
before and after every action, and every action is idempotent given what was recorded (a flag is set
*to* a recorded stage, never "one further"; a rollout is applied or put back *to* a recorded
revision), so a control plane killed at any line resumes at the same step and repeats nothing that
changes the outcome.

Steps act through the same paths users have: a ``rollout`` step through ``Commands.apply`` and
``Commands.undo`` (the rollout's own strategy, steps and analysis run inside the step), a ``flag`` step
through the flag service's HTTP API mounted at ``/flags`` (audited there under its own token, and
reported as a control-plane event like any flag change).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any, Protocol

from gapless.controller.analysis import RELEASE_KEY_PREFIX
from gapless.controller.commands import Commands, ConflictError, template_refs
from gapless.controller.reconcile import Controller
from gapless.controller.release_checks import CheckJobs, run_verify
from gapless.controller.release_migrate import (
    MigrationJobs,
    MigrationStateUnreadableError,
    MigrationTarget,
    Work,
    database_name,
    describe_revision,
    revisions_needing,
)
from gapless.core.clock import Clock
from gapless.core.errors import GaplessError, NotFoundError, Problem, SpecError, StateWriteError
from gapless.core.failpoints import crash_point
from gapless.spec.load import problems_from_validation, validate_rollout
from gapless.spec.models import Rollout, template_hash
from gapless.spec.release import FlagStep, Release, sqlite_schema_problem
from gapless.spec.strategy import RolloutAnalysis
from gapless.store.records import AnalysisRunRecord, ReleaseRecord
from gapless.store.sqlite import Store
from gapless.strategies.plan import StepState
from gapless.strategies.release import (
    EFFECTS,
    MIGRATION_KINDS,
    RUNS_IN_CONTROL_PLANE,
    TERMINAL,
    Progress,
    StepDecision,
    StepFacts,
    StepPhase,
    decide_analysis_check,
    decide_check,
    decide_migration,
    decide_migration_undo,
    decide_running,
    decide_undoing,
    judge_with_analysis,
    order_problems,
    plan_release,
    point_of_no_rollback,
)

__all__ = ["FlagError", "FlagService", "ReleaseCommands", "ReleaseController", "release_stream"]

log = logging.getLogger("gapless.release")

PASS_INTERVAL = 0.5
STREAM_PREFIX = "release:"


def release_stream(name: str) -> str:
    """The event stream (``gapless events``' rollout column) of a release."""
    return f"{STREAM_PREFIX}{name}"


class FlagError(GaplessError):
    """The flag service refused a change (``temporary``: it is starting or busy; try again)."""

    def __init__(self, message: str, *, temporary: bool = False, missing: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.missing = missing


class FlagService(Protocol):
    """The flag service as a release step uses it (its HTTP API; see ``gapless.server.release_flags``)."""

    async def get(self, project: str, flag: str) -> dict[str, Any]: ...

    async def enable(self, project: str, flag: str, environment: str) -> None: ...

    async def go_to_stage(self, project: str, flag: str, environment: str, stage: int) -> None: ...

    async def put_back(
        self, project: str, flag: str, environment: str, enabled: bool, stage: int | None
    ) -> None: ...


def flag_state(doc: dict[str, Any], environment: str) -> dict[str, Any]:
    """``{"enabled", "stage", "stages"}`` of a flag document in one environment."""
    env = (doc.get("environments") or {}).get(environment) or {}
    plan = env.get("releasePlan") or None
    return {
        "enabled": bool(env.get("enabled", False)),
        "stage": int(plan.get("currentStage", 0)) if plan else None,
        "stages": [str(s.get("name", "")) for s in plan.get("stages", [])] if plan else [],
    }


def flag_target(step: FlagStep, before: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """Where a flag step moves the flag, from its state before the step; (None, why) when it cannot."""
    if step.enabled is not None:
        return {"enabled": step.enabled}, ""
    stages: list[str] = before["stages"]
    if not stages:
        return None, f"flag {step.flag!r} has no release plan in {step.environment!r}"
    if step.stage is not None:
        if step.stage not in stages:
            return (
                None,
                f"flag {step.flag!r} has no stage {step.stage!r} in {step.environment!r} ({', '.join(stages)})",
            )
        return {"stage": stages.index(step.stage)}, ""
    nxt = (before["stage"] or 0) + 1
    if nxt >= len(stages):
        return None, f"flag {step.flag!r} is at its last stage in {step.environment!r}: nothing to advance to"
    return {"stage": nxt}, ""


def _facts(doc: dict[str, Any], state: dict[str, Any]) -> list[StepFacts]:
    return [
        StepFacts(**(f | {"phase": s["phase"], "undo_error": s.get("undo_error")}))
        for f, s in zip(doc["facts"], state["steps"], strict=True)
    ]


def _progress(raw: dict[str, Any]) -> Progress:
    return Progress(**raw)


def _label(release: Release, i: int) -> str:
    return release.step_label(i)


class ReleaseController:
    """Runs every stored release, one action per pass. Inert until ``run()``."""

    def __init__(
        self,
        store: Store,
        controller: Controller,
        commands: Commands,
        clock: Clock,
        flags: Callable[[], FlagService | None],
    ) -> None:
        self._store = store
        self._controller = controller
        self._commands = commands
        self._clock = clock
        self._flags = flags
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stop = False
        self._migrations = MigrationJobs()
        self._checks = CheckJobs()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stop:
            next_at = await self.reconcile_all()
            timeout = (
                PASS_INTERVAL
                if next_at is None
                else max(0.0, min(PASS_INTERVAL, next_at - self._clock.now()))
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    async def reconcile_all(self) -> float | None:
        next_at: float | None = None
        for rec in self._store.releases():
            if rec.state.get("phase") in TERMINAL:
                continue
            try:
                async with self._lock:
                    fresh = self._store.find_release(rec.name)
                    at = None if fresh is None else await self.reconcile(fresh)
            except StateWriteError as e:
                log.warning("release %s: %s", rec.name, e)
                at = self._clock.now() + 1.0
            except Exception:
                log.exception("release %s: pass failed", rec.name)
                at = self._clock.now() + 1.0
            if at is not None:
                next_at = at if next_at is None else min(next_at, at)
        return next_at

    # -- one pass ----------------------------------------------------------------------------------

    def _save(self, name: str, extra: dict[str, Any], step: tuple[int, Progress] | None = None) -> None:
        """Write one step's progress and ``extra`` fields onto the release as stored *now*.

        A pass awaits (the flag service, a rollout's own pass) between reading the release and writing
        it; an ``abort`` or ``promote`` that came meanwhile must not be overwritten by the pass's copy.
        """
        with self._store.transaction():
            fresh = self._store.find_release(name)
            if fresh is None:
                return
            state = fresh.state | extra
            if step is not None:
                steps = list(state["steps"])
                steps[step[0]] = asdict(step[1])
                state["steps"] = steps
                if step[1].phase == "failed":  # kept when the step's message is overwritten by its undo
                    state["failure"] = {"step": step[0], "message": step[1].message}
            self._store.put_release(replace(fresh, state=state, updated_at=self._clock.now()))

    def _event(self, rec: ReleaseRecord, where: str, type_: str, message: str) -> None:
        self._controller.event(release_stream(rec.name), where, type_, message)

    async def reconcile(self, rec: ReleaseRecord) -> float | None:
        """One action for one release; when to come back (now: at once)."""
        now = self._clock.now()
        release = Release.model_validate(rec.doc["release"])
        state = dict(rec.state)
        steps = [_progress(s) for s in state["steps"]]
        facts = _facts(rec.doc, state)
        plan = plan_release(facts, aborted=bool(state.get("aborted")))

        def save(i: int, p: Progress, **extra: Any) -> None:
            steps[i] = p
            self._save(rec.name, extra, (i, p))

        self._stop_step_analyses(rec, release, steps)
        if plan.start is not None:
            i = plan.start
            kind = facts[i].kind
            try:
                record = await self._record(rec, release, i) if kind in EFFECTS else None
            except FlagError as e:
                if e.temporary:
                    return now + 1.0
                save(i, Progress("failed", started_at=now, finished_at=now, message=str(e)))
                self._event(rec, _label(release, i), "StepFailed", str(e))
                return now
            save(i, Progress("running", record=record, started_at=now, message="started"), phase=plan.phase)
            self._event(rec, _label(release, i), "StepStarted", _describe(release, i))
            crash_point(f"release.{kind}.recorded")
            return now
        if plan.undo is not None:
            return await self._undo_pass(rec, release, facts, steps, plan.undo, save, now)
        for i, p in enumerate(steps):
            if p.phase == "running":
                return await self._running_pass(rec, release, facts, steps, i, save, now)
        if state.get("phase") != plan.phase or state.get("message") != plan.message:
            extra = {
                "phase": plan.phase,
                "message": plan.message,
                "notUndoable": [list(x) for x in plan.not_undoable],
                "pointOfNoRollback": plan.point_of_no_rollback,
            }
            self._save(rec.name, extra)
            if plan.phase in TERMINAL or plan.phase == "Paused":
                self._event(rec, "", f"Release{plan.phase}", plan.message)
        return None if plan.phase in TERMINAL else now + PASS_INTERVAL

    async def _running_pass(
        self,
        rec: ReleaseRecord,
        release: Release,
        facts: list[StepFacts],
        steps: list[Progress],
        i: int,
        save: Callable[..., None],
        now: float,
    ) -> float:
        p = steps[i]
        step = release.spec.steps[i]
        kind = facts[i].kind
        if step.analysis is not None:
            verdict = self._step_analysis(rec, release, facts, i, p)
            if verdict.verdict == "failed":
                save(i, replace(p, phase="failed", finished_at=now, message=verdict.message))
                self._event(rec, _label(release, i), "StepFailed", verdict.message)
                return now
        if kind in MIGRATION_KINDS:
            return await self._migration_pass(rec, release, i, p, save, now)
        if kind == "verify" and step.verify is not None:
            return self._verify_pass(rec, release, facts, i, p, save, now)
        observed = self._observe_rollout(p.record or {}) if kind == "rollout" else None
        duration = step.wait.duration if step.wait is not None else 0.0
        decision = decide_running(kind, p, observed, now, duration)
        label = _label(release, i)
        if decision.verdict == "act":
            try:
                await self._act(rec, release, i, p)
            except FlagError as e:
                if e.temporary:
                    return now + 1.0
                save(i, replace(p, phase="failed", finished_at=now, message=str(e)))
                self._event(rec, label, "StepFailed", str(e))
                return now
            except GaplessError as e:  # the rollout was refused (its file, its templates, a conflict)
                save(i, replace(p, phase="failed", finished_at=now, message=str(e)))
                self._event(rec, label, "StepFailed", str(e))
                return now
            crash_point(f"release.{kind}.set")
            save(i, replace(p, acted=True, message=decision.message))
            return now
        if decision.verdict in ("succeeded", "failed"):
            message = decision.message
            if decision.verdict == "failed" and kind == "rollout":
                message = self._rollout_failure(p.record or {}) or message
            save(i, replace(p, phase=decision.verdict, finished_at=now, message=message))
            self._event(
                rec, label, "StepSucceeded" if decision.verdict == "succeeded" else "StepFailed", message
            )
            return now
        if p.message != decision.message:
            save(i, replace(p, message=decision.message))
        return decision.requeue_at or now + PASS_INTERVAL

    async def _undo_pass(
        self,
        rec: ReleaseRecord,
        release: Release,
        facts: list[StepFacts],
        steps: list[Progress],
        j: int,
        save: Callable[..., None],
        now: float,
    ) -> float:
        p = steps[j]
        kind = facts[j].kind
        label = _label(release, j)
        if p.phase != "undoing":
            if kind == "verify":
                self._checks.cancel((rec.name, j))
            save(j, replace(p, phase="undoing", message="undoing"), phase="RollingBack")
            what = "undoing" if kind in EFFECTS else "stopping"
            self._event(rec, label, "StepUndoing", f"{what} {_describe(release, j)}")
            return now
        if kind == "migrate" and p.record is not None:
            return await self._migration_undo_pass(rec, release, j, p, save, now)
        observed = self._observe_undo(p.record or {}) if kind == "rollout" else None
        decision = decide_undoing(kind, p, observed)
        if decision.verdict == "act":
            try:
                await self._put_back(release, j, p)
            except FlagError as e:
                if not e.temporary:
                    save(j, replace(p, message=f"cannot put the flag back yet: {e}"))
                return now + 1.0
            except GaplessError as e:
                save(j, replace(p, message=f"cannot put the rollout back yet: {e}"))
                return now + 1.0
            save(j, replace(p, undo_acted=True, message=decision.message))
            return now
        if decision.verdict == "undone":
            save(j, replace(p, phase="undone", finished_at=now, message=decision.message))
            self._event(rec, label, "StepUndone", decision.message)
            return now
        if p.message != decision.message:
            save(j, replace(p, message=decision.message))
        return now + PASS_INTERVAL

    # -- a step's analysis ---------------------------------------------------------------------------

    def _step_analysis(
        self, rec: ReleaseRecord, release: Release, facts: list[StepFacts], i: int, p: Progress
    ) -> StepDecision:
        """Start (once) or resume the run of a running step's analysis; its verdict on the step."""
        ref = release.spec.steps[i].analysis
        if ref is None:  # pragma: no cover - the caller checked
            raise ValueError("the step has no analysis")
        what = f"analysis {', '.join(ref.template_names)}"
        run = self._ensure_analysis(rec, facts, i, p, ref, f"{RELEASE_KEY_PREFIX}{rec.name}:{i}")
        if run is None:
            return StepDecision("failed", f"{what}: the release has no rollout to measure")
        return judge_with_analysis(StepDecision("wait", ""), run.phase, run.message, what)

    def _ensure_analysis(
        self, rec: ReleaseRecord, facts: list[StepFacts], i: int, p: Progress, ref: RolloutAnalysis, key: str
    ) -> AnalysisRunRecord | None:
        """The run of this attempt of step ``i`` (started once, resumed after a restart); None: nothing
        to measure (no rollout of the release exists)."""
        rollout = next(
            (f.rollout for f in reversed(facts[: i + 1]) if f.kind == "rollout" and f.rollout), None
        )
        found = self._store.find_rollout(rollout) if rollout else None
        if rollout is None or found is None:
            return None
        revision = template_hash(Rollout.model_validate(found.spec).spec.template)
        suffix = "-verify" if key.endswith(":verify") else ""
        return self._controller.analysis.ensure_run(
            _analysis_run_id(rec.name, i, p) + suffix, rollout, revision, key, ref
        )

    def _stop_step_analyses(self, rec: ReleaseRecord, release: Release, steps: list[Progress]) -> None:
        """Stop the run of every step with analysis that is no longer running (its window is over)."""
        for i, (step, p) in enumerate(zip(release.spec.steps, steps, strict=True)):
            watched = step.analysis is not None or (
                step.verify is not None and step.verify.analysis is not None
            )
            if not watched or p.phase == "running" or p.started_at is None:
                continue
            for suffix in ("", "-verify"):
                run = self._store.find_analysis_run(_analysis_run_id(rec.name, i, p) + suffix)
                if run is not None and run.phase == "running":
                    self._controller.analysis.stop_run(run.id, f"stopped: release step {i} is {p.phase}")

    def _analysis_verify_pass(
        self,
        rec: ReleaseRecord,
        release: Release,
        facts: list[StepFacts],
        i: int,
        p: Progress,
        save: Callable[..., None],
        now: float,
        ref: RolloutAnalysis,
    ) -> float:
        """A verify step that is an analysis run: started once, passed or failed by its verdict."""
        what = f"analysis {', '.join(ref.template_names)}"
        found = self._ensure_analysis(rec, facts, i, p, ref, f"{RELEASE_KEY_PREFIX}{rec.name}:{i}:verify")
        check = release.spec.steps[i].verify
        timeout = check.timeout_seconds if check is not None else 60.0
        timed_out = now >= (p.started_at or now) + timeout
        if found is None:
            decision = StepDecision("failed", f"{what}: the release has no rollout to measure")
        else:
            decision = decide_analysis_check(found.phase, found.message, what, timed_out)
        if decision.verdict == "wait":
            if p.message != decision.message:
                save(i, replace(p, message=decision.message))
            return now + PASS_INTERVAL
        if found is not None and found.phase == "running":
            self._controller.analysis.stop_run(found.id, "stopped: the verify step timed out")
        phase: StepPhase = "succeeded" if decision.verdict == "succeeded" else "failed"
        save(i, replace(p, phase=phase, finished_at=now, message=decision.message))
        kind = "StepSucceeded" if decision.verdict == "succeeded" else "StepFailed"
        self._event(rec, _label(release, i), kind, decision.message)
        return now

    def _verify_pass(
        self,
        rec: ReleaseRecord,
        release: Release,
        facts: list[StepFacts],
        i: int,
        p: Progress,
        save: Callable[..., None],
        now: float,
    ) -> float:
        key = (rec.name, i)
        check = release.spec.steps[i].verify
        if check is None:  # pragma: no cover - the caller checked
            raise ValueError("not a verify step")
        if check.analysis is not None:
            return self._analysis_verify_pass(rec, release, facts, i, p, save, now, check.analysis)
        decision = decide_check(self._checks.running(key), self._checks.take(key))
        if decision.verdict == "act":

            async def run() -> tuple[bool, str]:
                try:
                    return await run_verify(check, release.name)
                finally:
                    self.wake()

            self._checks.launch(key, run())
            if p.message != decision.message:
                save(i, replace(p, acted=True, message=decision.message))
            return now + PASS_INTERVAL
        if decision.verdict in ("succeeded", "failed"):
            save(i, replace(p, phase=decision.verdict, finished_at=now, message=decision.message))
            kind = "StepSucceeded" if decision.verdict == "succeeded" else "StepFailed"
            self._event(rec, _label(release, i), kind, decision.message)
            return now
        return now + PASS_INTERVAL

    # -- migrate and complete steps ------------------------------------------------------------------

    def _migration_target(self, rec: ReleaseRecord, release: Release, i: int) -> MigrationTarget:
        step = release.spec.steps[i]
        record = (_progress(rec.state["steps"][i]).record) or {}
        db = release.spec.databases[record["database"]]
        url = database_url(db.url, db.url_from_env)
        if url is None:
            raise MigrationStateUnreadableError(
                f"the control plane's environment has no {db.url_from_env} (the URL of database "
                f"{record['database']})"
            )
        m = step.migrate
        return MigrationTarget(
            url=url,
            migration=record["migration"],
            schema=db.schema_,
            batch_size=m.batch_size if m is not None else 1000,
            batch_delay=m.batch_delay if m is not None else 0.0,
        )

    async def _seen(
        self, rec: ReleaseRecord, release: Release, i: int, work: Work
    ) -> tuple[MigrationTarget, Any, dict[str, Any]]:
        target = self._migration_target(rec, release, i)
        seen, detail = await asyncio.to_thread(self._migrations.seen, (rec.name, i), target, work)
        for notice in self._migrations.take_notices((rec.name, i)):
            self._event(rec, _label(release, i), "MigrationNotice", notice)
        return target, seen, detail

    def _migration_event(self, target: MigrationTarget, type_: str, message: str) -> None:
        """The event ``gapless migrate`` posts for the same change (stream ``migrations:<database>``): the
        controller's schema gating and the Migrations view read it."""
        self._controller.event(f"migrations:{database_name(target.url)}", target.migration, type_, message)
        self._controller.schema.poke()

    def _launch(
        self, rec: ReleaseRecord, release: Release, i: int, work: Work, target: MigrationTarget
    ) -> None:
        document = rec.doc.get("migrations", {}).get(str(i)) if work == "start" else None
        revisions = revisions_needing(self._store, target.migration, older=True) if work == "complete" else []
        self._migrations.launch((rec.name, i), work, target, document, revisions=revisions, on_done=self.wake)

    async def _migration_pass(
        self,
        rec: ReleaseRecord,
        release: Release,
        i: int,
        p: Progress,
        save: Callable[..., None],
        now: float,
    ) -> float:
        kind = release.spec.steps[i].kind
        work: Work = "start" if kind == "migrate" else "complete"
        label = _label(release, i)
        try:
            target, seen, detail = await self._seen(rec, release, i, work)
        except MigrationStateUnreadableError as e:
            if p.message != str(e):
                save(i, replace(p, message=str(e)))
            return now + 2.0
        decision = decide_migration(kind, seen, now, target.migration)
        record = dict(p.record or {}) | {"engine": detail}
        if decision.verdict == "act":
            if work == "complete":
                blocking = revisions_needing(self._store, target.migration, older=True)
                if blocking:
                    why = "waiting: " + "; ".join(describe_revision(r) for r in blocking)
                    if p.message != why:
                        save(i, replace(p, record=record, message=why))
                    return now + 1.0
            self._launch(rec, release, i, work, target)
            if work == "start" and not p.acted:
                self._migration_event(
                    target, "MigrationStarted", f"start (expand) of {target.migration}: release {rec.name}"
                )
            save(i, replace(p, record=record, acted=True, message=decision.message))
            return decision.requeue_at or now + PASS_INTERVAL
        if decision.verdict in ("succeeded", "failed"):
            self._migrations.forget((rec.name, i))
            save(
                i,
                replace(p, record=record, phase=decision.verdict, finished_at=now, message=decision.message),
            )
            if decision.verdict == "succeeded":
                done = "BackfillDone" if work == "start" else "MigrationCompleted"
                self._migration_event(target, done, f"{decision.message}: release {rec.name}")
            self._event(
                rec,
                label,
                "StepSucceeded" if decision.verdict == "succeeded" else "StepFailed",
                decision.message,
            )
            return now
        message = _with_progress(decision, detail)
        if p.message != message or p.record != record:
            save(i, replace(p, record=record, message=message))
        return decision.requeue_at or now + PASS_INTERVAL

    async def _migration_undo_pass(
        self,
        rec: ReleaseRecord,
        release: Release,
        j: int,
        p: Progress,
        save: Callable[..., None],
        now: float,
    ) -> float:
        label = _label(release, j)
        try:
            target, seen, detail = await self._seen(rec, release, j, "rollback")
        except MigrationStateUnreadableError as e:
            if p.message != str(e):
                save(j, replace(p, message=str(e)))
            return now + 2.0
        decision = decide_migration_undo(seen, now, target.migration, p.undo_failures)
        record = dict(p.record or {}) | {"engine": detail}
        if decision.verdict == "failed":
            # Given up: the planner now counts the step as not undoable, undoes the earlier ones and
            # ends the release Failed, naming this error.
            self._migrations.forget((rec.name, j))
            save(
                j,
                replace(
                    p,
                    record=record,
                    undo_failures=p.undo_failures + 1,
                    undo_error=decision.message,
                    message=decision.message,
                ),
            )
            self._event(rec, label, "StepUndoFailed", decision.message)
            return now
        if decision.verdict == "act":
            blocking = revisions_needing(self._store, target.migration, older=False)
            if blocking:
                why = "waiting: " + "; ".join(describe_revision(r) for r in blocking)
                if p.message != why:
                    save(j, replace(p, record=record, message=why))
                return now + 1.0
            self._launch(rec, release, j, "rollback", target)
            failures = p.undo_failures + (1 if seen.error is not None else 0)
            save(
                j,
                replace(p, record=record, undo_acted=True, undo_failures=failures, message=decision.message),
            )
            return decision.requeue_at or now + PASS_INTERVAL
        if decision.verdict == "undone":
            self._migrations.forget((rec.name, j))
            if p.undo_acted:
                self._migration_event(
                    target, "MigrationRolledBack", f"rollback of {target.migration}: release {rec.name}"
                )
            save(j, replace(p, record=record, phase="undone", finished_at=now, message=decision.message))
            self._event(rec, label, "StepUndone", decision.message)
            return now
        if p.message != decision.message or p.record != record:
            save(j, replace(p, record=record, message=decision.message))
        return decision.requeue_at or now + PASS_INTERVAL

    # -- what a step records, does and undoes -------------------------------------------------------

    async def _record(self, rec: ReleaseRecord, release: Release, i: int) -> dict[str, Any]:
        step = release.spec.steps[i]
        if step.migrate is not None or step.complete is not None:
            fact = rec.doc["facts"][i]
            return {"migration": fact["migration"], "database": fact["database"]}
        if step.flag is not None:
            flags = self._flag_service()
            f = step.flag
            try:
                before = flag_state(await flags.get(f.project, f.flag), f.environment)
            except FlagError as e:
                raise FlagError(f"flag {f.project}/{f.flag}: {e}", temporary=e.temporary) from e
            target, why = flag_target(f, before)
            if target is None:
                raise FlagError(why)
            return {"before": {"enabled": before["enabled"], "stage": before["stage"]}, "target": target}
        rollout = validate_rollout(rec.doc["rollouts"][str(i)], source=_label(release, i))
        found = self._store.find_rollout(rollout.name)
        previous = None
        if found is not None:
            previous = {"hash": template_hash(Rollout.model_validate(found.spec).spec.template)}
        return {"rollout": rollout.name, "before": previous, "target": template_hash(rollout.spec.template)}

    async def _act(self, rec: ReleaseRecord, release: Release, i: int, p: Progress) -> None:
        step = release.spec.steps[i]
        record = p.record or {}
        if step.flag is not None:
            f, target = step.flag, record["target"]
            flags = self._flag_service()
            if "enabled" in target:
                if target["enabled"]:
                    await flags.enable(f.project, f.flag, f.environment)
                else:
                    before = flag_state(await flags.get(f.project, f.flag), f.environment)
                    await flags.put_back(f.project, f.flag, f.environment, False, before["stage"])
            else:
                await flags.go_to_stage(f.project, f.flag, f.environment, int(target["stage"]))
            return
        rollout = validate_rollout(rec.doc["rollouts"][str(i)], source=_label(release, i))
        current = self._store.find_rollout(rollout.name)
        if (
            current is not None
            and Rollout.model_validate(current.spec).spec.template == rollout.spec.template
        ):
            return  # applied before a crash: applying again could restart a failed revision
        self._commands.apply(rollout)
        await self._controller.settle(rollout.name)

    async def _put_back(self, release: Release, j: int, p: Progress) -> None:
        step = release.spec.steps[j]
        record = p.record or {}
        if step.flag is not None:
            f, before = step.flag, record["before"]
            await self._flag_service().put_back(
                f.project, f.flag, f.environment, before["enabled"], before["stage"]
            )
            return
        name, before = record["rollout"], record.get("before")
        if self._store.find_rollout(name) is None:
            return
        if before is None:  # the release created the rollout: undoing it removes it
            self._commands.delete(name)
            return
        revision = next((r for r in self._store.revisions(name) if r.hash == before["hash"]), None)
        if revision is None:
            raise ConflictError(f"rollout {name!r} no longer has the revision from before the release")
        self._commands.undo(name, revision.number)
        await self._controller.settle(name)

    def _flag_service(self) -> FlagService:
        flags = self._flags()
        if flags is None:
            raise FlagError("the flag service is starting", temporary=True)
        return flags

    # -- observing a rollout ------------------------------------------------------------------------

    def _revision_phase(self, name: str, h: str) -> str:
        rec = self._store.find_rollout(name)
        if rec is None:
            return "removed"
        if template_hash(Rollout.model_validate(rec.spec).spec.template) != h:
            return "superseded"
        rev = next((r for r in self._store.revisions(name) if r.hash == h), None)
        if rev is None:
            return "progressing"  # the loop makes the revision on its next pass
        if rev.phase == "progressing" and StepState.from_json(rev.step_state).aborted_at is not None:
            return "aborted"
        return rev.phase

    def _observe_rollout(self, record: dict[str, Any]) -> str:
        phase = self._revision_phase(record["rollout"], record["target"])
        return "missing" if phase == "removed" else phase

    def _observe_undo(self, record: dict[str, Any]) -> str:
        before = record.get("before")
        if before is None:
            return "removed" if self._store.find_rollout(record["rollout"]) is None else "progressing"
        return self._revision_phase(record["rollout"], before["hash"])

    def _rollout_failure(self, record: dict[str, Any]) -> str | None:
        """Why the step's revision failed, as the rollout says it (the failing metric, the abort reason)."""
        name = record["rollout"]
        rev = next((r for r in self._store.revisions(name) if r.hash == record["target"]), None)
        if rev is None:
            return None
        st = StepState.from_json(rev.step_state)
        why = rev.message or st.abort_reason or ""
        verdicts = [  # the rollout's own analysis that failed names its metric; the release's runs do not count
            f"{r.phase} analysis: {r.message}"
            for r in self._store.analysis_runs(name, rev.hash)
            if r.phase in ("failed", "error", "inconclusive")
            and r.message
            and not r.key.startswith(RELEASE_KEY_PREFIX)
        ]
        why = "; ".join(x for x in (why, *verdicts) if x)
        return f"rollout {name} revision {rev.number} is {rev.phase}" + (f": {why}" if why else "")


def _migration_fact(
    release: Release, i: int, doc: Any, problems: list[Problem]
) -> tuple[StepFacts, dict[str, Any] | None]:
    """A migrate or complete step's facts (and a migrate step's migration document), or its problems."""
    from gapless.migrations.files import validate_migration

    step = release.spec.steps[i]
    where = _label(release, i)
    database = step.migrate.database if step.migrate is not None else step.complete.database  # type: ignore[union-attr]
    db = release.spec.databases[database]
    url = database_url(db.url, db.url_from_env)
    if url is None:
        problems.append(
            Problem(
                f"{where}.{step.kind}.database",
                f"database {database}: the control plane's environment has no {db.url_from_env}",
            )
        )
    elif (why := sqlite_schema_problem(url, db.schema_)) is not None:
        problems.append(Problem(f"{where}.{step.kind}.database", f"database {database}: {why}"))
    if step.complete is not None:
        fact = StepFacts("complete", step.on_failure, migration=step.complete.migration, database=database)
        return fact, None
    if doc is None:
        problems.append(Problem(f"{where}.migrate", "the migration document of this step is missing"))
        return StepFacts("migrate", step.on_failure, database=database), None
    try:
        m = validate_migration(doc, source=where)
    except SpecError as e:
        problems.extend(Problem(f"{where}.migrate.{p.path}", p.message) for p in e.problems)
        return StepFacts("migrate", step.on_failure, database=database), None
    document = m.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return StepFacts("migrate", step.on_failure, migration=m.name, database=database), document


def _live_message(rec: ReleaseRecord) -> str:
    """What the release is doing now: the planner's word while it runs (the stored one once it ended)."""
    if rec.state.get("phase") in TERMINAL:
        return str(rec.state.get("message", ""))
    return plan_release(_facts(rec.doc, rec.state), aborted=bool(rec.state.get("aborted"))).message


def _measured_rollout(facts: list[dict[str, Any]], i: int) -> str | None:
    """The rollout a step's analysis measures: that of the nearest rollout step at or before it."""
    return next((f.get("rollout") for f in reversed(facts[: i + 1]) if f["kind"] == "rollout"), None)


def _analysis_names(step: Any) -> list[str] | None:
    """The templates a step's analysis (or a verify step's analysis run) uses; None: it has none."""
    ref = step.analysis or (step.verify.analysis if step.verify is not None else None)
    return list(ref.template_names) if ref is not None else None


def _analysis_run_id(release: str, i: int, p: Progress) -> str:
    """The run of step ``i``'s analysis in this attempt of the step (a retried step gets a new run)."""
    return f"release-{release}-{i}-{round((p.started_at or 0.0) * 1000)}"


def database_url(url: str | None, from_env: str | None) -> str | None:
    """A database's URL: as written, or from the control plane's environment (None: not set there)."""
    import os

    return url if url is not None else os.environ.get(from_env or "") or None


def _with_progress(decision: StepDecision, detail: dict[str, Any]) -> str:
    """The decision's message with the backfill's progress (``users 40000/100000 rows``) when there is one."""
    parts = [
        f"{b['table']} {b['rowsDone']}/{b['rowsEstimate']} rows" + (" done" if b.get("done") else "")
        for b in detail.get("backfills") or []
    ]
    return decision.message + (f": backfill {', '.join(parts)}" if parts else "")


def _describe(release: Release, i: int) -> str:
    step = release.spec.steps[i]
    if step.migrate is not None:
        return f"start migration {step.migrate.file} on {step.migrate.database} (expand, backfill)"
    if step.complete is not None:
        return f"complete migration {step.complete.migration} on {step.complete.database} (contract)"
    if step.verify is not None:
        v = step.verify
        if v.exec is not None:
            return "verify: exec " + " ".join(v.exec.command)
        if v.http_get is not None:
            return f"verify: GET {v.url}{v.http_get.path} expecting {v.http_get.expect_status}"
        return "verify: analysis " + ", ".join(v.analysis.template_names if v.analysis else [])
    if step.flag is not None:
        f = step.flag
        change = (
            ("on" if f.enabled else "off")
            if f.enabled is not None
            else f"stage {f.stage}"
            if f.stage
            else "next stage"
        )
        return f"flag {f.project}/{f.flag} in {f.environment}: {change}"
    if step.rollout is not None:
        return f"roll out {step.rollout.file}"
    if step.wait is not None:
        return f"monitoring window of {step.wait.duration:g} s"
    if step.approve is not None:
        return (
            "manual gate: gapless release promote "
            + release.name
            + (f" ({step.approve.message})" if step.approve.message else "")
        )
    return step.kind


# -- commands ----------------------------------------------------------------------------------------


class ReleaseCommands:
    """apply, promote, abort and the reads: each validates, writes one transaction and wakes the loop."""

    def __init__(
        self,
        store: Store,
        controller: Controller,
        releases: ReleaseController,
        clock: Clock,
        flags: Callable[[], FlagService | None],
    ) -> None:
        self._store = store
        self._controller = controller
        self._releases = releases
        self._clock = clock
        self._flags = flags

    async def apply(self, name: str, body: Any) -> dict[str, Any]:
        """Validate a release with the Rollouts it applies; store it only when every check passes."""
        release, rollouts, migrations, facts = self._validate(name, body)
        await self._check_flags(release)
        doc = {
            "release": release.model_dump(mode="json", by_alias=True, exclude_none=True),
            "rollouts": {str(i): r.to_document() for i, r in rollouts.items()},
            "migrations": {str(i): m for i, m in migrations.items()},
            "facts": [
                {k: v for k, v in asdict(f).items() if k not in ("phase", "undo_error")} for f in facts
            ],
        }
        now = self._clock.now()
        with self._store.transaction():
            old = self._store.find_release(name)
            if old is not None and old.doc == doc:
                return {"name": name, "changed": False, "phase": old.state.get("phase")}
            if old is not None and old.state.get("phase") not in TERMINAL:
                raise ConflictError(
                    f"release {name!r} is {old.state.get('phase')}: abort it or let it finish before changing it"
                )
            state = {
                "phase": "Progressing",
                "message": "accepted",
                "aborted": False,
                "steps": [asdict(Progress()) for _ in facts],
            }
            self._store.put_release(ReleaseRecord(name, doc, state, now, now))
        self._controller.event(release_stream(name), "", "ReleaseApplied", f"{len(facts)} step(s)")
        self._releases.wake()
        return {"name": name, "changed": True, "phase": "Progressing"}

    def _validate(
        self, name: str, body: Any
    ) -> tuple[Release, dict[int, Rollout], dict[int, dict[str, Any]], list[StepFacts]]:
        if not isinstance(body, dict) or not isinstance(body.get("release"), dict):
            raise SpecError("request", [Problem("release", "must be the Release document")])
        unknown = sorted(set(body) - {"release", "rollouts", "migrations"})
        if unknown:
            raise SpecError("request", [Problem(k, "unknown field") for k in unknown])
        try:
            release = Release.model_validate(body["release"])
        except ValueError as e:
            from pydantic import ValidationError

            if isinstance(e, ValidationError):
                raise SpecError("request", problems_from_validation(e)) from e
            raise
        if release.name != name:
            raise SpecError(
                "request", [Problem("metadata.name", f"is {release.name!r} but the URL names {name!r}")]
            )
        files = body.get("rollouts") or {}
        if not isinstance(files, dict):
            raise SpecError("request", [Problem("rollouts", "must map step indexes to Rollout documents")])
        migration_files = body.get("migrations") or {}
        if not isinstance(migration_files, dict):
            raise SpecError(
                "request", [Problem("migrations", "must map step indexes to migration documents")]
            )
        problems: list[Problem] = []
        rollouts: dict[int, Rollout] = {}
        migrations: dict[int, dict[str, Any]] = {}
        facts: list[StepFacts] = []
        for i, step in enumerate(release.spec.steps):
            where = _label(release, i)
            fact = StepFacts(step.kind, step.on_failure)
            if step.kind not in RUNS_IN_CONTROL_PLANE:
                problems.append(
                    Problem(where, f"a {step.kind} step is not yet supported by the control plane")
                )
            if step.analysis is not None:
                problems += self._analysis_problems(release, i, facts, files)
            if step.verify is not None and step.verify.analysis is not None:
                problems += self._analysis_problems(release, i, facts, files, step.verify.analysis)
            if step.migrate is not None or step.complete is not None:
                fact, found = _migration_fact(release, i, migration_files.get(str(i)), problems)
                if found is not None:
                    migrations[i] = found
            if step.rollout is not None:
                doc = files.get(str(i))
                if doc is None:
                    problems.append(
                        Problem(f"{where}.rollout", "the Rollout document of this step is missing")
                    )
                else:
                    try:
                        r = validate_rollout(doc, source=where)
                    except SpecError as e:
                        problems += [Problem(f"{where}.rollout.{p.path}", p.message) for p in e.problems]
                    else:
                        rollouts[i] = r
                        fact = StepFacts(
                            "rollout",
                            step.on_failure,
                            rollout=r.name,
                            requires=r.spec.template.requires_schema,
                        )
                        problems += [
                            Problem(
                                f"{where}.rollout.{path}",
                                f"no AnalysisTemplate named {ref!r}; apply it first",
                            )
                            for path, ref in template_refs(r.spec.strategy)
                            if self._store.find_analysis_template(ref) is None
                        ]
            facts.append(fact)
        problems += [Problem(_label(release, i), m) for i, m in order_problems(facts)]
        if problems:
            raise SpecError("request", problems)
        return release, rollouts, migrations, facts

    def _analysis_problems(
        self,
        release: Release,
        i: int,
        facts: list[StepFacts],
        files: dict[str, Any],
        ref: RolloutAnalysis | None = None,
    ) -> list[Problem]:
        """A step's analysis needs its templates and a rollout step at or before it (what it measures)."""
        step = release.spec.steps[i]
        where = f"{_label(release, i)}.{'verify.analysis' if ref is not None else 'analysis'}"
        ref = ref or step.analysis
        problems = [
            Problem(
                f"{where}.templates.{k}", f"no AnalysisTemplate named {t.template_name!r}; apply it first"
            )
            for k, t in enumerate(ref.templates if ref else [])
            if self._store.find_analysis_template(t.template_name) is None
        ]
        if step.rollout is None and not any(f.kind == "rollout" for f in facts):
            problems.append(
                Problem(
                    where,
                    "a step's analysis measures the release's application: no rollout step comes before it",
                )
            )
        return problems

    async def _check_flags(self, release: Release) -> None:
        problems: list[Problem] = []
        for i, step in enumerate(release.spec.steps):
            if step.flag is None:
                continue
            flags = self._flags()
            if flags is None:
                raise ConflictError("the flag service is starting; try again in a moment")
            f = step.flag
            try:
                doc = await flags.get(f.project, f.flag)
            except FlagError as e:
                if e.temporary:
                    raise ConflictError(f"the flag service cannot answer now: {e}") from e
                problems.append(Problem(f"{_label(release, i)}.flag", str(e)))
                continue
            if f.environment not in (doc.get("environments") or {}) and f.stage is None and not f.advance:
                continue  # turning a flag on or off in an environment it has no rules for yet is fine
            target, why = flag_target(f, flag_state(doc, f.environment))
            if target is None and f.stage is not None:
                problems.append(Problem(f"{_label(release, i)}.flag.stage", why))
            elif target is None and f.advance and not flag_state(doc, f.environment)["stages"]:
                problems.append(Problem(f"{_label(release, i)}.flag.advance", why))
        if problems:
            raise SpecError("request", problems)

    def get(self, name: str) -> dict[str, Any]:
        rec = self._store.find_release(name)
        if rec is None:
            raise NotFoundError(f"release {name!r} not found")
        return release_view(rec)

    def list(self) -> list[dict[str, Any]]:
        return [release_view(r) for r in self._store.releases()]

    def promote(self, name: str) -> dict[str, Any]:
        """Pass the running approve gate, or retry a step that failed and paused the release."""
        with self._store.transaction():
            rec = self._store.find_release(name)
            if rec is None:
                raise NotFoundError(f"release {name!r} not found")
            state = rec.state
            steps = [_progress(s) for s in state["steps"]]
            facts = _facts(rec.doc, state)
            plan = plan_release(facts, aborted=bool(state.get("aborted")))
            now = self._clock.now()
            gate = next(
                (
                    i
                    for i, (f, p) in enumerate(zip(facts, steps, strict=True))
                    if f.kind == "approve" and p.phase == "running"
                ),
                None,
            )
            if plan.phase == "Progressing" and gate is not None:
                steps[gate] = replace(steps[gate], phase="succeeded", finished_at=now, message="promoted")
                what, where = "approve gate passed", gate
            elif plan.phase == "Paused":
                where = next(i for i, p in enumerate(steps) if p.phase == "failed")
                steps[where] = replace(steps[where], phase="pending", message="retried after promote")
                what = "failed step retried"
            else:
                raise ConflictError(
                    f"release {name!r} is {plan.phase} ({plan.message}): there is no gate to pass"
                )
            self._store.put_release(
                replace(rec, state=state | {"steps": [asdict(s) for s in steps]}, updated_at=now)
            )
        release = Release.model_validate(rec.doc["release"])
        self._controller.event(release_stream(name), _label(release, where), "ReleasePromoted", what)
        self._releases.wake()
        return {"name": name, "promoted": what, "step": where}

    def undo(self, name: str) -> dict[str, Any]:
        """Take back a release that succeeded: every step undone, newest first, as an abort does."""
        return _undo_finished(self._store, self._controller, self._releases, self._clock, name)

    def abort(self, name: str, reason: str = "aborted by user") -> dict[str, Any]:
        """Roll the release back (newest step first) from wherever it is."""
        with self._store.transaction():
            rec = self._store.find_release(name)
            if rec is None:
                raise NotFoundError(f"release {name!r} not found")
            phase = rec.state.get("phase")
            given_up = tuple(i for i, st in enumerate(rec.state["steps"]) if st.get("undo_error"))
            if phase == "Failed" and given_up:
                return self._retry_undos(rec, given_up, reason)
            if phase in TERMINAL:
                raise ConflictError(f"release {name!r} is {phase}: there is nothing to abort")
            if rec.state.get("aborted"):
                return {"name": name, "aborted": True, "changed": False}
            self._store.put_release(
                replace(
                    rec,
                    state=rec.state | {"aborted": True, "abortReason": reason},
                    updated_at=self._clock.now(),
                )
            )
        self._controller.event(release_stream(name), "", "ReleaseAborted", reason)
        self._releases.wake()
        return {"name": name, "aborted": True, "changed": True}

    def _retry_undos(self, rec: ReleaseRecord, given_up: tuple[int, ...], reason: str) -> dict[str, Any]:
        """An abort of a release that ended Failed because undoing some steps failed: try those again
        (the cause, e.g. a database, may have been fixed). Called inside the store's transaction."""
        steps = [dict(st) for st in rec.state["steps"]]
        for i in given_up:
            steps[i] |= {"undo_error": None, "undo_failures": 0, "message": "trying the undo again"}
        state = rec.state | {
            "steps": steps,
            "aborted": True,
            "phase": "RollingBack",
            "message": "trying again what could not be undone",
        }
        self._store.put_release(replace(rec, state=state, updated_at=self._clock.now()))
        self._controller.event(
            release_stream(rec.name), "", "ReleaseAborted", f"{reason}: trying the failed undo again"
        )
        self._releases.wake()
        return {"name": rec.name, "aborted": True, "changed": True}


def _undo_finished(
    store: Store, controller: Controller, releases: ReleaseController, clock: Clock, name: str
) -> dict[str, Any]:
    with store.transaction():
        rec = store.find_release(name)
        if rec is None:
            raise NotFoundError(f"release {name!r} not found")
        phase = rec.state.get("phase")
        if phase != "Succeeded":
            raise ConflictError(
                f"release {name!r} is {phase}: undo takes back a release that succeeded (abort one that runs)"
            )
        state = rec.state | {
            "aborted": True,
            "abortReason": "undo",
            "phase": "RollingBack",
            "message": "undoing",
        }
        store.put_release(replace(rec, state=state, updated_at=clock.now()))
    controller.event(release_stream(name), "", "ReleaseUndo", "undoing every step, newest first")
    releases.wake()
    return {"name": name, "undoing": True}


def release_view(rec: ReleaseRecord) -> dict[str, Any]:
    """A release as ``status`` shows it: its phase and each step with its phase and message."""
    release = Release.model_validate(rec.doc["release"])
    steps = []
    for i, (step, p) in enumerate(zip(release.spec.steps, rec.state["steps"], strict=True)):
        steps.append(
            {
                "index": i,
                "name": step.name or step.kind,
                "kind": step.kind,
                "what": _describe(release, i),
                "phase": p["phase"],
                "message": p["message"],
                "analysis": _analysis_names(step),
                "rollout": _measured_rollout(rec.doc["facts"], i)
                if _analysis_names(step)
                else rec.doc["facts"][i].get("rollout"),
                "startedAt": p["started_at"],
                "finishedAt": p["finished_at"],
                "record": p["record"],
            }
        )
    return {
        "name": rec.name,
        "phase": rec.state.get("phase"),
        "message": _live_message(rec),
        "aborted": bool(rec.state.get("aborted")),
        "notUndoable": rec.state.get("notUndoable", []),
        "failure": rec.state.get("failure"),
        "pointOfNoRollback": point_of_no_rollback(_facts(rec.doc, rec.state)),
        "plannedPointOfNoRollback": next(
            (i for i, f in enumerate(rec.doc["facts"]) if f["kind"] == "complete"), None
        ),
        "createdAt": rec.created_at,
        "updatedAt": rec.updated_at,
        "steps": steps,
    }
