"""Rules of the mapping from a Rollout to Kubernetes objects (pure: no cluster needed)."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gapless.platform.kubernetes.manifests import (
    DEFAULT_PRE_STOP_SLEEP,
    HEADER_RULE,
    LABEL_REVISION,
    LABEL_ROLLOUT,
    pod_template,
    problems,
    replica_set,
    route_rules,
    services,
)
from gapless.spec.load import validate_rollout
from gapless.spec.models import template_hash
from tests.k8s.operator import k8s_rollout

names = st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True)
env = st.dictionaries(
    st.from_regex(r"[A-Z][A-Z0-9_]{0,8}", fullmatch=True), st.text("abc01 ", max_size=8), max_size=4
)
ports = st.lists(st.integers(1, 65535), min_size=1, max_size=3, unique=True)


@st.composite
def templates(draw: st.DrawFn) -> dict[str, Any]:
    t: dict[str, Any] = {
        "image": draw(st.sampled_from(["r.example/a:1", "r.example/a:2", "r.example/b@sha256:" + "0" * 64])),
        "command": ["/app", *draw(st.lists(st.sampled_from(["--port", "${PORT}", "-v", "x"]), max_size=3))],
        "ports": [{"containerPort": p} for p in draw(ports)],
        "env": draw(env),
        "terminationGracePeriodSeconds": draw(st.integers(6, 120)),
    }
    if draw(st.booleans()):
        t["workingDir"] = "/srv"
    if draw(st.booleans()):
        t["resources"] = {
            "requests": {"cpu": draw(st.sampled_from(["100m", "1", "0.5"]))},
            "limits": {"memory": "128Mi"},
        }
    if draw(st.booleans()):
        t["readinessProbe"] = {"httpGet": {"path": "/healthz"}, "periodSeconds": draw(st.integers(1, 30))}
    if draw(st.booleans()):
        t["lifecycle"] = {"preStop": {"exec": {"command": ["/bin/drain"]}}}
    if draw(st.booleans()):
        t["podSpec"] = {
            "serviceAccountName": draw(names),
            "nodeSelector": {"disk": "ssd"},
            "containers": [{"name": "sidecar", "image": "r.example/proxy:1"}],
        }
    return t


def rollout(name: str, template: dict[str, Any]) -> Any:
    doc = k8s_rollout(name, "v1")
    doc["spec"]["template"] = template
    return validate_rollout(doc)


@settings(max_examples=150)
@given(name=names, template=templates())
def test_the_pod_template_carries_the_template_with_kubernetes_meaning(
    name: str, template: dict[str, Any]
) -> None:
    """Labels name the rollout and revision; the main container has the image, argv, env, ports and probes;
    podSpec fields and sidecars pass through; a preStop sleep is added unless one is declared."""
    r = rollout(name, template)
    assert problems(r) == []
    pt = pod_template(r)
    assert pt["metadata"]["labels"][LABEL_ROLLOUT] == name
    assert pt["metadata"]["labels"][LABEL_REVISION] == template_hash(r.spec.template)
    main = pt["spec"]["containers"][0]
    assert main["image"] == template["image"]
    assert main["command"] == [a.replace("${PORT}", "$(PORT)") for a in template["command"]]
    env_out = {e["name"]: e["value"] for e in main.get("env", [])}
    assert env_out == template["env"] | {"PORT": str(template["ports"][0]["containerPort"])} | {
        k: v for k, v in template["env"].items() if k == "PORT"
    }
    assert [p["containerPort"] for p in main["ports"]] == [p["containerPort"] for p in template["ports"]]
    assert pt["spec"]["terminationGracePeriodSeconds"] == template["terminationGracePeriodSeconds"]
    if "readinessProbe" in template:
        probe = main["readinessProbe"]
        assert probe["httpGet"]["port"] == template["ports"][0]["containerPort"]
        assert probe["periodSeconds"] == template["readinessProbe"]["periodSeconds"]
    pre_stop = main["lifecycle"]["preStop"]
    if "lifecycle" in template:
        assert pre_stop == {"exec": {"command": ["/bin/drain"]}}
    else:
        assert pre_stop == {"sleep": {"seconds": DEFAULT_PRE_STOP_SLEEP}}
    if "podSpec" in template:
        assert pt["spec"]["serviceAccountName"] == template["podSpec"]["serviceAccountName"]
        assert pt["spec"]["nodeSelector"] == {"disk": "ssd"}
        assert [c["name"] for c in pt["spec"]["containers"]] == ["app", "sidecar"]
    if "resources" in template:
        assert main["resources"]["limits"] == {"memory": "128Mi"}


@settings(max_examples=150)
@given(name=names, a=templates(), b=templates())
def test_equal_templates_map_to_one_replica_set_and_different_ones_to_two(
    name: str, a: dict[str, Any], b: dict[str, Any]
) -> None:
    """The ReplicaSet's name and selector are a function of the template alone (so a restarted operator finds
    the same one), equal for equal templates, different for different ones; replicas do not change them."""
    ra, rb = rollout(name, a), rollout(name, b)
    again = rollout(name, copy.deepcopy(a))
    rs = lambda r, n: replica_set(r, namespace="ns", uid="u", replicas=n, number=1, template=pod_template(r))  # noqa: E731
    assert rs(ra, 1)["metadata"]["name"] == rs(again, 7)["metadata"]["name"]
    assert rs(ra, 1)["spec"]["template"] == rs(again, 3)["spec"]["template"]
    same = ra.spec.template == rb.spec.template
    assert (rs(ra, 1)["metadata"]["name"] == rs(rb, 1)["metadata"]["name"]) == same
    sel = rs(ra, 2)["spec"]["selector"]["matchLabels"]
    assert sel.items() <= rs(ra, 2)["spec"]["template"]["metadata"]["labels"].items()


def test_hashes_of_templates_without_the_kubernetes_fields_are_unchanged() -> None:
    """image/ports/resources/podSpec are hashed only when set: a local template keeps its revision hash."""
    doc = k8s_rollout("shop", "v1")
    for key in ("image", "ports"):
        del doc["spec"]["template"][key]
    doc["spec"]["template"]["readinessProbe"]["httpGet"]["port"] = 8080
    t = validate_rollout(doc).spec.template
    plain = t.model_dump(mode="json", by_alias=True)
    for key in ("image", "ports", "resources", "podSpec", "requiresSchema"):  # as before these fields existed
        plain.pop(key)
    legacy = hashlib.sha256(json.dumps(plain, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[
        :10
    ]
    assert template_hash(t) == legacy
    data = t.model_dump(mode="json", by_alias=True)
    assert {"image", "ports", "resources", "podSpec"} <= set(data)
    assert all(data[k] is None for k in ("image", "ports", "resources", "podSpec"))


@given(
    field=st.sampled_from(
        [
            "image",
            "grace",
            "host",
            "port",
            "period",
            "router",
            "stickiness",
            "requiresSchema",
            "previewListen",
        ]
    )
)
def test_a_local_only_spec_is_refused_naming_the_field(field: str) -> None:
    """Each local-only choice gives a problem naming its exact field."""
    doc = k8s_rollout("shop", "v1")
    t = doc["spec"]["template"]
    expected = {
        "image": "spec.template.image",
        "grace": "spec.template.terminationGracePeriodSeconds",
        "host": "spec.template.readinessProbe.httpGet.host",
        "port": "spec.template.readinessProbe.httpGet.port",
        "period": "spec.template.readinessProbe.periodSeconds",
        "router": "spec.router",
        "stickiness": "spec.strategy.canary.trafficRouting.stickiness",
        "requiresSchema": "spec.template.requiresSchema",
        "headerRoute": "spec.strategy.canary.steps[0].setHeaderRoute",
        "gateway": "spec.strategy.canary.steps[1].setHeaderRoute.match[0].cookieName",
        "previewListen": "spec.strategy.blueGreen.previewListen",
    }[field]
    if field == "image":
        del t["image"]
    elif field == "grace":
        t["terminationGracePeriodSeconds"] = 3
    elif field == "host":
        t["readinessProbe"]["httpGet"]["host"] = "127.0.0.1"
    elif field == "port":
        del t["ports"]
    elif field == "period":
        t["readinessProbe"]["periodSeconds"] = 0.5
    elif field == "router":
        doc["spec"]["router"] = {"type": "haproxy"}
    elif field == "stickiness":
        doc["spec"]["strategy"] = {
            "canary": {"steps": [{"setWeight": 10}], "trafficRouting": {"stickiness": {"header": "X-User"}}}
        }
    elif field == "previewListen":
        doc["spec"]["strategy"] = {"blueGreen": {"previewListen": "127.0.0.1:9999"}}
    elif field == "requiresSchema":
        t["requiresSchema"] = "0002_email"
    elif field == "headerRoute":
        match = [{"headerName": "X-Beta", "headerValue": {"exact": "1"}}]
        doc["spec"]["strategy"] = {"canary": {"steps": [{"setHeaderRoute": {"match": match}}]}}
    elif field == "gateway":
        routing = {"gatewayAPI": {"httpRoute": "shop"}}
        cookie = {"setHeaderRoute": {"match": [{"cookieName": "beta", "cookieValue": {"exact": "1"}}]}}
        steps = [{"setWeight": 10}, cookie]
        doc["spec"]["strategy"] = {"canary": {"steps": steps, "trafficRouting": routing}}
    found = problems(validate_rollout(doc))
    assert expected in [f for f, _ in found], found
    assert problems(validate_rollout(k8s_rollout("shop", "v1"))) == []
    basic = {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}
    assert problems(validate_rollout(k8s_rollout("shop", "v1", strategy=basic))) == []
    assert problems(validate_rollout(k8s_rollout("shop", "v1", strategy={"blueGreen": {}}))) == []
    analysis = {"templates": [{"templateName": "health"}]}
    bg = {"blueGreen": {"prePromotionAnalysis": analysis, "postPromotionAnalysis": analysis}}
    assert problems(validate_rollout(k8s_rollout("shop", "v1", strategy=bg))) == []
    analysis = {"templates": [{"templateName": "health"}]}
    analysed = {"canary": {"steps": [{"setWeight": 10}, {"analysis": analysis}], "analysis": analysis}}
    assert problems(validate_rollout(k8s_rollout("shop", "v1", strategy=analysed))) == []


def test_services_select_one_revision_each() -> None:
    r = validate_rollout(k8s_rollout("shop", "v1"))
    stable, canary = services(r, namespace="ns", uid="u", stable="aaa", canary="bbb")
    assert stable["metadata"]["name"] == "shop-stable"
    assert stable["spec"]["selector"] == {LABEL_ROLLOUT: "shop", LABEL_REVISION: "aaa"}
    assert canary["spec"]["selector"] == {LABEL_ROLLOUT: "shop", LABEL_REVISION: "bbb"}
    assert stable["spec"]["ports"][0] == {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}


backend_refs = st.lists(
    st.sampled_from(["shop-stable", "other", "shop-canary"]), min_size=0, max_size=3, unique=True
).map(lambda names: [{"name": n, "port": 80, "weight": 1} for n in names])
rules = st.lists(st.builds(lambda refs: {"backendRefs": refs}, backend_refs), max_size=4)
header_routes = st.lists(
    st.builds(
        lambda name, kind, value: {"headerName": name, "headerValue": {kind: value}},
        st.sampled_from(["X-Beta", "X-Team"]),
        st.sampled_from(["exact", "prefix", "regex"]),
        st.sampled_from(["1", "a.b", "qa"]),
    ),
    max_size=2,
)


@settings(max_examples=200)
@given(rules=rules, weight=st.integers(0, 100), header=header_routes)
def test_route_rules_weight_every_stable_rule_and_leave_the_rest(
    rules: list[dict[str, Any]], weight: int, header: list[dict[str, Any]]
) -> None:
    """Each rule sending to NAME-stable ends up with stable 100-w and canary w; other rules and backends are
    unchanged; a header route is exactly one first rule to the canary; applying twice changes nothing."""
    before = copy.deepcopy(rules)
    out = route_rules(rules, "shop", weight, header)
    assert rules == before  # pure
    assert route_rules(out, "shop", weight, header) == out
    own = [r for r in out if r.get("name") == HEADER_RULE]
    assert len(own) == (1 if header else 0)
    if header:
        assert out[0] is own[0]
        assert [b["name"] for b in own[0]["backendRefs"]] == ["shop-canary"]
        assert len(own[0]["matches"][0]["headers"]) == len(header)
    plain = [r for r in out if r.get("name") != HEADER_RULE]
    assert len(plain) == len(rules)
    for old, new in zip(rules, plain, strict=True):
        names = [b["name"] for b in old["backendRefs"]]
        if "shop-stable" not in names:
            assert new == old
            continue
        weights = {b["name"]: b["weight"] for b in new["backendRefs"]}
        assert weights["shop-stable"] == 100 - weight
        assert weights["shop-canary"] == weight
        if "other" in names:
            assert weights["other"] == 1
    # Taking the header route away again leaves the rules as without it.
    assert route_rules(out, "shop", weight, []) == route_rules(rules, "shop", weight, [])
