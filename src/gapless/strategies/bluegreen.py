"""The blue-green planner: a full second environment, checks on the preview, an atomic switch.

Green (the target revision) is started at ``previewReplicaCount`` (default full size) beside blue (the
active, last complete revision), which keeps every request. Once green is available it is served on the
preview address and the pre-promotion checks run there (the controller runs them; the planner only asks
for them and reads the result). A failed check fails the revision: green never took traffic. Green
stays at ``previewReplicaCount`` (as in Argo Rollouts) until its promotion is due, automatically after
``autoPromotionSeconds`` or on ``gapless promote``; then it is brought to full size and, once all of it
is available, the router's weights flip to green in one configuration push. Blue stays warm for
``scaleDownDelaySeconds`` so that ``gapless undo`` switches back without starting a process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from gapless.spec.strategy import BlueGreen
from gapless.strategies.canary import abort_plan
from gapless.strategies.plan import InstanceView, Plan, RolloutView, StepState, Terminate, Traffic
from gapless.strategies.scaling import available, deadline_failure, live_of, scale_step, single_revision

__all__ = ["POST_PROMOTION", "PRE_PROMOTION", "plan_blue_green"]

PRE_PROMOTION = "prePromotion"
POST_PROMOTION = "postPromotion"
PROMOTING = "promoting_at"
"""Step-state key: when promotion became due (green then goes from previewReplicaCount to full size)."""


def plan_blue_green(
    view: RolloutView, spec: BlueGreen, state: StepState, instances: Sequence[InstanceView], now: float
) -> Plan:
    """Decide the next step of a blue-green rollout."""
    if (single := single_revision(view, instances, now)) is not None:
        return single
    blue, green = view.stable or "", view.target  # two revisions in play: stable is set

    n = view.replicas
    min_ready = view.min_ready_seconds
    blue_live = live_of(instances, blue)
    green_live = live_of(instances, green)
    others = [i for i in instances if i.revision not in (blue, green) and i.phase != "terminating"]
    green_available = available(green_live, now, min_ready)
    preview = green if green_available and spec.preview_listen else None
    st = state
    on_blue = Traffic(weights=((blue, 100),), preview=preview)

    if st.aborted_at is not None:
        start, _ = scale_step(blue, blue_live, n, now=now, min_ready=min_ready)
        if start is not None:
            return Plan(start=start, traffic=Traffic(weights=((blue, 100),)))
        until = st.aborted_at + spec.abort_scale_down_delay_seconds
        if now >= until and (green_live or others):
            kill = [*others, *green_live]
            return Plan(terminate=tuple(Terminate(i.id, "blue-green aborted") for i in kill), traffic=on_blue)
        return Plan(traffic=Traffic(weights=((blue, 100),)), requeue_at=until if now < until else None)

    if others:
        replaced = tuple(Terminate(i.id, "replaced by a newer revision") for i in others)
        return Plan(
            terminate=replaced,
            traffic=on_blue if st.switched_at is None else Traffic(weights=((green, 100),)),
        )

    if st.switched_at is None:
        # Green runs at previewReplicaCount until its promotion is due, then at full size before the switch.
        promoting = PROMOTING in st.extra
        size = n if promoting else min(n, spec.preview_replica_count or n)
        start, stop = scale_step(green, green_live, size, now=now, min_ready=min_ready)
        if start is not None or stop or green_available < size:
            failed = deadline_failure(view, now, f"{green_available} of {size} green instances available")
            if failed is not None:
                return replace(failed, traffic=on_blue, state=st)
            deadline = view.progress_at + view.progress_deadline_seconds
            return Plan(start=start, terminate=stop, traffic=on_blue, state=st, requeue_at=deadline)
        if promoting:
            return _switch(green, st, preview, spec, now)
        ready_at = st.ready_at if st.ready_at is not None else now
        st = replace(st, ready_at=ready_at)
        if spec.pre_promotion_checks and st.checks != "passed":
            if st.checks == "failed":
                return Plan(
                    outcome="failed",
                    reason=f"pre-promotion check failed: {st.checks_message}",
                    traffic=on_blue,
                    state=st,
                )
            if st.checks == "pending":
                return Plan(traffic=on_blue, state=replace(st, checks="running"), run_checks=True)
            return Plan(traffic=on_blue, state=st)
        if spec.pre_promotion_analysis is not None:
            phase = view.analyses.get(PRE_PROMOTION)
            if phase in ("failed", "error"):
                return abort_plan(blue, st, now, f"pre-promotion analysis {phase}")
            if phase == "inconclusive" and not (st.promote or st.full):
                waiting = "pre-promotion analysis inconclusive: `gapless promote` continues"
                return Plan(traffic=on_blue, state=st, waiting=waiting)
            if phase not in ("successful", "inconclusive"):
                return Plan(
                    traffic=on_blue,
                    state=st,
                    analyses=(PRE_PROMOTION,),
                    waiting="pre-promotion analysis running",
                )
        if st.promote or st.full:
            promote_at: float | None = now
        elif spec.auto_promotion_enabled:
            promote_at = ready_at + spec.auto_promotion_seconds
        else:
            promote_at = None
        if promote_at is None or now < promote_at:
            return Plan(traffic=on_blue, state=st, requeue_at=promote_at)
        # Promotion is due: green to full size (a step: the progress clock starts again), then the switch.
        st = replace(st, extra=st.extra | {PROMOTING: now})
        if size < n:
            return Plan(traffic=on_blue, state=st, requeue_at=now)
        return _switch(green, st, preview, spec, now)

    on_green = Traffic(weights=((green, 100),), preview=preview)
    # Blue stays warm until the post-promotion analysis passed; the delay counts from then.
    settled_at = st.switched_at
    if spec.post_promotion_analysis is not None:
        phase = view.analyses.get(POST_PROMOTION)
        if phase in ("failed", "error"):
            return abort_plan(blue, st, now, f"post-promotion analysis {phase}")
        passed_at = st.extra.get("post_promotion_passed_at")
        if passed_at is None:
            if phase == "successful" or (phase == "inconclusive" and st.promote):
                st = replace(st, promote=False, extra=st.extra | {"post_promotion_passed_at": now})
                return Plan(traffic=on_green, state=st, requeue_at=now)
            if phase == "inconclusive":
                waiting = "post-promotion analysis inconclusive: `gapless promote` continues"
                return Plan(traffic=on_green, state=st, waiting=waiting)
            return Plan(
                traffic=on_green,
                state=st,
                analyses=(POST_PROMOTION,),
                waiting="post-promotion analysis running",
            )
        settled_at = float(passed_at)
    until = settled_at + spec.scale_down_delay_seconds
    if now < until:
        return Plan(traffic=on_green, state=st, requeue_at=until)
    if blue_live:
        return Plan(
            terminate=tuple(Terminate(i.id, "blue scaled down after the switch") for i in blue_live),
            traffic=on_green,
            state=st,
        )
    return Plan(outcome="complete", reason="NewReplicaSetAvailable", traffic=on_green, state=st)


def _switch(green: str, st: StepState, preview: str | None, spec: BlueGreen, now: float) -> Plan:
    """All traffic to green in one configuration push; blue stays warm for the scale-down delay."""
    st = replace(st, switched_at=now, weight=100, promote=False)
    return Plan(
        traffic=Traffic(weights=((green, 100),), preview=preview),
        state=st,
        requeue_at=now + spec.scale_down_delay_seconds,
    )
