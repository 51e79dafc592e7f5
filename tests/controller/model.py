"""The control plane in memory, for model-based tests: the real rules, simulated processes.

A ``Sim`` runs the real ``Commands`` on a real ``Store`` (SQLite in memory) and reconcile passes made of
the same pure functions the controller calls (``target_writes``, ``rollout_view``, ``plan_rollout``,
``after_pass``, ``build_status``). Only what needs processes and sockets is simulated, and named so:
instances are records that the test makes ready, crash or restart; a terminated instance is gone by
the next pass; analysis runs and pre-promotion checks get their verdicts from the test. The router is
the plan's traffic, as ``routing_for`` would push it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gapless.analysis.run import MetricProgress, run_phase, stop
from gapless.controller.commands import Commands
from gapless.controller.routing import routing_for
from gapless.controller.status import build_status, strategy_status
from gapless.core.clock import FakeClock
from gapless.spec.analysis import AnalysisTemplate
from gapless.spec.models import Rollout, template_hash
from gapless.store.records import AnalysisRunRecord, InstanceRecord, RevisionRecord
from gapless.store.sqlite import Store
from gapless.strategies.plan import InstanceView, Plan, StepState
from gapless.strategies.revisions import after_pass, stable_of, target_writes
from gapless.strategies.rollout import plan_rollout, rollout_view
from gapless.strategies.schema import SchemaSnapshot

NAME = "shop"
T0 = 1_000_000.0
MEASUREMENTS = 3
"""Measurements each simulated analysis metric needs (its ``count``)."""


def rollout_doc(
    version: str, strategy: dict[str, Any], *, replicas: int = 3, deadline: float = 60
) -> dict[str, Any]:
    """A Rollout document whose template differs only by ``version``."""
    return {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": NAME},
        "spec": {
            "replicas": replicas,
            "listen": "127.0.0.1:8080",
            "progressDeadlineSeconds": deadline,
            "template": {"command": ["app", version]},
            "strategy": strategy,
        },
    }


TEMPLATE = AnalysisTemplate.model_validate(
    {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "t"},
        "spec": {
            "metrics": [
                {"name": "m", "provider": {"builtin": {}}, "count": MEASUREMENTS, "successCondition": "true"}
            ]
        },
    }
)


class ControllerStandIn:
    """What ``Commands`` asks of the controller (events, wake-ups, the schema snapshot), recorded."""

    def __init__(self, store: Store, clock: FakeClock) -> None:
        self._store = store
        self._clock = clock
        self.events: list[tuple[str, str]] = []

        class _Schema:
            def snapshot(self) -> SchemaSnapshot:
                return SchemaSnapshot(source="model")

        self.schema = _Schema()

    def event(self, rollout: str, revision: str, type_: str, message: str) -> None:
        self.events.append((type_, message))
        self._store.add_event(self._clock.now(), rollout, revision, type_, message)

    def wake(self) -> None:
        """The loop is driven by the test."""


@dataclass
class SimInstance:
    """A simulated instance process: what the supervisor would record about it."""

    id: str
    revision: str
    phase: str  # running | backoff | terminating
    created_at: float
    ready: bool = False
    ready_since: float | None = None

    def view(self) -> InstanceView:
        phase: Any = self.phase
        return InstanceView(self.id, self.revision, phase, self.ready, self.ready_since, self.created_at)


@dataclass
class PassRecord:
    """What one pass saw and did: enough to check every rule afterwards."""

    now: float
    paused: bool
    target: RevisionRecord
    target_after: RevisionRecord
    stable: str | None
    state_before: StepState
    plan: Plan
    weights_before: dict[str, int] | None
    weights: dict[str, int] | None
    status: dict[str, Any]
    instances_before: list[SimInstance]
    instances_after: list[SimInstance]


@dataclass
class Sim:
    """One rollout under the real commands and pure pass, with simulated processes and verdicts."""

    strategy: dict[str, Any]
    replicas: int = 3
    deadline: float = 60
    clock: FakeClock = field(default_factory=lambda: FakeClock(T0))
    instances: list[SimInstance] = field(default_factory=list)
    weights: dict[str, int] | None = None
    passes: list[PassRecord] = field(default_factory=list)
    ended_runs: list[AnalysisRunRecord] = field(default_factory=list)
    paused: bool = False
    _n: int = 0

    def __post_init__(self) -> None:
        self.store = Store(Path(":memory:")).open()
        self.host = ControllerStandIn(self.store, self.clock)
        self.commands = Commands(self.store, self.host, self.clock)  # type: ignore[arg-type]
        self.commands.apply_template(TEMPLATE)

    # -- what users do ------------------------------------------------------------------------------

    def doc(self, version: str) -> dict[str, Any]:
        return rollout_doc(version, self.strategy, replicas=self.replicas, deadline=self.deadline)

    def apply(self, version: str) -> None:
        self.commands.apply(Rollout.model_validate(self.doc(version)))

    def spec(self) -> Any:
        return Rollout.model_validate(self.store.rollout(NAME).spec).spec

    def revisions(self) -> list[RevisionRecord]:
        return self.store.revisions(NAME)

    def target(self) -> RevisionRecord:
        found = self.find_target()
        assert found is not None, "no pass since the template was applied"
        return found

    def find_target(self) -> RevisionRecord | None:
        """The revision of the template in force (None before the first pass after applying it)."""
        h = template_hash(self.spec().template)
        return next((r for r in self.revisions() if r.hash == h), None)

    # -- what processes and judges do ---------------------------------------------------------------

    def make_ready(self, count: int) -> None:
        """Up to ``count`` running instances that are not ready pass their readiness probe now."""
        now = self.clock.now()
        for inst in [i for i in self.instances if i.phase == "running" and not i.ready][:count]:
            inst.ready, inst.ready_since = True, now

    def crash(self, index: int) -> None:
        """A live instance's process exits: it is out of the router and waits to be restarted."""
        live = [i for i in self.instances if i.phase != "terminating"]
        if live:
            inst = live[index % len(live)]
            inst.phase, inst.ready, inst.ready_since = "backoff", False, None

    def restart(self) -> None:
        """The supervisor starts crashed instances again (not ready until their probe passes)."""
        for inst in self.instances:
            if inst.phase == "backoff":
                inst.phase = "running"

    def judge(self, phase: str, measured: int) -> None:
        """The target's running analysis runs end with ``phase`` after ``measured`` measurements."""
        target = self.find_target()
        for run in self.store.analysis_runs(NAME, target.hash if target else None):
            if run.active and run.phase == "running":
                metric = MetricProgress(name="m", count=MEASUREMENTS, measured=measured, phase=phase)  # type: ignore[arg-type]
                self._finish(run, metric)

    def check(self, passed: bool) -> None:
        """The pre-promotion checks the controller runs end (``running`` -> passed or failed)."""
        t = self.find_target()
        st = StepState.from_json(t.step_state if t else {})
        if t is not None and st.checks == "running":
            st = replace(st, checks="passed" if passed else "failed", checks_message="model")
            self.store.put_revision(replace(t, step_state=st.to_json()))

    def _finish(self, run: AnalysisRunRecord, metric: MetricProgress) -> None:
        phase, message = run_phase([metric])
        ended = replace(
            run, phase=phase, message=message, metrics=[metric.to_json()], finished_at=self.clock.now()
        )
        self.store.put_analysis_run(ended)
        self.ended_runs.append(ended)

    # -- one reconcile pass -------------------------------------------------------------------------

    def reconcile(self) -> PassRecord:
        """One pass, as ``Controller.reconcile`` makes it, minus the processes and the router."""
        now = self.clock.now()
        self.instances = [i for i in self.instances if i.phase != "terminating"]  # stopped since
        spec = self.spec()
        h = template_hash(spec.template)
        doc = spec.template.model_dump(mode="json", by_alias=True, exclude_none=True)
        for write in target_writes(self.revisions(), NAME, h, doc, now):
            self.store.put_revision(write)
        revisions = self.revisions()
        target = next(r for r in revisions if r.hash == h)
        stable = stable_of(revisions)
        views = [i.view() for i in self.instances]
        runs = self.store.analysis_runs(NAME)
        phases = {r.key: r.phase for r in runs if r.revision == h and r.active}
        view = rollout_view(spec, target, revisions, views, phases, now)
        state = StepState.from_json(target.step_state)
        plan = plan_rollout(spec.strategy, view, state, views, now)
        for write in after_pass(revisions, h, plan, now, paused=spec.paused):
            self.store.put_revision(write)
        before = [replace(i) for i in self.instances]
        gone = {t.instance_id for t in plan.terminate}
        for inst in self.instances:
            if inst.id in gone:
                inst.phase, inst.ready = "terminating", False
        if plan.start is not None:
            for _ in range(plan.start.count):
                self._n += 1
                self.instances.append(SimInstance(f"i{self._n}", plan.start.revision, "running", now))
        weights_before = self.weights
        self.weights = routing_for(spec, plan.traffic).weights
        wanted = plan.analyses if target.phase == "progressing" and stable is not None else ()
        self._sync_runs(h, wanted, runs, now)
        revisions = self.revisions()
        target_after = next(r for r in revisions if r.hash == h)
        status = self._status(spec, target_after, revisions, view, plan, now)
        record = PassRecord(
            now=now,
            paused=spec.paused,
            target=target,
            target_after=target_after,
            stable=stable.hash if stable else None,
            state_before=state,
            plan=plan,
            weights_before=weights_before,
            weights=self.weights,
            status=status,
            instances_before=before,
            instances_after=[replace(i) for i in self.instances],
        )
        self.passes.append(record)
        return record

    def _sync_runs(self, h: str, wanted: tuple[str, ...], runs: list[AnalysisRunRecord], now: float) -> None:
        """``AnalysisRunner.sync``'s bookkeeping: start wanted runs, stop the others (``analysis.run.stop``)."""
        mine = {r.key: r for r in runs if r.revision == h and r.active}
        for run in runs:
            unwanted = run.revision != h or (run.active and run.key not in wanted)
            if run.phase == "running" and unwanted:
                progress = (
                    MetricProgress.from_json(run.metrics[0])
                    if run.metrics
                    else MetricProgress(name="m", count=MEASUREMENTS)
                )
                self._finish(run, stop(progress, "stopped"))
        for key in wanted:
            if key not in mine:
                self._n += 1
                metric = MetricProgress(name="m", count=MEASUREMENTS)
                self.store.put_analysis_run(
                    AnalysisRunRecord(
                        f"run{self._n}", NAME, h, key, "running", now, metrics=[metric.to_json()]
                    )
                )

    def _status(
        self,
        spec: Any,
        target: RevisionRecord,
        revisions: list[RevisionRecord],
        view: Any,
        plan: Plan,
        now: float,
    ) -> dict[str, Any]:
        stable = stable_of(revisions)
        view = replace(
            view,
            target_failed=target.phase == "failed",
            target_complete=target.phase == "complete",
            stable=stable.hash if stable else None,
        )
        strategy = strategy_status(spec, target, stable, self.weights, now)
        if plan.waiting and target.phase == "progressing":
            strategy["waiting"] = plan.waiting
            if "inconclusive" in plan.waiting:
                strategy["waitingForPromote"] = True
        records = [
            InstanceRecord(
                i.id,
                NAME,
                i.revision,
                i.phase,
                i.created_at,
                "",
                ready=i.ready,
                ready_since=i.ready_since,  # type: ignore[arg-type]
            )
            for i in self.instances
        ]
        previous = self.store.rollout(NAME).status
        status = build_status(
            name=NAME,
            generation=1,
            view=view,
            revisions=revisions,
            instances=records,
            router={},
            previous=previous,
            now=now,
            strategy=strategy,
        )
        self.store.set_status(NAME, status)
        return status

    def settle(self, passes: int = 3) -> None:
        for _ in range(passes):
            self.reconcile()
