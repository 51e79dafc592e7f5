"""`gapless k8s manifests`: the install as one YAML stream, equal to deploy/kubernetes/, applied by kubectl to
a real apiserver (RBAC on), and the operator image's Dockerfile it refers to."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gapless import __version__
from gapless.platform.kubernetes.install import DEFAULT_IMAGE, DEFAULT_NAMESPACE, RESOURCES, files
from tests.k8s.cluster import Cluster
from tests.k8s.test_cli_cluster import gapless

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy/kubernetes"


def stream(*args: str) -> list[dict[str, Any]]:
    r = gapless("k8s", "manifests", *args)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def by_kind(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_deploy_kubernetes_is_what_the_package_gives_byte_for_byte() -> None:
    """Every file under deploy/kubernetes/ is the package's (regenerate with
    `python -m gapless.platform.kubernetes.install deploy/kubernetes`), and there is no other file."""
    committed = {str(p.relative_to(DEPLOY)): p.read_text() for p in DEPLOY.rglob("*") if p.is_file()}
    assert committed == files()
    kustomization = yaml.safe_load(committed["kustomization.yaml"])
    assert tuple(kustomization["resources"]) == RESOURCES


def test_the_output_is_the_kustomization_s_resources_in_order_comments_included() -> None:
    """Without options the stream is the kustomization's files joined, so it stays equal to deploy/kubernetes/."""
    r = gapless("k8s", "manifests")
    assert r.returncode == 0, r.stderr
    expected = [d for path in RESOURCES for d in yaml.safe_load_all((DEPLOY / path).read_text()) if d]
    assert [d for d in yaml.safe_load_all(r.stdout) if d] == expected
    assert "# What the gapless operator may do, and nothing more" in r.stdout
    kinds = [d["kind"] for d in expected]
    assert kinds[:3] == ["CustomResourceDefinition", "CustomResourceDefinition", "Namespace"]
    assert {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
    } <= set(kinds)


def test_namespace_and_image_options_rewrite_exactly_the_operator_s_objects() -> None:
    """`-n shop-ops --image R` moves every namespaced object, the binding subjects and the Namespace, and sets
    the Deployment's image; everything else is the default stream's."""
    plain = by_kind(stream())
    moved = by_kind(stream("-n", "shop-ops", "--image", "registry.example/gapless-operator:9"))
    assert moved.keys() - {("Namespace", "shop-ops")} == plain.keys() - {("Namespace", DEFAULT_NAMESPACE)}
    text = yaml.safe_dump(list(moved.values()))
    assert DEFAULT_NAMESPACE not in text
    assert DEFAULT_IMAGE not in text
    deployment = moved[("Deployment", "gapless-operator")]
    assert deployment["metadata"]["namespace"] == "shop-ops"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/gapless-operator:9"
    assert moved[("ClusterRoleBinding", "gapless-operator")]["subjects"][0]["namespace"] == "shop-ops"
    assert moved[("ClusterRole", "gapless-operator")] == plain[("ClusterRole", "gapless-operator")]
    assert (
        moved[("CustomResourceDefinition", "rollouts.gapless.dev")]
        == plain[("CustomResourceDefinition", "rollouts.gapless.dev")]
    )


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["-n", "Shop_Ops"], "--namespace"),
        (["-n", "-x"], "--namespace"),
        (["-n", "a" * 64], "--namespace"),
        (["--image", "two words"], "--image"),
        (["--image", ""], "--image"),
    ],
)
def test_a_bad_option_exits_2_naming_it_and_prints_nothing(args: list[str], field: str) -> None:
    """An invalid namespace or image: exit 2, the option named on stderr, no YAML on stdout."""
    r = gapless("k8s", "manifests", *args)
    assert r.returncode == 2, (r.stdout[:200], r.stderr)
    assert field in r.stderr
    assert r.stdout == ""


def test_the_deployment_names_the_image_the_dockerfile_builds() -> None:
    """The shipped image tag is gapless's version, and deploy/docker/Dockerfile says how to build that tag
    and runs the same `gapless operator run` as the Deployment."""
    assert f"gapless-operator:{__version__}" == DEFAULT_IMAGE
    deployment = by_kind(stream())[("Deployment", "gapless-operator")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == DEFAULT_IMAGE
    dockerfile = (ROOT / "deploy/docker/Dockerfile").read_text()
    assert f"-t {DEFAULT_IMAGE} ." in dockerfile
    assert 'CMD ["operator", "run", "--listen", "0.0.0.0:8080", "--leader-elect"]' in dockerfile
    assert container["command"] == [
        "gapless",
        "operator",
        "run",
        "--listen",
        "0.0.0.0:8080",
        "--leader-elect",
    ]
    assert "USER 65532:65532" in dockerfile  # numeric: the pod's runAsNonRoot is checkable


def kubectl_apply(cluster: Cluster, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster.bin / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "apply", "-f", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def can_i(cluster: Cluster, namespace: str, verb: str, resource: str, where: str) -> bool:
    resource, _, sub = resource.partition("/")
    r = cluster.kubectl(
        "auth",
        "can-i",
        verb,
        resource,
        *([f"--subresource={sub}"] if sub else []),
        "-n",
        where,
        f"--as=system:serviceaccount:{namespace}:gapless-operator",
        check=False,
    )
    return r.stdout.strip() == "yes"


@pytest.mark.parametrize("options", [[], ["-n", "gapless-ops", "--image", "registry.example/op:2"]])
def test_kubectl_applies_the_output_to_a_real_apiserver(cluster: Cluster, options: list[str]) -> None:
    """`gapless k8s manifests | kubectl apply -f -` on an apiserver with RBAC on creates every object, the
    CRDs become Established, and the ServiceAccount may do what the operator does and no more."""
    r = gapless("k8s", "manifests", *options)
    assert r.returncode == 0, r.stderr
    applied = kubectl_apply(cluster, r.stdout)
    assert applied.returncode == 0, applied.stderr
    namespace = options[1] if options else DEFAULT_NAMESPACE
    image = options[3] if options else DEFAULT_IMAGE
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    with cluster.client() as c:
        for d in docs:
            group = d["apiVersion"]
            base = f"/api/{group}" if "/" not in group else f"/apis/{group}"
            plural = {
                "CustomResourceDefinition": "customresourcedefinitions",
                "Namespace": "namespaces",
                "ServiceAccount": "serviceaccounts",
                "ClusterRole": "clusterroles",
                "ClusterRoleBinding": "clusterrolebindings",
                "Role": "roles",
                "RoleBinding": "rolebindings",
                "Deployment": "deployments",
            }[d["kind"]]
            ns = d["metadata"].get("namespace")
            url = f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"
            got = c.get(f"{url}/{d['metadata']['name']}")
            assert got.status_code == 200, (d["kind"], d["metadata"]["name"], got.text)
            if ns is not None:
                assert ns == namespace
        deployment = c.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/gapless-operator").json()
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "gapless-operator"
        deadline = time.monotonic() + 20
        while True:
            crd = c.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/rollouts.gapless.dev").json()
            established = any(
                x["type"] == "Established" and x["status"] == "True"
                for x in crd["status"].get("conditions", [])
            )
            if established or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert established
    assert can_i(cluster, namespace, "create", "replicasets.apps", "default")
    assert can_i(cluster, namespace, "update", "rollouts.gapless.dev/status", "default")
    assert not can_i(cluster, namespace, "update", "rollouts.gapless.dev", "default")
    assert can_i(cluster, namespace, "update", "leases.coordination.k8s.io", namespace)
    assert not can_i(cluster, namespace, "update", "leases.coordination.k8s.io", "default")
    assert not can_i(cluster, namespace, "get", "secrets", "default")
    assert not can_i(cluster, namespace, "delete", "rollouts.gapless.dev", "default")
