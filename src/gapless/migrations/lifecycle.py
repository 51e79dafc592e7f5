"""What the PostgreSQL and the SQLite engines share: the lifecycle of a migration around its steps.

Both engines keep one record per migration (phase, next step, the steps of start that ran) and walk a
plan's steps the same way: start resumes where it stopped, complete and rollback refuse what does not
fit where the migration is, rollback skips the ``down`` of a raw ``sql`` whose ``up`` never ran, and a
failed step is recorded with its error. ``Lifecycle`` holds that once. What differs stays in each
engine: connecting and locking, how a transaction is made, how one step runs, which clients can be seen
before complete and rollback, and the SQLite engine's lock-time limits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from gapless.core.errors import Problem, SpecError
from gapless.migrations.model import Migration
from gapless.migrations.reports import MigrationStateError, MigrationStatus, steps_done, steps_phase
from gapless.migrations.sqlite.state import SqliteBackfill, SqliteRecord
from gapless.migrations.state import ACTIVE_PHASES, BackfillRecord, MigrationPhase, MigrationRecord
from gapless.migrations.steps import PhasedSteps, StepView

__all__ = ["Lifecycle", "RecordStore", "StepLike"]


R = TypeVar("R", MigrationRecord, SqliteRecord)
R_co = TypeVar("R_co", covariant=True)


class RecordStore(Protocol[R_co]):
    """The state store of either engine, as the lifecycle uses it (inside the engine's transactions)."""

    def get(self, name: str, /) -> R_co | None: ...
    def active(self) -> R_co | None: ...
    def all(self) -> Sequence[R_co]: ...
    def current(self) -> R_co | None: ...
    def backfills(self, migration: str, /) -> Sequence[BackfillRecord | SqliteBackfill]: ...
    def advance(self, name: str, step: int, /) -> None: ...
    def set_phase(
        self, name: str, phase: MigrationPhase, /, *, start_steps_applied: int | None = None
    ) -> None: ...
    def record_error(self, name: str, error: str, /) -> None: ...
    def forget_backfills(self, migration: str, /) -> None: ...


class StepLike(StepView, Protocol):
    @property
    def action(self) -> object: ...


S = TypeVar("S", bound=StepLike)


class Lifecycle(Generic[R, S]):
    """The lifecycle both engines run; an engine supplies its store, plans, transactions and step runner."""

    sql_action: ClassVar[type[object]]
    """The engine's action for a raw ``sql`` operation (its rollback runs only if its start did)."""
    recording_errors: ClassVar[tuple[type[Exception], ...]]
    """What recording a step's error may raise when the connection itself is what failed."""
    backfill_checkpoints: ClassVar[bool] = False
    """Whether status shows each backfill's checkpoint."""

    # -- what each engine supplies ----------------------------------------------------------------
    @property
    def store(self) -> RecordStore[R]:
        raise NotImplementedError

    @property
    def _where(self) -> str:
        """What the engine migrates, for messages: ``schema 'public'``, a database file."""
        raise NotImplementedError

    def _lock_for_changes(self) -> None:
        raise NotImplementedError

    def _has_state(self) -> bool:
        """Whether the state tables exist (reading them before they do finds nothing)."""
        raise NotImplementedError

    def _plan_of(self, record: R) -> PhasedSteps[S]:
        raise NotImplementedError

    def _transaction(self, what: str, work: Callable[[], object]) -> None:
        """Run ``work`` (writes to the state) in one transaction; ``what`` names it in lock-wait notices."""
        raise NotImplementedError

    def _do_step(self, record: R, step: S, index: int) -> None:
        """Carry out one step and record it done (``index + 1``), in the engine's transaction(s)."""
        raise NotImplementedError

    def _step_event(self, step: S, index: int, total: int, *, done: bool) -> None:
        raise NotImplementedError

    # -- records ----------------------------------------------------------------------------------
    def _active_record(self) -> R | None:
        return self.store.active() if self._has_state() else None

    def _active(self, verb: str) -> R:
        self._lock_for_changes()
        record = self._active_record()
        if record is None:
            raise MigrationStateError(f"no migration is in progress on {self._where}: nothing to {verb}")
        return record

    def _reload(self, record: R) -> R:
        fresh = self.store.get(record.name)
        if fresh is None:  # pragma: no cover - rows are never deleted while a command runs
            raise MigrationStateError(f"the state of {record.name} disappeared")
        return fresh

    def _created(self, name: str) -> R:
        created = self.store.get(name)
        if created is None:  # pragma: no cover - created just above
            raise MigrationStateError(f"the state of {name} was not recorded")
        return created

    def _set_phase(
        self, record: R, phase: MigrationPhase, what: str, *, start_steps_applied: int | None = None
    ) -> None:
        self._transaction(
            what, lambda: self.store.set_phase(record.name, phase, start_steps_applied=start_steps_applied)
        )

    def _finish(self, record: R, phase: MigrationPhase, what: str) -> None:
        def finish() -> None:
            self.store.set_phase(record.name, phase)
            self.store.forget_backfills(record.name)

        self._transaction(what, finish)

    def _advance(self, name: str, step: int) -> None:
        self._transaction("record progress", lambda: self.store.advance(name, step))

    # -- the lifecycle ----------------------------------------------------------------------------
    def _resumable(self, migration: Migration, document: dict[str, Any]) -> R | None:
        """The record of a start to resume (``starting``) or already done (``started``); None: start anew.

        Refuse a start while another migration is in progress, a changed file, a migration in another
        phase, and one already completed.
        """
        active = self._active_record()
        if active is None:
            existing = self.store.get(migration.name) if self._has_state() else None
            if existing is not None and existing.phase == "completed":
                raise MigrationStateError(f"migration {migration.name} is already completed")
            return None
        if active.name != migration.name:
            raise MigrationStateError(
                f"migration {active.name} is {active.phase.replace('_', ' ')} on {self._where}: "
                f"complete or roll it back before starting {migration.name}"
            )
        if active.document != document:
            raise SpecError(
                f"migration {migration.name}",
                [Problem("", "differs from the version that was started; roll back first to change it")],
            )
        if active.phase not in ("started", "starting"):
            raise MigrationStateError(f"migration {migration.name} is {active.phase.replace('_', ' ')}")
        return active

    def _finish_start(self, record: R, p: PhasedSteps[S]) -> None:
        steps = p.phase("start")
        self._run_steps(record, steps, record.step)
        self._set_phase(record, "started", "record the start", start_steps_applied=len(steps))

    def _completable(self) -> R:
        record = self._active("complete")
        if record.phase == "starting":
            raise MigrationStateError(
                f"the start of {record.name} did not finish: run start again to resume it, or roll it back"
            )
        if record.phase == "rolling_back":
            raise MigrationStateError(f"{record.name} is being rolled back: run rollback again to finish it")
        return record

    def _finish_complete(self, record: R, p: PhasedSteps[S]) -> None:
        if record.phase == "started":
            self._set_phase(record, "completing", "begin complete")
            record = self._reload(record)
        self._run_steps(record, p.phase("complete"), record.step)
        self._finish(record, "completed", "record the completion")

    def _check_rollback(self, record: R, p: PhasedSteps[S]) -> None:
        if record.phase == "completing" and record.step > p.point_of_no_return:
            done = p.phase("complete")[p.point_of_no_return].describe()
            raise MigrationStateError(
                f"complete of {record.name} is past the point of no return ({done}); finish it with complete"
            )

    def _finish_rollback(self, record: R, p: PhasedSteps[S]) -> None:
        if record.phase != "rolling_back":
            applied = record.step if record.phase == "starting" else len(p.phase("start"))
            self._set_phase(record, "rolling_back", "begin rollback", start_steps_applied=applied)
            record = self._reload(record)
        start = p.phase("start")
        steps = p.phase("rollback")
        for i in range(record.step, len(steps)):
            step = steps[i]
            if isinstance(step.action, self.sql_action):
                index = next(
                    j
                    for j, s in enumerate(start)
                    if s.operation == step.operation and isinstance(s.action, self.sql_action)
                )
                if index >= record.start_steps_applied:  # its up never ran
                    self._advance(record.name, i + 1)
                    continue
            self._run_step(record, step, i, len(steps))
        self._finish(record, "rolled_back", "record the rollback")

    # -- steps ------------------------------------------------------------------------------------
    def _run_steps(self, record: R, steps: list[S], first: int) -> None:
        for i in range(first, len(steps)):
            self._run_step(record, steps[i], i, len(steps))

    def _run_step(self, record: R, step: S, index: int, total: int) -> None:
        self._step_event(step, index, total, done=False)
        try:
            self._do_step(record, step, index)
        except Exception as e:
            message = f"step {index + 1} ({step.describe()}): {e}"
            try:
                self._transaction("record the error", lambda: self.store.record_error(record.name, message))
            except self.recording_errors as recording:  # the connection may be what failed
                e.add_note(f"(the error could not be recorded in the migration state: {recording})")
            raise
        self._step_event(step, index, total, done=True)

    # -- status -----------------------------------------------------------------------------------
    def _migrations(self) -> tuple[str | None, MigrationStatus | None, list[MigrationStatus]]:
        """The current version (the last completed migration), the migration in progress, and all of them."""
        records = self.store.all() if self._has_state() else []
        statuses = [self._status_of(r) for r in records]
        active = next((s for s in statuses if s.phase in ACTIVE_PHASES), None)
        current = self.store.current() if records else None
        return (current.name if current else None), active, statuses

    def _status_of(self, r: R) -> MigrationStatus:
        try:
            total = len(self._plan_of(r).phase(steps_phase(r.phase)))
        except SpecError:
            total = 0
        backfills = [
            {
                "table": b.table,
                "rowsDone": b.rows_done,
                "rowsEstimate": b.rows_estimate,
                "done": b.done,
                **({"checkpoint": b.checkpoint} if self.backfill_checkpoints else {}),
                "updatedAt": b.updated_at.isoformat(),
            }
            for b in self.store.backfills(r.name)
        ]
        return MigrationStatus(
            name=r.name,
            phase=r.phase,
            step=steps_done(r.phase, r.step, total),
            steps=total,
            version_schema=r.version_schema,
            previous_schema=r.previous_schema,
            started_at=r.started_at,
            updated_at=r.updated_at,
            completed_at=r.completed_at,
            error=r.error,
            backfills=backfills,
        )
