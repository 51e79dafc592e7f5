"""Canary analysis on a real cluster: the operator (a real process) queries a real Prometheus, which scrapes
an exporter of this test serving one series per revision hash, and runs real Jobs through the
controller-manager's Job controller (kwok's default stages make a Job's pod succeed; pods on the failing
node, run by a second kwok, exit 1).

Each test has its own namespace and its own operator (``-n``).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from gapless.controller.kube_analysis import RUNS_FIELD
from gapless.platform.kubernetes.manifests import LABEL_REVISION
from gapless.spec.load import validate_rollout
from gapless.spec.models import template_hash
from tests.k8s.cluster import FAILING_POD, Cluster
from tests.k8s.operator import GROUP, OperatorProcess, k8s_rollout, rollout_status, wait_for
from tests.k8s.test_cli_cluster import gapless
from tests.k8s.test_operator import create, healthy_at, replica_sets, service_selectors, update
from tests.prom import PrometheusServer, require_prometheus, start_prometheus

METRIC = "gapless_test_error_ratio"


class Exporter:
    """A real HTTP server exposing ``gapless_test_error_ratio{revision=HASH}`` for the hashes in ``values``."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                lines = [f"# TYPE {METRIC} gauge"]
                lines += [f'{METRIC}{{revision="{h}"}} {v}' for h, v in sorted(exporter.values.items())]
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.target = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Exporter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Cluster:
    from tests.k8s.test_crds import install

    install(cluster)
    return cluster


@pytest.fixture
def ns(crds: Cluster, request: pytest.FixtureRequest) -> str:
    from tests.k8s.operator import namespace

    name = request.node.name.lower().replace("_", "-").replace("[", "-").strip("-]")
    return namespace(crds, name[:50].strip("-"))


@pytest.fixture
def operator(crds: Cluster, ns: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    op = OperatorProcess(crds.kubeconfig, namespace=ns, log=tmp_path / "operator.log")
    yield op
    op.stop()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[Exporter, PrometheusServer]]:
    require_prometheus()
    with Exporter() as exporter:
        (tmp_path / "prom").mkdir()
        with start_prometheus(tmp_path / "prom", [exporter.target], scrape_interval="1s") as prom:
            yield exporter, prom


def revision_of(doc: dict[str, Any]) -> str:
    return template_hash(validate_rollout(doc).spec.template)


def canary(template: str) -> dict[str, Any]:
    steps = [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": template}]}}]
    return {"canary": {"steps": steps, "scaleDownDelaySeconds": 0, "abortScaleDownDelaySeconds": 0}}


def put_template(cluster: Cluster, ns: str, name: str, metrics: list[dict[str, Any]]) -> None:
    doc = {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {"metrics": metrics},
    }
    with cluster.client() as c:
        r = c.post(f"{GROUP}/namespaces/{ns}/analysistemplates", json=doc)
        assert r.status_code == 201, r.text


def prometheus_metric(address: str, count: int) -> dict[str, Any]:
    """The canary's error ratio minus stable's, each selected by its revision hash (the args)."""
    canary_series = f'{METRIC}{{revision="{{{{args.canary}}}}"}}'
    stable_series = f'{METRIC}{{revision="{{{{args.stable}}}}"}}'
    return {
        "name": "error-ratio",
        "interval": "1s",
        "count": count,
        "consecutiveErrorLimit": 0,
        "successCondition": "result <= 0.02",
        "provider": {
            "prometheus": {
                "address": address,
                "query": f"{canary_series} - ignoring(revision) {stable_series}",
            }
        },
    }


def start_canary(
    cluster: Cluster, ns: str, op: OperatorProcess, template: str, replicas: int = 2
) -> tuple[dict[str, Any], str, str]:
    v1 = k8s_rollout("shop", "v1", replicas=replicas, strategy=canary(template))
    create(cluster, ns, v1)
    healthy_at(cluster, ns, "shop", "1", op)
    v2 = k8s_rollout("shop", "v2", replicas=replicas, strategy=canary(template))
    return v2, revision_of(v1), revision_of(v2)


def runs(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    return list(rollout_status(cluster, ns, "shop").get(RUNS_FIELD) or [])


def degraded(cluster: Cluster, ns: str, op: OperatorProcess, timeout: float = 40) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        s = rollout_status(cluster, ns, "shop")
        return s if s.get("phase") == "Degraded" else None

    try:
        return dict(wait_for(check, timeout, "Degraded"))
    except AssertionError as e:
        raise AssertionError(f"{e}\nstatus: {rollout_status(cluster, ns, 'shop')}\n{op.tail()}") from None


def canary_scaled_down(cluster: Cluster, ns: str, stable: str, canary_hash: str) -> None:
    def sizes() -> dict[str, int] | None:
        got = {
            r["metadata"]["labels"][LABEL_REVISION]: r["spec"]["replicas"]
            for r in replica_sets(cluster, ns, "shop")
        }
        return got if got.get(canary_hash) == 0 and got.get(stable) == 2 else None

    wait_for(sizes, 20, "the canary ReplicaSet at 0 and stable at 2")
    assert service_selectors(cluster, ns, "shop")["stable"] == stable


def events(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    with cluster.client() as c:
        return list(c.get(f"/api/v1/namespaces/{ns}/events").json()["items"])


def test_a_passing_prometheus_analysis_queries_by_revision_hash_and_survives_an_operator_kill(
    crds: Cluster, ns: str, tmp_path: Path, prometheus: tuple[Exporter, PrometheusServer]
) -> None:
    """Canary and stable serve the same error ratio: every measurement (the difference of the two series
    selected by the args' revision hashes) passes; the operator is SIGKILLed after the first one and a new
    one continues the same run to its 4 measurements, and the rollout completes."""
    exporter, prom = prometheus
    op = OperatorProcess(crds.kubeconfig, namespace=ns, log=tmp_path / "operator.log")
    try:
        put_template(crds, ns, "errors", [prometheus_metric(prom.address, count=4)])
        v2, stable, canary_hash = start_canary(crds, ns, op, "errors")
        exporter.values = {stable: 0.01, canary_hash: 0.01}
        prom.wait_for_series(METRIC, count=2)
        update(crds, ns, "shop", {"template": v2["spec"]["template"]})
        first = wait_for(
            lambda: next((r for r in runs(crds, ns) if r["metrics"][0]["measured"] >= 1), None),
            30,
            "a first measurement in the status",
        )
        op.kill()
    finally:
        op.stop()
    again = OperatorProcess(crds.kubeconfig, namespace=ns, log=tmp_path / "again.log")
    try:
        healthy_at(crds, ns, "shop", "2", again, timeout=40)
    finally:
        again.stop()
    (run,) = runs(crds, ns)
    assert run["id"] == first["id"]
    assert run["phase"] == "successful", run
    assert run["spec"]["args"] == {"rollout": "shop", "canary": canary_hash, "stable": stable}
    metric = run["metrics"][0]
    assert metric["measured"] == 4
    assert [m["phase"] for m in metric["measurements"]] == ["successful"] * 4
    assert all(abs(m["value"]["result"]) < 1e-9 for m in metric["measurements"])
    assert canary_hash in run["spec"]["metrics"][0]["provider"]["prometheus"]["query"]


def test_a_failing_prometheus_analysis_aborts_the_rollout_naming_the_metric(
    crds: Cluster, ns: str, operator: OperatorProcess, prometheus: tuple[Exporter, PrometheusServer]
) -> None:
    """The canary's series is 0.3 above stable's: the first measurement fails, the rollout aborts
    (Degraded, naming the metric), NAME-stable selects stable and the canary ReplicaSet goes to 0."""
    exporter, prom = prometheus
    put_template(crds, ns, "errors", [prometheus_metric(prom.address, count=4)])
    v2, stable, canary_hash = start_canary(crds, ns, operator, "errors")
    exporter.values = {stable: 0.01, canary_hash: 0.31}
    prom.wait_for_series(METRIC, count=2)
    update(crds, ns, "shop", {"template": v2["spec"]["template"]})
    status = degraded(crds, ns, operator)
    assert "analysis of step 2 failed" in status["message"]
    assert "error-ratio" in status["message"]
    (run,) = status[RUNS_FIELD]
    assert run["phase"] == "failed"
    assert run["metrics"][0]["measurements"][0]["value"]["result"] == pytest.approx(0.3)
    canary_scaled_down(crds, ns, stable, canary_hash)
    reasons = {e["reason"] for e in events(crds, ns)}
    assert {"AnalysisRunStarted", "AnalysisRunFailed", "RolloutAborted"} <= reasons

    # `gapless analysis` against the cluster shows the run as it does locally: revision by number.
    on = ("--context", "test", "-n", ns)
    r = gapless("analysis", "shop", *on, "-o", "json", kubeconfig=crds.kubeconfig)
    assert r.returncode == 0, r.stderr
    (shown,) = json.loads(r.stdout)["items"]
    assert (shown["phase"], shown["hash"], shown["revision"]) == ("failed", canary_hash, 2)
    assert shown["metrics"][0]["name"] == "error-ratio"
    assert shown["metrics"][0]["failed"] == 1
    assert shown["measurements"]["error-ratio"][0]["value"]["result"] == pytest.approx(0.3)
    r = gapless("analysis", "shop", *on, kubeconfig=crds.kubeconfig)
    assert r.returncode == 0, r.stderr
    assert "error-ratio" in r.stdout
    assert "failed" in r.stdout
    assert "{" not in r.stdout
    r = gapless("analysis", "shop", *on, "--revision", "2", "-o", "json", kubeconfig=crds.kubeconfig)
    assert len(json.loads(r.stdout)["items"]) == 1


@pytest.mark.parametrize("outcome", ["Complete", "Failed"])
def test_a_job_metric_is_judged_by_a_real_job(
    crds: Cluster, ns: str, operator: OperatorProcess, outcome: str
) -> None:
    """The step's Job runs through the Job controller: Complete (its pod exits 0) completes the rollout;
    Failed (its pod exits 1 on the failing node) aborts it, naming the metric."""
    pod: dict[str, Any] = {"containers": [{"name": "smoke", "image": "example.invalid/smoke:1"}]}
    if outcome == "Failed":
        crds.failing_node()
        pod |= FAILING_POD
    job = {"spec": {"backoffLimit": 0, "template": {"spec": pod}}, "metadata": {"labels": {"team": "shop"}}}
    put_template(crds, ns, "smoke", [{"name": "smoke-test", "count": 1, "provider": {"job": job}}])
    v2, stable, canary_hash = start_canary(crds, ns, operator, "smoke")
    update(crds, ns, "shop", {"template": v2["spec"]["template"]})
    if outcome == "Complete":
        healthy_at(crds, ns, "shop", "2", operator, timeout=40)
        (run,) = runs(crds, ns)
        assert run["phase"] == "successful"
    else:
        status = degraded(crds, ns, operator)
        assert "smoke-test" in status["message"]
        assert "failed" in status["message"]
        canary_scaled_down(crds, ns, stable, canary_hash)
    with crds.client() as c:
        (got,) = c.get(f"/apis/batch/v1/namespaces/{ns}/jobs").json()["items"]
    conditions = {x["type"] for x in got["status"]["conditions"] if x["status"] == "True"}
    assert outcome in conditions
    labels = got["metadata"]["labels"]
    assert labels["gapless.dev/rollout"] == "shop"
    assert labels[LABEL_REVISION] == canary_hash
    assert labels["team"] == "shop"
    assert got["metadata"]["ownerReferences"][0]["kind"] == "Rollout"


def test_a_prometheus_that_does_not_answer_holds_up_no_other_rollout(
    crds: Cluster, ns: str, operator: OperatorProcess
) -> None:
    """A query to a server that accepts and never answers (timeout 30 s) is in flight while another
    Rollout of the same operator rolls out to completion."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"
        metric = prometheus_metric(address, count=1) | {"interval": "0.5s"}
        metric["provider"]["prometheus"]["timeout"] = "30s"
        put_template(crds, ns, "errors", [metric])
        create(crds, ns, k8s_rollout("other", "v1", replicas=1))
        healthy_at(crds, ns, "other", "1", operator)
        v2, _, _ = start_canary(crds, ns, operator, "errors")
        update(crds, ns, "shop", {"template": v2["spec"]["template"]})
        wait_for(lambda: runs(crds, ns), 20, "the analysis run started")
        time.sleep(1.0)  # its first query is due after 0.5 s and now waits on the silent server
        started = time.monotonic()
        update(crds, ns, "other", {"template": k8s_rollout("other", "v2")["spec"]["template"]})
        healthy_at(crds, ns, "other", "2", operator, timeout=20)
        took = time.monotonic() - started
        (run,) = runs(crds, ns)
        assert run["phase"] == "running"
        assert run["metrics"][0]["measured"] == 0
        assert took < 20
        print(f"\nanother rollout completed in {took:.1f} s while a query hung")


@contextlib.contextmanager
def selector_changes(cluster: Cluster, ns: str, service: str) -> Iterator[list[str]]:
    """Every distinct revision the Service's selector names, in order, from a watch (no sample is missed)."""
    seen: list[str] = []
    stop = threading.Event()
    started = threading.Event()

    def watch() -> None:
        with contextlib.suppress(httpx.HTTPError), cluster.client() as c:
            params = {"fieldSelector": f"metadata.name={service}", "watch": "1", "timeoutSeconds": "120"}
            with c.stream("GET", f"/api/v1/namespaces/{ns}/services", params=params, timeout=150) as r:
                started.set()
                for line in r.iter_lines():
                    if line:
                        sel = json.loads(line)["object"]["spec"]["selector"][LABEL_REVISION]
                        if not seen or seen[-1] != sel:
                            seen.append(sel)
                    if stop.is_set():
                        return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started.wait(10)
    wait_for(lambda: seen, 10, f"the first event of {service}")
    try:
        yield seen
    finally:
        stop.set()


def live_pods(cluster: Cluster, ns: str, revision: str) -> list[str]:
    with cluster.client() as c:
        pods = c.get(
            f"/api/v1/namespaces/{ns}/pods", params={"labelSelector": f"{LABEL_REVISION}={revision}"}
        ).json()["items"]
    return sorted(p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp"))


def sizes(cluster: Cluster, ns: str) -> dict[str, int]:
    return {
        r["metadata"]["labels"][LABEL_REVISION]: r["spec"]["replicas"]
        for r in replica_sets(cluster, ns, "shop")
    }


@pytest.mark.parametrize(
    ("key", "outcome"),
    [
        ("prePromotion", "passes"),
        ("prePromotion", "fails"),
        ("postPromotion", "passes"),
        ("postPromotion", "fails"),
    ],
)
def test_blue_green_analysis(
    crds: Cluster,
    ns: str,
    operator: OperatorProcess,
    prometheus: tuple[Exporter, PrometheusServer],
    key: str,
    outcome: str,
) -> None:
    """Blue-green pre-/post-promotion analysis queries green's series against blue's (the args are the two
    revision hashes). Pre-promotion runs while NAME-stable selects blue: passing lets the promotion switch
    it, failing aborts with NAME-stable never changed and green scaled to 0. Post-promotion runs after the
    switch with blue's pods kept: passing completes (blue scaled down), failing switches NAME-stable back to
    blue's very same pods and scales green to 0."""
    exporter, prom = prometheus
    put_template(crds, ns, "errors", [prometheus_metric(prom.address, count=2)])
    ref = {"templates": [{"templateName": "errors"}]}
    bg = {
        "blueGreen": {
            "autoPromotionSeconds": 1,
            "scaleDownDelaySeconds": 2,
            "abortScaleDownDelaySeconds": 0,
            f"{key}Analysis": ref,
        }
    }
    v1 = k8s_rollout("shop", "v1", replicas=2, strategy=bg)
    v2 = k8s_rollout("shop", "v2", replicas=2, strategy=bg)
    blue, green = revision_of(v1), revision_of(v2)
    create(crds, ns, v1)
    healthy_at(crds, ns, "shop", "1", operator)
    exporter.values = {blue: 0.01, green: 0.01 if outcome == "passes" else 0.31}
    prom.wait_for_series(METRIC, count=2)
    blue_pods = live_pods(crds, ns, blue)
    assert len(blue_pods) == 2
    with selector_changes(crds, ns, "shop-stable") as selectors:
        update(crds, ns, "shop", {"template": v2["spec"]["template"]})
        if outcome == "passes":
            status = healthy_at(crds, ns, "shop", "2", operator, timeout=60)
        else:
            status = degraded(crds, ns, operator, timeout=60)
            wait_for(lambda: sizes(crds, ns) == {blue: 2, green: 0}, 20, "green at 0, blue at 2")
            wait_for(lambda: service_selectors(crds, ns, "shop")["stable"] == blue, 10, "NAME-stable on blue")
        time.sleep(0.5)  # the watch's last event
    (run,) = status[RUNS_FIELD]
    assert (run["key"], run["revision"]) == (key, green)
    assert run["spec"]["args"] == {"rollout": "shop", "canary": green, "stable": blue}
    first = run["metrics"][0]["measurements"][0]["value"]["result"]
    assert first == pytest.approx(0.0 if outcome == "passes" else 0.3)
    switched_at = (status["revisions"][green].get("stepState") or {}).get("switched_at")
    if outcome == "passes":
        assert run["phase"] == "successful"
        assert selectors == [blue, green], selectors
        if key == "prePromotion":
            assert switched_at >= run["finishedAt"]  # the switch came after the analysis
        else:
            assert run["createdAt"] >= switched_at  # the analysis came after the switch
        wait_for(lambda: sizes(crds, ns).get(blue) == 0, 20, "blue scaled down")
    else:
        assert run["phase"] == "failed"
        assert f"{'pre' if key == 'prePromotion' else 'post'}-promotion analysis failed" in status["message"]
        assert "error-ratio" in status["message"]
        if key == "prePromotion":
            assert selectors == [blue], selectors  # green never took the active Service
            assert switched_at is None
        else:
            assert selectors == [blue, green, blue], selectors
            assert run["createdAt"] >= switched_at
        assert live_pods(crds, ns, blue) == blue_pods  # blue stayed warm: the same pods, none started
        reasons = {e["reason"] for e in events(crds, ns)}
        assert {"AnalysisRunStarted", "AnalysisRunFailed", "RolloutAborted"} <= reasons
