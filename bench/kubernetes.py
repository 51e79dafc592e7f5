"""Benchmark: the Kubernetes operator on a real kube-apiserver (etcd, controller-manager, kwok).

Starts the test cluster of tests/k8s, installs the CRDs and runs ``gapless operator run --listen`` as a
process, then measures:

- latency: time from a Rollout change (the PATCH sent) to the new ReplicaSet seen on a watch, over
  ``--changes`` template changes (P50, P99, max);
- requests: API requests the operator sends for one rolling update of 4 replicas (maxSurge 1,
  maxUnavailable 0: 4 steps), per step and per reconcile pass, read from its ``/metrics``;
- idle: API requests and reconcile passes during ``--idle`` seconds with nothing changing;
- scale: with ``--rollouts`` Rollouts of 1 replica each, the operator's RSS and CPU, and one full
  resync: a fresh operator's time from start (its imports included) to filled caches (``/healthz``
  200) and to one pass over every Rollout, and the operator's own measure of the resync (from the start
  of its lists to one pass over every Rollout they held, ``gapless_operator_first_resync_seconds``).

    .venv/bin/python bench/kubernetes.py [--changes 30] [--idle 60] [--rollouts 100]

The cluster runs on the same machine as the operator and the benchmark: the numbers include their
contention, and the apiserver's watch delivery on both ends of the latency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.k8s.cluster import Cluster, free_port  # noqa: E402
from tests.k8s.operator import GROUP, OperatorProcess, k8s_rollout, namespace, rollout_status, wait_for  # noqa: E402
from tests.k8s.test_crds import install  # noqa: E402

MERGE = {"Content-Type": "application/merge-patch+json"}


class ReplicaSetWatch:
    """When each ReplicaSet of a namespace was first seen on a watch (monotonic time)."""

    def __init__(self, cluster: Cluster, ns: str) -> None:
        self.cluster, self.ns = cluster, ns
        self.seen: dict[str, float] = {}
        self.changed = threading.Condition()
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        url = f"/apis/apps/v1/namespaces/{self.ns}/replicasets"
        try:
            self._follow(url)
        except httpx.TransportError:
            if not self._stop.is_set():
                raise  # a watch that broke while in use is the benchmark's failure; after stop() it is not

    def _follow(self, url: str) -> None:
        with self.cluster.client() as c:
            rv = c.get(url).json()["metadata"]["resourceVersion"]
            while not self._stop.is_set():
                params = {"watch": "1", "resourceVersion": rv, "timeoutSeconds": "30"}
                with c.stream("GET", url, params=params, timeout=httpx.Timeout(60)) as r:
                    for line in r.iter_lines():
                        if not line:
                            continue
                        at = time.monotonic()
                        ev = json.loads(line)
                        rv = ev["object"]["metadata"]["resourceVersion"]
                        with self.changed:
                            self.seen.setdefault(ev["object"]["metadata"]["name"], at)
                            self.changed.notify_all()

    def wait_new(self, known: set[str], timeout: float) -> tuple[str, float]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                new = [n for n in self.seen if n not in known]
                if new:
                    return new[0], self.seen[new[0]]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no new ReplicaSet")
                self.changed.wait(left)

    def stop(self) -> None:
        self._stop.set()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def healthy(cluster: Cluster, ns: str, name: str, revision: str, timeout: float = 60) -> None:
    def check() -> bool:
        s = rollout_status(cluster, ns, name)
        return s.get("phase") == "Healthy" and s.get("currentRevision") == revision

    wait_for(check, timeout, f"{name} at revision {revision}")


def latency(cluster: Cluster, ns: str, changes: int) -> list[float]:
    with cluster.client() as c:
        c.post(
            f"{GROUP}/namespaces/{ns}/rollouts", json=k8s_rollout("lat", "v0", replicas=1)
        ).raise_for_status()
    healthy(cluster, ns, "lat", "1")
    watch = ReplicaSetWatch(cluster, ns)
    time.sleep(0.5)
    out: list[float] = []
    with cluster.client() as c:
        for i in range(1, changes + 1):
            known = set(watch.seen)
            template = k8s_rollout("lat", f"v{i}")["spec"]["template"]
            sent = time.monotonic()
            c.patch(
                f"{GROUP}/namespaces/{ns}/rollouts/lat", json={"spec": {"template": template}}, headers=MERGE
            ).raise_for_status()
            _, seen = watch.wait_new(known, 30)
            out.append((seen - sent) * 1000)
            healthy(cluster, ns, "lat", str(i + 1))
    watch.stop()
    return out


def requests_per_update(cluster: Cluster, ns: str, op: OperatorProcess) -> dict[str, float]:
    strategy = {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    with cluster.client() as c:
        c.post(
            f"{GROUP}/namespaces/{ns}/rollouts", json=k8s_rollout("req", "v1", replicas=4, strategy=strategy)
        ).raise_for_status()
        healthy(cluster, ns, "req", "1")
        time.sleep(1)
        before = op.metrics()
        template = k8s_rollout("req", "v2")["spec"]["template"]
        c.patch(
            f"{GROUP}/namespaces/{ns}/rollouts/req", json={"spec": {"template": template}}, headers=MERGE
        ).raise_for_status()
        healthy(cluster, ns, "req", "2")
        time.sleep(1)
    after = op.metrics()
    requests = after["gapless_operator_api_requests_total"] - before["gapless_operator_api_requests_total"]
    passes = (
        after["gapless_operator_reconcile_passes_total"] - before["gapless_operator_reconcile_passes_total"]
    )
    return {
        "requests": requests,
        "passes": passes,
        "per_step": requests / 4,
        "per_pass": requests / max(passes, 1),
    }


def idle(op: OperatorProcess, seconds: float) -> dict[str, float]:
    before = op.metrics()
    time.sleep(seconds)
    after = op.metrics()
    return {
        "seconds": seconds,
        "requests": after["gapless_operator_api_requests_total"]
        - before["gapless_operator_api_requests_total"],
        "passes": after["gapless_operator_reconcile_passes_total"]
        - before["gapless_operator_reconcile_passes_total"],
    }


def scale(cluster: Cluster, ns: str, count: int, tmp: Path) -> dict[str, float]:
    with cluster.client() as c:
        for i in range(count):
            c.post(
                f"{GROUP}/namespaces/{ns}/rollouts", json=k8s_rollout(f"s{i}", "v1", replicas=1)
            ).raise_for_status()

        done = [0]

        def all_healthy() -> bool:
            items = c.get(f"{GROUP}/namespaces/{ns}/rollouts").json()["items"]
            mine = [r for r in items if r["metadata"]["name"].startswith("s")]
            done[0] = sum((r.get("status") or {}).get("phase") == "Healthy" for r in mine)
            return len(mine) == count and done[0] == count

        started = time.monotonic()
        deadline = started + 60 + count * 1.0
        shown = started
        while not all_healthy():  # a list of every Rollout: every 2 s, not to load the apiserver itself
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(
                    f"{count} rollouts not all healthy in {deadline - started:.0f} s ({done[0]} are)"
                )
            if now - shown >= 60:
                print(f"  {done[0]} of {count} healthy after {now - started:.0f} s", flush=True)
                shown = now
            time.sleep(2.0)
        settle = time.monotonic() - started
    return {"rollouts": count, "all_healthy_s": settle}


def resync(cluster: Cluster, ns: str, count: int, tmp: Path) -> dict[str, float]:
    listen = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    op = OperatorProcess(cluster.kubeconfig, namespace=ns, log=tmp / "resync.log", listen=listen)
    try:

        def up() -> bool:
            try:
                return httpx.get(f"http://{listen}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "healthz")
        synced = time.monotonic() - started
        wait_for(lambda: op.metrics()["gapless_operator_first_resync_seconds"] > 0, 120, "one pass each")
        passed = time.monotonic() - started
        resync_s = op.metrics()["gapless_operator_first_resync_seconds"]
        time.sleep(2)
        proc = psutil.Process(op.proc.pid)
        cpu = proc.cpu_times()
        return {
            "caches_filled_s": synced,
            "resync_s": resync_s,
            "all_passed_s": passed,
            "rss_mb": proc.memory_info().rss / 2**20,
            "cpu_s": cpu.user + cpu.system,
            "requests_at_start": op.metrics()["gapless_operator_api_requests_total"],
        }
    finally:
        op.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=30)
    ap.add_argument("--idle", type=float, default=60)
    ap.add_argument("--rollouts", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gapless-bench-k8s-") as d, Cluster() as cluster:
        tmp = Path(d)
        install(cluster)
        ns = namespace(cluster, "bench")
        listen = f"127.0.0.1:{free_port()}"
        op = OperatorProcess(cluster.kubeconfig, namespace=ns, log=tmp / "operator.log", listen=listen)
        try:
            wait_for(lambda: _up(listen), 60, "operator healthz")
            lat = latency(cluster, ns, args.changes)
            print(
                f"change -> new ReplicaSet (ms, n={len(lat)}): P50 {statistics.median(lat):.1f}  "
                f"P99 {pct(lat, 99):.1f}  max {max(lat):.1f}"
            )
            print(f"  all: {' '.join(f'{v:.0f}' for v in lat)}")
            req = requests_per_update(cluster, ns, op)
            print(
                f"one rolling update, 4 replicas, maxSurge 1: {req['requests']:.0f} requests, {req['passes']:.0f} passes "
                f"({req['per_step']:.1f} per step, {req['per_pass']:.1f} per pass)"
            )
            idle_small = idle(op, args.idle)
            print(
                f"idle {args.idle:.0f} s with 2 rollouts: {idle_small['requests']:.0f} requests, {idle_small['passes']:.0f} passes"
            )
            sc = scale(cluster, ns, args.rollouts, tmp)
            print(f"{args.rollouts} more rollouts healthy in {sc['all_healthy_s']:.1f} s")
            proc = psutil.Process(op.proc.pid)
            print(
                f"running operator: RSS {proc.memory_info().rss / 2**20:.0f} MB, CPU {sum(proc.cpu_times()[:2]):.1f} s so far"
            )
            idle_big = idle(op, args.idle)
            print(
                f"idle {args.idle:.0f} s with {args.rollouts + 2} rollouts: {idle_big['requests']:.0f} requests, {idle_big['passes']:.0f} passes"
            )
        finally:
            op.stop()
        rs = resync(cluster, ns, args.rollouts + 2, tmp)
        print(
            f"fresh operator over {args.rollouts + 2} rollouts: caches filled {rs['caches_filled_s']:.2f} s, "
            f"one pass over all {rs['all_passed_s']:.2f} s after start (lists + passes: "
            f"{rs['resync_s']:.2f} s); RSS {rs['rss_mb']:.0f} MB, "
            f"CPU {rs['cpu_s']:.2f} s, {rs['requests_at_start']:.0f} requests"
        )


def _up(listen: str) -> bool:
    try:
        return httpx.get(f"http://{listen}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
