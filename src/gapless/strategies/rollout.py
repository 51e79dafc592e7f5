"""One entry point for every strategy, and the rule every strategy shares: a paused rollout holds.

``plan_rollout`` picks the planner by ``spec.strategy`` and then applies ``spec.paused`` in one place.
The rolling planner always honoured a pause; canary and blue-green did not, because each planner was
left to read the flag itself. Holding here, after planning, keeps each planner about its own steps
and makes the pause impossible to forget in a new one.

While paused (with two revisions in play): nothing starts or stops, no step is taken, no promotion
happens, the router keeps the weights the current step state says, and running analysis runs keep
running (no new one starts). One change still goes through: an abort (a failed analysis, or
``gapless abort`` already recorded) moves all traffic back to stable, because a pause must never keep
users on a revision that was judged bad. Instances follow on resume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from gapless.spec.models import RolloutSpec
from gapless.spec.strategy import Strategy
from gapless.store.records import RevisionRecord
from gapless.strategies.bluegreen import plan_blue_green
from gapless.strategies.canary import plan_canary
from gapless.strategies.plan import InstanceView, Plan, RolloutView, StepState, Traffic
from gapless.strategies.revisions import progress_clock, stable_of
from gapless.strategies.rolling import plan_rolling

__all__ = ["PAUSED", "plan_rollout", "rollout_view", "traffic_in_force"]

PAUSED = "paused: `gapless resume` continues"


def rollout_view(
    spec: RolloutSpec,
    target: RevisionRecord,
    revisions: Sequence[RevisionRecord],
    instances: Sequence[InstanceView],
    analyses: Mapping[str, str],
    now: float,
) -> RolloutView:
    """What the planners see of a rollout: its spec, target and stable revision, progress clock, runs.

    ``analyses`` are the phases of the target's active runs; they count only while it is progressing.
    """
    stable = stable_of(revisions)
    surge, unavailable = spec.strategy.surge_bounds
    return RolloutView(
        replicas=spec.replicas,
        max_surge=surge,
        max_unavailable=unavailable,
        min_ready_seconds=spec.min_ready_seconds,
        progress_deadline_seconds=spec.progress_deadline_seconds,
        paused=spec.paused,
        target=target.hash,
        target_failed=target.phase == "failed",
        target_complete=target.phase == "complete",
        stable=stable.hash if stable else None,
        progress_at=progress_clock(target, instances, spec.min_ready_seconds, now),
        analyses=dict(analyses) if target.phase == "progressing" else {},
    )


def plan_rollout(
    strategy: Strategy, view: RolloutView, state: StepState, instances: Sequence[InstanceView], now: float
) -> Plan:
    """The next step of a rollout under its strategy, held while ``view.paused``."""
    if strategy.canary is not None:
        plan = plan_canary(view, strategy.canary, state, instances, now)
    elif strategy.blue_green is not None:
        plan = plan_blue_green(view, strategy.blue_green, state, instances, now)
    else:
        return plan_rolling(view, instances, now)
    if not view.paused or view.stable is None or view.stable == view.target or view.target_failed:
        return plan  # one revision in play: the rolling planner (inside both) honours the pause itself
    return _hold(strategy, view, state, plan)


def traffic_in_force(strategy: Strategy, view: RolloutView, state: StepState) -> Traffic:
    """The split a step state stands for, with two revisions in play: what a held rollout keeps."""
    stable, target = view.stable or "", view.target
    if state.aborted_at is not None:
        return Traffic(weights=((stable, 100),))
    if strategy.blue_green is not None:
        return Traffic(weights=((stable if state.switched_at is None else target, 100),))
    return Traffic(
        weights=((target, state.weight), (stable, 100 - state.weight)),
        header_route=state.header_route,
        route_revision=target if state.header_route else None,
    )


def _hold(strategy: Strategy, view: RolloutView, state: StepState, plan: Plan) -> Plan:
    new = plan.state
    if new is not None and new.aborted_at is not None and state.aborted_at is None:
        return replace(plan, start=None, terminate=(), requeue_at=None)
    traffic = traffic_in_force(strategy, view, state)
    preview = plan.traffic.preview if plan.traffic is not None else None
    return Plan(traffic=replace(traffic, preview=preview), analyses=tuple(view.analyses), waiting=PAUSED)
