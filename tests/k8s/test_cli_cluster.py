"""The rollout verbs against a real cluster: ``gapless VERB --context C -n NS`` as a real process, with
the operator as a real process reconciling what they write.

Each test has its own namespace and its own operator. The CLI finds the cluster through ``$KUBECONFIG``
(the test cluster's admin kubeconfig, context ``test``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.cluster import Cluster
from tests.k8s.operator import GROUP, OperatorProcess, k8s_rollout, namespace, wait_for
from tests.k8s.test_crds import install


def gapless(
    *args: str, kubeconfig: Path | None = None, timeout: float = 90, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    extra = {"KUBECONFIG": str(kubeconfig)} if kubeconfig is not None else {}
    return subprocess.run(
        [sys.executable, "-m", "gapless", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ | {"COLUMNS": "80", "NO_COLOR": "1"} | extra | (env or {}),
        check=False,
    )


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Cluster:
    install(cluster)
    return cluster


@pytest.fixture
def ns(crds: Cluster, request: pytest.FixtureRequest) -> str:
    name = "cli-" + request.node.name.replace("_", "-")[5:45].strip("-")
    return namespace(crds, name)


@pytest.fixture
def operator(crds: Cluster, ns: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    op = OperatorProcess(crds.kubeconfig, namespace=ns, log=tmp_path / "operator.log")
    yield op
    op.stop()


def write(tmp_path: Path, doc: dict[str, Any], name: str = "rollout.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def get_rollout(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    with cluster.client() as c:
        return dict(c.get(f"{GROUP}/namespaces/{ns}/rollouts/{name}").json())


def status_json(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    r = gapless("status", name, "--context", "test", "-n", ns, "-o", "json", kubeconfig=cluster.kubeconfig)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def test_bad_cluster_options_exit_2_naming_what_is_wrong(tmp_path: Path) -> None:
    """An unknown context, a kubeconfig that is missing or is not one, --state-dir with -n: exit 2 naming
    it, before any request (the server in the kubeconfig does not exist)."""
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n"
        "users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: prod\n  context: {cluster: c, user: u}\n"
        "current-context: prod\n"
    )
    r = gapless("status", "shop", "--context", "staging", kubeconfig=config)
    assert r.returncode == 2, r.stderr
    assert "'staging'" in r.stderr
    assert "known: prod" in r.stderr
    r = gapless("promote", "shop", "--context", "x", kubeconfig=tmp_path / "nope")
    assert r.returncode == 2, r.stderr
    assert str(tmp_path / "nope") in r.stderr
    bad = tmp_path / "bad"
    bad.write_text("this: [is not a kubeconfig\n")
    r = gapless("pause", "shop", "-n", "default", kubeconfig=bad)
    assert r.returncode == 2, r.stderr
    assert str(bad) in r.stderr
    r = gapless("abort", "shop", "-n", "default", "--state-dir", str(tmp_path), kubeconfig=config)
    assert r.returncode == 2, r.stderr
    assert "--state-dir" in r.stderr
    # A cluster that does not answer: exit 1, naming the server (as a control plane that is not running).
    r = gapless("status", "shop", "-n", "default", kubeconfig=config)
    assert r.returncode == 1, r.stderr
    assert "https://127.0.0.1:1" in r.stderr


@pytest.mark.timeout(300)  # some 30 CLI runs against the cluster: 69 s alone, over 120 s at load 15
def test_rolling_update_apply_status_history_pause_undo_events(
    crds: Cluster, ns: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    kc = crds.kubeconfig
    on = ("--context", "test", "-n", ns)
    v1 = k8s_rollout(
        "shop", "v1", replicas=2, strategy={"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    )
    r = gapless(
        "apply", "-f", str(write(tmp_path, v1)), *on, "--change-cause", "first", "--wait", kubeconfig=kc
    )
    assert r.returncode == 0, r.stderr + operator.tail()
    assert "shop configured (generation 1, template " in r.stderr
    assert r.stderr.splitlines()[-1].startswith("shop Healthy  revision 1  updated 2/2")
    first = get_rollout(crds, ns, "shop")["status"]["currentPodHash"]
    # Applying the same file again changes nothing.
    r = gapless("apply", "-f", str(tmp_path / "rollout.yaml"), *on, kubeconfig=kc)
    assert r.returncode == 0, r.stderr
    assert "shop unchanged (generation 1" in r.stderr

    st = status_json(crds, ns, "shop")
    assert (st["phase"], st["currentRevision"], st["availableReplicas"], st["replicas"]) == (
        "Healthy",
        1,
        2,
        2,
    )
    assert len(st["instances"]) == 2
    assert all(i["ready"] and i["revision"] == 1 for i in st["instances"])
    r = gapless("status", "shop", *on, kubeconfig=kc)
    assert r.returncode == 0, r.stderr
    assert "shop Healthy" in r.stdout
    assert f"namespace {ns}" in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
    r = gapless("status", *on, "-o", "yaml", kubeconfig=kc)
    assert r.returncode == 0, r.stderr
    assert [s["name"] for s in yaml.safe_load(r.stdout)] == ["shop"]

    v2 = k8s_rollout(
        "shop", "v2", replicas=2, strategy={"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    )
    r = gapless(
        "apply", "-f", str(write(tmp_path, v2)), *on, "--change-cause", "second", "--wait", kubeconfig=kc
    )
    assert r.returncode == 0, r.stderr + operator.tail()
    assert "generation 2" in r.stderr
    r = gapless("history", "shop", *on, "-o", "json", kubeconfig=kc)
    assert r.returncode == 0, r.stderr
    items = json.loads(r.stdout)
    assert [(i["number"], i["changeCause"], i["phase"]) for i in items] == [
        (1, "first", "complete"),
        (2, "second", "complete"),
    ]
    assert items[0]["hash"] == first
    assert items[0]["template"]["image"] == "example.invalid/shop:v1"
    r = gapless("history", "shop", *on, kubeconfig=kc)
    assert r.returncode == 0, r.stdout
    assert "second" in r.stdout, r.stdout
    assert "first" in r.stdout, r.stdout
    r = gapless("history", "shop", *on, "--revision", "7", kubeconfig=kc)
    assert r.returncode == 1
    assert "revision 7" in r.stderr
    assert "known: 1, 2" in r.stderr

    # pause / resume write spec.paused; a second pause says so and changes nothing.
    r = gapless("pause", "shop", *on, kubeconfig=kc)
    assert (r.returncode, r.stderr.strip()) == (0, "shop paused")
    assert get_rollout(crds, ns, "shop")["spec"]["paused"] is True
    r = gapless("pause", "shop", *on, kubeconfig=kc)
    assert (r.returncode, r.stderr.strip()) == (0, "shop was already paused")
    r = gapless("wait", "shop", *on, "--for", "paused", "--timeout", "20s", kubeconfig=kc)
    assert r.returncode == 0, r.stderr
    r = gapless("resume", "shop", *on, kubeconfig=kc)
    assert (r.returncode, r.stderr.strip()) == (0, "shop resumed")
    assert get_rollout(crds, ns, "shop")["spec"]["paused"] is False

    # Refusals as locally: nothing to promote on a rolling update (1); unknown revision or rollout (2).
    r = gapless("promote", "shop", *on, kubeconfig=kc)
    assert r.returncode == 1, r.stderr
    assert "nothing to promote" in r.stderr, r.stderr
    r = gapless("undo", "shop", *on, "--to-revision", "9", kubeconfig=kc)
    assert r.returncode == 2, r.stderr
    assert "revision 9" in r.stderr, r.stderr
    r = gapless("status", "nosuch", *on, kubeconfig=kc)
    assert r.returncode == 2, r.stderr
    assert "'nosuch' not found" in r.stderr, r.stderr
    assert ns in r.stderr, r.stderr
    before = get_rollout(crds, ns, "shop")["metadata"]["resourceVersion"]
    bad = k8s_rollout("shop", "v3", replicas=2)
    del bad["spec"]["template"]["image"]
    r = gapless("apply", "-f", str(write(tmp_path, bad, "bad.yaml")), *on, kubeconfig=kc)
    assert r.returncode == 2, r.stderr
    assert "spec.template.image" in r.stderr, r.stderr
    assert get_rollout(crds, ns, "shop")["metadata"]["resourceVersion"] == before  # untouched

    # undo: back to revision 1's template (now revision 3), the same ReplicaSet as before.
    r = gapless("undo", "shop", *on, "--wait", "--timeout", "60s", kubeconfig=kc)
    assert r.returncode == 0, r.stderr + operator.tail()
    assert "shop rolling back to the template of revision 1 (now revision 3)" in r.stderr
    obj = get_rollout(crds, ns, "shop")
    assert obj["status"]["currentPodHash"] == first
    assert obj["metadata"]["annotations"]["gapless.dev/change-cause"] == "first"
    st = status_json(crds, ns, "shop")
    assert (st["phase"], st["currentRevision"]) == ("Healthy", 3)
    r = gapless("undo", "shop", *on, "--to-revision", "3", kubeconfig=kc)
    assert (r.returncode, r.stderr.strip()) == (0, "shop already runs revision 3")

    r = gapless("events", "shop", *on, "-o", "json", kubeconfig=kc)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    reasons = [e["type"] for e in events]
    assert {"RevisionCreated", "RolloutComplete"} <= set(reasons), reasons
    assert all(e["rollout"] == "shop" for e in events)
    r = gapless("analysis", "shop", *on, "-o", "json", kubeconfig=kc)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"name": "shop", "items": []}  # the operator runs no analysis yet
    r = gapless("events", "shop", *on, kubeconfig=kc)
    assert r.returncode == 0
    assert "RolloutComplete" in r.stdout


def test_canary_promote_full_abort_retry(
    crds: Cluster, ns: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    """Canary steps with two indefinite pauses: ``promote`` passes one pause only (the operator acts on a
    request once), ``promote --full`` skips the rest; ``abort`` puts traffic back on stable and ``wait``
    then exits 1; ``retry`` starts the revision again from its first step."""
    kc = crds.kubeconfig
    on = ("--context", "test", "-n", ns)
    steps = [
        {"setWeight": 25},
        {"pause": {}},
        {"setWeight": 50},
        {"pause": {}},
        {"setWeight": 75},
        {"pause": {}},
    ]
    strategy = {"canary": {"steps": steps, "scaleDownDelaySeconds": 0}}
    r = gapless(
        "apply",
        "-f",
        str(write(tmp_path, k8s_rollout("can", "v1", replicas=4, strategy=strategy))),
        *on,
        "--wait",
        kubeconfig=kc,
    )
    assert r.returncode == 0, r.stderr + operator.tail()
    r = gapless(
        "apply",
        "-f",
        str(write(tmp_path, k8s_rollout("can", "v2", replicas=4, strategy=strategy))),
        *on,
        "--wait",
        "--timeout",
        "60s",
        kubeconfig=kc,
    )
    assert r.returncode == 0, r.stderr + operator.tail()
    assert "can waits for `gapless promote can`" in r.stderr
    st = status_json(crds, ns, "can")
    assert (st["phase"], st["strategy"]["stepIndex"], st["strategy"]["waitingForPromote"]) == (
        "Paused",
        1,
        True,
    )

    r = gapless("promote", "can", *on, kubeconfig=kc)
    assert (r.returncode, r.stderr.strip()) == (0, "can: promoted to the next step"), r.stderr

    def at_step(index: int) -> dict[str, Any] | None:
        s = status_json(crds, ns, "can")
        return s if s["strategy"].get("stepIndex") == index and s["phase"] == "Paused" else None

    wait_for(lambda: at_step(3), 30, "the second pause")
    time.sleep(1.0)
    assert at_step(3), "one promote passed more than one pause"
    r = gapless("promote", "can", *on, "--full", kubeconfig=kc)
    assert (r.returncode, r.stderr.strip()) == (0, "can: full promotion")
    r = gapless("wait", "can", *on, "--timeout", "60s", kubeconfig=kc)
    assert r.returncode == 0, r.stderr + operator.tail()
    st = status_json(crds, ns, "can")
    assert (st["phase"], st["currentRevision"]) == ("Healthy", 2)

    # Abort v3 at its first pause; retry starts it again.
    r = gapless(
        "apply",
        "-f",
        str(write(tmp_path, k8s_rollout("can", "v3", replicas=4, strategy=strategy))),
        *on,
        "--wait",
        "--timeout",
        "60s",
        kubeconfig=kc,
    )
    assert r.returncode == 0, r.stderr + operator.tail()
    r = gapless("retry", "can", *on, kubeconfig=kc)
    assert r.returncode == 1, r.stderr
    assert "neither aborted nor failed" in r.stderr, r.stderr
    r = gapless("abort", "can", *on, kubeconfig=kc)
    assert (r.returncode, r.stderr.strip()) == (0, "can: aborted, all traffic goes to the stable revision")
    r = gapless("wait", "can", *on, "--timeout", "30s", kubeconfig=kc)
    assert r.returncode == 1, r.stderr
    assert "rollout aborted" in r.stderr, r.stderr
    st = status_json(crds, ns, "can")
    assert st["aborted"]
    assert st["phase"] == "Degraded"
    r = gapless("promote", "can", *on, kubeconfig=kc)
    assert r.returncode == 1, r.stderr
    assert "was aborted" in r.stderr, r.stderr
    r = gapless("retry", "can", *on, "--wait", "--timeout", "60s", kubeconfig=kc)
    assert r.returncode == 0, r.stderr + operator.tail()
    assert "can: revision 3 starts again" in r.stderr
    st = status_json(crds, ns, "can")
    assert (st["aborted"], st["phase"], st["strategy"]["stepIndex"]) == (False, "Paused", 1)
    r = gapless("events", "can", *on, "-o", "json", kubeconfig=kc)
    reasons = [json.loads(line)["type"] for line in r.stdout.splitlines()]
    assert {"PromoteRequested", "Aborted", "Retry"} <= set(reasons), reasons


def test_status_watch_follows_changes_by_watch(
    crds: Cluster, ns: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    """``status --watch -o json`` into a pipe writes one document per change, ending with Healthy at the
    new revision."""
    kc = crds.kubeconfig
    on = ("--context", "test", "-n", ns)
    doc = k8s_rollout("w", "v1", replicas=2)
    assert gapless("apply", "-f", str(write(tmp_path, doc)), *on, "--wait", kubeconfig=kc).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "gapless", "status", "w", *on, "--watch", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"KUBECONFIG": str(kc)},
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert (first["phase"], first["currentRevision"]) == ("Healthy", 1)
        assert (
            gapless(
                "apply", "-f", str(write(tmp_path, k8s_rollout("w", "v2", replicas=2))), *on, kubeconfig=kc
            ).returncode
            == 0
        )
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            doc = json.loads(proc.stdout.readline())
            seen.append((doc["phase"], doc["currentRevision"]))
            if seen[-1] == ("Healthy", 2):
                break
        assert seen[-1] == ("Healthy", 2), seen
        assert ("Progressing", 2) in seen, seen
    finally:
        proc.kill()
        proc.communicate(timeout=10)  # reads and closes both pipes


def test_a_write_on_a_stale_read_meets_a_409_and_is_retried_on_a_fresh_read(
    crds: Cluster, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's writes carry the resourceVersion read: a Rollout changed after the read gets a 409 from
    the real apiserver, and the verb reads it again and writes on the fresh copy."""
    from gapless.cli.kube import connect

    with crds.client() as c:
        r = c.post(f"{GROUP}/namespaces/{ns}/rollouts", json=k8s_rollout("shop", "v1", replicas=1))
        assert r.status_code == 201, r.text
        stale = r.json()
        r = c.patch(
            f"{GROUP}/namespaces/{ns}/rollouts/shop",
            json={"spec": {"replicas": 2}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text
    monkeypatch.setenv("KUBECONFIG", str(crds.kubeconfig))
    kube = connect("test", ns)
    reads: list[str] = []
    fresh_get = kube.get

    def get(name: str) -> dict[str, Any]:
        reads.append(name)
        return stale if len(reads) == 1 else fresh_get(name)

    monkeypatch.setattr(kube, "get", get)
    try:
        assert kube.set_paused("shop", True)["changed"] is True
    finally:
        kube.close()
    assert len(reads) == 2  # the stale read, then a fresh one after the 409
    obj = get_rollout(crds, ns, "shop")
    assert (obj["spec"]["paused"], obj["spec"]["replicas"]) == (True, 2)  # the other change kept


def test_the_cli_names_what_the_operator_names() -> None:
    """gapless.cli.kube keeps its own copy of the operator's names (to import no pydantic model)."""
    from gapless.cli import kube
    from gapless.platform.kubernetes import client, manifests
    from gapless.spec import models

    assert kube.FIELD_MANAGER == client.FIELD_MANAGER
    assert kube.RolloutResource is client.RolloutResource
    assert kube.CHANGE_CAUSE_ANNOTATION == models.CHANGE_CAUSE_ANNOTATION
    for name in (
        "LABEL_ROLLOUT",
        "LABEL_REVISION",
        "NUMBER_ANNOTATION",
        "PROMOTE_ANNOTATION",
        "ABORT_ANNOTATION",
        "RETRY_ANNOTATION",
        "TEMPLATE_ANNOTATION",
    ):
        assert getattr(kube, name) == getattr(manifests, name), name
