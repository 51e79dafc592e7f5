"""A real Kubernetes control plane on loopback for the tests: etcd, kube-apiserver, controller-manager,
scheduler, and kwok faking a node, so Deployments, ReplicaSets and Pods progress without a container
runtime.

The binaries are the real ones, built from their Go modules by ``./dev k8s-bin`` into a cache outside
the repository (``k8s_bin_dir()`` finds it: ``$GAPLESS_K8S_BIN``, else the cache the script uses).
Everything listens on 127.0.0.1 on free ports, keeps its data in a temporary directory, runs in its own
process group, and is stopped (SIGTERM, then SIGKILL) by ``stop()``. The apiserver authenticates a
static admin token (group ``system:masters``) and authorizes with RBAC, so a test can also act as a
ServiceAccount with exactly the shipped Role.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from tests.ports import free_port

K8S_VERSION = "1.36.3"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl")
NODE = "kwok-node-0"
FAILING_NODE = "kwok-failing-node"
FAILING_TAINT = {"key": "gapless.test/fails", "value": "true", "effect": "NoSchedule"}
"""A pod reaches ``FAILING_NODE`` only with ``FAILING_POD``'s nodeSelector and toleration, and fails there."""
FAILING_POD = {
    "nodeSelector": {"kubernetes.io/hostname": FAILING_NODE},
    "tolerations": [{"key": "gapless.test/fails", "operator": "Exists", "effect": "NoSchedule"}],
}
# kwok's stages for the failing node, written for these tests: a pod bound there exits with code 1 at
# once (its container terminated, phase Failed), and a pod being deleted is removed. kwok's default
# stages (on NODE) make a Job's pod succeed instead.
_FAILING_STAGES = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: gapless-test-pod-exits-1}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: .metadata.deletionTimestamp, operator: DoesNotExist}
    - {key: .status.phase, operator: In, values: [Pending]}
  next:
    statusTemplate: |
      {{ $now := Now }}
      phase: Failed
      reason: Error
      startTime: {{ $now | Quote }}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        ready: false
        restartCount: 0
        state:
          terminated: {exitCode: 1, reason: Error, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata: {name: gapless-test-pod-removed}
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: .metadata.deletionTimestamp, operator: Exists}
  next:
    finalizers: {empty: true}
    delete: true
"""


def k8s_bin_dir() -> Path:
    """Where ``./dev k8s-bin`` keeps the binaries (mirrors the script's rule)."""
    own = os.environ.get("GAPLESS_K8S_BIN")
    if own:
        return Path(own)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "gapless" / f"k8s-v{K8S_VERSION}"


def missing_binaries() -> list[str]:
    d = k8s_bin_dir()
    return [b for b in BINARIES if not os.access(d / b, os.X_OK)]


class ClusterError(RuntimeError):
    """A component did not start; the message has its log's tail."""


class Cluster:
    """One throwaway cluster; ``kubeconfig`` is an admin kubeconfig, ``client()`` an admin HTTP client."""

    def __init__(self, *, ready_timeout: float = 60.0) -> None:
        self.bin = k8s_bin_dir()
        self.ready_timeout = ready_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="gapless-test-k8s-"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.token = os.urandom(16).hex()
        self.port = 0
        self.server = ""

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def ca(self) -> Path:
        return self.dir / "certs" / "apiserver.crt"

    def start(self) -> Cluster:
        try:
            self._keys()
            etcd = self._etcd()
            self._apiserver(etcd)
            self._write_kubeconfig()
            self._start(
                "kube-controller-manager",
                "--kubeconfig", str(self.kubeconfig), "--secure-port", "0", "--leader-elect=false",
                "--service-account-private-key-file", str(self.dir / "sa.key"), "--root-ca-file", str(self.ca),
                "--controllers", "*", "--concurrent-deployment-syncs", "10", "--concurrent-replicaset-syncs", "10",
            )  # fmt: skip
            self._start(
                "kube-scheduler",
                "--kubeconfig", str(self.kubeconfig), "--secure-port", "0", "--leader-elect=false",
            )  # fmt: skip
            # The node lease keeps the node Ready: without it the node controller marks it NotReady after
            # 40 s and its pods unready, which would look like a fault of whatever runs on it.
            self._start(
                "kwok", "--kubeconfig", str(self.kubeconfig), "--manage-single-node", NODE,
                "--node-lease-duration-seconds", "40",
            )  # fmt: skip
            self._node()
        except BaseException:
            self.stop()
            raise
        return self

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client of the apiserver with the admin token (or ``token``): for setting up and checking."""
        context = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token or self.token}"},
            verify=context,
            timeout=30,
        )

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    # -- components -------------------------------------------------------------------------------

    def _keys(self) -> None:
        key = self.dir / "sa.key"
        subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
        subprocess.run(
            ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(self.dir / "sa.pub")],
            check=True,
            capture_output=True,
        )
        tokens = self.dir / "tokens.csv"
        tokens.write_text(f'{self.token},gapless-test-admin,1000,"system:masters"\n')
        tokens.chmod(0o600)

    def _etcd(self) -> str:
        client, peer = free_port(), free_port()
        url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        self._start(
            "etcd",
            "--name", "gapless-test", "--data-dir", str(self.dir / "etcd"),
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"gapless-test={peer_url}", "--unsafe-no-fsync", "--log-level", "warn",
        )  # fmt: skip
        self._wait(lambda: httpx.get(f"{url}/health", timeout=1).json().get("health") == "true", "etcd")
        return url

    def _apiserver(self, etcd: str) -> None:
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self._start(
            "kube-apiserver",
            "--etcd-servers", etcd, "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(self.port), "--cert-dir", str(self.dir / "certs"),
            "--token-auth-file", str(self.dir / "tokens.csv"), "--authorization-mode", "RBAC",
            "--anonymous-auth=false",
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(self.dir / "sa.pub"),
            "--service-account-signing-key-file", str(self.dir / "sa.key"),
            "--service-cluster-ip-range", "10.96.0.0/16", "--allow-privileged=true",
        )  # fmt: skip

        def ready() -> bool:
            if not self.ca.exists():
                return False
            with self.client() as c:
                return c.get("/readyz").status_code == 200

        self._wait(ready, "kube-apiserver")

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: test\n  cluster:\n    server: {self.server}\n"
            f"    certificate-authority: {self.ca}\n"
            f"users:\n- name: admin\n  user:\n    token: {self.token}\n"
            "contexts:\n- name: test\n  context:\n    cluster: test\n    user: admin\n    namespace: default\n"
            "current-context: test\n"
        )
        self.kubeconfig.chmod(0o600)

    def _node(self) -> None:
        """One fake node that kwok keeps Ready, with room for many pods."""
        self._add_node(NODE)
        with self.client() as c:

            def default_account() -> bool:
                return c.get("/api/v1/namespaces/default/serviceaccounts/default").status_code == 200

            self._wait(default_account, "the default ServiceAccount")

    def _add_node(self, name: str, *, taints: list[dict[str, str]] | None = None) -> None:
        node: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"type": "kwok", "kubernetes.io/hostname": name}},
            "spec": {"taints": taints} if taints else {},
            "status": {
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "2000"},
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "2000"},
            },
        }
        with self.client() as c:
            r = c.post("/api/v1/nodes", json=node)
            if r.status_code not in (201, 409):
                raise ClusterError(f"creating the fake node {name} failed: {r.status_code} {r.text}")

            def node_ready() -> bool:
                conditions = c.get(f"/api/v1/nodes/{name}").json().get("status", {}).get("conditions", [])
                return any(x["type"] == "Ready" and x["status"] == "True" for x in conditions)

            self._wait(node_ready, f"kwok's node {name}")

    def failing_node(self) -> str:
        """A second fake node, tainted, run by its own kwok whose stages make every pod there exit 1
        (started on first use). Pods get there with ``FAILING_POD``'s nodeSelector and toleration."""
        if "kwok-failing" in self.procs:
            return FAILING_NODE
        stages = self.dir / "failing-stages.yaml"
        stages.write_text(_FAILING_STAGES)
        self._start(
            "kwok", "--kubeconfig", str(self.kubeconfig), "--manage-single-node", FAILING_NODE,
            "--node-lease-duration-seconds", "40", "--config", str(stages),
            name="kwok-failing",
        )  # fmt: skip
        self._add_node(FAILING_NODE, taints=[FAILING_TAINT])
        return FAILING_NODE

    def _start(self, binary: str, *args: str, name: str | None = None) -> None:
        name = name or binary
        log = (self.dir / f"{name}.log").open("ab")
        try:
            self.procs[name] = subprocess.Popen(
                [str(self.bin / binary), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def _wait(self, check: Any, what: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise ClusterError(
                        f"{name} exited ({p.returncode}) while waiting for {what}:\n{self.log(name)}"
                    )
            try:
                if check():
                    return
            except (httpx.HTTPError, OSError, ValueError) as e:
                last = e
            time.sleep(0.1)
        name = what if what in self.procs else next(reversed(self.procs))
        raise ClusterError(f"{what} not ready in {self.ready_timeout:.0f} s ({last}):\n{self.log(name)}")

    def log(self, name: str, lines: int = 30) -> str:
        path = self.dir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        for p in reversed(list(self.procs.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(list(self.procs.values())):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
