"""The rolling update planner: Kubernetes' Deployment algorithm as a pure function.

``plan_rolling(view, instances, now)`` looks at everything from scratch each time (level-triggered) and
returns one kind of change: either start instances of the target revision (bounded by maxSurge), or
terminate old ones (bounded by maxUnavailable, unhealthy ones first), or mark the target complete or
failed. Two choices differ from Kubernetes on purpose:

- Instances that are still terminating count against ``replicas + maxSurge``: on one machine they are
  still processes holding memory and connections, and a bound you can check with ``ps`` is worth a
  slightly slower rollout.
- A revision whose progress deadline passes is *failed*: the planner then treats the last complete
  revision as the target again, so the old version is restored to full size and the failed one scaled
  away (Kubernetes only reports the condition).
"""

from __future__ import annotations

from collections.abc import Sequence

from gapless.strategies.plan import InstanceView, Plan, RolloutView, Start, Terminate
from gapless.strategies.replicas import resolve_fenceposts

__all__ = ["deletion_order", "plan_rolling"]


def deletion_order(instances: Sequence[InstanceView], now: float, min_ready: float) -> list[InstanceView]:
    """Which instances to remove first: not running, not ready, not yet available, then newest first."""

    def rank(i: InstanceView) -> tuple[int, int, int, float]:
        return (
            0 if i.phase != "running" else 1,
            0 if not i.ready else 1,
            0 if not i.available(now, min_ready) else 1,
            -i.created_at,
        )

    return sorted(instances, key=rank)


def plan_rolling(view: RolloutView, instances: Sequence[InstanceView], now: float) -> Plan:
    """Decide the next step of a rolling update for one rollout."""
    failed = view.target_failed
    target = view.target
    replicas = view.replicas
    if failed:
        if view.stable is not None and view.stable != view.target:
            target = view.stable
        else:
            replicas = 0
    min_ready = view.min_ready_seconds

    live = [i for i in instances if i.phase != "terminating"]
    terminating = [i for i in instances if i.phase == "terminating"]
    new = [i for i in live if i.revision == target]
    old = [i for i in live if i.revision != target]
    new_available = [i for i in new if i.available(now, min_ready)]
    surge, unavailable = resolve_fenceposts(view.max_surge, view.max_unavailable, replicas)

    requeue = _next_availability(new, now, min_ready)

    if view.paused and not failed:
        return Plan(requeue_at=requeue)

    # Done: the target has all its replicas available and nothing else is left.
    if len(new) == replicas and len(new_available) == replicas and not old:
        if not failed and not view.target_complete:
            return Plan(outcome="complete", reason="NewReplicaSetAvailable")
        return Plan(requeue_at=requeue)

    # The progress deadline applies to a rollout in progress towards a revision not yet failed.
    if not failed and not view.target_complete:
        deadline = view.progress_at + view.progress_deadline_seconds
        if now >= deadline:
            return Plan(
                outcome="failed",
                reason=(
                    f"revision {view.target} made no progress for {view.progress_deadline_seconds:g}s "
                    f"({len(new_available)} of {replicas} instances available)"
                ),
            )
        requeue = _min(requeue, deadline)

    # 1. Scale the target up, within replicas + maxSurge (terminating instances included).
    if len(new) < replicas:
        room = replicas + surge - len(live) - len(terminating)
        count = min(replicas - len(new), room)
        if count > 0:
            return Plan(start=Start(target, count), requeue_at=requeue)

    # 1b. Too many of the target (replicas lowered): remove the extra, worst first.
    if len(new) > replicas and not old:
        extra = deletion_order(new, now, min_ready)[: len(new) - replicas]
        return Plan(terminate=tuple(Terminate(i.id, "scaled down") for i in extra), requeue_at=requeue)

    # 2. Scale old revisions down, keeping replicas - maxUnavailable available.
    if old:
        return Plan(
            terminate=_scale_down_old(
                replicas, unavailable=unavailable, live=live, new=new, old=old, now=now, min_ready=min_ready
            ),
            requeue_at=requeue,
        )

    return Plan(requeue_at=requeue)


def _scale_down_old(
    replicas: int,
    *,
    unavailable: int,
    live: list[InstanceView],
    new: list[InstanceView],
    old: list[InstanceView],
    now: float,
    min_ready: float,
) -> tuple[Terminate, ...]:
    min_available = replicas - unavailable
    new_unavailable = max(0, min(len(new), replicas) - sum(1 for i in new if i.available(now, min_ready)))
    max_scaled_down = len(live) - min_available - new_unavailable
    if max_scaled_down <= 0:
        return ()
    ordered = deletion_order(old, now, min_ready)
    unhealthy = [i for i in ordered if not i.available(now, min_ready)]
    cleanup = unhealthy[:max_scaled_down]
    out = [Terminate(i.id, "old revision, unhealthy") for i in cleanup]
    available_total = sum(1 for i in live if i.available(now, min_ready))
    scale_down = available_total - min_available
    healthy_old = [i for i in ordered if i.available(now, min_ready)]
    remaining = max_scaled_down - len(cleanup)
    out.extend(
        Terminate(i.id, "old revision, replaced") for i in healthy_old[: max(0, min(scale_down, remaining))]
    )
    return tuple(out)


def _next_availability(new: list[InstanceView], now: float, min_ready: float) -> float | None:
    times = [
        i.ready_since + min_ready
        for i in new
        if i.ready and i.ready_since is not None and i.ready_since + min_ready > now
    ]
    return min(times) if times else None


def _min(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)
