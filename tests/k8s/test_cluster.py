"""The test cluster itself: a Deployment becomes available on kwok's fake node, RBAC is enforced.

These check the harness that the Kubernetes platform's tests stand on, against the real apiserver.
"""

from __future__ import annotations

import time

from tests.k8s.cluster import NODE, Cluster


def test_a_deployment_becomes_available_on_the_fake_node(cluster: Cluster) -> None:
    """A 3-replica Deployment gets a ReplicaSet and 3 Running, Ready pods scheduled on kwok's node."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "smoke", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "smoke"}},
            "template": {
                "metadata": {"labels": {"app": "smoke"}},
                "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
            },
        },
    }
    with cluster.client() as c:
        r = c.post("/apis/apps/v1/namespaces/default/deployments", json=deployment)
        assert r.status_code == 201, r.text
        deadline = time.monotonic() + 30
        status: dict[str, int] = {}
        while time.monotonic() < deadline:
            status = c.get("/apis/apps/v1/namespaces/default/deployments/smoke").json().get("status", {})
            if status.get("availableReplicas") == 3:
                break
            time.sleep(0.2)
        assert status.get("availableReplicas") == 3, status
        pods = c.get("/api/v1/namespaces/default/pods", params={"labelSelector": "app=smoke"}).json()["items"]
        assert {p["spec"]["nodeName"] for p in pods} == {NODE}
        assert all(p["status"]["phase"] == "Running" for p in pods)
        c.delete("/apis/apps/v1/namespaces/default/deployments/smoke")


def test_rbac_is_enforced_for_a_service_account(cluster: Cluster) -> None:
    """A ServiceAccount's token may do nothing until a Role allows it, then exactly that."""
    with cluster.client() as c:
        assert (
            c.post(
                "/api/v1/namespaces/default/serviceaccounts", json={"metadata": {"name": "probe"}}
            ).status_code
            == 201
        )
        r = c.post(
            "/api/v1/namespaces/default/serviceaccounts/probe/token",
            json={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 600},
            },
        )
        assert r.status_code == 201, r.text
        token = r.json()["status"]["token"]
    with cluster.client(token) as sa:
        assert sa.get("/api/v1/namespaces/default/pods").status_code == 403
    with cluster.client() as c:
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "probe"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "probe"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "probe"},
            "subjects": [{"kind": "ServiceAccount", "name": "probe", "namespace": "default"}],
        }
        assert (
            c.post("/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles", json=role).status_code
            == 201
        )
        assert (
            c.post(
                "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", json=binding
            ).status_code
            == 201
        )
    with cluster.client(token) as sa:
        deadline = time.monotonic() + 10
        while sa.get("/api/v1/namespaces/default/pods").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sa.get("/api/v1/namespaces/default/pods").status_code == 200
        assert sa.get("/api/v1/namespaces/default/secrets").status_code == 403


def test_kubectl_talks_to_it(cluster: Cluster) -> None:
    """The built kubectl reports the server's version and lists the fake node."""
    assert "v1.36.3" in cluster.kubectl("version").stdout
    assert NODE in cluster.kubectl("get", "nodes").stdout
