"""The generated CRDs on a real kube-apiserver: accepted as structural, Established, and they take the
documents gapless takes (every strategy, an AnalysisTemplate) while refusing wrong types."""

from __future__ import annotations

import time
from typing import Any

import yaml

from gapless.spec.crd import crds
from gapless.spec.load import validate_rollout
from tests.e2e.harness import rollout_doc
from tests.k8s.cluster import Cluster
from tests.spec.test_analysis_spec import FULL

BASE = "/apis/gapless.dev/v1alpha1/namespaces/default"


def install(cluster: Cluster) -> None:
    with cluster.client() as c:
        for crd in crds():
            r = c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
            assert r.status_code in (201, 409), r.text
        for crd in crds():
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                got = c.get(
                    f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
                ).json()
                status = got.get("status") or {}  # a CRD just created may show `conditions: null`
                conditions = {x["type"]: x["status"] for x in status.get("conditions") or []}
                assert conditions.get("NonStructuralSchema") != "True", got["status"]
                if conditions.get("Established") == "True":
                    break
                time.sleep(0.1)
            assert conditions.get("Established") == "True", got.get("status")
        deadline = time.monotonic() + 20  # discovery catches up with a new CRD shortly after Established
        while c.get(f"{BASE}/rollouts").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)


def strategies() -> dict[str, dict[str, Any]]:
    canary = {
        "canary": {
            "steps": [
                {"setWeight": 10},
                {"pause": {"duration": "30s"}},
                {
                    "setHeaderRoute": {
                        "match": [{"headerName": "X-Beta", "headerValue": {"exact": "1"}}],
                    }
                },
                {"setCanaryScale": {"replicas": 2}},
                {"analysis": {"templates": [{"templateName": "shop-health"}]}},
                {"pause": {}},
            ],
            "scaleDownDelaySeconds": 5,
        }
    }
    blue_green = {
        "blueGreen": {"previewReplicaCount": 1, "autoPromotionSeconds": 30, "scaleDownDelaySeconds": 30}
    }
    rolling = {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
    return {"canary": canary, "bluegreen": blue_green, "rolling": rolling}


def test_crds_are_established_and_take_every_strategy(cluster: Cluster) -> None:
    """Both CRDs become Established (structural); a Rollout of each strategy and a full AnalysisTemplate are stored."""
    install(cluster)
    with cluster.client() as c:
        for name, strategy in strategies().items():
            doc = rollout_doc(f"shop-{name}", 8080, "v1", strategy=strategy)
            validate_rollout(doc)  # a document gapless itself takes
            r = c.post(f"{BASE}/rollouts", json=doc)
            assert r.status_code == 201, (name, r.text)
            stored = r.json()["spec"]
            assert stored["strategy"] == strategy  # nothing pruned
        template = yaml.safe_load(FULL)
        r = c.post(f"{BASE}/analysistemplates", json=template)
        assert r.status_code == 201, r.text
        assert r.json()["spec"] == template["spec"]


def test_wrong_types_are_refused_by_the_apiserver(cluster: Cluster) -> None:
    """replicas as text, a negative replica count and a weight over 100 are 422 errors naming the field."""
    install(cluster)
    bad: list[tuple[dict[str, Any], str]] = []
    doc = rollout_doc("bad-1", 8080, "v1")
    doc["spec"]["replicas"] = "three"
    bad.append((doc, "spec.replicas"))
    doc = rollout_doc("bad-2", 8080, "v1")
    doc["spec"]["replicas"] = -1
    bad.append((doc, "spec.replicas"))
    doc = rollout_doc("bad-3", 8080, "v1", strategy={"canary": {"steps": [{"setWeight": 150}]}})
    bad.append((doc, "setWeight"))
    with cluster.client() as c:
        for doc, field in bad:
            r = c.post(f"{BASE}/rollouts", json=doc)
            assert r.status_code == 422, r.text
            assert field in r.text


def test_kubectl_get_rollouts_shows_the_columns(cluster: Cluster) -> None:
    """`kubectl get rollouts` has Phase, Revision, Weights, Ready and Age columns, filled from the status."""
    install(cluster)
    with cluster.client() as c:
        r = c.post(f"{BASE}/rollouts", json=rollout_doc("cols", 8080, "v1"))
        assert r.status_code in (201, 409), r.text
        status = {
            "phase": "Progressing",
            "currentRevision": "3",
            "weights": "stable 90 / canary 10",
            "ready": "2/3",
        }
        r = c.patch(
            f"{BASE}/rollouts/cols/status",
            json={"status": status},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text
    out = cluster.kubectl("get", "rollouts", "cols").stdout
    header, row = out.splitlines()[:2]
    assert header.split()[:6] == ["NAME", "PHASE", "REVISION", "WEIGHTS", "READY", "AGE"]
    assert row.split()[:8] == ["cols", "Progressing", "3", "stable", "90", "/", "canary", "10"]
