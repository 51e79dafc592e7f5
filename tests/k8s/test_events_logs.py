"""gapless events and logs from a real cluster: the operator's transitions as gapless events (stored as
Kubernetes Events, read back by ``gapless events --context``, posted to a Grafana), and ``gapless logs
--context`` through ``pods/log`` (kwok's pods have no containers: the apiserver's refusal is reported)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s.cluster import Cluster
from tests.k8s.operator import OperatorProcess, k8s_rollout, namespace, wait_for
from tests.k8s.test_cli_cluster import gapless, get_rollout, write
from tests.k8s.test_crds import install
from tests.server.test_annotations import TOKEN, FakeGrafana


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Cluster:
    install(cluster)
    return cluster


@pytest.fixture
def ns(crds: Cluster, request: pytest.FixtureRequest) -> str:
    return namespace(crds, "ev-" + request.node.name.replace("_", "-")[5:40].strip("-"))


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana() as server:
        yield server


def test_operator_transitions_are_gapless_events_with_revision_numbers_and_annotations(
    crds: Cluster, ns: str, grafana: FakeGrafana, tmp_path: Path
) -> None:
    """Two revisions rolled out: ``gapless events --context`` shows the local types (RevisionCreated,
    RolloutComplete) with each revision's number and hash, and Grafana got one annotation per event."""
    token = tmp_path / "grafana-token"
    token.write_text(TOKEN + "\n")
    op = OperatorProcess(
        crds.kubeconfig,
        namespace=ns,
        log=tmp_path / "operator.log",
        extra=("--grafana-url", grafana.url, "--grafana-token-file", str(token)),
    )
    try:
        kc, on = crds.kubeconfig, ("--context", "test", "-n", ns)
        strategy = {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
        for version in ("v1", "v2"):
            doc = k8s_rollout("shop", version, replicas=1, strategy=strategy)
            r = gapless("apply", "-f", str(write(tmp_path, doc)), *on, "--wait", kubeconfig=kc)
            assert r.returncode == 0, r.stderr + op.tail()
        hashes = {rec["number"]: h for h, rec in get_rollout(crds, ns, "shop")["status"]["revisions"].items()}
        r = gapless("events", "shop", *on, "-o", "json", kubeconfig=kc)
        assert r.returncode == 0, r.stderr
        events = [json.loads(line) for line in r.stdout.splitlines()]
        seen = {(e["type"], e["revisionNumber"], e["revision"]) for e in events}
        for n in (1, 2):
            assert ("RevisionCreated", n, hashes[n]) in seen, events
            assert ("RolloutComplete", n, hashes[n]) in seen, events
        assert {e["reason"] for e in events} >= {"NewRevision", "RolloutCompleted"}  # kubectl's names
        order = [(e["type"], e["revisionNumber"]) for e in events]  # ordered to the microsecond
        assert (
            order.index(("RevisionCreated", 1))
            < order.index(("RolloutComplete", 1))
            < order.index(("RevisionCreated", 2))
        ), order
        r = gapless("events", "shop", *on, kubeconfig=kc)
        assert r.returncode == 0, r.stderr
        assert "RevisionCreated" in r.stdout
        assert "RolloutComplete" in r.stdout

        def annotated() -> bool:
            return len(grafana.received) >= len(events)

        wait_for(annotated, 15, "one annotation per event")
        tags = [a["tags"] for a in grafana.received]
        assert ["gapless", "shop", hashes[2], "RolloutComplete"] in tags, tags
        assert all(a["text"].startswith("shop: ") for a in grafana.received)
    finally:
        op.stop()


def test_operator_refuses_a_bad_grafana_url_naming_the_option(crds: Cluster, tmp_path: Path) -> None:
    """``--grafana-url`` that is no http(s) URL: exit 2 naming the option, before connecting."""
    r = gapless("operator", "run", "--kubeconfig", str(crds.kubeconfig), "--grafana-url", "grafana:3000")
    assert r.returncode == 2
    assert "--grafana-url 'grafana:3000': must start with http:// or https://" in r.stderr


def test_logs_on_a_cluster_report_the_apiservers_refusal_per_pod(
    crds: Cluster, ns: str, tmp_path: Path
) -> None:
    """``gapless logs --context`` asks ``pods/log`` for each pod; kwok's pods have no kubelet behind them,
    so each is reported naming the pod and the cluster's answer, and the command exits 1; an unknown
    instance or revision is named with exit 1, an unknown Rollout with exit 2."""
    op = OperatorProcess(crds.kubeconfig, namespace=ns, log=tmp_path / "operator.log")
    try:
        kc, on = crds.kubeconfig, ("--context", "test", "-n", ns)
        doc = k8s_rollout("shop", "v1", replicas=2)
        r = gapless("apply", "-f", str(write(tmp_path, doc)), *on, "--wait", kubeconfig=kc)
        assert r.returncode == 0, r.stderr + op.tail()
        with crds.client() as c:
            pods = sorted(
                p["metadata"]["name"]
                for p in c.get(
                    f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": "gapless.dev/rollout=shop"}
                ).json()["items"]
            )
        assert len(pods) == 2
        r = gapless("logs", "shop", *on, "--since", "10m", "--timestamps", "--tail", "5", kubeconfig=kc)
        assert r.returncode == 1, r.stdout + r.stderr
        first = r.stderr.replace("\n", " ")
        for pod in pods:
            assert f"error: the cluster gives no logs of pod {pod} (HTTP " in first, first
        r = gapless("logs", "shop", *on, "--instance", pods[0], "-f", kubeconfig=kc)
        assert r.returncode == 1, r.stdout + r.stderr
        assert pods[0] in r.stderr
        assert pods[1] not in r.stderr
        r = gapless("logs", "shop", *on, "--instance", "nope", kubeconfig=kc)
        assert r.returncode == 1
        assert "no logs of instance 'nope' of rollout 'shop'" in r.stderr
        r = gapless("logs", "shop", *on, "--revision", "7", kubeconfig=kc)
        assert (r.returncode, "revision 7 of 'shop' not found" in r.stderr) == (1, True)
        r = gapless("logs", "nothere", *on, kubeconfig=kc)
        assert r.returncode == 2, r.stderr
        assert "rollout 'nothere' not found" in r.stderr
        with crds.client() as c:  # what the CLI asked for: the same answer straight from the apiserver
            got = c.get(
                f"/api/v1/namespaces/{ns}/pods/{pods[0]}/log",
                params={"container": "app", "sinceSeconds": "600", "timestamps": "true"},
            )
        assert got.status_code >= 400
        assert f"(HTTP {got.status_code})" in first, (got.text, first)
    finally:
        op.stop()
