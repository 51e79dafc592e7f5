"""The canary planner: Argo Rollouts' canary steps as a pure function.

Stable keeps its full size until the end (Argo's default); the canary is scaled to
``ceil(replicas x weight / 100)`` (at least 1) before the router is given the step's weight, so a weight
never points at instances that are not ready. After the last step (or ``promote --full``) the canary is
scaled to full size, takes all traffic, and stable is scaled down after ``scaleDownDelaySeconds``.
An abort moves all traffic back to stable at once and scales the canary down after
``abortScaleDownDelaySeconds``. Instances of any third revision (a canary replaced by a newer one) get no
traffic and are removed first: at most two revisions ever take traffic.

Weights are ordered canary first: with stickiness, the canary owns the lowest hash buckets, so as its
weight grows users only ever move from stable to canary, never back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from gapless.spec.strategy import Canary
from gapless.strategies.plan import InstanceView, Plan, RolloutView, StepState, Terminate, Traffic
from gapless.strategies.replicas import resolve_fenceposts
from gapless.strategies.scaling import (
    available,
    ceil_percent,
    deadline_failure,
    live_of,
    scale_step,
    single_revision,
)

__all__ = ["BACKGROUND", "canary_replicas", "plan_canary", "step_key"]

BACKGROUND = "background"
"""Key of the background analysis run (``strategy.canary.analysis``)."""


def step_key(index: int) -> str:
    """Key of the analysis run of the canary step at ``index`` (0-based)."""
    return f"step-{index}"


def abort_plan(stable: str, st: StepState, now: float, reason: str) -> Plan:
    """Abort as ``gapless abort`` does: all traffic to stable now, the rest on the next pass."""
    st = replace(st, aborted_at=now, abort_reason=reason, promote=False, full=False)
    return Plan(traffic=Traffic(weights=((stable, 100),)), state=st, requeue_at=now)


def canary_replicas(replicas: int, weight: int, scale: dict[str, object] | None) -> int:
    """How many canary instances a step wants: from setCanaryScale if given, else from the weight."""
    if scale:
        if scale.get("replicas") is not None:
            return int(str(scale["replicas"]))
        if scale.get("weight") is not None:
            return max(1, ceil_percent(replicas, int(str(scale["weight"]))))
    return max(1, ceil_percent(replicas, weight))


def _grow(
    view: RolloutView, canary_live: list[InstanceView], want: int, st: StepState, surge: int, now: float
) -> Plan:
    """Scale the canary towards ``want`` while its traffic stays as it is; fail at the progress deadline."""
    stable, canary = view.stable or "", view.target
    have = available(canary_live, now, view.min_ready_seconds)
    failed = deadline_failure(view, now, f"{have} of {want} canary instances available")
    if failed is not None:
        return replace(failed, traffic=Traffic(weights=((stable, 100),)), state=st)
    start, stop = scale_step(
        canary, canary_live, want, now=now, min_ready=view.min_ready_seconds, max_pending=surge
    )
    deadline = view.progress_at + view.progress_deadline_seconds
    return Plan(
        start=start, terminate=stop, traffic=_traffic(stable, canary, st), state=st, requeue_at=deadline
    )


def _traffic(stable: str, canary: str, st: StepState) -> Traffic:
    return Traffic(
        weights=((canary, st.weight), (stable, 100 - st.weight)),
        header_route=st.header_route,
        route_revision=canary if st.header_route else None,
    )


def _background_wanted(spec: Canary, st: StepState) -> bool:
    if spec.analysis is None or st.aborted_at is not None or st.switched_at is not None:
        return False
    return spec.analysis.starting_step is None or st.index >= spec.analysis.starting_step


def plan_canary(
    view: RolloutView, spec: Canary, state: StepState, instances: Sequence[InstanceView], now: float
) -> Plan:
    """Decide the next step of a canary rollout, with its background analysis if it has one.

    A failed or errored background analysis aborts; an inconclusive one holds the rollout where it is
    until ``gapless promote``. The background run is wanted from ``startingStep`` until the switch.
    """
    if (single := single_revision(view, instances, now)) is not None:
        return single
    stable = view.stable or ""
    if _background_wanted(spec, state):
        phase = view.analyses.get(BACKGROUND)
        if phase in ("failed", "error"):
            return abort_plan(stable, state, now, f"background analysis {phase}")
        if phase == "inconclusive" and not state.promote:
            return Plan(
                traffic=_traffic(stable, view.target, state),
                state=state,
                waiting="background analysis inconclusive: `gapless promote` continues",
            )
    plan = _plan_steps(view, spec, state, instances, now)
    if _background_wanted(spec, plan.state or state) and plan.outcome is None:
        plan = replace(plan, analyses=(*plan.analyses, BACKGROUND))
    return plan


def _plan_steps(
    view: RolloutView, spec: Canary, state: StepState, instances: Sequence[InstanceView], now: float
) -> Plan:
    stable, canary = view.stable or "", view.target  # two revisions in play: stable is set

    n = view.replicas
    min_ready = view.min_ready_seconds
    surge, _ = resolve_fenceposts(spec.max_surge, spec.max_unavailable, n)
    stable_live = live_of(instances, stable)
    canary_live = live_of(instances, canary)
    others = [i for i in instances if i.revision not in (stable, canary) and i.phase != "terminating"]
    st = state

    if st.aborted_at is not None:
        traffic = Traffic(weights=((stable, 100),))
        start, _stop = scale_step(stable, stable_live, n, now=now, min_ready=min_ready)
        if start is not None:
            return Plan(start=start, traffic=traffic)
        until = st.aborted_at + spec.abort_scale_down_delay_seconds
        if now >= until and (canary_live or others):
            kill = [*others, *canary_live]
            return Plan(terminate=tuple(Terminate(i.id, "canary aborted") for i in kill), traffic=traffic)
        return Plan(traffic=traffic, requeue_at=until if now < until else None)

    if others:
        replaced = tuple(Terminate(i.id, "replaced by a newer revision") for i in others)
        return Plan(terminate=replaced, traffic=_traffic(stable, canary, st))

    # Stable back to full size if it lost instances (crashes are restarted elsewhere; this covers scale-ups).
    start, _ = scale_step(stable, stable_live, n, now=now, min_ready=min_ready)
    if start is not None and st.switched_at is None:
        return Plan(start=start, traffic=_traffic(stable, canary, st), state=st)

    steps = spec.steps
    while not st.full and st.index < len(steps):
        step = steps[st.index]
        if step.set_weight is not None:
            want = canary_replicas(n, step.set_weight, st.canary_scale)
            if st.promote or available(canary_live, now, min_ready) >= want:
                st = replace(st, weight=step.set_weight, index=st.index + 1, promote=False)
                # Every weight reaches the router before the next step: return, and come back at once.
                return Plan(traffic=_traffic(stable, canary, st), state=st, requeue_at=now)
            if st.index != state.index:
                view = replace(view, progress_at=now)  # a step was just completed: that is progress
            return _grow(view, canary_live, want, st, surge, now)
        if step.pause is not None:
            started = st.pause_started_at if st.pause_started_at is not None else now
            duration = step.pause.duration
            if st.promote or (duration is not None and now >= started + duration):
                st = replace(st, index=st.index + 1, promote=False, pause_started_at=None)
                continue
            st = replace(st, pause_started_at=started)
            resume_at = None if duration is None else started + duration
            return Plan(traffic=_traffic(stable, canary, st), state=st, requeue_at=resume_at)
        if step.set_canary_scale is not None:
            scale = step.set_canary_scale.model_dump(mode="json", by_alias=True, exclude_none=True)
            st = replace(st, canary_scale=scale, index=st.index + 1, promote=False)
            continue
        if step.analysis is not None:
            key = step_key(st.index)
            phase = view.analyses.get(key)
            if phase == "successful" or st.promote:
                st = replace(st, index=st.index + 1, promote=False)
                continue
            if phase in ("failed", "error"):
                return abort_plan(stable, st, now, f"analysis of step {st.index + 1} {phase}")
            if phase == "inconclusive":
                waiting = f"analysis of step {st.index + 1} inconclusive: `gapless promote` continues"
                return Plan(traffic=_traffic(stable, canary, st), state=st, waiting=waiting)
            return Plan(
                traffic=_traffic(stable, canary, st),
                state=st,
                analyses=(key,),
                waiting=f"analysis of step {st.index + 1} running",
            )
        if step.set_header_route is not None:
            matches = tuple(
                m.model_dump(mode="json", by_alias=True, exclude_none=True)
                for m in step.set_header_route.match
            )
            st = replace(st, header_route=matches, index=st.index + 1, promote=False)
            continue
        st = replace(st, index=st.index + 1)

    # All steps done: full size, all traffic, then stable away after the delay.
    if st.switched_at is None:
        if len(canary_live) != n or available(canary_live, now, min_ready) < n:
            if st.index != state.index or st.full != state.full:
                view = replace(view, progress_at=now)
            return _grow(view, canary_live, n, st, surge, now)
        st = replace(st, weight=100, switched_at=now, header_route=(), promote=False)
        return Plan(
            traffic=_traffic(stable, canary, st), state=st, requeue_at=now + spec.scale_down_delay_seconds
        )
    traffic = _traffic(stable, canary, st)
    until = st.switched_at + spec.scale_down_delay_seconds
    if now < until:
        return Plan(traffic=traffic, state=st, requeue_at=until)
    if stable_live:
        return Plan(
            terminate=tuple(Terminate(i.id, "canary promoted") for i in stable_live),
            traffic=traffic,
            state=st,
        )
    return Plan(outcome="complete", reason="NewReplicaSetAvailable", traffic=traffic, state=st)
