"""Benchmark: gapless's operator and Argo Rollouts' controller, side by side on one real kube-apiserver.

The same cluster as tests/k8s (etcd, kube-apiserver, controller-manager, scheduler, kwok) runs each
controller in turn, in a namespace of its own, with the other stopped, through the same measurements:

- change: time from a Rollout's template PATCH to the new ReplicaSet seen on a watch (``--changes``
  changes of one Rollout of 1 replica; P50, P99, max);
- scale: ``--rollouts`` more Rollouts of 1 replica each, the time until all are Healthy, then the
  controller's RSS and CPU so far;
- idle: API requests the controller sent during ``--idle`` seconds with nothing changing (gapless:
  ``gapless_operator_api_requests_total``; Argo: ``controller_clientset_k8s_request_total``, both
  counted by the client);
- restart: a fresh controller's time from process start to one reconcile of every Rollout (gapless:
  its first-resync gauge is set; Argo: every Rollout has a ``rollout_reconcile`` observation), its RSS
  and CPU then.

The Rollouts are the same shape on both sides: 1 replica, a container with an image, a port and a
readiness probe, and a rolling update of 25% surge / 25% unavailable (gapless's default
``rollingUpdate``; Argo's ``canary`` without steps, which is Argo's rolling update).

Argo Rollouts is not shipped with gapless; build its controller once from the Go module proxy
(``go build ./cmd/rollouts-controller`` in a copy of ``github.com/argoproj/argo-rollouts`` at the
version you compare against) and give its binary and its ``manifests/crds`` directory:

    .venv/bin/python bench/kubernetes_argo.py --argo-controller PATH --argo-crds DIR [--rollouts 100]

Both controllers share the machine with the cluster and the benchmark: the numbers include that
contention, equally for both.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.k8s.cluster import Cluster  # noqa: E402
from tests.k8s.operator import GROUP, OperatorProcess, k8s_rollout, namespace, wait_for  # noqa: E402
from tests.k8s.test_crds import install  # noqa: E402
from tests.ports import free_port  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_kubernetes", Path(__file__).with_name("kubernetes.py"))
assert _spec is not None
assert _spec.loader is not None
kbench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kbench)

ARGO = "/apis/argoproj.io/v1alpha1"
MERGE = {"Content-Type": "application/merge-patch+json"}
CRD_API = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def prometheus_sum(text: str, name: str) -> float:
    """The sum of every sample of ``name`` (any labels) in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


class Side(Protocol):
    """One controller under test: how to start it, make and check its Rollouts, and read its counters."""

    name: str
    ns: str

    def start(self, log: Path) -> None: ...
    def stop(self) -> None: ...
    def up(self) -> bool: ...
    def pid(self) -> int: ...
    def requests(self) -> float: ...
    def rollout(self, name: str, version: str) -> tuple[str, dict[str, Any]]: ...
    def template(self, name: str, version: str) -> dict[str, Any]: ...
    def healthy(self, c: httpx.Client, name: str) -> bool: ...
    def reconciled_all(self, count: int) -> bool: ...


class Gapless:
    name = "gapless"

    def __init__(self, cluster: Cluster, ns: str) -> None:
        self.cluster, self.ns = cluster, ns
        self.op: OperatorProcess | None = None
        self.listen = ""
        self.generation: dict[str, int] = {}

    def start(self, log: Path) -> None:
        self.listen = f"127.0.0.1:{free_port()}"
        self.op = OperatorProcess(self.cluster.kubeconfig, namespace=self.ns, log=log, listen=self.listen)

    def stop(self) -> None:
        if self.op is not None:
            self.op.stop()
            self.op = None

    def pid(self) -> int:
        assert self.op is not None
        return int(self.op.proc.pid)

    def up(self) -> bool:
        try:
            return httpx.get(f"http://{self.listen}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def metrics(self) -> dict[str, float]:
        assert self.op is not None
        return dict(self.op.metrics())

    def requests(self) -> float:
        return self.metrics()["gapless_operator_api_requests_total"]

    def rollout(self, name: str, version: str) -> tuple[str, dict[str, Any]]:
        return f"{GROUP}/namespaces/{self.ns}/rollouts", k8s_rollout(name, version, replicas=1)

    def template(self, name: str, version: str) -> dict[str, Any]:
        return {"spec": {"template": k8s_rollout(name, version)["spec"]["template"]}}

    def healthy(self, c: httpx.Client, name: str) -> bool:
        r = c.get(f"{GROUP}/namespaces/{self.ns}/rollouts/{name}").json()
        s = r.get("status") or {}
        return bool(
            s.get("phase") == "Healthy" and s.get("observedGeneration") == r["metadata"].get("generation")
        )

    def reconciled_all(self, count: int) -> bool:
        try:
            return self.metrics()["gapless_operator_first_resync_seconds"] > 0
        except (httpx.HTTPError, KeyError):
            return False


class Argo:
    name = "argo-rollouts"

    def __init__(self, cluster: Cluster, ns: str, binary: Path) -> None:
        self.cluster, self.ns, self.binary = cluster, ns, binary
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0

    def start(self, log: Path) -> None:
        self.metrics_port = free_port()
        argv = [
            str(self.binary),
            f"--kubeconfig={self.cluster.kubeconfig}",
            "--namespaced",
            f"--namespace={self.ns}",
            f"--metricsPort={self.metrics_port}",
            f"--healthzPort={free_port()}",
            "--leader-elect=false",
            "--loglevel=warn",
        ]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def text(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def up(self) -> bool:
        try:
            return "controller_clientset_k8s_request_total" in self.text()
        except httpx.HTTPError:
            return False

    def requests(self) -> float:
        return prometheus_sum(self.text(), "controller_clientset_k8s_request_total")

    def rollout(self, name: str, version: str) -> tuple[str, dict[str, Any]]:
        doc = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "strategy": {"canary": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                **self.template(name, version)["spec"],
            },
        }
        return f"{ARGO}/namespaces/{self.ns}/rollouts", doc

    def template(self, name: str, version: str) -> dict[str, Any]:
        container = {
            "name": "app",
            "image": f"example.invalid/shop:{version}",
            "command": ["/shop", "--port", "8080"],
            "ports": [{"containerPort": 8080, "name": "http"}],
            "env": [{"name": "VERSION", "value": version}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
        }
        return {
            "spec": {"template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}}}
        }

    def healthy(self, c: httpx.Client, name: str) -> bool:
        r = c.get(f"{ARGO}/namespaces/{self.ns}/rollouts/{name}").json()
        s = r.get("status") or {}
        return bool(
            s.get("phase") == "Healthy"
            and str(s.get("observedGeneration")) == str(r["metadata"].get("generation"))
            and s.get("stableRS") == s.get("currentPodHash")
        )

    def reconciled_all(self, count: int) -> bool:
        try:
            text = self.text()
        except httpx.HTTPError:
            return False
        done = {
            m.group(1)
            for m in re.finditer(r'^rollout_reconcile_count\{[^}]*name="([^"]+)"[^}]*\} (\S+)$', text, re.M)
            if float(m.group(2)) > 0
        }
        return len(done) >= count


def install_argo_crds(cluster: Cluster, crds: Path) -> None:
    with cluster.client() as c:
        for path in sorted(crds.glob("*-crd.yaml")):
            doc = yaml.safe_load(path.read_text())
            r = c.post(CRD_API, json=doc)
            assert r.status_code in (201, 409), r.text[:500]
        wait_for(lambda: c.get(f"{ARGO}/rollouts").status_code == 200, 30, "Argo's Rollout CRD served")


def all_healthy(side: Side, c: httpx.Client, names: list[str], timeout: float) -> float:
    started = time.monotonic()
    left = list(names)
    while left:
        left = [n for n in left if not side.healthy(c, n)]
        if not left:
            break
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{side.name}: {len(left)} of {len(names)} Rollouts not Healthy")
        time.sleep(1.0)
    return time.monotonic() - started


def measure(cluster: Cluster, side: Side, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ns = side.ns
    side.start(tmp / f"{side.name}.log")
    try:
        wait_for(side.up, 60, f"{side.name} up")
        with cluster.client() as c:
            url, doc = side.rollout("lat", "v0")
            c.post(url, json=doc).raise_for_status()
            all_healthy(side, c, ["lat"], 60)
            watch = kbench.ReplicaSetWatch(cluster, ns)
            time.sleep(0.5)
            lat: list[float] = []
            for i in range(1, args.changes + 1):
                known = set(watch.seen)
                sent = time.monotonic()
                c.patch(f"{url}/lat", json=side.template("lat", f"v{i}"), headers=MERGE).raise_for_status()
                _, seen = watch.wait_new(known, 30)
                lat.append((seen - sent) * 1000)
                all_healthy(side, c, ["lat"], 60)
            watch.stop()
            out["change_ms"] = lat
            names = [f"s{i}" for i in range(args.rollouts)]
            for n in names:
                c.post(url, json=side.rollout(n, "v1")[1]).raise_for_status()
            out["all_healthy_s"] = all_healthy(side, c, names, 120 + args.rollouts)
        proc = psutil.Process(side.pid())
        out["running_rss_mb"] = proc.memory_info().rss / 2**20
        out["running_cpu_s"] = sum(proc.cpu_times()[:2])
        before = side.requests()
        time.sleep(args.idle)
        out["idle_requests"] = side.requests() - before
    finally:
        side.stop()
    started = time.monotonic()
    side.start(tmp / f"{side.name}-restart.log")
    try:
        check: Callable[[], bool] = lambda: side.reconciled_all(args.rollouts + 1)  # noqa: E731
        wait_for(check, 120 + args.rollouts, f"{side.name}: one reconcile of every Rollout")
        out["restart_all_s"] = time.monotonic() - started
        proc = psutil.Process(side.pid())
        out["restart_rss_mb"] = proc.memory_info().rss / 2**20
        out["restart_cpu_s"] = sum(proc.cpu_times()[:2])
    finally:
        side.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--argo-controller", type=Path, required=True, help="Argo Rollouts' rollouts-controller binary"
    )
    ap.add_argument("--argo-crds", type=Path, required=True, help="Argo Rollouts' manifests/crds directory")
    ap.add_argument("--changes", type=int, default=30)
    ap.add_argument("--idle", type=float, default=60)
    ap.add_argument("--rollouts", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gapless-bench-argo-") as d, Cluster() as cluster:
        tmp = Path(d)
        install(cluster)
        install_argo_crds(cluster, args.argo_crds)
        sides: list[Side] = [
            Gapless(cluster, namespace(cluster, "bench-gapless")),
            Argo(cluster, namespace(cluster, "bench-argo"), args.argo_controller),
        ]
        rows = [(side.name, measure(cluster, side, args, tmp)) for side in sides]
    print(
        f"\n{args.rollouts} + 1 Rollouts of 1 replica, {args.changes} template changes, idle {args.idle:.0f} s\n"
    )
    head = f"{'controller':<14} {'chg P50':>8} {'chg P99':>8} {'max':>7} {'healthy':>8} {'RSS':>6} {'CPU':>6} {'idle req':>9} {'restart':>8} {'RSS':>6}"
    print(head)
    print(f"{'':<14} {'ms':>8} {'ms':>8} {'ms':>7} {'s':>8} {'MB':>6} {'s':>6} {'':>9} {'s':>8} {'MB':>6}")
    for name, r in rows:
        lat = r["change_ms"]
        print(
            f"{name:<14} {statistics.median(lat):>8.1f} {kbench.pct(lat, 99):>8.1f} {max(lat):>7.1f} "
            f"{r['all_healthy_s']:>8.1f} {r['running_rss_mb']:>6.0f} {r['running_cpu_s']:>6.1f} "
            f"{r['idle_requests']:>9.0f} {r['restart_all_s']:>8.2f} {r['restart_rss_mb']:>6.0f}"
        )
    for name, r in rows:
        print(f"  {name} changes (ms): {' '.join(f'{v:.0f}' for v in r['change_ms'])}")


if __name__ == "__main__":
    main()
