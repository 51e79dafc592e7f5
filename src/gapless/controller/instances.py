"""Instances: start, probe, restart with backoff, and stop gracefully, for every rollout.

The reconcile loop decides which instances should exist; this supervisor carries that out and keeps each
running instance watched. It records every step in the store before acting (a starting instance is
written before its process exists; a stopping one is marked ``terminating`` before it is signalled), so
a control plane killed at any point finds either the old or the new state, and the next pass finishes
what was under way. Stops follow Kubernetes' order after the router has let go of the instance: wait
until its in-flight requests finish (bounded by the grace period), preStop, SIGTERM, SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from gapless.controller.traffic import Routing, Traffic
from gapless.controller.writes import retry_writes
from gapless.core.clock import Clock
from gapless.core.errors import GaplessError, StateWriteError
from gapless.platform.base import InstanceHandle, InstanceSpec, InstanceStartError, Platform
from gapless.platform.prober import InstanceProber
from gapless.router.config import Backend
from gapless.spec.models import Rollout, Template
from gapless.store.records import InstanceRecord, RevisionRecord
from gapless.store.revision_files import SavedRevision, save_revision
from gapless.store.sqlite import Store
from gapless.store.write_errors import write_error

__all__ = ["InstanceSupervisor", "backoff_seconds", "instance_handle", "revision_template"]

log = logging.getLogger("gapless.controller")

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]
EventSink = Callable[[str, str, str, str], None]


def backoff_seconds(restarts: int) -> float:
    """Crash-loop backoff: 1 s doubling to 5 min (Kubernetes uses 10 s; local processes start faster)."""
    return float(min(300, 2 ** max(0, restarts - 1)))


class InstanceSupervisor:
    """Owns the probers and stop tasks of all instances. Inert until the controller runs."""

    def __init__(
        self,
        store: Store,
        platform: Platform,
        traffic: Traffic,
        clock: Clock,
        state_dir: Path,
        *,
        event: EventSink,
        wake: Callable[[], None],
        spawn: Spawn,
    ) -> None:
        self._store = store
        self._platform = platform
        self._traffic = traffic
        self._clock = clock
        self._dir = state_dir
        self.event = event
        self.wake = wake
        self._spawn = spawn
        self._probers: dict[str, asyncio.Task[None]] = {}
        self._probes: dict[str, InstanceProber] = {}
        self._unhealthy: dict[str, str] = {}
        self._stopping: dict[str, asyncio.Task[None]] = {}
        self._weights: dict[str, dict[str, int] | None] = {}

    @property
    def stopping(self) -> set[str]:
        """Instances whose stop is under way."""
        return set(self._stopping)

    def cancel_probes(self) -> None:
        for task in list(self._probers.values()):
            task.cancel()

    # -- instances: crashes, restarts, stops -------------------------------------------------------------

    async def supervise(
        self, name: str, by_hash: dict[str, RevisionRecord], current: Template, now: float
    ) -> float | None:
        next_at: float | None = None
        for inst in self._store.instances(name):
            if inst.state == "running" and inst.id in self._probes:
                # What a probe found while the state could not be written. If it still cannot be, the
                # router follows the probes anyway (``push_backends``); the record follows later.
                with contextlib.suppress(StateWriteError):
                    self.record_probe(inst.id)
        for inst in self._store.instances(name):
            if inst.state == "running":
                if inst.pid is not None and not self._platform.is_running(instance_handle(inst)):
                    self.unwatch(inst.id)
                    if inst.pgid is not None:
                        await self._platform.kill_group(inst.pgid)
                    at = self.to_backoff(inst, now, "process exited")
                    self.event(
                        name,
                        inst.revision,
                        "InstanceCrashed",
                        f"{inst.id} exited; restart in {at - now:.0f}s",
                    )
                elif inst.restart_pending and inst.id not in self._stopping:
                    self.begin_stop(inst, then="restart")
            elif inst.state == "backoff" and inst.id not in self._stopping:
                at = inst.next_start_at or now
                if at <= now:
                    await self.start_instance(
                        name, inst.revision, revision_template(by_hash, inst.revision, current), inst
                    )
                else:
                    next_at = at if next_at is None else min(next_at, at)
            elif inst.state == "terminating" and inst.id not in self._stopping:
                self.begin_stop(inst, then="delete")
        return next_at

    def to_backoff(self, inst: InstanceRecord, now: float, message: str) -> float:
        """Record a crash or failed start: out of traffic, restart after an exponential backoff."""
        restarts = inst.restarts + 1
        at = now + backoff_seconds(restarts)
        self._store.update_instance(
            inst.id,
            state="backoff",
            ready=False,
            ready_since=None,
            restarts=restarts,
            restart_pending=False,
            next_start_at=at,
            message=message,
        )
        return at

    def _routable(self, inst: InstanceRecord) -> bool:
        """Ready and not to be restarted, by its prober when it has one (ahead of a record not yet
        written while the state cannot be), else by its record."""
        prober = self._probes.get(inst.id)
        if prober is None:
            return inst.ready and not inst.restart_pending
        return prober.ready and inst.id not in self._unhealthy and not inst.restart_pending

    def _backoff_nowait(self, inst: InstanceRecord) -> None:
        self.to_backoff(inst, self._clock.now(), inst.message)

    async def push_backends(
        self, name: str, instances: list[InstanceRecord], routing: Routing | None = None
    ) -> None:
        backends = [
            Backend(id=i.id, host="127.0.0.1", port=i.port, revision=i.revision)
            for i in instances
            if i.state == "running" and self._routable(i) and i.port is not None
        ]
        if await self._traffic.set_backends(name, backends, routing) and routing is not None:
            before = self._weights.get(name)
            if routing.weights != before:
                self._weights[name] = routing.weights
                numbers = {r.hash: r.number for r in self._store.revisions(name)}
                shown = ", ".join(
                    f"revision {numbers[r]}: {w}%" if r in numbers else f"{r}: {w}%"
                    for r, w in (routing.weights or {}).items()
                )
                self.event(name, "", "TrafficShifted", f"weights {shown or 'even split'}")

    async def start_instance(
        self, name: str, revision: str, template: Template, existing: InstanceRecord | None
    ) -> None:
        now = self._clock.now()
        if existing is None:
            iid = f"{name}-{revision[:6]}-{secrets.token_hex(3)}"
            log_path = self._dir / "logs" / name / f"{iid}.log"
            rec = InstanceRecord(
                id=iid,
                rollout=name,
                revision=revision,
                state="starting",
                created_at=now,
                log_path=str(log_path),
            )
            self._store.put_instance(rec)
        else:
            rec = self._store.update_instance(existing.id, state="starting", pid=None, pgid=None, port=None)
        rev = next((r for r in self._store.revisions(name) if r.hash == revision), None)
        if rev is not None:  # its template outlives a lost state.db with the instance (see adoption)
            try:
                save_revision(
                    self._dir, SavedRevision(name, rev.hash, rev.number, rev.template, rev.created_at)
                )
            except OSError as e:
                error = write_error(e)
                if error is None:
                    raise
                raise error from e
        spec = InstanceSpec(
            rollout=name,
            instance_id=rec.id,
            revision=revision,
            command=list(template.command),
            env=dict(template.env),
            working_dir=template.working_dir,
            log_path=Path(rec.log_path),
        )
        try:
            handle = await self._platform.start(spec)
        except InstanceStartError as e:
            self.to_backoff(rec, now, str(e))
            self.event(name, revision, "InstanceStartFailed", f"{rec.id}: {e}")
            return
        try:
            rec = self._store.update_instance(
                rec.id,
                state="running",
                pid=handle.pid,
                pgid=handle.pgid,
                port=handle.port,
                started_at=handle.started_at,
                ready=False,
                ready_since=None,
                restart_pending=False,
                next_start_at=None,
                message="",
            )
        except StateWriteError:
            # Unrecorded, the process would be an orphan: stop it; the row stays `starting` without a
            # pid, and is started again once the state can be written.
            await self._platform.kill_group(handle.pgid)
            raise
        self.watch(rec)

    def watch(self, rec: InstanceRecord) -> None:
        """Start probing an instance; readiness and liveness changes wake the loop."""
        if rec.id in self._probers or rec.port is None:
            return
        by_hash = {r.hash: r for r in self._store.revisions(rec.rollout)}
        try:
            template = Template.model_validate(by_hash[rec.revision].template)
        except KeyError:
            return
        iid = rec.id

        def on_ready_change(ready: bool) -> None:
            self._record_probe_nowait(iid)

        def on_unhealthy(reason: str) -> None:
            self._unhealthy[iid] = reason
            self._record_probe_nowait(iid)

        prober = InstanceProber(
            template,
            port=rec.port,
            env=self._platform.instance_env(instance_handle(rec)),
            on_ready_change=on_ready_change,
            on_unhealthy=on_unhealthy,
            initially_ready=rec.ready,
        )
        self._probes[iid] = prober
        self._probers[iid] = self._spawn(prober.run(), f"probe {iid}")

    def _record_probe_nowait(self, iid: str) -> None:
        """Write a probe's news at once; a state that cannot be written leaves it to the next pass.

        The prober calls this from its own task, which must never end over a write: what it found
        stays in the prober (``ready``) and in ``_unhealthy``, and ``record_probe`` writes it later.
        """
        try:
            self.record_probe(iid)
        except StateWriteError as e:
            log.debug("probe result of %s not written yet: %s", iid, e)
        self.wake()

    def record_probe(self, iid: str) -> None:
        """Bring the instance's record in line with its prober (readiness, unhealthy): level-triggered."""
        prober = self._probes.get(iid)
        if prober is None:
            return
        cur = self._store.find_instance(iid)
        if cur is None or cur.state != "running":
            return
        reason = self._unhealthy.get(iid)
        if reason is not None:
            if not cur.restart_pending:
                self._store.update_instance(
                    iid, restart_pending=True, ready=False, ready_since=None, message=reason
                )
                self.event(cur.rollout, cur.revision, "Unhealthy", f"{iid}: {reason}; restarting")
            return
        if prober.ready != cur.ready:
            ready = prober.ready
            self._store.update_instance(iid, ready=ready, ready_since=self._clock.now() if ready else None)
            self.event(cur.rollout, cur.revision, "InstanceReady" if ready else "InstanceNotReady", iid)

    def unwatch(self, iid: str) -> None:
        task = self._probers.pop(iid, None)
        self._probes.pop(iid, None)
        self._unhealthy.pop(iid, None)
        if task is not None:
            task.cancel()

    def begin_stop(self, inst: InstanceRecord, *, then: str) -> None:
        self._stopping[inst.id] = self._spawn(self._stop(inst, then), f"stop {inst.id}")

    async def _stop(self, inst: InstanceRecord, then: str) -> None:
        try:
            by_hash = {r.hash: r for r in self._store.revisions(inst.rollout)}
            rec = self._store.find_rollout(inst.rollout)
            current = Rollout.model_validate(rec.spec).spec.template if rec else None
            template = revision_template(by_hash, inst.revision, current)
            grace = template.termination_grace_period_seconds if template else 30.0
            started = time.monotonic()
            if inst.ready or then == "restart":
                # Make sure the router has let go of it (a restart is decided outside a pass).
                await self.push_backends(inst.rollout, self._store.instances(inst.rollout))
            drained = await self._traffic.wait_drained(inst.rollout, inst.id, grace)
            remaining = max(0.0, grace - (time.monotonic() - started))
            killed = False
            if inst.pid is not None:
                pre_stop = template.lifecycle.pre_stop if template and template.lifecycle else None
                result = await self._platform.stop(
                    instance_handle(inst), pre_stop=pre_stop, grace_seconds=remaining
                )
                killed = result.killed
            self.unwatch(inst.id)
            how = "killed after the grace period" if killed else "exited"
            if not drained:
                how += " (requests still in flight when the grace period ended)"
            # The process is gone; its record follows, however long the state stays unwritable.
            if then == "restart":
                await retry_writes(lambda: self._backoff_nowait(inst), f"recording the restart of {inst.id}")
                self.event(inst.rollout, inst.revision, "InstanceRestarting", f"{inst.id} {how}")
            else:
                await retry_writes(lambda: self._store.delete_instance(inst.id), f"removing {inst.id}")
                self.event(inst.rollout, inst.revision, "InstanceStopped", f"{inst.id} {how}")
        finally:
            self._stopping.pop(inst.id, None)
            self.wake()


def instance_handle(rec: InstanceRecord) -> InstanceHandle:
    return InstanceHandle(
        instance_id=rec.id,
        pid=rec.pid or 0,
        pgid=rec.pgid or rec.pid or 0,
        port=rec.port or 0,
        started_at=rec.started_at or 0.0,
        log_path=Path(rec.log_path),
    )


def revision_template(
    by_hash: dict[str, RevisionRecord], revision: str, fallback: Template | None
) -> Template:
    rev = by_hash.get(revision)
    if rev is not None:
        return Template.model_validate(rev.template)
    if fallback is None:
        raise GaplessError(f"revision {revision} is unknown")
    return fallback
