"""Helpers of the operator tests: a Rollout document for the cluster, the operator as a real process,
and a watch that samples a rollout's ReplicaSets and Pods on every change."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.k8s.cluster import Cluster

GROUP = "/apis/gapless.dev/v1alpha1"


def k8s_rollout(
    name: str, version: str, *, replicas: int = 4, strategy: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    """A Rollout that runs on Kubernetes: an image, a port, a readiness probe on it."""
    doc: dict[str, Any] = {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "listen": "0.0.0.0:80",
            "template": {
                "image": f"example.invalid/shop:{version}",
                "command": ["/shop", "--port", "${PORT}"],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "env": {"VERSION": version},
                "readinessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 1},
            },
        },
    }
    if strategy is not None:
        doc["spec"]["strategy"] = strategy
    doc["spec"].update(spec)
    return doc


def job_template(name: str, pod: dict[str, Any]) -> dict[str, Any]:
    """An AnalysisTemplate of one ``job`` metric (measured once) that runs ``pod`` as its Job's pod."""
    metric = {"name": "smoke", "count": 1, "provider": {"job": {"spec": {"template": {"spec": pod}}}}}
    return {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {"metrics": [metric]},
    }


def namespace(cluster: Cluster, name: str) -> str:
    with cluster.client() as c:
        r = c.post("/api/v1/namespaces", json={"metadata": {"name": name}})
        assert r.status_code in (201, 409), r.text
    return name


class OperatorProcess:
    """``gapless operator run`` as a real process with a kubeconfig; ``kill()`` is SIGKILL."""

    def __init__(
        self,
        kubeconfig: Path,
        *,
        namespace: str | None = None,
        log: Path,
        listen: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        args = [sys.executable, "-m", "gapless", "operator", "run", "--kubeconfig", str(kubeconfig)]
        if namespace:
            args += ["-n", namespace]
        if listen:
            args += ["--listen", listen]
        args += list(extra)
        self.listen = listen
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def metrics(self) -> dict[str, float]:
        """The operator's /metrics as name -> value (labels kept in the name)."""
        text = httpx.get(f"http://{self.listen}/metrics", timeout=5).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last})")


def rollout_status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    with cluster.client() as c:
        return dict(c.get(f"{GROUP}/namespaces/{ns}/rollouts/{name}").json().get("status") or {})


class Sampler:
    """Follows a namespace's Pods and ReplicaSets of one rollout by watch and records counts at every event.

    Each sample is (live pods, available pods) for the rollout; ``replica_sets`` is every ReplicaSet name seen.
    """

    def __init__(self, cluster: Cluster, ns: str, rollout: str, min_ready: float = 0) -> None:
        self.cluster, self.ns, self.rollout = cluster, ns, rollout
        self.pods: dict[str, dict[str, Any]] = {}
        self.samples: list[tuple[int, int]] = []
        self.replica_sets: set[str] = set()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch, args=("/api/v1", "pods"), daemon=True),
            threading.Thread(target=self._watch, args=("/apis/apps/v1", "replicasets"), daemon=True),
        ]

    def __enter__(self) -> Sampler:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _watch(self, prefix: str, plural: str) -> None:
        selector = f"gapless.dev/rollout={self.rollout}"
        url = f"{prefix}/namespaces/{self.ns}/{plural}"
        with self.cluster.client() as c:
            listing = c.get(url, params={"labelSelector": selector}).json()
            for item in listing["items"]:
                self._on(plural, "ADDED", item)
            rv = listing["metadata"]["resourceVersion"]
            while not self._stop.is_set():
                try:
                    with c.stream(
                        "GET",
                        url,
                        params={
                            "labelSelector": selector,
                            "watch": "1",
                            "resourceVersion": rv,
                            "timeoutSeconds": "5",
                        },
                        timeout=httpx.Timeout(10),
                    ) as r:
                        for line in r.iter_lines():
                            if not line:
                                continue
                            ev = json.loads(line)
                            rv = ev["object"]["metadata"].get("resourceVersion", rv)
                            self._on(plural, ev["type"], ev["object"])
                            if self._stop.is_set():
                                return
                except httpx.HTTPError:
                    continue

    def _on(self, plural: str, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if plural == "replicasets":
            self.replica_sets.add(name)
            return
        if kind == "DELETED":
            self.pods.pop(name, None)
        else:
            self.pods[name] = obj
        live = [p for p in self.pods.values() if not p["metadata"].get("deletionTimestamp")]
        available = [
            p for p in live
            if any(x.get("type") == "Ready" and x.get("status") == "True" for x in (p.get("status") or {}).get("conditions") or [])
        ]  # fmt: skip
        self.samples.append((len(self.pods), len(available)))


GATEWAY_API_VERSION = "v1.4.0"


def gateway_api_crd(name: str = "httproutes") -> dict[str, Any]:
    """A Gateway API CRD (standard channel) from the ``sigs.k8s.io/gateway-api`` Go module's config/crd files,
    fetched into the Go module cache by ``go mod download`` (once)."""
    import shutil
    import tempfile

    import yaml

    go = shutil.which("go")
    if go is None:
        raise FileNotFoundError("go is not on PATH (needed to fetch the Gateway API CRDs)")
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(
            [go, "mod", "download", "-json", f"sigs.k8s.io/gateway-api@{GATEWAY_API_VERSION}"],
            cwd=d,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
            env=os.environ | {"GOFLAGS": "-mod=mod"},
        )
    module = Path(json.loads(out.stdout)["Dir"])
    path = module / "config" / "crd" / "standard" / f"gateway.networking.k8s.io_{name}.yaml"
    return dict(yaml.safe_load(path.read_text()))


def service_account_kubeconfig(
    cluster: Cluster, ns: str, path: Path, role: dict[str, Any], *, role_name: str = "gapless-operator"
) -> str:
    """Write a kubeconfig at ``path`` acting as the ServiceAccount ``gapless-operator`` of ``ns``, bound
    there (RoleBinding) to ``role`` (a ClusterRole document, created or replaced under ``role_name``);
    return the ServiceAccount's token."""
    role = json.loads(json.dumps(role))
    role["metadata"] = {"name": role_name}
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    with cluster.client() as c:
        r = c.post(f"{rbac}/clusterroles", json=role)
        if r.status_code == 409:
            current = c.get(f"{rbac}/clusterroles/{role_name}").json()
            role["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            r = c.put(f"{rbac}/clusterroles/{role_name}", json=role)
        assert r.status_code in (200, 201), r.text
        r = c.post(
            f"/api/v1/namespaces/{ns}/serviceaccounts", json={"metadata": {"name": "gapless-operator"}}
        )
        assert r.status_code == 201, r.text
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "gapless-operator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
            "subjects": [{"kind": "ServiceAccount", "name": "gapless-operator", "namespace": ns}],
        }
        r = c.post(f"{rbac}/namespaces/{ns}/rolebindings", json=binding)
        assert r.status_code == 201, r.text
        r = c.post(
            f"/api/v1/namespaces/{ns}/serviceaccounts/gapless-operator/token",
            json={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
        )
        token = r.json()["status"]["token"]
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: test\n  cluster:\n    server: {cluster.server}\n    certificate-authority: {cluster.ca}\n"
        f"users:\n- name: sa\n  user:\n    token: {token}\n"
        f"contexts:\n- name: sa\n  context:\n    cluster: test\n    user: sa\n    namespace: {ns}\n"
        "current-context: sa\n"
    )
    path.chmod(0o600)
    return str(token)


def without_verb(role: dict[str, Any], resource: str, verb: str) -> dict[str, Any]:
    """``role`` with ``verb`` removed from the rule(s) on ``resource``."""
    out: dict[str, Any] = json.loads(json.dumps(role))
    for rule in out["rules"]:
        if resource in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    return out
