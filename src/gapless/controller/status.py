"""The rollout status document: counts, Kubernetes-style conditions and the instance table.

Computed from scratch on every pass; only ``lastTransitionTime`` is carried over from the previous status
so that a condition that keeps its value keeps its time.
"""

from __future__ import annotations

from typing import Any

from gapless.spec.models import RolloutSpec
from gapless.store.records import InstanceRecord, RevisionRecord
from gapless.strategies.plan import RolloutView, StepState
from gapless.strategies.replicas import resolve_fenceposts

__all__ = ["build_status", "strategy_status"]


def _condition(
    previous: dict[str, Any], type_: str, status: str, reason: str, message: str, now: float
) -> dict[str, Any]:
    old = next((c for c in previous.get("conditions", []) if c.get("type") == type_), None)
    changed = old is None or old.get("status") != status or old.get("reason") != reason
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": now,
        "lastTransitionTime": now if changed or old is None else old.get("lastTransitionTime", now),
    }


def _counters(replicas: int, live: int, updated: int, ready: int, available: int) -> dict[str, int]:
    """The replica counters as shown against ``replicas``: each between 0 and ``replicas``."""
    desired = max(replicas, 0)

    def capped(n: int) -> int:
        return max(0, min(n, desired))

    return {
        "updatedReplicas": capped(updated),
        "readyReplicas": capped(ready),
        "availableReplicas": capped(available),
        "unavailableReplicas": desired - capped(available),
        "surge": max(0, live - desired),
    }


def build_status(
    *,
    name: str,
    generation: int,
    view: RolloutView,
    revisions: list[RevisionRecord],
    instances: list[InstanceRecord],
    router: dict[str, Any],
    previous: dict[str, Any],
    now: float,
    message: str = "",
    strategy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    by_hash = {r.hash: r for r in revisions}
    target = by_hash.get(view.target)
    stable = by_hash.get(view.stable) if view.stable else None
    live = [i for i in instances if i.state != "terminating"]
    updated = [i for i in live if i.revision == view.target]
    ready = [i for i in live if i.state == "running" and i.ready]
    available = [
        i for i in ready if i.ready_since is not None and now - i.ready_since >= view.min_ready_seconds
    ]
    updated_available = [i for i in available if i.revision == view.target]
    _, max_unavailable = resolve_fenceposts(view.max_surge, view.max_unavailable, view.replicas)

    strategy = strategy or {"type": "RollingUpdate"}
    if view.target_failed:
        phase = "Failed"
    elif strategy.get("aborted"):
        phase = "Degraded"
        message = message or f"aborted: {strategy.get('abortReason') or 'by user'}"
    elif view.paused or strategy.get("waitingForPromote"):
        phase = "Paused"
        if strategy.get("waitingForPromote"):
            message = message or "waiting for `gapless promote`"
    elif view.target_complete and len(updated_available) >= view.replicas and len(live) == view.replicas:
        phase = "Healthy"
    elif view.target_complete:
        phase = "Degraded"
    else:
        phase = "Progressing"

    if not message and phase in ("Progressing", "Degraded"):
        # The most useful thing to show while waiting: why an instance of the new revision is not up.
        troubled = [i for i in updated if i.state == "backoff" and i.message]
        if troubled:
            worst = max(troubled, key=lambda i: i.restarts)
            text = worst.message if worst.id in worst.message else f"{worst.id}: {worst.message}"
            message = f"{text} (restarts: {worst.restarts})"
    conditions = []
    if len(available) >= view.replicas - max_unavailable:
        conditions.append(
            _condition(
                previous,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                now,
            )
        )
    else:
        conditions.append(
            _condition(
                previous,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                now,
            )
        )
    number = target.number if target else None
    if view.target_failed:
        msg = (target.message if target else "") or f"revision {number} failed"
        conditions.append(_condition(previous, "Progressing", "False", "ProgressDeadlineExceeded", msg, now))
    elif strategy.get("aborted"):
        conditions.append(_condition(previous, "Progressing", "False", "RolloutAborted", message, now))
    elif view.paused:
        conditions.append(
            _condition(previous, "Progressing", "Unknown", "DeploymentPaused", "Rollout is paused.", now)
        )
    elif view.target_complete:
        conditions.append(
            _condition(
                previous,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f"Revision {number} has successfully progressed.",
                now,
            )
        )
    else:
        conditions.append(
            _condition(
                previous,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f"Revision {number} is progressing.",
                now,
            )
        )

    return {
        "name": name,
        "generation": generation,
        "observedGeneration": generation,
        "phase": phase,
        "message": message,
        "replicas": view.replicas,
        "currentRevision": number,
        "currentHash": view.target,
        "stableRevision": stable.number if stable else None,
        "stableHash": view.stable,
        "paused": view.paused,
        "totalInstances": len(instances),
        # Counters are of the desired count: a surge, the canary and blue-green run more instances than
        # ``replicas`` for a while, and "6/3 available" reads as a fault. Everything running is in
        # totalInstances (and ``surge`` says how many are above the desired count).
        **_counters(view.replicas, len(live), len(updated), len(ready), len(available)),
        "terminatingReplicas": len(instances) - len(live),
        "conditions": conditions,
        "revisions": [
            {"number": r.number, "hash": r.hash, "phase": r.phase, "message": r.message} for r in revisions
        ],
        "instances": [
            {
                "id": i.id,
                "revision": by_hash[i.revision].number if i.revision in by_hash else None,
                "hash": i.revision,
                "state": i.state,
                "ready": i.ready,
                "pid": i.pid,
                "port": i.port,
                "restarts": i.restarts,
                "startedAt": i.started_at,
                "message": i.message,
                "logPath": i.log_path,
            }
            for i in instances
        ],
        "router": router,
        "strategy": strategy,
        "aborted": bool(strategy.get("aborted")),
        "updatedAt": now,
    }


def strategy_status(
    spec: RolloutSpec,
    target: RevisionRecord,
    stable: RevisionRecord | None,
    weights: dict[str, int] | None,
    now: float,
) -> dict[str, Any]:
    """The strategy part of the status: step, weights in force, pause time left, checks, abort."""
    strategy = spec.strategy
    out: dict[str, Any] = {"type": strategy.kind}
    numbers = {target.hash: target.number} | ({stable.hash: stable.number} if stable else {})
    out["weights"] = None if weights is None else {str(numbers.get(r, r)): w for r, w in weights.items()}
    if strategy.kind == "RollingUpdate" or target.phase != "progressing":
        return out
    st = StepState.from_json(target.step_state)
    out["aborted"] = st.aborted_at is not None
    out["abortReason"] = st.abort_reason
    out["promoted"] = st.switched_at is not None
    if strategy.canary is not None:
        steps = strategy.canary.steps
        # The planner's index reaches len(steps) after the last step; shown, a step never passes the total.
        out["stepIndex"] = max(0, min(st.index, len(steps)))
        out["steps"] = len(steps)
        out["step"] = min(out["stepIndex"] + 1, len(steps))
        out["stepsDone"] = st.index >= len(steps)
        out["canaryWeight"] = st.weight
        if st.index < len(steps) and not st.full:
            step = steps[st.index]
            out["currentStep"] = step.model_dump(mode="json", by_alias=True, exclude_none=True)
            if step.pause is not None and st.pause_started_at is not None:
                if step.pause.duration is None:
                    out["waitingForPromote"] = not st.aborted_at
                else:
                    out["pauseRemaining"] = max(0.0, st.pause_started_at + step.pause.duration - now)
        out["headerRoute"] = list(st.header_route)
    if strategy.blue_green is not None:
        bg = strategy.blue_green
        out["previewListen"] = bg.preview_listen
        out["checks"] = st.checks if bg.pre_promotion_checks else None
        out["checksMessage"] = st.checks_message
        waiting = (
            st.switched_at is None
            and st.ready_at is not None
            and not bg.auto_promotion_enabled
            and not st.promote  # promoted: green grows to full size, then switches
            and not st.full
            and (not bg.pre_promotion_checks or st.checks == "passed")
            and st.aborted_at is None
        )
        out["waitingForPromote"] = waiting
        if st.switched_at is not None:
            out["scaleDownIn"] = max(0.0, st.switched_at + bg.scale_down_delay_seconds - now)
    return out
