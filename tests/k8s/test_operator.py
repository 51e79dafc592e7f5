"""The operator on a real kube-apiserver, controller-manager and kwok node: ``gapless operator run`` as a
real process reconciles Rollouts into ReplicaSets, Pods and Services.

Pod and ReplicaSet counts are sampled from the test's own watches at every event, so a bound broken
for a moment is seen. Each test has its own namespace and its own operator (``-n``).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gapless.platform.kubernetes.manifests import LABEL_REVISION
from tests.conftest import in_ci
from tests.k8s.cluster import Cluster
from tests.k8s.operator import (
    GROUP,
    OperatorProcess,
    Sampler,
    gateway_api_crd,
    job_template,
    k8s_rollout,
    namespace,
    rollout_status,
    service_account_kubeconfig,
    wait_for,
)
from tests.k8s.test_cli_cluster import gapless
from tests.k8s.test_crds import install
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Cluster:
    install(cluster)
    return cluster


def _operator(cluster: Cluster, ns: str, tmp_path: Path, kubeconfig: Path | None = None) -> OperatorProcess:
    return OperatorProcess(kubeconfig or cluster.kubeconfig, namespace=ns, log=tmp_path / "operator.log")


@pytest.fixture
def ns(crds: Cluster, request: pytest.FixtureRequest) -> str:
    name = request.node.name.replace("_", "-")[:50].strip("-")
    return namespace(crds, name)


@pytest.fixture
def operator(crds: Cluster, ns: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    op = _operator(crds, ns, tmp_path)
    yield op
    op.stop()


def create(cluster: Cluster, ns: str, doc: dict[str, Any]) -> None:
    with cluster.client() as c:
        r = c.post(f"{GROUP}/namespaces/{ns}/rollouts", json=doc)
        assert r.status_code == 201, r.text


def update(cluster: Cluster, ns: str, name: str, spec: dict[str, Any]) -> None:
    with cluster.client() as c:
        r = c.patch(f"{GROUP}/namespaces/{ns}/rollouts/{name}", json={"spec": spec}, headers=MERGE)
        assert r.status_code == 200, r.text


def healthy_at(
    cluster: Cluster, ns: str, name: str, revision: str, op: OperatorProcess, timeout: float = 30
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        s = rollout_status(cluster, ns, name)
        return s if s.get("phase") == "Healthy" and s.get("currentRevision") == revision else None

    try:
        return dict(wait_for(check, timeout, f"{name} healthy at revision {revision}"))
    except AssertionError as e:
        raise AssertionError(
            f"{e}\nstatus: {rollout_status(cluster, ns, name)}\noperator log:\n{op.tail()}"
        ) from None


def replica_sets(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    with cluster.client() as c:
        r = c.get(
            f"/apis/apps/v1/namespaces/{ns}/replicasets",
            params={"labelSelector": f"gapless.dev/rollout={name}"},
        )
        return list(r.json()["items"])


def after_full(samples: list[tuple[int, int]], replicas: int) -> list[tuple[int, int]]:
    first = next(i for i, (_, available) in enumerate(samples) if available >= replicas)
    return samples[first:]


def test_a_rolling_update_scales_replica_sets_within_the_bounds(
    crds: Cluster, ns: str, operator: OperatorProcess
) -> None:
    """v1 -> v2 with 6 replicas, maxSurge 2, maxUnavailable 1: at every watch event at most 8 pods exist
    (terminating ones included) and at least 5 are ready; one ReplicaSet per revision, owned by the
    Rollout; the Services select the new revision; the status says Healthy, revision 2, 6/6."""
    strategy = {"rollingUpdate": {"maxSurge": 2, "maxUnavailable": 1}}
    with Sampler(crds, ns, "shop") as sampler:
        create(crds, ns, k8s_rollout("shop", "v1", replicas=6, strategy=strategy))
        first = healthy_at(crds, ns, "shop", "1", operator)
        update(crds, ns, "shop", {"template": k8s_rollout("shop", "v2")["spec"]["template"]})
        status = healthy_at(crds, ns, "shop", "2", operator)
        wait_for(lambda: len(sampler.pods) == 6, 10, "6 pods after the update")
    samples = after_full(sampler.samples, 6)
    assert max(total for total, _ in sampler.samples) <= 8, sampler.samples
    assert min(available for _, available in samples) >= 5, samples
    assert status["ready"] == "6/6"
    assert status["currentPodHash"] != first["currentPodHash"]
    sets = replica_sets(crds, ns, "shop")
    assert len(sets) == 2 == len(sampler.replica_sets)
    by_rev = {r["metadata"]["labels"][LABEL_REVISION]: r for r in sets}
    assert by_rev[status["currentPodHash"]]["spec"]["replicas"] == 6
    assert by_rev[first["currentPodHash"]]["spec"]["replicas"] == 0
    for r in sets:
        owner = r["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("Rollout", "shop", True)
        assert "gapless" in {m["manager"] for m in r["metadata"]["managedFields"]}
    with crds.client() as c:
        for svc in ("shop-stable", "shop-canary"):
            selector = c.get(f"/api/v1/namespaces/{ns}/services/{svc}").json()["spec"]["selector"]
            assert selector[LABEL_REVISION] == status["currentPodHash"]
        pod = c.get(
            f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": "gapless.dev/rollout=shop"}
        ).json()["items"][0]
        container = pod["spec"]["containers"][0]
        assert container["image"] == "example.invalid/shop:v2"
        assert container["command"] == ["/shop", "--port", "$(PORT)"]
        assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
        reasons = {
            e["reason"]
            for e in c.get(f"/api/v1/namespaces/{ns}/events").json()["items"]
            if e["involvedObject"]["kind"] == "Rollout"
        }
        assert {"NewRevision", "RolloutCompleted"} <= reasons


def test_an_operator_killed_mid_rollout_resumes_without_a_second_replica_set(
    crds: Cluster, ns: str, tmp_path: Path
) -> None:
    """SIGKILL the operator while v2 is part-way; a new one finishes it from the cluster's state alone:
    still exactly one ReplicaSet per revision, the bounds held throughout, revision 2 complete."""
    strategy = {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    op = _operator(crds, ns, tmp_path)
    try:
        with Sampler(crds, ns, "shop") as sampler:
            # minReadySeconds 3: the update takes 12 s or more, so the kill lands part-way even when a
            # loaded machine delays the watch that sees it (with 1 s it was once already Healthy)
            create(crds, ns, k8s_rollout("shop", "v1", replicas=4, strategy=strategy, minReadySeconds=3))
            first = healthy_at(crds, ns, "shop", "1", op)
            update(crds, ns, "shop", {"template": k8s_rollout("shop", "v2")["spec"]["template"]})

            def part_way() -> bool:
                pods = sampler.pods.values()
                new = [p for p in pods if p["metadata"]["labels"][LABEL_REVISION] != first["currentPodHash"]]
                return 1 <= len(new) < 4

            wait_for(part_way, 20, "v2 part-way")
            op.kill()
            time.sleep(0.5)
            assert rollout_status(crds, ns, "shop").get("phase") == "Progressing"
            op = _operator(crds, ns, tmp_path)
            status = healthy_at(crds, ns, "shop", "2", op, timeout=90)
            wait_for(lambda: len(sampler.pods) == 4, 10, "4 pods after the update")
        assert len(replica_sets(crds, ns, "shop")) == 2 == len(sampler.replica_sets)
        assert max(total for total, _ in sampler.samples) <= 5, sampler.samples
        assert min(available for _, available in after_full(sampler.samples, 4)) >= 4
        assert status["revisions"][first["currentPodHash"]]["number"] == 1
    finally:
        op.stop()


def shipped_role() -> dict[str, Any]:
    """The ClusterRole of ``deploy/kubernetes/operator/rbac.yaml``."""
    docs = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/operator/rbac.yaml").read_text()))
    return dict(next(d for d in docs if d["kind"] == "ClusterRole"))


def test_the_operator_runs_as_its_service_account_with_the_shipped_role(
    crds: Cluster, ns: str, tmp_path: Path
) -> None:
    """The shipped ClusterRole, bound in one namespace, lets the operator create, update, roll and garbage-collect,
    and run a canary's job analysis (no 403 in its log), and does not let it read Secrets."""
    kubeconfig = tmp_path / "sa.kubeconfig"
    token = service_account_kubeconfig(crds, ns, kubeconfig, shipped_role())
    op = _operator(crds, ns, tmp_path, kubeconfig)
    try:
        create(crds, ns, k8s_rollout("shop", "v1", replicas=2, revisionHistoryLimit=0))
        healthy_at(crds, ns, "shop", "1", op)
        update(crds, ns, "shop", {"template": k8s_rollout("shop", "v2")["spec"]["template"]})
        healthy_at(crds, ns, "shop", "2", op)
        wait_for(
            lambda: len(replica_sets(crds, ns, "shop")) == 1,
            10,
            "the old ReplicaSet deleted (revisionHistoryLimit 0)",
        )
        # A canary whose analysis step is a job metric: the role reads the template and creates the Job.
        template = job_template(
            "smoke", {"containers": [{"name": "smoke", "image": "example.invalid/smoke:1"}]}
        )
        with crds.client() as c:
            assert c.post(f"{GROUP}/namespaces/{ns}/analysistemplates", json=template).status_code == 201
        steps = [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "smoke"}]}}]
        strategy = {"canary": {"steps": steps, "scaleDownDelaySeconds": 0}}
        create(crds, ns, k8s_rollout("canary", "v1", replicas=1, strategy=strategy))
        healthy_at(crds, ns, "canary", "1", op)
        update(crds, ns, "canary", {"template": k8s_rollout("canary", "v2")["spec"]["template"]})
        healthy_at(crds, ns, "canary", "2", op)
        with crds.client() as c:
            assert len(c.get(f"/apis/batch/v1/namespaces/{ns}/jobs").json()["items"]) == 1
        log = op.log.read_text()
        assert "403" not in log, op.tail()
        assert "Forbidden" not in log, op.tail()
    finally:
        op.stop()
    with crds.client(token) as sa:
        assert sa.get(f"/api/v1/namespaces/{ns}/secrets").status_code == 403
        assert sa.get(f"/api/v1/namespaces/{ns}/pods").status_code == 200


def test_healthz_metrics_and_no_requests_while_idle(crds: Cluster, ns: str, tmp_path: Path) -> None:
    """/healthz is 200 once the caches are filled; an idle operator sends no API request at all (watches,
    not polling); a rollout update costs a bounded number of requests, counted in /metrics."""
    op = OperatorProcess(
        crds.kubeconfig, namespace=ns, log=tmp_path / "operator.log", listen=f"127.0.0.1:{free_port()}"
    )
    try:
        wait_for(lambda: _get(f"http://{op.listen}/healthz") == 200, 20, "/healthz 200")
        create(crds, ns, k8s_rollout("idle", "v1", replicas=2))
        healthy_at(crds, ns, "idle", "1", op)
        time.sleep(1.0)  # the last watch events of the rollout
        idle = op.metrics()
        before = idle["gapless_operator_api_requests_total"]
        time.sleep(4.0)
        now = op.metrics()
        assert now["gapless_operator_api_requests_total"] == before
        assert (
            now["gapless_operator_reconcile_passes_total"] == idle["gapless_operator_reconcile_passes_total"]
        )
        update(crds, ns, "idle", {"template": k8s_rollout("idle", "v2")["spec"]["template"]})
        healthy_at(crds, ns, "idle", "2", op)
        m = op.metrics()
        assert 0 < m["gapless_operator_api_requests_total"] - before < 60, m
        assert m['gapless_operator_cached_objects{kind="Rollout"}'] == 1
    finally:
        op.stop()
    # A fresh operator over a settled cluster finds everything as it should be: no write at all.
    op = OperatorProcess(
        crds.kubeconfig, namespace=ns, log=tmp_path / "again.log", listen=f"127.0.0.1:{free_port()}"
    )
    try:
        wait_for(lambda: _get(f"http://{op.listen}/healthz") == 200, 20, "/healthz 200")
        wait_for(lambda: op.metrics()["gapless_operator_reconcile_passes_total"] >= 1, 10, "a pass")
        time.sleep(1.0)
        assert (
            op.metrics()["gapless_operator_api_requests_total"] == 12
        )  # a list and a watch of each of 6 kinds
    finally:
        op.stop()


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


def test_with_leader_election_a_second_operator_waits_and_takes_over_when_the_first_dies(
    crds: Cluster, ns: str, tmp_path: Path
) -> None:
    """Two operators with --leader-elect: one holds the Lease and reconciles, the other's /healthz says 503
    (it has not even filled caches); SIGKILL the holder and the other takes the Lease once it expires
    and finishes the next update."""
    extra = ("--leader-elect", "--lease-seconds", "3")
    first = OperatorProcess(
        crds.kubeconfig, namespace=ns, log=tmp_path / "a.log", listen=f"127.0.0.1:{free_port()}", extra=extra
    )
    wait_for(lambda: _get(f"http://{first.listen}/healthz") == 200, 20, "the first operator leading")
    second = OperatorProcess(
        crds.kubeconfig, namespace=ns, log=tmp_path / "b.log", listen=f"127.0.0.1:{free_port()}", extra=extra
    )
    try:
        wait_for(lambda: _get(f"http://{second.listen}/healthz") == 503, 20, "the second operator up")
        create(crds, ns, k8s_rollout("led", "v1", replicas=2))
        healthy_at(crds, ns, "led", "1", first)
        time.sleep(2.0)  # a few renewals
        assert _get(f"http://{second.listen}/healthz") == 503
        assert second.metrics()["gapless_operator_reconcile_passes_total"] == 0
        with crds.client() as c:
            lease = c.get(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/gapless-operator").json()
        assert lease["spec"]["holderIdentity"].endswith(f"-{first.proc.pid}")
        first.kill()
        wait_for(lambda: _get(f"http://{second.listen}/healthz") == 200, 20, "the second operator leading")
        update(crds, ns, "led", {"template": k8s_rollout("led", "v2")["spec"]["template"]})
        healthy_at(crds, ns, "led", "2", second)
        assert len(replica_sets(crds, ns, "led")) == 2
    finally:
        first.stop()
        second.stop()


def test_a_spec_that_only_makes_sense_locally_is_refused_naming_the_field(
    crds: Cluster, ns: str, operator: OperatorProcess
) -> None:
    """A Rollout without an image: status Degraded naming spec.template.image, a Warning event, no ReplicaSet."""
    doc = k8s_rollout("local", "v1")
    del doc["spec"]["template"]["image"]
    create(crds, ns, doc)
    status = wait_for(
        lambda: (
            rollout_status(crds, ns, "local").get("phase") == "Degraded" and rollout_status(crds, ns, "local")
        ),
        20,
        "Degraded",
    )
    assert "spec.template.image" in status["message"]
    assert status["conditions"][0]["type"] == "InvalidSpec"
    assert replica_sets(crds, ns, "local") == []
    with crds.client() as c:
        events = c.get(f"/api/v1/namespaces/{ns}/events").json()["items"]
    assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in events)


def service_selectors(cluster: Cluster, ns: str, name: str) -> dict[str, str | None]:
    with cluster.client() as c:
        out: dict[str, str | None] = {}
        for suffix in ("stable", "canary", "preview"):
            r = c.get(f"/api/v1/namespaces/{ns}/services/{name}-{suffix}")
            out[suffix] = r.json()["spec"]["selector"][LABEL_REVISION] if r.status_code == 200 else None
        return out


def test_blue_green_switches_in_one_patch_and_undo_inside_the_delay_starts_nothing(
    crds: Cluster, ns: str, operator: OperatorProcess
) -> None:
    """Green runs at full size beside blue, reachable through NAME-preview only; after the automatic
    promotion the active Service (NAME-stable) selects green, changed once, from blue to green; blue stays
    warm; going back to v1 within scaleDownDelaySeconds makes NAME-stable select blue's same pods again
    without starting any pod."""
    bg = {"blueGreen": {"autoPromotionSeconds": 1, "scaleDownDelaySeconds": 60}}
    create(crds, ns, k8s_rollout("bg", "v1", replicas=3, strategy=bg))
    first = healthy_at(crds, ns, "bg", "1", operator)
    blue = first["currentPodHash"]
    assert service_selectors(crds, ns, "bg")["stable"] == blue
    selectors: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        with contextlib.suppress(httpx.HTTPError), crds.client() as c:
            params = {"fieldSelector": "metadata.name=bg-stable", "watch": "1", "timeoutSeconds": "30"}
            with c.stream("GET", f"/api/v1/namespaces/{ns}/services", params=params, timeout=60) as r:
                for line in r.iter_lines():
                    if line:
                        sel = json.loads(line)["object"]["spec"]["selector"][LABEL_REVISION]
                        if not selectors or selectors[-1] != sel:
                            selectors.append(sel)
                    if stop.is_set():
                        return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.3)
    update(crds, ns, "bg", {"template": k8s_rollout("bg", "v2")["spec"]["template"]})

    def switched() -> dict[str, Any] | None:
        s = rollout_status(crds, ns, "bg")
        sel = service_selectors(crds, ns, "bg")
        return s if sel["stable"] not in (None, blue) else None

    status = wait_for(switched, 30, "the switch to green")
    green = status["currentPodHash"]
    sel = service_selectors(crds, ns, "bg")
    assert sel == {"stable": green, "canary": green, "preview": green}
    with crds.client() as c:
        pods = c.get(
            f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": "gapless.dev/rollout=bg"}
        ).json()["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    blue_pods = sorted(p["metadata"]["name"] for p in live if p["metadata"]["labels"][LABEL_REVISION] == blue)
    assert len(blue_pods) == 3  # warm
    assert sum(1 for p in live if p["metadata"]["labels"][LABEL_REVISION] == green) == 3
    assert status["phase"] == "Progressing"
    # Undo inside the delay: v1's template again.
    update(crds, ns, "bg", {"template": k8s_rollout("bg", "v1")["spec"]["template"]})
    wait_for(lambda: service_selectors(crds, ns, "bg")["stable"] == blue, 10, "the switch back to blue")
    back = wait_for(
        lambda: (s := rollout_status(crds, ns, "bg")).get("currentPodHash") == blue and s, 10, "blue current"
    )
    with crds.client() as c:
        pods = c.get(
            f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": "gapless.dev/rollout=bg"}
        ).json()["items"]
    now_blue = sorted(
        p["metadata"]["name"]
        for p in pods
        if p["metadata"]["labels"][LABEL_REVISION] == blue and not p["metadata"].get("deletionTimestamp")
    )
    assert now_blue == blue_pods  # the same warm pods: nothing started
    stop.set()
    assert selectors[:3] == [blue, green, blue], selectors
    assert back["currentPodHash"] == blue
    # Numbered as on one machine: blue, rolled out again, is revision 3 (its ReplicaSet says so too).
    assert back["currentRevision"] == "3"
    numbers = {
        r["metadata"]["labels"][LABEL_REVISION]: r["metadata"]["annotations"]["gapless.dev/revision-number"]
        for r in replica_sets(crds, ns, "bg")
    }
    assert numbers == {blue: "3", green: "2"}
    r = gapless("history", "bg", "-n", ns, "-o", "json", kubeconfig=crds.kubeconfig)
    assert r.returncode == 0, r.stderr
    assert [(i["number"], i["hash"]) for i in json.loads(r.stdout)] == [(2, green), (3, blue)]
    with crds.client() as c:
        events = c.get(f"/api/v1/namespaces/{ns}/events").json()["items"]
    reused = [e["message"] for e in events if e["reason"] == "RevisionReused"]
    assert reused == [f"revision 3 ({blue}) is an earlier template again"], reused
    # The active Service's two moves are the local TrafficShifted events (no revision of their own).
    r = gapless("events", "bg", "-n", ns, "-o", "json", kubeconfig=crds.kubeconfig)
    assert r.returncode == 0, r.stderr
    shifted = [e for e in map(json.loads, r.stdout.splitlines()) if e["type"] == "TrafficShifted"]
    assert [(e["message"], e["revision"]) for e in shifted] == [
        ("weights revision 2: 100%", ""),
        ("weights revision 3: 100%", ""),
    ], shifted


@pytest.fixture(scope="module")
def gateway_api(crds: Cluster) -> Cluster:
    try:
        crd = gateway_api_crd()
    except (OSError, subprocess.CalledProcessError) as e:
        message = f"the Gateway API CRDs could not be fetched: {e}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    with crds.client() as c:
        r = c.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
        assert r.status_code in (201, 409), r.text
        wait_for(
            lambda: c.get("/apis/gateway.networking.k8s.io/v1/httproutes").status_code == 200,
            30,
            "HTTPRoutes served",
        )
    return crds


def test_canary_weights_and_header_route_go_into_the_http_route_one_update_per_step(
    gateway_api: Cluster, ns: str, operator: OperatorProcess
) -> None:
    """setWeight 20 -> setHeaderRoute -> pause: the user's HTTPRoute gets stable 80 / canary 20, then a header
    rule to the canary, each in one update; after the promote annotation it ends at stable 100 / canary 0
    without the header rule, and its other rule is untouched."""
    cluster = gateway_api
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "shop"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {"backendRefs": [{"name": "shop-stable", "port": 80}]},
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                    "backendRefs": [{"name": "admin", "port": 80}],
                },
            ],
        },
    }
    base = f"/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes"
    with cluster.client() as c:
        r = c.post(base, json=route)
        assert r.status_code == 201, r.text
        admin_rule = r.json()["spec"]["rules"][1]  # as stored, with the apiserver's defaults
    steps = [
        {"setWeight": 20},
        {"setHeaderRoute": {"match": [{"headerName": "X-Beta", "headerValue": {"exact": "1"}}]}},
        {"pause": {}},
    ]
    strategy = {
        "canary": {
            "steps": steps,
            "trafficRouting": {"gatewayAPI": {"httpRoute": "shop"}},
            "scaleDownDelaySeconds": 0,
        }
    }
    create(cluster, ns, k8s_rollout("shop", "v1", replicas=5, strategy=strategy))
    healthy_at(cluster, ns, "shop", "1", operator)
    seen: list[tuple[str, Any]] = []
    stop = threading.Event()

    def watch() -> None:
        with contextlib.suppress(httpx.HTTPError), cluster.client() as c:
            rv = c.get(f"{base}/shop").json()["metadata"]["resourceVersion"]
            params = {
                "fieldSelector": "metadata.name=shop",
                "watch": "1",
                "resourceVersion": rv,
                "timeoutSeconds": "30",
            }
            with c.stream("GET", base, params=params, timeout=60) as r:
                for line in r.iter_lines():
                    if line:
                        ev = json.loads(line)
                        seen.append((ev["type"], ev["object"]["spec"]["rules"]))
                    if stop.is_set():
                        return

    threading.Thread(target=watch, daemon=True).start()
    time.sleep(0.3)
    update(cluster, ns, "shop", {"template": k8s_rollout("shop", "v2")["spec"]["template"]})

    def weights(rules: list[dict[str, Any]]) -> dict[str, int]:
        return {
            b["name"]: b.get("weight", 1)
            for rule in rules
            for b in rule["backendRefs"]
            if rule.get("name") is None
        }

    def header_rule() -> Any:
        return seen and seen[-1][1][0].get("name") == "gapless-header-route" and seen[-1][1][0]

    rule = wait_for(header_rule, 30, "the header rule")
    assert rule["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/"},
            "headers": [{"type": "Exact", "name": "X-Beta", "value": "1"}],
        }
    ]
    assert [b["name"] for b in rule["backendRefs"]] == ["shop-canary"]
    # The status is written after the route (and its TrafficShifted event): wait for it, not just read.
    wait_for(
        lambda: rollout_status(cluster, ns, "shop").get("weights") == "stable 80 / canary 20 + header route",
        10,
        "the status to show the header route",
    )
    status = rollout_status(cluster, ns, "shop")
    assert [weights(rules) for _, rules in seen] == [
        {"shop-stable": 80, "shop-canary": 20, "admin": 1},
        {"shop-stable": 80, "shop-canary": 20, "admin": 1},
    ]  # two updates: the weight step, the header step
    time.sleep(1.0)
    assert len(seen) == 2  # the pause writes nothing
    with cluster.client() as c:
        r = c.patch(
            f"{GROUP}/namespaces/{ns}/rollouts/shop",
            json={"metadata": {"annotations": {"gapless.dev/promote": status["currentPodHash"]}}},
            headers=MERGE,
        )
        assert r.status_code == 200, r.text
    healthy_at(cluster, ns, "shop", "2", operator)
    wait_for(lambda: weights(seen[-1][1]).get("shop-stable") == 100, 10, "stable 100")
    stop.set()
    final = seen[-1][1]
    assert all(r.get("name") != "gapless-header-route" for r in final)
    assert weights(final) == {"shop-stable": 100, "shop-canary": 0, "admin": 1}
    assert final[1] == admin_rule


def test_deleting_a_rollout_deletes_its_replica_sets(
    crds: Cluster, ns: str, operator: OperatorProcess
) -> None:
    """Owner references: the garbage collector deletes a deleted Rollout's ReplicaSets and Pods.

    The collector learns of a new CRD at its next discovery (every 30 s), so this runs last and waits.
    """
    create(crds, ns, k8s_rollout("gone", "v1", replicas=2))
    healthy_at(crds, ns, "gone", "1", operator)
    with crds.client() as c:
        assert c.delete(f"{GROUP}/namespaces/{ns}/rollouts/gone").status_code == 200
    wait_for(lambda: not replica_sets(crds, ns, "gone"), 45, "the ReplicaSets garbage-collected")
