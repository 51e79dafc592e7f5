"""Model-based tests of the controller: random use, the documented rules checked after every pass.

Examples only test what their author thought of; the rules below are what the README, Kubernetes'
Deployment and Argo Rollouts promise, and Hypothesis looks for any sequence of applies (new and earlier
templates), pause, resume, promote, abort, retry, undo, readiness, crashes, verdicts and clock steps
that breaks one. The machine drives ``tests.controller.model.Sim``: the real commands and the pure
pass, with processes simulated. Runs are bounded and derandomized (the ``ci`` profile in
``tests/conftest.py``), so CI sees the same sequences every time.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import strategies as hs
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from gapless.core.errors import GaplessError
from gapless.strategies.plan import StepState
from gapless.strategies.replicas import resolve_fenceposts
from gapless.strategies.rollout import traffic_in_force
from tests.controller.model import MEASUREMENTS, PassRecord, Sim

VERSIONS = ("v1", "v2", "v3", "v4")
ANALYSIS = {"templates": [{"templateName": "t"}]}

rolling = hs.builds(
    lambda s, u: {"rollingUpdate": {"maxSurge": s, "maxUnavailable": u}},
    hs.sampled_from([0, 1, 2, "25%", "50%"]),
    hs.sampled_from([1, 0, "25%", "50%"]),
).filter(
    lambda d: (
        d["rollingUpdate"]["maxSurge"] not in (0, "0%")
        or d["rollingUpdate"]["maxUnavailable"] not in (0, "0%")
    )
)

canary_step = hs.one_of(
    hs.builds(lambda w: {"setWeight": w}, hs.sampled_from([0, 10, 34, 50, 100])),
    hs.just({"pause": {}}),
    hs.builds(lambda d: {"pause": {"duration": d}}, hs.sampled_from([1, 5, 30])),
    hs.sampled_from(
        [
            {"setCanaryScale": {"replicas": 2}},
            {"setCanaryScale": {"weight": 50}},
            {"setCanaryScale": {"matchTrafficWeight": True}},
        ]
    ),
    hs.just({"analysis": ANALYSIS}),
    hs.just({"setHeaderRoute": {"match": [{"headerName": "X-Canary", "headerValue": {"exact": "1"}}]}}),
)


@hs.composite
def canary(draw: hs.DrawFn) -> dict[str, Any]:
    steps = draw(hs.lists(canary_step, min_size=1, max_size=5))
    out: dict[str, Any] = {
        "steps": steps,
        "maxSurge": draw(hs.sampled_from([1, "25%", "50%"])),
        "scaleDownDelaySeconds": draw(hs.sampled_from([0, 5, 30])),
        "abortScaleDownDelaySeconds": draw(hs.sampled_from([0, 5])),
    }
    if draw(hs.booleans()):
        out["analysis"] = ANALYSIS | {"startingStep": draw(hs.integers(0, len(steps) - 1))}
    return {"canary": out}


@hs.composite
def blue_green(draw: hs.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {
        "previewListen": "127.0.0.1:8081",
        "autoPromotionEnabled": draw(hs.booleans()),
        "autoPromotionSeconds": draw(hs.sampled_from([0, 5])),
        "scaleDownDelaySeconds": draw(hs.sampled_from([0, 5, 30])),
        "abortScaleDownDelaySeconds": draw(hs.sampled_from([0, 5])),
    }
    if (preview := draw(hs.sampled_from([None, 1, 2]))) is not None:
        out["previewReplicaCount"] = preview
    if draw(hs.booleans()):
        out["prePromotionChecks"] = [{"httpGet": {"path": "/healthz"}}]
    for key in ("prePromotionAnalysis", "postPromotionAnalysis"):
        if draw(hs.booleans()):
            out[key] = ANALYSIS
    return {"blueGreen": out}


class ControllerModel(RuleBasedStateMachine):
    """Random use of one rollout; every pass is checked against the rules."""

    sim: Sim

    def __init__(self) -> None:
        super().__init__()
        self.checked = 0
        self.served: dict[str, int] = {}
        """Reference model: the last pass in which each revision (by hash) was complete, i.e. fully served."""
        self.served_order: list[str] = []
        self.promoted: set[str] = set()
        """Reference model: revisions whose current rollout was promoted by a user."""

    @initialize(strategy=hs.one_of(rolling, canary(), blue_green()))
    def first_deploy(self, strategy: dict[str, Any]) -> None:
        """v1 deployed and complete."""
        self.sim = Sim(strategy)
        self.sim.apply("v1")
        for _ in range(6):
            self.sim.reconcile()
            self.sim.make_ready(10)
            self.sim.clock.advance(1)
        self.passes()
        assert self.sim.target().phase == "complete"

    # -- rules: what users do -----------------------------------------------------------------------

    @rule(version=hs.sampled_from(VERSIONS))
    def apply(self, version: str) -> None:
        """Apply a template: new, the one in force, or an earlier one (a revert)."""
        before = {r.hash: r for r in self.sim.revisions()}
        current = self.sim.find_target()
        self.sim.apply(version)
        target = self.sim.find_target()
        if (
            target is not None
            and current is not None
            and target.hash != current.hash
            and target.hash in before
        ):
            self.fresh_rollout_rule(target.hash)
        self.pass_once()

    @rule(paused=hs.booleans())
    def pause(self, paused: bool) -> None:
        """gapless pause / resume."""
        self.sim.commands.set_paused("shop", paused)
        self.pass_once()

    @rule(full=hs.booleans())
    def promote(self, full: bool) -> None:
        """gapless promote [--full]."""

        try:
            self.sim.commands.promote("shop", full=full)
        except GaplessError:  # a refusal (409) is an answer; the pass must still hold
            self.pass_once()
            return
        self.promoted.add(self.sim.target().hash)
        record = self.pass_once()
        assert record.plan.outcome != "failed", ("a promotion is progress", record.plan.reason)

    @rule()
    def abort(self) -> None:
        """gapless abort."""
        self.command(lambda: self.sim.commands.abort("shop"))

    @rule()
    def retry(self) -> None:
        """gapless retry."""

        def retry() -> None:
            self.sim.commands.retry("shop")
            self.promoted.discard(self.sim.target().hash)

        self.command(retry)

    @rule(to=hs.one_of(hs.none(), hs.integers(1, 6)))
    def undo(self, to: int | None) -> None:
        """gapless undo [--to-revision N]: to the last revision that fully served, never paused by it."""
        found = self.sim.find_target()
        current = found.hash if found else ""
        paused = self.sim.spec().paused
        served = {h: t for h, t in self.served.items() if h != current}
        numbered = {r.number: r.hash for r in self.sim.revisions()}
        try:
            self.sim.commands.undo("shop", to)
        except GaplessError:
            self.pass_once()
            return
        target = self.sim.target()
        if to is not None:
            assert target.hash == numbered[to], "undo --to-revision went to another revision"
        elif served:
            assert target.hash == max(served, key=served.__getitem__), (
                "undo went elsewhere than the last revision that served"
            )
        assert self.sim.spec().paused == paused, "undo changed the pause"
        if target.hash != current:
            self.fresh_rollout_rule(target.hash)
        record = self.pass_once()
        if to is None and target.phase == "complete" and not paused:
            # Back to the revision that serves (the warm blue, the stable): all traffic there at once.
            assert record.weights in (None, {target.hash: 100}), record.weights
            assert record.status["phase"] != "Paused", record.status

    # -- rules: processes, judges, time -------------------------------------------------------------

    @rule(count=hs.integers(1, 4))
    def become_ready(self, count: int) -> None:
        """Instances pass their readiness probe."""
        self.sim.make_ready(count)
        self.pass_once()

    @rule(index=hs.integers(0, 9))
    def crash(self, index: int) -> None:
        """An instance's process exits."""
        self.sim.crash(index)
        self.pass_once()

    @rule()
    def restart(self) -> None:
        """Crashed instances are started again."""
        self.sim.restart()
        self.pass_once()

    @rule(phase=hs.sampled_from(["successful", "failed", "inconclusive", "error"]))
    def verdict(self, phase: str) -> None:
        """Running analysis runs of the target end (successful only with all their measurements)."""
        self.sim.judge(phase, MEASUREMENTS)
        self.pass_once()

    @rule(passed=hs.booleans())
    def checks(self, passed: bool) -> None:
        """Pre-promotion checks end."""
        self.sim.check(passed)
        self.pass_once()

    @rule(seconds=hs.sampled_from([0.5, 1, 5, 31, 61]))
    def tick(self, seconds: float) -> None:
        """Time passes."""
        self.sim.clock.advance(seconds)
        self.pass_once()

    # -- helpers --------------------------------------------------------------------------------------

    def command(self, run: Any) -> None:
        with contextlib.suppress(GaplessError):  # a refusal (409) is an answer; the pass must still hold
            run()
        self.pass_once()

    def pass_once(self) -> PassRecord:
        record = self.sim.reconcile()
        self.passes()
        return record

    def fresh_rollout_rule(self, h: str) -> None:
        """A template that had a revision starts a fresh rollout of it: new clock, first step, no verdicts."""
        target = self.sim.target()
        self.promoted.discard(h)
        assert target.hash == h
        assert target.phase in ("progressing", "complete"), target.phase
        assert target.progress_at == self.sim.clock.now(), "the old progress clock was reused"
        assert target.step_state == {}, target.step_state
        assert not [r for r in self.sim.store.analysis_runs("shop", h) if r.active]
        record = self.sim.reconcile()
        self.passes()
        assert record.plan.outcome != "failed", record.plan.reason

    def passes(self) -> None:
        for record in self.sim.passes[self.checked :]:
            check_pass(self.sim, record)
            check_preview(self.sim, record, promoted=record.target.hash in self.promoted)
            if record.target_after.phase == "complete":
                # Ordered by pass, not by clock: completions in the same second still have an order.
                self.served[record.target_after.hash] = len(self.served_order)
                self.served_order.append(record.target_after.hash)
        self.checked = len(self.sim.passes)

    @invariant()
    def analysis_verdicts_are_earned(self) -> None:
        """No analysis run ends successful without its required measurements."""
        if not hasattr(self, "sim"):
            return
        for run in self.sim.ended_runs:
            if run.phase == "successful":
                assert all(m["measured"] >= (m["count"] or 1) for m in run.metrics), run


def check_pass(sim: Sim, r: PassRecord) -> None:
    """The rules every pass keeps, whatever happened before."""
    spec = sim.spec()
    plan, status = r.plan, r.status
    two = (
        spec.strategy.kind != "RollingUpdate"
        and r.stable is not None
        and r.stable != r.target.hash
        and r.target.phase != "failed"
    )
    # Paused: nothing starts or stops, no step, no promotion; only an abort moves traffic (to stable).
    if r.paused and r.target.phase != "failed":
        assert plan.start is None, ("started while paused", plan)
        assert plan.terminate == (), ("stopped while paused", plan)
        after = sim_state(r)
        before = r.state_before
        if two:
            aborting = after.aborted_at is not None and before.aborted_at is None
            assert aborting or (after.index, after.weight, after.switched_at) == (
                before.index,
                before.weight,
                before.switched_at,
            ), ("stepped while paused", before, after)
            expect = traffic_in_force(spec.strategy, replace_view(r), after)
            assert plan.traffic is not None
            assert plan.traffic.weights == expect.weights, (plan.traffic, expect)
        assert plan.outcome != "complete" or r.target.phase == "complete"
        if r.target_after.phase == "progressing" and not status.get("aborted"):
            assert status["phase"] == "Paused", status["phase"]
    # The router gets exactly the split the step state stands for: stable only after an abort, one
    # side for blue-green (green only once switched), the step's weight for a canary; never an even
    # split over every ready instance while two revisions are in play.
    if two and r.target_after.phase == "progressing":
        expect = traffic_in_force(spec.strategy, replace_view(r), sim_state(r))
        assert plan.traffic is not None, plan
        assert plan.traffic.weights == expect.weights, (plan.traffic, expect)
    # Status agrees with what the planner did.
    if status["phase"] == "Paused" and r.target.phase != "failed" and plan.state is not None:
        before, after = r.state_before, plan.state
        assert (before.index, before.switched_at) == (after.index, after.switched_at) or not r.paused
    if status["phase"] == "Paused" and not r.paused:
        assert plan.start is None, ("status says Paused (waiting for promote) while starting", plan)
    if status["phase"] == "Healthy":
        assert r.target_after.phase == "complete"
    # At most two revisions take traffic, and the weights are a split of 100.
    if r.weights is not None:
        serving = [h for h, w in r.weights.items() if w > 0]
        assert len(serving) <= 2, r.weights
        assert sum(r.weights.values()) == 100, r.weights
    # Counts: updated, ready and available never above desired; the canary step is within the steps.
    for counter in ("updatedReplicas", "readyReplicas", "availableReplicas"):
        assert 0 <= status[counter] <= status["replicas"], (counter, status)
    strategy = status["strategy"]
    if "stepIndex" in strategy:
        assert 0 <= strategy["stepIndex"] <= strategy["steps"], strategy
        assert 1 <= strategy["step"] <= strategy["steps"], strategy
    # Rolling update: within replicas + maxSurge (terminating included), and the planner never takes
    # availability below replicas - maxUnavailable.
    if spec.strategy.rolling_update is not None and r.target.phase != "failed":
        surge, unavailable = resolve_fenceposts(*spec.strategy.surge_bounds, spec.replicas)
        total = len(r.instances_after)
        started = plan.start.count if plan.start else 0
        if started:
            assert total <= spec.replicas + surge, (total, spec.replicas, surge)
        if plan.terminate:
            avail = [i for i in r.instances_before if i.phase == "running" and i.ready]
            left = [i for i in avail if i.id not in {t.instance_id for t in plan.terminate}]
            assert len(left) >= min(len(avail), spec.replicas - unavailable), (len(avail), len(left))


def check_preview(sim: Sim, r: PassRecord, *, promoted: bool) -> None:
    """Blue-green: green stays at previewReplicaCount until promoted (Argo), while auto-promotion is off."""
    bg = sim.spec().strategy.blue_green
    if bg is None or bg.auto_promotion_enabled or promoted or r.target.phase != "progressing":
        return
    state = StepState.from_json(r.target_after.step_state)
    if state.switched_at is None and state.aborted_at is None and r.stable not in (None, r.target.hash):
        green = [i for i in r.instances_after if i.revision == r.target.hash and i.phase != "terminating"]
        assert len(green) <= (bg.preview_replica_count or sim.replicas), (
            len(green),
            bg.preview_replica_count,
        )


def sim_state(r: PassRecord) -> Any:
    from gapless.strategies.plan import StepState

    return StepState.from_json(r.target_after.step_state)


def replace_view(r: PassRecord) -> Any:
    from gapless.strategies.plan import RolloutView

    return RolloutView(
        replicas=0,
        max_surge=0,
        max_unavailable=1,
        min_ready_seconds=0,
        progress_deadline_seconds=0,
        paused=True,
        target=r.target.hash,
        target_failed=False,
        target_complete=False,
        stable=r.stable,
        progress_at=0,
    )


TestControllerModel = ControllerModel.TestCase
