"""The Kubernetes operator's reconcile pass: observe -> plan -> apply -> persist, the cluster as the store.

``decide`` is the whole decision of one pass as a pure function of what the caches hold (the Rollout
with its status, its ReplicaSets and Pods) and the time: it turns the pods into the planner's
``InstanceView``s, asks the *same* ``plan_rolling`` the local control plane asks, and returns the
ReplicaSets to apply (one per revision, named by the template hash), the pods to mark for deletion,
the Services, and the new status. The revision records (number, phase, progress clock) live in the
Rollout's status subresource, so an operator killed at any moment continues from the cluster alone,
and the ReplicaSet of a revision has a fixed name, so a restart can never make a second one.

How a plan maps onto ReplicaSets:

- ``Start(revision, n)`` raises that revision's ``spec.replicas`` by ``n``.
- ``Terminate(pod)`` lowers the pod's ReplicaSet by one and first gives the pod the lowest
  ``controller.kubernetes.io/pod-deletion-cost``, so the ReplicaSet controller removes that very pod.
- Pods the ReplicaSet controller has not created yet (``spec.replicas`` above the pods seen) are shown to
  the planner as starting instances, and pods above ``spec.replicas`` (about to be removed) as
  terminating ones, so a pass never acts twice on one change that the caches have not caught up with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from gapless.controller.kube_analysis import RUNS_FIELD, Observed, failure_detail, fold, run_phases, settle
from gapless.core.errors import SpecError
from gapless.platform.kubernetes.manifests import (
    ABORT_ANNOTATION,
    LABEL_REVISION,
    NUMBER_ANNOTATION,
    PROMOTE_ANNOTATION,
    RETRY_ANNOTATION,
    TEMPLATE_ANNOTATION,
    pod_template,
    problems,
    replica_set,
    replica_set_name,
    services,
)
from gapless.spec.load import validate_rollout
from gapless.spec.models import CHANGE_CAUSE_ANNOTATION, Rollout, template_hash
from gapless.strategies.plan import InstanceView, Plan, RolloutView, StepState
from gapless.strategies.revisions import next_number
from gapless.strategies.rolling import deletion_order
from gapless.strategies.rollout import plan_rollout

__all__ = ["DELETION_COST", "Decision", "decide", "instances_of", "rollout_model"]

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_PLACEHOLDER = "+pending/"


@dataclass
class Decision:
    """What one pass does: apply these objects, mark these pods, write this status, come back at ``requeue_at``."""

    replica_sets: list[dict[str, Any]] = field(default_factory=list)
    delete_replica_sets: list[str] = field(default_factory=list)
    mark_pods: list[str] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, bool]] = field(default_factory=list)
    requeue_at: float | None = None
    plan: Plan | None = None
    http_route: tuple[str, int, tuple[dict[str, Any], ...]] | None = None
    """(HTTPRoute name, canary weight, header route) the user's HTTPRoute must carry, when one is named."""
    jobs: list[dict[str, Any]] = field(default_factory=list)
    """Jobs of ``job`` metrics to create (after the status is written); ``delete_jobs`` to remove."""
    delete_jobs: list[str] = field(default_factory=list)


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def rollout_model(obj: Mapping[str, Any]) -> Rollout:
    """The gapless model of a Rollout object (raises ``SpecError`` naming the fields that are wrong)."""
    meta = obj.get("metadata", {})
    doc = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {
            "name": meta.get("name"),
            "labels": meta.get("labels") or {},
            "annotations": meta.get("annotations") or {},
        },
        "spec": obj.get("spec"),
    }
    return validate_rollout(doc, source=f"rollout {meta.get('namespace')}/{meta.get('name')}")


def _pod_view(pod: Mapping[str, Any]) -> InstanceView:
    meta = pod["metadata"]
    status = pod.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    is_ready = ready is not None and ready.get("status") == "True"
    if meta.get("deletionTimestamp"):
        phase = "terminating"
    elif status.get("phase") == "Running":
        phase = "running"
    elif status.get("phase") in ("Failed", "Succeeded"):
        phase = "backoff"
    else:
        phase = "starting"
    return InstanceView(
        id=meta["name"],
        revision=(meta.get("labels") or {}).get(LABEL_REVISION, ""),
        phase=phase,  # type: ignore[arg-type]
        ready=is_ready,
        ready_since=_ts(ready.get("lastTransitionTime")) if is_ready and ready else None,
        created_at=_ts(meta.get("creationTimestamp")) or 0.0,
    )


def instances_of(
    replica_sets: Mapping[str, int], pods: Sequence[Mapping[str, Any]], now: float, min_ready: float
) -> list[InstanceView]:
    """The planner's view of a rollout's pods, with what the ReplicaSet controller has still to do.

    ``replica_sets`` maps each revision to its ReplicaSet's ``spec.replicas``. A revision with fewer
    live pods than that gets "starting" placeholders for the missing ones; one with more has its
    surplus (the pods its ReplicaSet controller will delete, those marked for deletion first) shown as
    terminating.
    """
    views = [_pod_view(p) for p in pods]
    cost = {p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(DELETION_COST) for p in pods}
    out: list[InstanceView] = [v for v in views if v.phase == "terminating"]
    for revision in sorted({v.revision for v in views} | set(replica_sets)):
        live = [v for v in views if v.revision == revision and v.phase != "terminating"]
        want = replica_sets.get(revision, 0)
        if len(live) > want:
            marked = [v for v in live if cost.get(v.id) is not None]
            rest = deletion_order([v for v in live if cost.get(v.id) is None], now, min_ready)
            surplus = {v.id for v in (marked + rest)[: len(live) - want]}
            out.extend(
                InstanceView(v.id, v.revision, "terminating", v.ready, v.ready_since, v.created_at)
                if v.id in surplus
                else v
                for v in live
            )
        else:
            out.extend(live)
            out.extend(
                InstanceView(f"{_PLACEHOLDER}{revision}/{i}", revision, "starting", False, None, now)
                for i in range(want - len(live))
            )
    return out


def _condition(
    kind: str, ok: bool, reason: str, message: str, previous: Sequence[Mapping[str, Any]], now: str
) -> dict[str, Any]:
    status = "True" if ok else "False"
    old = next((c for c in previous if c.get("type") == kind), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now
    return {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": since}


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _invalid(obj: Mapping[str, Any], found: list[tuple[str, str]], now: float) -> Decision:
    previous = obj.get("status") or {}
    message = "; ".join(f"{f}: {m}" for f, m in found)
    status = dict(previous) | {
        "observedGeneration": obj["metadata"].get("generation"),
        "phase": "Degraded",
        "message": f"invalid on Kubernetes: {message}",
        "conditions": [
            _condition(
                "InvalidSpec", True, "InvalidSpec", message, previous.get("conditions") or [], _iso(now)
            )
        ],
    }
    d = Decision(status=status)
    if previous.get("message") != status["message"]:
        d.events.append(("InvalidSpec", message, True))
    return d


def decide(
    obj: Mapping[str, Any],
    replica_sets: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    now: float,
    analysis: Observed | None = None,
) -> Decision:
    """One reconcile pass of a Rollout object, from the caches alone (no I/O).

    ``analysis`` holds the namespace's AnalysisTemplates, the rollout's Jobs and the Prometheus values
    the operator read for the measurements that were due (:mod:`gapless.controller.kube_analysis`).
    """
    meta = obj["metadata"]
    namespace, uid = meta["namespace"], meta.get("uid", "")
    try:
        rollout = rollout_model(obj)
    except SpecError as e:
        return _invalid(obj, [(p.path, p.message) for p in e.problems], now)
    found = problems(rollout)
    if found:
        return _invalid(obj, found, now)
    spec = rollout.spec
    previous: dict[str, Any] = dict(obj.get("status") or {})
    records: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (previous.get("revisions") or {}).items()}
    rs_by_rev = {(r["metadata"].get("labels") or {}).get(LABEL_REVISION, ""): r for r in replica_sets}
    for rev, r in rs_by_rev.items():  # a status lost or never written: the ReplicaSets remember the numbers
        if rev not in records:
            number = int((r["metadata"].get("annotations") or {}).get(NUMBER_ANNOTATION, "0") or 0)
            full = (r.get("status") or {}).get("availableReplicas", 0) == r["spec"].get("replicas", 0) > 0
            records[rev] = {
                "number": number,
                "phase": "complete" if full else "superseded",
                "progressAt": now,
            }
    template = pod_template(rollout)
    target = template_hash(spec.template)
    events: list[tuple[str, str, bool]] = []
    rec = records.get(target)
    if rec is None:
        number = max([int(r.get("number", 0)) for r in records.values()] + [0]) + 1
        rec = records[target] = {"number": number, "phase": "progressing", "progressAt": now}
        events.append(("NewRevision", f"revision {number} ({target}) created", False))
    for h, r in records.items():
        if h != target and r["phase"] == "progressing":
            r["phase"] = "superseded"
    complete = [(float(r.get("completedAt", 0)), h) for h, r in records.items() if r["phase"] == "complete"]
    stable = max(complete)[1] if complete else None
    reused = rec["phase"] == "superseded" or (rec["phase"] == "complete" and stable != target)
    number = next_number(int(rec.get("number", 0)), [int(r.get("number", 0)) for r in records.values()])
    if reused or number != int(rec.get("number", 0)):
        # An earlier template again (an undo): its ReplicaSet is reused and, as on one machine and in a
        # Deployment rollback, it takes the next number unless it has the highest already. That includes
        # blue-green's blue while it is still the stable revision (an undo inside scaleDownDelaySeconds).
        if reused:
            rec.update(phase="progressing", progressAt=now, message="")
        rec["number"] = number
        events.append(("RevisionReused", f"revision {number} ({target}) is an earlier template again", False))

    was = next((c for c in previous.get("conditions") or [] if c.get("type") == "Paused"), None)
    if was is not None and (was.get("status") == "True") != spec.paused:
        # spec.paused changed since the status read (`gapless pause`, the dashboard, kubectl patch): the
        # local control plane's Paused / Resumed event. A Rollout created paused has no condition yet.
        what = f"revision {rec['number']} ({target}): generation {meta.get('generation')}"
        events.append(("Paused" if spec.paused else "Resumed", what, False))

    annotations = rollout.metadata.annotations
    retry = _request(annotations, RETRY_ANNOTATION, target, rec, "retryHandled")
    if retry is not None:
        rec["retryHandled"] = retry
        if rec["phase"] == "failed" or StepState.from_json(rec.get("stepState")).aborted_at is not None:
            rec.update(phase="progressing", message="", progressAt=now, stepState=StepState().to_json())
            events.append(("Retry", f"revision {rec['number']} ({target}) starts again", False))

    observed = analysis or Observed()
    runs = fold(
        previous,
        rollout.name,
        target,
        observed,
        now,
        restart=any(e[0] in ("RevisionReused", "Retry") for e in events),  # a retry measures anew
    )
    desired = {rev: int(r["spec"].get("replicas", 0)) for rev, r in rs_by_rev.items()}
    instances = instances_of(desired, pods, now, spec.min_ready_seconds)
    surge, unavailable = spec.strategy.surge_bounds
    became = [
        i.ready_since + spec.min_ready_seconds
        for i in instances
        if i.revision == target and i.available(now, spec.min_ready_seconds) and i.ready_since is not None
    ]
    progress_at = max([float(rec.get("progressAt", now)), *became])
    view = RolloutView(
        replicas=spec.replicas,
        max_surge=surge,
        max_unavailable=unavailable,
        min_ready_seconds=spec.min_ready_seconds,
        progress_deadline_seconds=spec.progress_deadline_seconds,
        paused=spec.paused,
        target=target,
        target_failed=rec["phase"] == "failed",
        target_complete=rec["phase"] == "complete",
        stable=stable,
        progress_at=progress_at,
        analyses=run_phases(runs.runs, target) if rec["phase"] == "progressing" else {},
    )
    st = StepState.from_json(rec.get("stepState"))
    promote = _request(annotations, PROMOTE_ANNOTATION, target, rec, "promoteHandled")
    if promote is not None:
        rec["promoteHandled"] = promote
        if st.switched_at is None and st.aborted_at is None and rec["phase"] == "progressing":
            full = "full" in promote.split()[1:]
            st = replace(st, promote=True, full=st.full or full)
            what = "full promotion" if full else "next step"
            events.append(("PromoteRequested", f"revision {rec['number']} ({target}): {what}", False))
    abort = _request(annotations, ABORT_ANNOTATION, target, rec, "abortHandled")
    if abort is not None:
        rec["abortHandled"] = abort
        if st.aborted_at is None and rec["phase"] == "progressing":
            st = replace(
                st, aborted_at=now, abort_reason=f"{ABORT_ANNOTATION} set", promote=False, full=False
            )
            events.append(("RolloutAborted", f"revision {rec['number']} ({target}) aborted", True))
    plan = plan_rollout(spec.strategy, view, st, instances, now)
    if plan.state is not None and plan.state.to_json() != rec.get("stepState"):
        old = StepState.from_json(rec.get("stepState"))
        new = plan.state
        if (old.index, old.switched_at, old.checks, old.extra) != (
            new.index,
            new.switched_at,
            new.checks,
            new.extra,
        ):
            rec["progressAt"] = now
        if new.switched_at is not None and old.switched_at is None:
            events.append(
                ("Switched", f"the active Service now selects revision {rec['number']} ({target})", False)
            )
        rec["stepState"] = new.to_json()
    elif st != StepState.from_json(rec.get("stepState")):
        rec["stepState"] = st.to_json()

    # Apply: ReplicaSet sizes from the plan.
    scale = dict(desired)
    mark: list[str] = []
    if plan.start is not None:
        scale[plan.start.revision] = scale.get(plan.start.revision, 0) + plan.start.count
    by_id = {i.id: i for i in instances}
    for t in plan.terminate:
        inst = by_id.get(t.instance_id)
        if inst is None:
            continue
        scale[inst.revision] = max(0, scale.get(inst.revision, 0) - 1)
        if not t.instance_id.startswith(_PLACEHOLDER):
            mark.append(t.instance_id)
            # The local control plane's event for each instance it stops, naming the pod's own revision.
            n = records.get(inst.revision, {}).get("number", "?")
            what = f"revision {n} ({inst.revision}): stopping {t.instance_id}: {t.reason}"
            events.append(("ScalingDown", what, False))
    out = Decision(plan=plan, mark_pods=mark, events=events)
    if plan.changes_instances or (spec.paused and rec["phase"] == "progressing"):
        rec["progressAt"] = now
    if plan.outcome == "complete":
        rec.update(phase="complete", completedAt=now, message="")
        stable = target
        out.events.append(("RolloutCompleted", f"revision {rec['number']} ({target}) is available", False))
    elif plan.outcome == "failed":
        rec.update(phase="failed", message=plan.reason)
        out.events.append(("ProgressDeadlineExceeded", plan.reason, True))
    settle(
        runs,
        rollout,
        namespace=namespace,
        uid=uid,
        target=target,
        stable=stable,
        wanted=plan.analyses if rec["phase"] == "progressing" and stable not in (None, target) else (),
        observed=observed,
        now=now,
    )
    out.jobs, out.delete_jobs = runs.jobs, runs.delete_jobs
    out.events.extend(runs.events)
    new_state = StepState.from_json(rec.get("stepState"))
    if new_state.aborted_at is not None and st.aborted_at is None:  # the plan aborted (an analysis)
        why = failure_detail(runs.runs, target)
        reason = new_state.abort_reason + (f" ({why})" if why else "")
        out.events.append(("RolloutAborted", f"revision {rec['number']} ({target}) aborted: {reason}", True))

    for rev, r in rs_by_rev.items():
        recorded = (r["metadata"].get("annotations") or {}).get(NUMBER_ANNOTATION)
        renamed = rev in records and recorded != str(records[rev].get("number", 0))
        if scale.get(rev, 0) != desired.get(rev) or renamed:
            current = r["spec"]["template"] if rev != target else template
            out.replica_sets.append(
                replica_set(
                    rollout,
                    namespace=namespace,
                    uid=uid,
                    replicas=scale[rev],
                    number=int(records.get(rev, {}).get("number", 0)),
                    template=current,
                    annotations=_revision_annotations(rollout, r, rev == target),
                )
            )
    if target not in rs_by_rev:
        out.replica_sets.append(
            replica_set(
                rollout,
                namespace=namespace,
                uid=uid,
                replicas=scale.get(target, 0),
                number=int(rec["number"]),
                template=template,
                annotations=_revision_annotations(rollout, None, True),
            )
        )

    # revisionHistoryLimit: scaled-down old ReplicaSets beyond the limit go, oldest first.
    idle = sorted(
        (int(records.get(rev, {}).get("number", 0)), rev)
        for rev, r in rs_by_rev.items()
        if rev not in (target, stable)
        and scale.get(rev, 0) == 0
        and not any(p for p in pods if _rev(p) == rev)
    )
    for _, rev in idle[: max(0, len(idle) - spec.revision_history_limit)]:
        out.delete_replica_sets.append(replica_set_name(rollout.name, rev))
        records.pop(rev, None)

    active = stable or target
    if spec.strategy.blue_green is not None and plan.traffic is not None and plan.traffic.weights:
        active = max(plan.traffic.weights, key=lambda w: w[1])[0]
    preview = target if spec.strategy.blue_green is not None else None
    out.services = services(
        rollout, namespace=namespace, uid=uid, stable=active, canary=target, preview=preview
    )
    out.status = _status(obj, previous, records, target, stable, instances, view, plan, now)
    if runs.runs or RUNS_FIELD in previous:
        out.status[RUNS_FIELD] = runs.runs
    if spec.strategy.blue_green is not None:
        number = records.get(active, {}).get("number", "?")
        out.status["weights"] = (
            f"active {number}, preview {rec['number']}" if active != target else f"active {number}"
        )
    gateway = spec.strategy.canary.traffic_routing.gateway_api if spec.strategy.canary is not None else None
    if gateway is not None:
        weight = 0
        header: tuple[dict[str, Any], ...] = ()
        if stable is not None and stable != target and plan.traffic is not None and plan.traffic.weights:
            weight = dict(plan.traffic.weights).get(target, 0)
            header = plan.traffic.header_route
        out.http_route = (gateway.http_route, weight, tuple(header))
        out.status["weights"] = f"stable {100 - weight} / canary {weight}" + (
            " + header route" if header else ""
        )
    elif spec.strategy.canary is not None:
        out.status["weights"] = _replica_ratio(instances, target, stable, now, spec.min_ready_seconds)
    final = StepState.from_json(rec.get("stepState"))
    if rec["phase"] == "progressing" and final.aborted_at is not None:
        why = failure_detail(runs.runs, target)
        reason = (final.abort_reason or "aborted") + (f" ({why})" if why else "")
        out.status |= {
            "phase": "Degraded",
            "message": f"revision {rec['number']} aborted: {reason}: traffic back on stable",
        }
    elif rec["phase"] == "progressing" and plan.waiting and not spec.paused:
        waiting = plan.waiting.replace(
            "`gapless promote` continues",
            f"annotate the Rollout {PROMOTE_ANNOTATION}={target} to continue",
        )
        out.status |= {"message": waiting}
        if "inconclusive" in plan.waiting:
            out.status |= {"phase": "Paused"}
    out.requeue_at = plan.requeue_at
    if runs.requeue_at is not None:
        out.requeue_at = runs.requeue_at if out.requeue_at is None else min(out.requeue_at, runs.requeue_at)
    if rec["phase"] == "progressing" and not spec.paused:
        deadline = float(rec["progressAt"]) + spec.progress_deadline_seconds
        out.requeue_at = deadline if out.requeue_at is None else min(out.requeue_at, deadline)
    return out


def _request(
    annotations: Mapping[str, str], key: str, target: str, rec: Mapping[str, Any], handled: str
) -> str | None:
    """A request annotation (``HASH [words...]``) for the target revision not acted on yet, else None."""
    value = annotations.get(key, "")
    words = value.split()
    if not words or words[0] != target or value == rec.get(handled):
        return None
    return value


def _revision_annotations(rollout: Rollout, rs: Mapping[str, Any] | None, current: bool) -> dict[str, str]:
    """A ReplicaSet's record of its revision: the Rollout template (for an undo) and the change cause.

    An existing ReplicaSet keeps what it recorded; the current revision's template is the Rollout's own
    (the same hash), so a ReplicaSet made before these annotations existed gets it too.
    """
    kept = dict((rs or {}).get("metadata", {}).get("annotations") or {})
    out = {k: kept[k] for k in (TEMPLATE_ANNOTATION, CHANGE_CAUSE_ANNOTATION) if k in kept}
    if current:
        template = rollout.spec.template.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude_unset=True
        )
        out.setdefault(TEMPLATE_ANNOTATION, json.dumps(template, sort_keys=True, separators=(",", ":")))
        cause = rollout.metadata.annotations.get(CHANGE_CAUSE_ANNOTATION)
        if cause and rs is None:
            out[CHANGE_CAUSE_ANNOTATION] = cause
    return out


def _replica_ratio(
    instances: Sequence[InstanceView], target: str, stable: str | None, now: float, min_ready: float
) -> str:
    """Without a traffic router a Service over both revisions splits by pods: say what the pods give."""
    ready = [i for i in instances if i.phase != "terminating" and i.available(now, min_ready)]
    canary = sum(1 for i in ready if i.revision == target)
    if stable is None or stable == target or not ready:
        return "by replica count"
    return f"canary {round(100 * canary / len(ready))}% by replica ratio ({canary} of {len(ready)} pods)"


def _rev(pod: Mapping[str, Any]) -> str:
    return str((pod["metadata"].get("labels") or {}).get(LABEL_REVISION, ""))


def _status(
    obj: Mapping[str, Any],
    previous: Mapping[str, Any],
    records: dict[str, dict[str, Any]],
    target: str,
    stable: str | None,
    instances: Sequence[InstanceView],
    view: RolloutView,
    plan: Plan,
    now: float,
) -> dict[str, Any]:
    rec = records[target]
    live = [i for i in instances if i.phase != "terminating" and not i.id.startswith(_PLACEHOLDER)]
    updated = [i for i in live if i.revision == target]
    ready = [i for i in live if i.ready]
    available = [i for i in live if i.available(now, view.min_ready_seconds)]
    if rec["phase"] == "failed":
        phase, message = "Degraded", str(rec.get("message", ""))
    elif view.paused and rec["phase"] == "progressing":
        phase, message = "Paused", "paused: set spec.paused to false to continue"
    elif rec["phase"] == "complete" and len(available) >= view.replicas:
        phase, message = "Healthy", ""
    else:
        phase, message = (
            "Progressing",
            f"{len([i for i in available if i.revision == target])} of {view.replicas} updated pods available",
        )
    stamp = _iso(now)
    conds = previous.get("conditions") or []
    conditions = [
        _condition(
            "Available",
            len(available) >= view.replicas - 0,
            "MinimumReplicasAvailable" if len(available) >= view.replicas else "MinimumReplicasUnavailable",
            f"{len(available)} of {view.replicas} pods available",
            conds,
            stamp,
        ),
        _condition(
            "Progressing",
            rec["phase"] != "failed",
            {"failed": "ProgressDeadlineExceeded", "complete": "NewReplicaSetAvailable"}.get(
                rec["phase"], "ReplicaSetUpdated"
            ),
            message or f"revision {rec['number']} is available",
            conds,
            stamp,
        ),
        _condition(
            "Paused", view.paused, "RolloutPaused" if view.paused else "RolloutResumed", "", conds, stamp
        ),
    ]
    return {
        "observedGeneration": obj["metadata"].get("generation"),
        "phase": phase,
        "message": message,
        "currentRevision": str(rec["number"]),
        "currentPodHash": target,
        "stablePodHash": stable,
        "replicas": len(live),
        "updatedReplicas": len(updated),
        "readyReplicas": len(ready),
        "availableReplicas": len(available),
        "ready": f"{len(ready)}/{view.replicas}",
        "weights": "by replica count",
        "revisions": records,
        "conditions": conditions,
    }
