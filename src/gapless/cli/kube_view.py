"""Cluster objects in the shape of the local control plane's answers, so the same renderers print them.

Pure functions of the Rollout (with the status the operator wrote), its ReplicaSets, Pods and Events:
``status_view`` is what ``GET /api/v1/rollouts/NAME`` answers locally, ``history_view`` what
``.../history`` answers, ``event_view`` one item of ``/api/v1/events``. The phase is the local one: a
canary or blue-green step waiting for ``gapless promote`` is ``Paused`` and a revision that failed its
progress deadline is ``Failed`` (``kubectl get rollouts`` shows the operator's ``Progressing`` and
``Degraded`` for them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gapless.cli.kube import (
    CHANGE_CAUSE_ANNOTATION,
    LABEL_REVISION,
    NUMBER_ANNOTATION,
    TEMPLATE_ANNOTATION,
)
from gapless.platform.kubernetes.events import event_view

__all__ = ["event_view", "history_view", "status_view", "undo_target"]


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("annotations") or {})


def _numbers(obj: dict[str, Any], replica_sets: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Revision hash -> number, from the status' records and the ReplicaSets' annotations."""
    out: dict[str, int] = {}
    for rs in replica_sets:
        try:
            out[_labels(rs).get(LABEL_REVISION, "")] = int(_annotations(rs).get(NUMBER_ANNOTATION, "0"))
        except ValueError:
            continue
    for h, rec in ((obj.get("status") or {}).get("revisions") or {}).items():
        if rec.get("number"):
            out[h] = int(rec["number"])
    return out


def _pod(pod: dict[str, Any], numbers: dict[str, int]) -> dict[str, Any]:
    meta = pod["metadata"]
    status = pod.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    containers = status.get("containerStatuses") or []
    waiting = [
        f"{c.get('name')}: {w.get('reason')}" + (f" ({w['message']})" if w.get("message") else "")
        for c in containers
        if (w := (c.get("state") or {}).get("waiting")) and w.get("reason") not in (None, "ContainerCreating")
    ]
    if meta.get("deletionTimestamp"):
        state = "terminating"
    elif status.get("phase") == "Running":
        state = "running"
    elif status.get("phase") in ("Failed", "Succeeded") or waiting:
        state = "backoff"
    else:
        state = "starting"
    h = _labels(pod).get(LABEL_REVISION, "")
    return {
        "id": meta["name"],
        "revision": numbers.get(h),
        "revisionHash": h,
        "state": state,
        "ready": ready,
        "pid": None,
        "port": None,
        "podIP": status.get("podIP"),
        "node": (pod.get("spec") or {}).get("nodeName"),
        "restarts": sum(int(c.get("restartCount", 0)) for c in containers),
        "startedAt": _epoch(meta.get("creationTimestamp")),
        "message": "; ".join(waiting),
    }


def _strategy(obj: dict[str, Any], target: str, stable: str | None, now: float) -> dict[str, Any]:
    """The strategy part of the status, by the local control plane's own rule (``strategy_status``)."""
    from gapless.controller.kubernetes import rollout_model
    from gapless.controller.status import strategy_status
    from gapless.core.errors import SpecError
    from gapless.store.records import RevisionRecord

    records = (obj.get("status") or {}).get("revisions") or {}
    try:
        rollout = rollout_model(obj)
    except SpecError:
        return {"type": "RollingUpdate"}
    name = rollout.name

    def record(h: str | None) -> RevisionRecord | None:
        rec = records.get(h) if h else None
        if rec is None or h is None:
            return None
        return RevisionRecord(
            rollout=name,
            hash=h,
            number=int(rec.get("number", 0)),
            template={},
            created_at=0.0,
            phase=rec.get("phase", "pending"),
            message=str(rec.get("message", "")),
            progress_at=rec.get("progressAt"),
            step_state=dict(rec.get("stepState") or {}),
            completed_at=rec.get("completedAt"),
        )

    current = record(target)
    if current is None:
        return {"type": rollout.spec.strategy.kind}
    return strategy_status(rollout.spec, current, record(stable), None, now)


def status_view(
    obj: dict[str, Any],
    replica_sets: Sequence[dict[str, Any]],
    pods: Sequence[dict[str, Any]],
    now: float,
    where: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What the local ``GET /api/v1/rollouts/NAME`` answers as ``status``, from the cluster's objects."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    st = dict(obj.get("status") or {})
    numbers = _numbers(obj, replica_sets)
    target = str(st.get("currentPodHash") or "")
    stable = st.get("stablePodHash")
    records = st.get("revisions") or {}
    rec = records.get(target) or {}
    instances = sorted((_pod(p, numbers) for p in pods), key=lambda i: (i["revision"] or 0, i["id"]))
    live = [i for i in instances if i["state"] != "terminating"]
    strategy = _strategy(obj, target, stable, now)
    phase = str(st.get("phase") or "Pending")
    message = str(st.get("message") or "")
    conditions = [
        {k: c.get(k, "") for k in ("type", "status", "reason", "message")} for c in st.get("conditions") or []
    ]
    if rec.get("phase") == "failed":
        phase = "Failed"
    elif strategy.get("aborted"):
        phase = "Degraded"
    elif spec.get("paused"):
        phase = "Paused"
    elif strategy.get("waitingForPromote") and phase == "Progressing":
        phase, message = "Paused", "waiting for `gapless promote`"
    invalid = any(c["type"] == "InvalidSpec" and c["status"] == "True" for c in conditions)
    if invalid:
        phase = "Failed"
    generation = int(meta.get("generation") or 0)
    observed = int(st.get("observedGeneration") or 0)
    out = {
        "name": meta["name"],
        "generation": generation,
        "observedGeneration": observed,
        "phase": phase,
        "message": message,
        "currentRevision": numbers.get(target) if target else None,
        "currentRevisionHash": target or None,
        "stableRevision": numbers.get(stable) if stable else None,
        "stableRevisionHash": stable,
        "replicas": int(spec.get("replicas", 1) or 0),
        "updatedReplicas": int(st.get("updatedReplicas", 0) or 0),
        "readyReplicas": int(st.get("readyReplicas", 0) or 0),
        "availableReplicas": int(st.get("availableReplicas", 0) or 0),
        "totalInstances": len(live),
        "terminatingReplicas": len(instances) - len(live),
        "paused": bool(spec.get("paused")),
        "aborted": bool(strategy.get("aborted")),
        "conditions": conditions,
        "instances": instances,
        "strategy": strategy,
        "weights": st.get("weights"),
        "kubernetes": dict(where or {}) | {"services": [f"{meta['name']}-stable", f"{meta['name']}-canary"]},
        "createdAt": _epoch(meta.get("creationTimestamp")),
    }
    if out["currentRevision"] is None:  # not started yet: shown as "-", as locally
        del out["currentRevision"]
    return out


def history_view(obj: dict[str, Any], replica_sets: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The revisions of a Rollout from its ReplicaSets, oldest first, as the local ``history`` answers.

    Number from ``gapless.dev/revision-number``, template and change cause from the ReplicaSet's own
    annotations, phase and message from the revision's record in the Rollout's status.
    """
    records = (obj.get("status") or {}).get("revisions") or {}
    out = []
    for rs in replica_sets:
        h = _labels(rs).get(LABEL_REVISION, "")
        annotations = _annotations(rs)
        rec = records.get(h) or {}
        try:
            number = int(annotations.get(NUMBER_ANNOTATION, "0") or 0) or int(rec.get("number", 0))
        except ValueError:
            number = int(rec.get("number", 0))
        try:
            template: dict[str, Any] = json.loads(annotations[TEMPLATE_ANNOTATION])
        except (KeyError, ValueError):
            template = {}
        containers = (rs.get("spec", {}).get("template", {}).get("spec") or {}).get("containers") or [{}]
        out.append(
            {
                "number": number,
                "hash": h,
                "phase": rec.get("phase", "superseded"),
                "createdAt": _epoch(rs["metadata"].get("creationTimestamp")),
                "completedAt": rec.get("completedAt"),
                "message": str(rec.get("message", "")),
                "command": template.get("command") or containers[0].get("command") or [],
                "image": template.get("image") or containers[0].get("image"),
                "changeCause": annotations.get(CHANGE_CAUSE_ANNOTATION) or None,
                "template": template,
                "replicaSet": rs["metadata"]["name"],
                "replicas": int((rs.get("spec") or {}).get("replicas", 0) or 0),
            }
        )
    return sorted(out, key=lambda r: r["number"])


def undo_target(
    items: Sequence[dict[str, Any]], current: str, to_revision: int | None
) -> dict[str, Any] | None:
    """Where ``gapless undo`` goes, by the local rule (``gapless.strategies.revisions.undo_target``):
    revision ``to_revision``, else the last one that fully served, else the previous one by number."""
    if to_revision is not None:
        return next((r for r in items if r["number"] == to_revision), None)
    others = [r for r in items if r["hash"] != current]
    served = [r for r in others if r.get("completedAt") is not None or r["phase"] == "complete"]
    if served:
        return max(served, key=lambda r: (r["phase"] == "complete", r.get("completedAt") or 0.0, r["number"]))
    cur = next((r for r in items if r["hash"] == current), None)
    earlier = sorted(
        (r for r in others if cur is None or r["number"] < cur["number"]), key=lambda r: r["number"]
    )
    return earlier[-1] if earlier else None
