"""Small pure helpers shared by the canary and blue-green planners."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from gapless.strategies.plan import InstanceView, Plan, RolloutView, Start, Terminate, Traffic
from gapless.strategies.rolling import deletion_order, plan_rolling

__all__ = ["available", "ceil_percent", "deadline_failure", "live_of", "scale_step", "single_revision"]


def live_of(instances: Sequence[InstanceView], revision: str | None) -> list[InstanceView]:
    return [i for i in instances if i.revision == revision and i.phase != "terminating"]


def available(instances: Sequence[InstanceView], now: float, min_ready: float) -> int:
    return sum(1 for i in instances if i.available(now, min_ready))


def scale_step(
    revision: str,
    live: Sequence[InstanceView],
    desired: int,
    *,
    now: float,
    min_ready: float,
    max_pending: int | None = None,
) -> tuple[Start | None, tuple[Terminate, ...]]:
    """One step towards ``desired`` instances of ``revision``.

    Scaling up starts at most ``max_pending`` instances that are not yet available at a time (the
    strategy's maxSurge); scaling down removes the worst instances first.
    """
    if len(live) < desired:
        count = desired - len(live)
        if max_pending is not None:
            pending = len(live) - available(live, now, min_ready)
            count = min(count, max(0, max(1, max_pending) - pending))
        return (Start(revision, count) if count > 0 else None), ()
    if len(live) > desired:
        extra = deletion_order(live, now, min_ready)[: len(live) - desired]
        return None, tuple(Terminate(i.id, "scaled down") for i in extra)
    return None, ()


def ceil_percent(replicas: int, percent: int) -> int:
    return math.ceil(replicas * percent / 100)


def deadline_failure(view: RolloutView, now: float, waiting_for: str) -> Plan | None:
    """A failed outcome when the target made no progress for ``progressDeadlineSeconds``.

    Only waiting for instances counts: pauses and manual promotion do not (as in Argo Rollouts).
    """
    if view.target_complete or view.target_failed:
        return None
    if now >= view.progress_at + view.progress_deadline_seconds:
        return Plan(
            outcome="failed",
            reason=f"revision {view.target} made no progress for {view.progress_deadline_seconds:g}s ({waiting_for})",
        )
    return None


def single_revision(view: RolloutView, instances: Sequence[InstanceView], now: float) -> Plan | None:
    """The plan when only one revision is in play, else None.

    A first deployment, a target that is the stable revision again (undo), or a failed target: then
    canary and blue-green behave as a rolling update, and one revision takes all the traffic.
    """
    if view.stable is not None and view.stable != view.target and not view.target_failed:
        return None
    keep = view.stable if view.target_failed and view.stable else view.target
    return replace(plan_rolling(view, instances, now), traffic=Traffic(weights=((keep, 100),)))
