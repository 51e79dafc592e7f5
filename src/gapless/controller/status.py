"""The rollout status document: counts, Kubernetes-style conditions and the instance table.

Computed from scratch on every pass; only ``lastTransitionTime`` is carried over from the previous status
so that a condition that keeps its value keeps its time.
"""

from __future__ import annotations

from typing import Any

from gapless.store.records import InstanceRecord, RevisionRecord
from gapless.strategies.plan import RolloutView
from gapless.strategies.replicas import resolve_fenceposts

__all__ = ["build_status"]


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

    if view.target_failed:
        phase = "Failed"
    elif view.paused:
        phase = "Paused"
    elif view.target_complete and len(updated_available) >= view.replicas and len(live) == view.replicas:
        phase = "Healthy"
    elif view.target_complete:
        phase = "Degraded"
    else:
        phase = "Progressing"

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
        "updatedReplicas": len(updated),
        "readyReplicas": len(ready),
        "availableReplicas": len(available),
        "unavailableReplicas": max(0, view.replicas - len(available)),
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
        "updatedAt": now,
    }
