"""A Rollout as Kubernetes objects: pure functions from the spec to ReplicaSet, Pod template and Services.

The revision is the template hash (``gapless.spec.models.template_hash``), as Kubernetes' pod-template-hash:
a ReplicaSet is named ``ROLLOUT-HASH`` and labelled ``gapless.dev/rollout`` and ``gapless.dev/revision``,
so the same template always maps to the same object (an operator restarted mid-rollout finds it again and
never makes a second one). The main container gets the template's fields with Kubernetes' meaning;
``podSpec`` is merged underneath (the main container's own fields win).

``problems`` lists what a spec means only on the local platform, each with the field it is about; the
operator refuses such a Rollout and says so in its status.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from gapless.spec.models import HTTPGetAction, PreStopHandler, Probe, Rollout, TCPSocketAction, template_hash

__all__ = [
    "ABORT_ANNOTATION",
    "DEFAULT_PRE_STOP_SLEEP",
    "HEADER_RULE",
    "LABEL_REVISION",
    "LABEL_ROLLOUT",
    "NUMBER_ANNOTATION",
    "PROMOTE_ANNOTATION",
    "RETRY_ANNOTATION",
    "TEMPLATE_ANNOTATION",
    "Problem",
    "main_container",
    "pod_template",
    "problems",
    "replica_set",
    "replica_set_name",
    "route_rules",
    "services",
]
PROMOTE_ANNOTATION = "gapless.dev/promote"
"""Set to a revision's hash to promote it (blue-green): ``kubectl annotate rollout NAME gapless.dev/promote=HASH``."""
ABORT_ANNOTATION = "gapless.dev/abort"
"""Set to a revision's hash to abort it (blue-green): all traffic back to the stable revision."""
RETRY_ANNOTATION = "gapless.dev/retry"
"""Set to a revision's hash to start an aborted or failed revision again from its first step.

``promote``, ``abort`` and ``retry`` each act once per value: the operator records the value it acted
on in the revision's record. The value is the hash, optionally followed by words (``HASH full at
TIME``, as ``gapless promote --full`` writes it): the first word names the revision, ``full`` skips
every remaining step, and a new time makes a new request."""
TEMPLATE_ANNOTATION = "gapless.dev/template"
"""On a revision's ReplicaSet: the Rollout template it was made from (JSON), what an undo applies again."""

LABEL_ROLLOUT = "gapless.dev/rollout"
LABEL_REVISION = "gapless.dev/revision"
NUMBER_ANNOTATION = "gapless.dev/revision-number"
"""The revision's number (1, 2, ...), as ``deployment.kubernetes.io/revision`` on a Deployment's ReplicaSets."""
DEFAULT_PRE_STOP_SLEEP = 5
"""Seconds a pod waits before SIGTERM when the template declares no preStop: endpoint removal
reaches kube-proxy, Ingress controllers and Gateways only after the pod has been told to stop
(kubernetes/kubernetes#43576), and requests routed meanwhile must still be served."""
MAIN_CONTAINER = "app"
_PORT_RE = re.compile(r"\$\{PORT\}")

Problem = tuple[str, str]
"""(field, message): ``("spec.template.image", "is required on Kubernetes ...")``."""


def problems(rollout: Rollout) -> list[Problem]:
    """What in this Rollout cannot run on Kubernetes, each naming its field; empty when it can."""
    spec = rollout.spec
    t = spec.template
    out: list[Problem] = []
    if t.image is None:
        out.append(
            (
                "spec.template.image",
                "is required on Kubernetes: `command` alone names a local program, a pod needs an image",
            )
        )
    if t.requires_schema is not None:
        out.append(("spec.template.requiresSchema", "is not supported on Kubernetes yet"))
    for name in ("readiness_probe", "liveness_probe", "startup_probe"):
        probe: Probe | None = getattr(t, name)
        if probe is None:
            continue
        field = f"spec.template.{_camel(name)}"
        out.extend(_probe_problems(probe, field, has_port=bool(t.ports)))
    pre_stop = t.lifecycle.pre_stop if t.lifecycle is not None else None
    if pre_stop is not None and pre_stop.http_get is not None:
        out.extend(
            _action_problems(
                pre_stop.http_get, "spec.template.lifecycle.preStop.httpGet", has_port=bool(t.ports)
            )
        )
    if (
        pre_stop is not None
        and pre_stop.sleep is not None
        and pre_stop.sleep.seconds != int(pre_stop.sleep.seconds)
    ):
        out.append(("spec.template.lifecycle.preStop.sleep.seconds", "must be whole seconds on Kubernetes"))
    grace = t.termination_grace_period_seconds
    if grace != int(grace):
        out.append(("spec.template.terminationGracePeriodSeconds", "must be whole seconds on Kubernetes"))
    elif pre_stop is None and grace <= DEFAULT_PRE_STOP_SLEEP:
        out.append(
            (
                "spec.template.terminationGracePeriodSeconds",
                f"must exceed the {DEFAULT_PRE_STOP_SLEEP}s preStop sleep gapless adds so endpoints are "
                "removed before SIGTERM; raise it, or declare lifecycle.preStop yourself",
            )
        )
    if spec.router.model_fields_set:
        out.append(
            ("spec.router", "configures the local router; on Kubernetes traffic goes through Services")
        )
    bg = spec.strategy.blue_green
    if bg is not None and bg.pre_promotion_checks:
        out.append(("spec.strategy.blueGreen.prePromotionChecks", "run on the local platform only"))
    if bg is not None and bg.preview_listen is not None:
        out.append(
            (
                "spec.strategy.blueGreen.previewListen",
                "is local; on Kubernetes the preview is the NAME-preview Service",
            )
        )
    canary = spec.strategy.canary
    if canary is not None and canary.traffic_routing.stickiness is not None:
        out.append(("spec.strategy.canary.trafficRouting.stickiness", "is done by the local router only"))
    if canary is not None:
        routed = canary.traffic_routing.gateway_api is not None
        for i, step in enumerate(canary.steps):
            field = f"spec.strategy.canary.steps[{i}]"
            if step.set_header_route is not None and not routed:
                out.append(
                    (
                        f"{field}.setHeaderRoute",
                        "needs a traffic router: set trafficRouting.gatewayAPI.httpRoute",
                    )
                )
            for j, m in enumerate(step.set_header_route.match if step.set_header_route else []):
                if m.cookie_name is not None:
                    out.append(
                        (f"{field}.setHeaderRoute.match[{j}].cookieName", "Gateway API matches headers only")
                    )
    return out


def _probe_problems(probe: Probe, field: str, *, has_port: bool) -> list[Problem]:
    out: list[Problem] = []
    for key in ("initial_delay_seconds", "period_seconds", "timeout_seconds"):
        value = getattr(probe, key)
        if value != int(value) or (key != "initial_delay_seconds" and value < 1):
            out.append(
                (f"{field}.{_camel(key)}", "must be whole seconds on Kubernetes (at least 1 for periods)")
            )
    for action, name in ((probe.http_get, "httpGet"), (probe.tcp_socket, "tcpSocket")):
        if action is not None:
            out.extend(_action_problems(action, f"{field}.{name}", has_port=has_port))
    return out


def _action_problems(action: HTTPGetAction | TCPSocketAction, field: str, *, has_port: bool) -> list[Problem]:
    out: list[Problem] = []
    if "host" in action.model_fields_set:
        out.append((f"{field}.host", "is local; on Kubernetes the kubelet probes the pod's own address"))
    if action.port is None and not has_port:
        out.append((f"{field}.port", "is needed on Kubernetes when spec.template.ports is empty"))
    return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _seconds(value: float) -> int:
    return math.ceil(value)


def _handler(action: HTTPGetAction | TCPSocketAction, port: int | None) -> dict[str, Any]:
    chosen = action.port if action.port is not None else port
    if isinstance(action, HTTPGetAction):
        out: dict[str, Any] = {"path": action.path, "port": chosen, "scheme": action.scheme}
        if action.http_headers:
            out["httpHeaders"] = [{"name": h.name, "value": h.value} for h in action.http_headers]
        return {"httpGet": out}
    return {"tcpSocket": {"port": chosen}}


def _probe(probe: Probe, port: int | None) -> dict[str, Any]:
    if probe.exec is not None:
        handler: dict[str, Any] = {"exec": {"command": list(probe.exec.command)}}
    else:
        action = probe.http_get or probe.tcp_socket
        if action is None:  # the model allows exactly one handler
            raise ValueError("a probe needs one handler")
        handler = _handler(action, port)
    return handler | {
        "initialDelaySeconds": _seconds(probe.initial_delay_seconds),
        "periodSeconds": _seconds(probe.period_seconds),
        "timeoutSeconds": _seconds(probe.timeout_seconds),
        "successThreshold": probe.success_threshold,
        "failureThreshold": probe.failure_threshold,
    }


def _pre_stop(pre_stop: PreStopHandler | None, port: int | None) -> dict[str, Any]:
    if pre_stop is None:
        return {"sleep": {"seconds": DEFAULT_PRE_STOP_SLEEP}}
    if pre_stop.exec is not None:
        return {"exec": {"command": list(pre_stop.exec.command)}}
    if pre_stop.sleep is not None:
        return {"sleep": {"seconds": _seconds(pre_stop.sleep.seconds)}}
    if pre_stop.http_get is None:  # the model allows exactly one handler
        raise ValueError("preStop needs one handler")
    return _handler(pre_stop.http_get, port)


def _env_ref(arg: str) -> str:
    """``${PORT}`` (substituted by the local platform) becomes Kubernetes' ``$(PORT)``."""
    return _PORT_RE.sub("$(PORT)", arg)


def main_container(rollout: Rollout) -> dict[str, Any]:
    """The pod's main container from the template's fields (Kubernetes' meaning of each)."""
    t = rollout.spec.template
    port = t.ports[0].container_port if t.ports else None
    env = dict(t.env)
    if port is not None:
        env.setdefault("PORT", str(port))
    c: dict[str, Any] = {
        "name": MAIN_CONTAINER,
        "image": t.image,
        "command": [_env_ref(a) for a in t.command],
    }
    if env:
        c["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    if t.working_dir is not None:
        c["workingDir"] = t.working_dir
    if t.ports:
        c["ports"] = [
            {"containerPort": p.container_port, "protocol": p.protocol} | ({"name": p.name} if p.name else {})
            for p in t.ports
        ]
    if t.resources is not None:
        res = {
            k: {n: str(q) for n, q in v.items()}
            for k, v in (("requests", t.resources.requests), ("limits", t.resources.limits))
            if v
        }
        if res:
            c["resources"] = res
    for name in ("readiness_probe", "liveness_probe", "startup_probe"):
        probe = getattr(t, name)
        if probe is not None:
            c[_camel(name)] = _probe(probe, port)
    c["lifecycle"] = {"preStop": _pre_stop(t.lifecycle.pre_stop if t.lifecycle else None, port)}
    return c


def pod_template(rollout: Rollout) -> dict[str, Any]:
    """The pods' template of the current revision: labels, the main container, ``podSpec`` underneath."""
    t = rollout.spec.template
    revision = template_hash(t)
    spec: dict[str, Any] = dict(t.pod_spec or {})
    main = main_container(rollout)
    containers = [c for c in spec.get("containers", []) if isinstance(c, dict)]
    own = next((c for c in containers if c.get("name") == MAIN_CONTAINER), None)
    if own is not None:
        main = own | main
    spec["containers"] = [main, *(c for c in containers if c.get("name") != MAIN_CONTAINER)]
    spec["terminationGracePeriodSeconds"] = int(t.termination_grace_period_seconds)
    labels = dict(rollout.metadata.labels) | {LABEL_ROLLOUT: rollout.name, LABEL_REVISION: revision}
    return {"metadata": {"labels": labels}, "spec": spec}


def replica_set_name(rollout: str, revision: str) -> str:
    return f"{rollout[:52]}-{revision}"


def replica_set(
    rollout: Rollout,
    *,
    namespace: str,
    uid: str,
    replicas: int,
    number: int,
    template: dict[str, Any],
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ReplicaSet of one revision, owned by the Rollout (deleting the Rollout deletes it).

    ``annotations``: the revision's own (its Rollout template and change cause), kept beside the number.
    """
    revision = template["metadata"]["labels"][LABEL_REVISION]
    selector = {LABEL_ROLLOUT: rollout.name, LABEL_REVISION: revision}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": replica_set_name(rollout.name, revision),
            "namespace": namespace,
            "labels": selector,
            "annotations": dict(annotations or {}) | {NUMBER_ANNOTATION: str(number)},
            "ownerReferences": [
                {
                    "apiVersion": "gapless.dev/v1alpha1",
                    "kind": "Rollout",
                    "name": rollout.name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": _seconds(rollout.spec.min_ready_seconds),
            "selector": {"matchLabels": selector},
            "template": template,
        },
    }


def services(
    rollout: Rollout, *, namespace: str, uid: str, stable: str, canary: str, preview: str | None = None
) -> list[dict[str, Any]]:
    """``NAME-stable``, ``NAME-canary`` (and ``NAME-preview`` for blue-green), each selecting one revision's
    pods on the listen port. ``stable`` is the revision that serves: blue-green's active one."""
    t = rollout.spec.template
    target = t.ports[0].container_port if t.ports else rollout.spec.listen_port
    out = []
    chosen = [("stable", stable), ("canary", canary)] + (
        [("preview", preview)] if preview is not None else []
    )
    for suffix, revision in chosen:
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": f"{rollout.name[:55]}-{suffix}",
                    "namespace": namespace,
                    "labels": {LABEL_ROLLOUT: rollout.name},
                    "ownerReferences": [
                        {
                            "apiVersion": "gapless.dev/v1alpha1",
                            "kind": "Rollout",
                            "name": rollout.name,
                            "uid": uid,
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": {
                    "selector": {LABEL_ROLLOUT: rollout.name, LABEL_REVISION: revision},
                    "ports": [
                        {
                            "name": "http",
                            "port": rollout.spec.listen_port,
                            "targetPort": target,
                            "protocol": "TCP",
                        }
                    ],
                },
            }
        )
    return out


HEADER_RULE = "gapless-header-route"
"""The name of the HTTPRoute rule gapless adds for ``setHeaderRoute`` (and removes after it)."""


def _header_match(m: dict[str, Any]) -> dict[str, Any]:
    value = m.get("headerValue") or {}
    if "exact" in value:
        return {"type": "Exact", "name": m["headerName"], "value": value["exact"]}
    if "prefix" in value:
        return {
            "type": "RegularExpression",
            "name": m["headerName"],
            "value": "^" + re.escape(value["prefix"]) + ".*",
        }
    return {"type": "RegularExpression", "name": m["headerName"], "value": value["regex"]}


def route_rules(
    rules: list[dict[str, Any]], rollout: str, canary_weight: int, header_route: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """An HTTPRoute's rules with the rollout's weights and header route in them (pure; the input is unchanged).

    Every rule that sends to ``NAME-stable`` gets ``NAME-canary`` beside it (same port), weighted
    ``100 - w`` and ``w``; other backends and rules are left as they are. A header route is one rule
    named ``gapless-header-route``, first, matching every header condition and sending to the canary.
    """
    stable, canary = f"{rollout[:55]}-stable", f"{rollout[:55]}-canary"
    out: list[dict[str, Any]] = []
    for rule in rules:
        if rule.get("name") == HEADER_RULE:
            continue
        refs = [dict(r) for r in rule.get("backendRefs") or []]
        names = [r.get("name") for r in refs]
        if stable in names:
            base = refs[names.index(stable)]
            if canary not in names:
                refs.append({k: v for k, v in base.items() if k != "weight"} | {"name": canary})
            for r in refs:
                if r.get("name") == stable:
                    r["weight"] = 100 - canary_weight
                elif r.get("name") == canary:
                    r["weight"] = canary_weight
            out.append(dict(rule) | {"backendRefs": refs})
        else:
            out.append(rule)
    if header_route:
        template = next(
            (r for r in out if any(b.get("name") == canary for b in r.get("backendRefs") or [])), None
        )
        ref = (
            next(b for b in (template or {}).get("backendRefs", []) if b.get("name") == canary)
            if template
            else None
        )
        backend = {k: v for k, v in (ref or {"name": canary}).items() if k != "weight"}
        header_rule = {
            "name": HEADER_RULE,
            # the path is what the apiserver would default, so that a rule read back compares equal
            "matches": [
                {
                    "path": {"type": "PathPrefix", "value": "/"},
                    "headers": [_header_match(m) for m in header_route],
                }
            ],
            "backendRefs": [backend],
        }
        out.insert(0, header_rule)
    return out
