"""The reconcile loop: observe -> plan (pure) -> apply -> persist, for every rollout, level-triggered.

Each pass reads the desired spec and the recorded instances from the store, checks the processes and the
probe results, asks ``plan_rolling`` what to do, does it, and writes the status. Nothing is remembered
between passes that is not in the store or directly observable, so a control plane killed at any line
and started again continues where it was: it adopts the instances whose processes still run, kills
processes it has no record of, and resumes stops that were under way.

Ordering is what makes the update gapless: an instance joins the router only once its readiness probe
passes; an instance leaves the router (acknowledged) before it is drained, and is signalled only once
its in-flight requests have finished or the grace period ran out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from gapless.controller.adoption import adopt_processes, describe_unclaimed, find_unclaimed
from gapless.controller.analysis import AnalysisRunner, run_summary
from gapless.controller.annotations import Annotation, AnnotationSender
from gapless.controller.instances import InstanceSupervisor, instance_handle, revision_template
from gapless.controller.routing import limits_for, router_for, routing_for, run_check
from gapless.controller.schema import SchemaWatch
from gapless.controller.status import build_status, strategy_status
from gapless.controller.traffic import PREVIEW_SUFFIX, RouterStartError, RouterState, Routing, Traffic
from gapless.controller.writes import PendingEvents, write_backoff, write_failed_message
from gapless.core.clock import Clock
from gapless.core.errors import GaplessError, StateWriteError
from gapless.platform.base import (
    ROLE_INSTANCE,
    ROLE_ROUTER,
    DiscoveredProcess,
    Platform,
)
from gapless.platform.logtimes import LogClock
from gapless.providers.schema import DatabaseMigrations
from gapless.router.config import Backend
from gapless.spec.models import CHANGE_CAUSE_ANNOTATION, Rollout, RolloutSpec, template_hash
from gapless.spec.strategy import PrePromotionCheck
from gapless.store.outbox import OUTBOX_FILE, drain_events
from gapless.store.records import InstanceRecord, RevisionRecord, RolloutRecord
from gapless.store.revision_files import (
    SavedRevision,
    forget_revision,
    forget_rollout,
    save_revision,
)
from gapless.store.sqlite import Store
from gapless.store.write_errors import write_error
from gapless.strategies.plan import InstancePhase, InstanceView, Plan, RolloutView, StepState
from gapless.strategies.revisions import after_pass, history_to_prune, stable_of, target_writes
from gapless.strategies.rollout import plan_rollout, rollout_view
from gapless.strategies.schema import SchemaSnapshot, rollback_barrier, schema_gate, schema_gone

__all__ = ["Controller"]

log = logging.getLogger("gapless.controller")

PASS_INTERVAL = 0.5
"""Seconds between passes when nothing wakes the loop earlier (process exits are polled)."""
LOG_TIMES_INTERVAL = 1.0
"""Seconds between notes of the instances' log sizes: the precision of `gapless logs --since/--timestamps`."""
SETTLE_TIMEOUT = 2.0
"""How long a command waits for its rollout's own pass before answering (the pass goes on regardless)."""
ROUTER_TRUST = 1.0
"""A command's own pass does not ask a router that answered this recently whether it still runs."""
UNCLAIMED_RECHECK = 5.0
"""How often processes running without a record are looked for again (to notice they are gone)."""


class Controller:
    """Owns the reconcile loop and every background task it starts. Inert until ``run()``."""

    def __init__(
        self,
        store: Store,
        platform: Platform,
        traffic: Traffic,
        clock: Clock,
        state_dir: Path,
        *,
        annotations: AnnotationSender | None = None,
        database: DatabaseMigrations | None = None,
    ) -> None:
        self._store = store
        self._annotations = annotations
        self._platform = platform
        self._traffic = traffic
        self._clock = clock
        self._dir = state_dir
        self._wake = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._instances = InstanceSupervisor(
            store, platform, traffic, clock, state_dir, event=self.event, wake=self.wake, spawn=self._spawn
        )
        self.analysis = AnalysisRunner(
            store, traffic, platform, clock, event=self.event, wake=self.wake, spawn=self._spawn
        )
        self.schema = SchemaWatch(store, database, wake=self.wake)
        self._shutdown = False
        self._checks: dict[str, asyncio.Task[None]] = {}
        self._previews: set[str] = set()
        self._unclaimed: dict[str, list[DiscoveredProcess]] = {}
        self._unclaimed_checked = 0.0
        self._pending = PendingEvents(store)
        self._locks: dict[str, asyncio.Lock] = {}
        self.finished = asyncio.Event()

    # -- loop ---------------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def _lock(self, name: str) -> asyncio.Lock:
        """One pass at a time per rollout: the loop's and a command's own never interleave."""
        return self._locks.setdefault(name, asyncio.Lock())

    async def settle(self, name: str, timeout: float = SETTLE_TIMEOUT) -> None:
        """Reconcile one rollout now, for a command that just changed it (promote, abort, undo, ...).

        Without this the command would take effect at the loop's next pass, which first finishes the
        pass in progress over every rollout: a promotion waited hundreds of milliseconds for other
        rollouts' work. The pass runs as a task of the loop, so a command that gives up waiting after
        ``timeout`` seconds leaves it to finish; a loop pass that reaches the same rollout meanwhile
        waits for it and then finds nothing left to do.
        """
        if self._tg is None:
            return
        task = self._spawn(self._reconcile_named(name), f"reconcile {name}")
        await asyncio.wait({task}, timeout=timeout)

    async def _reconcile_named(self, name: str) -> None:
        async with self._lock(name):
            rec = self._store.find_rollout(name)
            if rec is None or name in self._unclaimed:
                return
            try:
                await self.reconcile(rec, quick=True)
            except StateWriteError as e:
                self._pending.note(e)
            except GaplessError as e:
                log.warning("%s: %s", name, e)
                self._set_message(name, str(e))
        self.wake()  # the loop recomputes when it is next due (a step may now end sooner)

    def request_shutdown(self) -> None:
        """Stop every rollout (instances and routers), then end ``run()``."""
        self._shutdown = True
        for rec in self._store.rollouts():
            if not rec.deleting:
                self._store.put_rollout(_replace_rollout(rec, deleting=True))
        self.wake()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                await self._adopt()
                self._drain_outbox()
                await self.schema.refresh()  # before the first pass: no hold for want of a first read
                schema = tg.create_task(self.schema.run(), name="migration state")
                sampler = tg.create_task(self.analysis.sample_forever(), name="resource sampler")
                log_times = tg.create_task(self._note_log_times(), name="log times")
                sender = None
                if self._annotations is not None:
                    sender = tg.create_task(self._annotations.run(), name="grafana annotations")
                while True:
                    next_at = await self.reconcile_all()
                    if self._shutdown and not self._store.rollouts() and not self._instances.stopping:
                        break
                    timeout = PASS_INTERVAL
                    if next_at is not None:
                        timeout = max(0.01, min(timeout, next_at - self._clock.now()))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout)
                    self._wake.clear()
                self._instances.cancel_probes()
                sampler.cancel()
                log_times.cancel()
                schema.cancel()
                if sender is not None:
                    sender.cancel()
                await self.analysis.aclose()
        finally:
            self._tg = None
            self.finished.set()

    async def _note_log_times(self) -> None:
        """Note each running instance's log size once a second (``gapless.platform.logtimes``)."""
        clock = LogClock()
        while True:
            try:
                paths = [Path(i.log_path) for i in self._store.instances() if i.state == "running"]
                await asyncio.to_thread(clock.note, paths, time.time())
            except Exception:
                log.exception("noting log times failed")
            await asyncio.sleep(LOG_TIMES_INTERVAL)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        if self._tg is None:
            raise RuntimeError("controller is not running")
        return self._tg.create_task(_guarded(coro, name), name=name)

    def _drain_outbox(self) -> None:
        """Take in the migration events ``gapless migrate`` kept while no control plane ran."""
        if not (self._dir / OUTBOX_FILE).exists():
            return
        try:
            taken = drain_events(self._dir, self._store)
        except StateWriteError:
            raise
        except (OSError, ValueError) as e:
            log.warning("could not take in kept migration events: %s", e)
            return
        if taken:
            log.info("took in %d migration event(s) kept while no control plane ran", taken)
            self.schema.poke()

    async def reconcile_all(self) -> float | None:
        """One pass over every rollout; a pass that cannot write stops and is retried after a backoff."""
        try:
            return await self._reconcile_all()
        except StateWriteError as e:
            self._pending.note(e)
            failure = self._store.write_failure
            return self._clock.now() + write_backoff(failure.attempts if failure else 1)

    async def _reconcile_all(self) -> float | None:
        if self._store.restore_if_deleted():
            log.warning(
                "state.db was deleted under the running control plane; restored it from the open database"
            )
            for r in self._store.rollouts():
                self.event(
                    r.name, "", "StateRestored", "state.db was deleted; restored from the open database"
                )
        self._pending.flush()
        recovered = self._store.take_recovered()
        if recovered is not None:
            log.info("the state can be written again: %s", write_failed_message(recovered))
            for r in self._store.rollouts():
                self.event(r.name, "", "StateWriteFailed", write_failed_message(recovered))
        self._drain_outbox()
        next_at: float | None = None
        self._recheck_unclaimed()
        for rec in self._store.rollouts():
            if rec.name in self._unclaimed:
                # Processes of another (lost) state run under this name: touching its router or
                # instances would break what they serve. `gapless up --adopt` takes them over.
                if rec.deleting:  # only the record goes; `gapless down` stops the processes itself
                    self._store.delete_rollout(rec.name)
                    continue
                self._set_message(rec.name, describe_unclaimed(rec.name, self._unclaimed[rec.name]))
                continue
            try:
                async with self._lock(rec.name):
                    fresh = self._store.find_rollout(rec.name)  # a command's own pass may have run
                    at = None if fresh is None else await self.reconcile(fresh)
            except StateWriteError:
                raise
            except GaplessError as e:
                log.warning("%s: %s", rec.name, e)
                self._set_message(rec.name, str(e))
                at = None
            except Exception:
                log.exception("reconcile of %s failed", rec.name)
                at = None
            if at is not None:
                next_at = at if next_at is None else min(next_at, at)
        return next_at

    def _set_message(self, name: str, message: str) -> None:
        rec = self._store.find_rollout(name)
        if rec is not None and rec.status.get("message") != message:
            self._store.set_status(name, rec.status | {"message": message})

    def event(self, rollout: str, revision: str, type_: str, message: str) -> None:
        log.info("%s %s %s: %s", rollout, revision, type_, message)
        now = self._clock.now()
        try:
            if len(self._pending):
                self._pending.flush()  # keep the order: what waits goes first
            self._store.add_event(now, rollout, revision, type_, message)
        except StateWriteError as e:
            self._pending.add(now, rollout, revision, type_, message)
            self._pending.note(e)
        if self._annotations is not None:  # stored first; the sender only queues, never blocks
            self._annotations.submit(Annotation(now, rollout, revision, type_, message))

    # -- adoption after a restart ----------------------------------------------------------------------

    async def _adopt(self) -> None:
        records = {r.id: r for r in self._store.instances()}
        rollouts = {r.name for r in self._store.rollouts()}
        found = self._platform.discover()
        self._unclaimed = find_unclaimed(found, self._store.known_state_ids(), rollouts)
        self._unclaimed_checked = self._clock.now()
        for name, procs in self._unclaimed.items():
            message = describe_unclaimed(name, procs)
            log.warning("%s", message)
            self.event(name, "", "ProcessesWithoutRecord", message)
        unclaimed = {p.pid for procs in self._unclaimed.values() for p in procs}
        for proc in found:
            if proc.pid in unclaimed:
                continue
            if proc.role == ROLE_INSTANCE:
                rec = records.get(proc.instance_id or "")
                if rec is None or rec.pid != proc.pid or rec.state == "stopped":
                    log.warning("killing orphan instance process %s (pid %s)", proc.instance_id, proc.pid)
                    await self._platform.kill_group(proc.pgid)
                    if proc.rollout in rollouts:
                        self.event(proc.rollout or "", proc.revision or "", "OrphanKilled", f"pid {proc.pid}")
            elif proc.role == ROLE_ROUTER:
                base = (proc.rollout or "").removesuffix(PREVIEW_SUFFIX)
                if base not in rollouts:
                    await self._platform.kill_group(proc.pgid)
                elif proc.rollout != base:
                    self._previews.add(base)
        for rec in records.values():
            if rec.state == "starting":
                self._store.update_instance(
                    rec.id, state="backoff", next_start_at=self._clock.now(), pid=None
                )
            elif (
                rec.state == "running"
                and rec.pid is not None
                and self._platform.is_running(instance_handle(rec))
            ):
                self._instances.watch(rec)

    # -- processes without a record (a lost state.db) ---------------------------------------------------

    def unclaimed(self) -> dict[str, list[DiscoveredProcess]]:
        """Routers and instances running for this state directory that no record covers, by rollout."""
        return {k: list(v) for k, v in self._unclaimed.items()}

    def unclaimed_message(self, name: str) -> str | None:
        """Why ``name`` cannot be applied while processes of a lost state serve it; None when it can."""
        procs = self._unclaimed.get(name)
        return None if not procs else describe_unclaimed(name, procs)

    def _recheck_unclaimed(self) -> None:
        """Forget unclaimed rollouts whose processes are gone (stopped by hand or by `gapless down`)."""
        now = self._clock.now()
        if not self._unclaimed or now - self._unclaimed_checked < UNCLAIMED_RECHECK:
            return
        self._unclaimed_checked = now
        alive = {p.pid for p in self._platform.discover()}
        self._unclaimed = {
            name: live
            for name, procs in self._unclaimed.items()
            if (live := [p for p in procs if p.pid in alive])
        }

    async def adopt(self, rollout: Rollout) -> dict[str, Any]:
        """Take over the unclaimed processes of ``rollout``: records rebuilt, probes started, in one step.

        Raises ``AdoptionError`` when there is nothing to adopt, when the running router serves another
        address than ``spec.listen``, or when an instance runs a revision whose template is unknown.
        """
        name = rollout.name
        adoption, procs = await adopt_processes(
            rollout, self._store, self._platform, self._traffic, self._dir, self._clock.now()
        )
        self._unclaimed.pop(name, None)
        if any(p.role == ROLE_ROUTER and p.rollout != name for p in procs):
            self._previews.add(name)
        for inst in adoption.instances:
            self._instances.watch(inst)
        numbers = ", ".join(f"{r.number} ({r.phase})" for r in adoption.revisions)
        self.event(
            name,
            template_hash(rollout.spec.template),
            "Adopted",
            f"took over {len(adoption.instances)} instance(s) ({sum(i.ready for i in adoption.instances)} "
            f"in traffic) and the router from a lost state; revisions {numbers or 'none'}",
        )
        self.wake()
        return {
            "name": name,
            "generation": adoption.rollout.generation,
            "changed": True,
            "revisionHash": template_hash(rollout.spec.template),
            "adopted": {
                "instances": [i.id for i in adoption.instances],
                "ready": [i.id for i in adoption.instances if i.ready],
                "revisions": [
                    {"number": r.number, "hash": r.hash, "phase": r.phase} for r in adoption.revisions
                ],
            },
        }

    # -- one rollout ----------------------------------------------------------------------------------

    async def reconcile(self, rec: RolloutRecord, *, quick: bool = False) -> float | None:
        """One pass over one rollout; ``quick``: a command's own pass, as quick as it can safely be."""
        name = rec.name
        now = self._clock.now()
        if rec.deleting:
            await self._teardown(rec)
            return None
        rollout = Rollout.model_validate(rec.spec)
        spec = rollout.spec
        h = template_hash(spec.template)
        doc = spec.template.model_dump(mode="json", by_alias=True, exclude_none=True)
        cause = rollout.metadata.annotations.get(CHANGE_CAUSE_ANNOTATION, "")
        writes = target_writes(self._store.revisions(name), name, h, doc, now, cause)
        for write in writes:
            self._store.put_revision(write)
            if write.hash == h:
                _keep_revision_file(self._dir, write, update=False)
                command = " ".join(spec.template.command)
                self.event(name, h, "RevisionCreated", f"revision {write.number} ({h}): {command}")
        if writes:
            self._prune_history(name)
        revisions = self._store.revisions(name)
        target = next(r for r in revisions if r.hash == h)
        needs = _schema_needs(revisions)
        snap = self.schema.snapshot() if needs else None
        required = spec.template.requires_schema
        hold = ""
        if snap is not None and required and target.phase == "progressing":
            hold = schema_gate(required, snap) or ""
            if hold and now - (target.progress_at or target.created_at) >= 1.0:
                # The progress deadline counts from when the schema is there, not while the revision waits.
                self._store.put_revision(_replace_revision(target, progress_at=now))
                revisions = self._store.revisions(name)
                target = next(r for r in revisions if r.hash == target.hash)
        by_hash = {r.hash: r for r in revisions}
        router_message = ""
        was = self._traffic.state(name)
        try:
            await self._traffic.ensure(
                name,
                spec.listen,
                limits_for(spec),
                trust_for=ROUTER_TRUST if quick else 0.0,
                router=router_for(spec),
            )
        except RouterStartError as e:
            router_message = str(e)
        self._router_restarts(name, rec.status, target.hash, was, spec.listen)

        next_at = await self._instances.supervise(name, by_hash, spec.template, now)
        instances = self._store.instances(name)
        if not router_message:
            await self._instances.push_backends(name, instances)
        if history_to_prune(revisions, {i.revision for i in instances}, spec.revision_history_limit):
            # An old revision whose last instance has just gone (an aborted canary drained after its
            # delay) is pruned now, not only when the next revision is written.
            self._prune_history(name)
            revisions = self._store.revisions(name)
            by_hash = {r.hash: r for r in revisions}

        stable = stable_of(revisions)
        views = [_view(i) for i in instances]
        runs = self._store.analysis_runs(name)
        rview = rollout_view(spec, target, revisions, views, self.analysis.phases(runs, target.hash), now)
        st = StepState.from_json(target.step_state)
        if st.checks == "running" and target.hash not in self._checks:
            st = replace(st, checks="pending")  # a control plane restart interrupted them: run again
        # A revision held for its schema gets an empty plan: nothing of it starts, what runs keeps running.
        # Without a router only the progress deadline acts (and says why nothing progressed).
        if router_message:
            plan = _router_down(rview, now, router_message)
        else:
            plan = Plan() if hold else plan_rollout(spec.strategy, rview, st, views, now)
        await self._apply(name, plan, target, stable, by_hash, spec, now, router_up=not router_message)
        # With the router down the plan is empty: keep this revision's runs as they are meanwhile.
        wanted: tuple[str, ...] | None = None
        if not router_message and not hold:
            wanted = plan.analyses if target.phase == "progressing" and stable is not None else ()
        self.analysis.sync(name, spec, target.hash, stable.hash if stable else None, wanted, runs)
        if not router_message:
            await self._sync_preview(name, spec, plan)
        if plan.run_checks:
            self._begin_checks(name, target.hash, spec)

        revisions = self._store.revisions(name)
        target = next(r for r in revisions if r.hash == target.hash)
        stable = stable_of(revisions)
        rview = RolloutView(
            **(
                rview.__dict__
                | {
                    "target_failed": target.phase == "failed",
                    "target_complete": target.phase == "complete",
                    "stable": stable.hash if stable else None,
                }
            )
        )
        router_state = self._traffic.state(name)
        strategy = strategy_status(spec, target, stable, _weights_in_force(self._traffic.routing(name)), now)
        runs = [r for r in self._store.analysis_runs(name, target.hash) if r.active]
        if runs:
            strategy["analysis"] = [run_summary(r) for r in runs]
        if plan.waiting and target.phase == "progressing":
            strategy["waiting"] = plan.waiting
            if "inconclusive" in plan.waiting:
                strategy["waitingForPromote"] = True
        status = build_status(
            name=name,
            generation=rec.generation,
            view=rview,
            revisions=revisions,
            instances=self._store.instances(name),
            router={
                "listen": spec.listen,
                "running": router_state.running,
                "pid": router_state.pid,
                "configVersion": router_state.config_version,
                "backends": router_state.backends,
                "restarts": router_state.restarts,
                "error": router_message or None,
            }
            | (
                {"requestLog": router_state.request_log.status()}
                if router_state.request_log is not None
                else {}
            ),
            previous=rec.status,
            now=now,
            message=router_message
            or hold
            or (target.message if target.phase == "failed" else "")
            or (plan.waiting if target.phase == "progressing" else ""),
            strategy=strategy,
        )
        if snap is not None:
            self._schema_status(name, status, rec.status, snap, target, revisions, needs, hold)
        # Countdowns (pause left) stay fresh to the second without a write on every pass.
        if _status_changed(rec.status, status) or now - float(rec.status.get("updatedAt", 0)) >= 1.0:
            self._store.set_status(name, status)
        if plan.changes_instances or plan.outcome:
            self.wake()
        for at in (plan.requeue_at,):
            if at is not None:
                next_at = at if next_at is None else min(next_at, at)
        return next_at

    def _router_restarts(
        self, name: str, previous: dict[str, Any], revision: str, was: RouterState, listen: str
    ) -> None:
        """Record restarts of the router's worker since the last status (its supervisor counts them),
        and a router this control plane knew that was gone altogether and had to be started again."""
        state = self._traffic.state(name)
        if was.pid is not None and state.pid is not None and state.pid != was.pid and was.listen == listen:
            self.event(
                name,
                revision,
                "RouterRestarted",
                f"the router (pid {was.pid}) was gone, its listening socket with it: "
                f"started a new one (pid {state.pid}) on {listen}",
            )
            return
        now = state.restarts
        before = (previous.get("router") or {}).get("restarts")
        if isinstance(before, int) and now > before:
            self.event(
                name,
                revision,
                "RouterRestarted",
                f"the router's worker died and was restarted {now - before} time(s) "
                f"({now} in all); its listening socket stayed open",
            )

    def _schema_status(
        self,
        name: str,
        status: dict[str, Any],
        previous: dict[str, Any],
        snap: SchemaSnapshot,
        target: RevisionRecord,
        revisions: list[RevisionRecord],
        needs: dict[str, str],
        hold: str,
    ) -> None:
        """Schema gating in the status (and its changes as events): the hold, and revisions gone for good."""
        number = {r.hash: r.number for r in revisions}
        was = str(previous.get("schemaHold") or "")
        if hold != was:
            if hold:
                self.event(name, target.hash, "SchemaWait", f"revision {target.number} waits: {hold}")
            elif target.phase == "progressing":
                self.event(
                    name,
                    target.hash,
                    "SchemaReady",
                    f"migration {needs.get(target.hash)} has started: revision {target.number} rolls out",
                )
        status["schemaHold"] = hold
        known = previous.get("schema")
        before: dict[str, Any] = known if isinstance(known, dict) else {}
        barrier = rollback_barrier(snap)
        gone = {h: why for h, req in needs.items() if (why := schema_gone(req, snap)) is not None}
        if snap.error:  # keep what was known; a database that does not answer removes nothing
            status["schema"] = dict(before) | {"source": snap.source, "error": snap.error}
            return
        status["schema"] = {
            "source": snap.source,
            "error": "",
            "requires": needs.get(target.hash),
            "migrations": [{"name": m.name, "phase": m.phase, "since": m.since} for m in snap.migrations],
            "pointOfNoRollback": None
            if barrier is None
            else {"migration": barrier.name, "phase": barrier.phase, "since": barrier.since},
            "unrunnableRevisions": sorted(number[h] for h in gone),
        }
        for entry in status["revisions"]:
            h = entry.get("hash")
            if h in needs:
                entry["requiresSchema"] = needs[h]
            if h in gone:
                entry["schemaGone"] = gone[h]
        old_barrier = (before.get("pointOfNoRollback") or {}).get("migration")
        if barrier is not None and barrier.name != old_barrier and gone:
            which = ", ".join(
                f"{number[h]} (schema {needs[h]})" for h in sorted(gone, key=number.__getitem__)
            )
            self.event(
                name,
                target.hash,
                "PointOfNoRollback",
                f"migration {barrier.name} {barrier.phase}: revisions {which} can no longer be rolled back to",
            )

    async def _apply(
        self,
        name: str,
        plan: Plan,
        target: RevisionRecord,
        stable: RevisionRecord | None,
        by_hash: dict[str, RevisionRecord],
        spec: RolloutSpec,
        now: float,
        *,
        router_up: bool = True,
    ) -> None:
        failure = ""
        if plan.outcome == "failed":
            failure = plan.reason.replace(
                f"revision {target.hash}", f"revision {target.number} ({target.hash})"
            )
            troubled = [i for i in self._store.instances(name) if i.revision == target.hash and i.message]
            if troubled:
                failure += f"; last instance error: {troubled[-1].message}"
        revisions = self._store.revisions(name)
        fresh = next((r for r in revisions if r.hash == target.hash), None)
        if fresh is not None and fresh.step_state != target.step_state:
            # A command (promote, abort, ...) changed the step state while this pass waited on the router
            # or instances: this plan was made from the old state and must not overwrite the command's.
            # The command woke the loop; the next pass plans from the new state.
            self.wake()
            return
        kept: list[RevisionRecord] = []
        for rev in after_pass(revisions, target.hash, plan, now, paused=spec.paused, failure=failure):
            self._store.put_revision(rev)
            if rev.hash == target.hash and rev.step_state != target.step_state:
                kept.append(rev)
        try:
            await self._act(name, plan, target, stable, by_hash, spec, failure, router_up=router_up)
        finally:
            # The revision file (for `up --adopt`) follows the step state, after the router has the
            # new weights: its fsync would otherwise delay every promote and abort.
            for rev in kept:
                _keep_step_state(self._dir, rev)

    async def _act(
        self,
        name: str,
        plan: Plan,
        target: RevisionRecord,
        stable: RevisionRecord | None,
        by_hash: dict[str, RevisionRecord],
        spec: RolloutSpec,
        failure: str,
        *,
        router_up: bool,
    ) -> None:
        """Events, the router's new backends and weights, instances to stop and start."""
        current = spec.template
        if plan.state is not None and plan.state.to_json() != target.step_state:
            self._step_events(name, target, StepState.from_json(target.step_state), plan.state, spec)
        routing = routing_for(spec, plan.traffic)
        if plan.outcome == "complete":
            self.event(name, target.hash, "RolloutComplete", f"revision {target.number} is available")
            self._prune_history(name)
        elif plan.outcome == "failed":
            back = f"; revision {stable.number} keeps serving" if stable else ""
            self.event(name, target.hash, "ProgressDeadlineExceeded", failure + back)
        if plan.terminate:
            for t in plan.terminate:
                self._store.update_instance(t.instance_id, state="terminating", ready=False, message=t.reason)
            # The router must stop sending new requests before any of them is drained and signalled.
            await self._instances.push_backends(name, self._store.instances(name), routing)
            for t in plan.terminate:
                inst = next(i for i in self._store.instances(name) if i.id == t.instance_id)
                self.event(name, inst.revision, "ScalingDown", f"stopping {inst.id}: {t.reason}")
                self._instances.begin_stop(inst, then="delete")
        elif router_up:
            await self._instances.push_backends(name, self._store.instances(name), routing)
        if plan.start is not None:
            rev = by_hash.get(plan.start.revision, target)
            template = revision_template(by_hash, plan.start.revision, current)
            for _ in range(plan.start.count):
                await self._instances.start_instance(name, rev.hash, template, None)
            self.event(
                name,
                rev.hash,
                "ScalingUp",
                f"started {plan.start.count} instance(s) of revision {rev.number}",
            )

    # -- strategies: preview, checks, step events ---------------------------------------------------

    async def _sync_preview(self, name: str, spec: RolloutSpec, plan: Plan) -> None:
        """A blue-green preview router serves the green revision alone while it is wanted."""
        bg = spec.strategy.blue_green
        pname = name + PREVIEW_SUFFIX
        revision = plan.traffic.preview if plan.traffic is not None else None
        if bg is not None and bg.preview_listen and revision:
            await self._traffic.ensure(pname, bg.preview_listen, limits_for(spec), router=router_for(spec))
            self._previews.add(name)
            backends = [
                Backend(id=i.id, host="127.0.0.1", port=i.port, revision=i.revision)
                for i in self._store.instances(name)
                if i.revision == revision and i.state == "running" and i.ready and i.port is not None
            ]
            await self._traffic.set_backends(pname, backends, Routing())
        elif name in self._previews:
            await self._traffic.remove(pname)
            self._previews.discard(name)

    def _begin_checks(self, name: str, revision: str, spec: RolloutSpec) -> None:
        bg = spec.strategy.blue_green
        if bg is None or revision in self._checks:
            return
        url = f"http://{bg.preview_listen}" if bg.preview_listen else f"http://{spec.listen}"
        self._checks[revision] = self._spawn(
            self._run_checks(name, revision, list(bg.pre_promotion_checks), url), f"checks {name}"
        )

    async def _run_checks(self, name: str, revision: str, checks: list[PrePromotionCheck], url: str) -> None:
        try:
            passed, messages = True, []
            for check in checks:
                ok, message = await run_check(check, url)
                messages.append(message)
                if not ok:
                    passed = False
                    break
            rev = next((r for r in self._store.revisions(name) if r.hash == revision), None)
            if rev is None:
                return
            st = StepState.from_json(rev.step_state)
            st = replace(st, checks="passed" if passed else "failed", checks_message="; ".join(messages))
            self._store.put_revision(_replace_revision(rev, step_state=st.to_json()))
            kind = "PrePromotionChecksPassed" if passed else "PrePromotionChecksFailed"
            self.event(name, revision, kind, st.checks_message)
        finally:
            self._checks.pop(revision, None)
            self.wake()

    def _step_events(
        self, name: str, target: RevisionRecord, old: StepState, new: StepState, spec: RolloutSpec
    ) -> None:
        if new.index != old.index:
            steps = spec.strategy.canary.steps if spec.strategy.canary else []
            if new.index < len(steps):
                step = steps[new.index].describe()
                self.event(name, target.hash, "StepReached", f"step {new.index + 1}/{len(steps)}: {step}")
            else:
                self.event(name, target.hash, "StepsCompleted", f"all {len(steps)} steps done")
        if new.aborted_at is not None and old.aborted_at is None:
            self.event(name, target.hash, "Aborted", f"{new.abort_reason}; all traffic back to stable")
        if new.switched_at is not None and old.switched_at is None:
            self.event(name, target.hash, "Promoted", f"revision {target.number} takes all traffic")

    # -- removal ------------------------------------------------------------------------------------

    async def _teardown(self, rec: RolloutRecord) -> None:
        self.analysis.stop_rollout(rec.name, "stopped: the rollout is being removed")
        instances = self._store.instances(rec.name)
        for inst in instances:
            if inst.state != "terminating":
                self._store.update_instance(
                    inst.id, state="terminating", ready=False, message="rollout removed"
                )
        if instances:
            try:
                await self._instances.push_backends(rec.name, self._store.instances(rec.name))
            except GaplessError as e:
                log.warning("%s: %s", rec.name, e)
        for inst in self._store.instances(rec.name):
            if inst.id not in self._instances.stopping:
                self._instances.begin_stop(inst, then="delete")
        if self._store.instances(rec.name):
            return
        await self._traffic.remove(rec.name)
        await self._traffic.remove(rec.name + PREVIEW_SUFFIX)
        self._previews.discard(rec.name)
        self.event(rec.name, "", "RolloutDeleted", "all instances stopped and the router removed")
        self._store.delete_rollout(rec.name)
        forget_rollout(self._dir, rec.name)

    def _prune_history(self, name: str) -> None:
        rec = self._store.find_rollout(name)
        if rec is None:
            return
        limit = Rollout.model_validate(rec.spec).spec.revision_history_limit
        in_use = {i.revision for i in self._store.instances(name)}
        gone = history_to_prune(self._store.revisions(name), in_use, limit)
        for h in gone:
            self._store.delete_revision(name, h)
            forget_revision(self._dir, name, h)
        self._store.delete_analysis_runs(name, {r.hash for r in self._store.revisions(name)})


_VOLATILE = frozenset({"updatedAt", "lastUpdateTime", "pauseRemaining", "scaleDownIn", "requestLog"})
"""Status keys that change on their own; ``requestLog`` counts lines under load (refreshed every second)."""


def _status_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether anything but timestamps and countdowns differs (those alone are not worth a write)."""

    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in _VOLATILE}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return bool(strip(old) != strip(new))


def _schema_needs(revisions: list[RevisionRecord]) -> dict[str, str]:
    """The schema version each revision's template declares (``requiresSchema``), by revision hash."""
    out = {}
    for r in revisions:
        required = r.template.get("requiresSchema")
        if isinstance(required, str) and required:
            out[r.hash] = required
    return out


def _weights_in_force(routing: Routing | None) -> dict[str, int] | None:
    return None if routing is None else routing.weights


def _router_down(view: RolloutView, now: float, message: str) -> Plan:
    """While the router cannot start nothing changes, but the progress deadline keeps running."""
    if view.paused or view.target_complete or view.target_failed:
        return Plan()
    deadline = view.progress_at + view.progress_deadline_seconds
    if now >= deadline:
        return Plan(
            outcome="failed",
            reason=f"revision {view.target} made no progress for {view.progress_deadline_seconds:g}s: {message}",
        )
    return Plan(requeue_at=deadline)


async def _guarded(coro: Coroutine[Any, Any, None], name: str) -> None:
    """Background tasks report their failure instead of tearing the control plane down."""
    try:
        await coro
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("task %r failed", name)


def _view(rec: InstanceRecord) -> InstanceView:
    phase: InstancePhase
    if rec.state == "terminating":
        phase = "terminating"
    elif rec.state == "running" and not rec.restart_pending:
        phase = "running"
    elif rec.state == "starting":
        phase = "starting"
    else:
        phase = "backoff"
    return InstanceView(
        id=rec.id,
        revision=rec.revision,
        phase=phase,
        ready=rec.ready and phase == "running",
        ready_since=rec.ready_since,
        created_at=rec.created_at,
    )


def _saved(r: RevisionRecord) -> SavedRevision:
    return SavedRevision(r.rollout, r.hash, r.number, r.template, r.created_at, r.step_state)


def _keep_step_state(state_dir: Path, rev: RevisionRecord) -> None:
    """The revision file follows the step state, so an adoption resumes a canary at its step."""
    _keep_revision_file(state_dir, rev, update=True)


def _keep_revision_file(state_dir: Path, rev: RevisionRecord, *, update: bool) -> None:
    """Write the revision's file (what ``up --adopt`` rebuilds from); a full disk is a ``StateWriteError``."""
    try:
        save_revision(state_dir, _saved(rev), update=update)
    except OSError as e:
        error = write_error(e)
        if error is None:
            raise
        raise error from e


def _replace_revision(r: RevisionRecord, **changes: Any) -> RevisionRecord:
    return replace(r, **changes)


def _replace_rollout(r: RolloutRecord, **changes: Any) -> RolloutRecord:
    return replace(r, **changes)
