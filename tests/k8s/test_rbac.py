"""The verbs of the shipped ClusterRole that only a Gateway API canary and a stopped analysis use, exercised
under the operator's ServiceAccount: ``get`` and ``update`` on ``httproutes`` (the canary's weights in
the user's HTTPRoute) and ``delete`` on ``jobs`` (a job metric's Job still running when its run is
aborted). Each scenario also runs with that one verb taken out of the role, and must then fail with the
apiserver's refusal of exactly that verb: so the role needs it and the test would notice it gone.

The same runs check the operator's ``TrafficShifted`` and ``ScalingDown`` events (the local control
plane's types and fields), read back by ``gapless events --context``.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.cluster import Cluster
from tests.k8s.operator import (
    GROUP,
    OperatorProcess,
    job_template,
    k8s_rollout,
    namespace,
    rollout_status,
    service_account_kubeconfig,
    wait_for,
    without_verb,
)
from tests.k8s.test_cli_cluster import gapless
from tests.k8s.test_operator import MERGE, crds, create, gateway_api, healthy_at, shipped_role, update

__all__ = ["crds", "gateway_api"]  # module fixtures of test_operator, used here by name

ROUTES = "/apis/gateway.networking.k8s.io/v1/namespaces/{ns}/httproutes"


def _operator_as(cluster: Cluster, ns: str, tmp_path: Path, role: dict[str, Any]) -> OperatorProcess:
    kubeconfig = tmp_path / "sa.kubeconfig"
    service_account_kubeconfig(cluster, ns, kubeconfig, role, role_name=f"gapless-operator-{ns}")
    return OperatorProcess(kubeconfig, namespace=ns, log=tmp_path / "operator.log")


def _refused(op: OperatorProcess, verb: str, resource: str) -> bool:
    """Whether the operator's log shows the apiserver refusing it ``verb`` on ``resource``."""
    pattern = re.compile(rf"cannot {verb} resource \\?\"{resource}\\?\"")
    return bool(pattern.search(op.log.read_text(errors="replace")))


def _events(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    r = gapless("events", name, "--context", "test", "-n", ns, "-o", "json", kubeconfig=cluster.kubeconfig)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def _canary_weight(cluster: Cluster, ns: str, route: str, rollout: str) -> int | None:
    with cluster.client() as c:
        rules = c.get(f"{ROUTES.format(ns=ns)}/{route}").json()["spec"]["rules"]
    for rule in rules:
        for ref in rule.get("backendRefs") or []:
            if ref["name"] == f"{rollout}-canary" and rule.get("name") is None:
                return int(ref.get("weight", 1))
    return None


def _ask(cluster: Cluster, ns: str, name: str, action: str) -> None:
    """Ask the operator to ``promote`` or ``abort`` the current revision, as the CLI's annotation does."""
    h = rollout_status(cluster, ns, name)["currentPodHash"]
    with cluster.client() as c:
        r = c.patch(
            f"{GROUP}/namespaces/{ns}/rollouts/{name}",
            json={"metadata": {"annotations": {f"gapless.dev/{action}": f"{h} at {time.time()}"}}},
            headers=MERGE,
        )
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("missing", [None, "get", "update"])
def test_a_gateway_api_canary_under_the_service_account(
    gateway_api: Cluster, tmp_path: Path, missing: str | None
) -> None:
    """Under the shipped role the canary's weights reach the HTTPRoute (stable 70 / canary 30, then all on
    the new revision), each write a ``TrafficShifted`` event and each stable pod stopped after
    ``scaleDownDelaySeconds`` a ``ScalingDown`` event of revision 1; without ``get`` or ``update`` on
    ``httproutes`` the apiserver refuses the operator that verb and the route never moves."""
    cluster = gateway_api
    ns = namespace(cluster, f"rbac-route-{missing or 'all'}")
    role = shipped_role() if missing is None else without_verb(shipped_role(), "httproutes", missing)
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "shop"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"backendRefs": [{"name": "shop-stable", "port": 80}]}],
        },
    }
    with cluster.client() as c:
        r = c.post(ROUTES.format(ns=ns), json=route)
        assert r.status_code == 201, r.text
    strategy = {
        "canary": {
            "steps": [{"setWeight": 30}, {"pause": {}}],
            "trafficRouting": {"gatewayAPI": {"httpRoute": "shop"}},
            "scaleDownDelaySeconds": 2,
        }
    }
    op = _operator_as(cluster, ns, tmp_path, role)
    try:
        create(cluster, ns, k8s_rollout("shop", "v1", replicas=2, strategy=strategy))
        if missing is not None:
            wait_for(lambda: _refused(op, missing, "httproutes"), 60, f"the refusal of {missing} httproutes")
            assert _canary_weight(cluster, ns, "shop", "shop") is None  # the route was never written
            return
        healthy_at(cluster, ns, "shop", "1", op)
        assert _canary_weight(cluster, ns, "shop", "shop") == 0
        update(cluster, ns, "shop", {"template": k8s_rollout("shop", "v2")["spec"]["template"]})
        wait_for(lambda: _canary_weight(cluster, ns, "shop", "shop") == 30, 60, "canary 30 in the route")
        status = rollout_status(cluster, ns, "shop")
        v1, v2 = status["stablePodHash"], status["currentPodHash"]
        _ask(cluster, ns, "shop", "promote")
        healthy_at(cluster, ns, "shop", "2", op, timeout=60)
        wait_for(lambda: _canary_weight(cluster, ns, "shop", "shop") == 0, 30, "canary 0 in the route")
        with cluster.client() as c:
            wait_for(
                lambda: (
                    not c.get(
                        f"/api/v1/namespaces/{ns}/pods",
                        params={"labelSelector": f"gapless.dev/revision={v1}"},
                    ).json()["items"]
                ),
                60,
                "revision 1's pods gone",
            )
        assert not _refused(op, "get", "httproutes")
        assert not _refused(op, "update", "httproutes")
        assert "Forbidden" not in op.log.read_text(), op.tail()
    finally:
        op.stop()
    events = _events(cluster, ns, "shop")
    shifted = [e for e in events if e["type"] == "TrafficShifted"]
    assert [(e["message"], e["revision"], e["revisionNumber"]) for e in shifted] == [
        ("weights revision 1: 70%, revision 2: 30%", "", None),
        ("weights revision 2: 100%", "", None),
    ]
    down = [e for e in events if e["type"] == "ScalingDown"]
    assert len(down) == 2, events  # both of revision 1's pods, once each
    assert {(e["revision"], e["revisionNumber"]) for e in down} == {(v1, 1)}
    assert all(e["message"].startswith(f"revision 1 ({v1}): stopping shop-{v1}-") for e in down), down
    assert v2 != v1
    # after the delay: the last shift (all traffic on revision 2) at least scaleDownDelaySeconds before
    assert min(_at(e) for e in down) - _at(shifted[-1]) >= 2 - 0.1, (shifted, down)


def _at(event: dict[str, Any]) -> float:
    """An event's time (RFC 3339 in the CLI's JSON) in seconds."""
    return datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()


def test_an_analysis_job_is_deleted_when_its_run_is_aborted_under_the_service_account(
    crds: Cluster, tmp_path: Path
) -> None:
    """A job metric's Job that never finishes (its pod cannot be scheduled) is deleted when the rollout is
    aborted (the run stops), by the operator under the shipped role."""
    ns = namespace(crds, "rbac-job-all")
    op = _operator_as(crds, ns, tmp_path, shipped_role())
    try:
        assert _job_scenario(crds, ns, op) == []
        assert not _refused(op, "delete", "jobs"), op.tail()
    finally:
        op.stop()


def test_without_delete_on_jobs_the_job_of_an_aborted_run_stays(crds: Cluster, tmp_path: Path) -> None:
    """The same scenario with ``delete`` taken out of the role: the apiserver refuses it and the Job stays."""
    ns = namespace(crds, "rbac-job-nodelete")
    op = _operator_as(crds, ns, tmp_path, without_verb(shipped_role(), "jobs", "delete"))
    try:
        left = _job_scenario(crds, ns, op, wait_gone=False)
        wait_for(lambda: _refused(op, "delete", "jobs"), 60, "the refusal of delete jobs")
        assert len(left) == 1
        assert len(_jobs(crds, ns)) == 1
    finally:
        op.stop()


def _jobs(cluster: Cluster, ns: str) -> list[str]:
    with cluster.client() as c:
        items = c.get(
            f"/apis/batch/v1/namespaces/{ns}/jobs", params={"labelSelector": "gapless.dev/rollout=shop"}
        ).json()["items"]
    return [j["metadata"]["name"] for j in items]


def _job_scenario(cluster: Cluster, ns: str, op: OperatorProcess, *, wait_gone: bool = True) -> list[str]:
    """A canary whose analysis step runs a Job that stays Pending; abort it; the Jobs left after."""
    pod = {
        "nodeSelector": {"gapless.dev/no-such-node": "1"},
        "containers": [{"name": "smoke", "image": "example.invalid/smoke:1"}],
    }
    template = job_template("hang", pod)
    with cluster.client() as c:
        assert c.post(f"{GROUP}/namespaces/{ns}/analysistemplates", json=template).status_code == 201
    steps = [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "hang"}]}}]
    strategy = {"canary": {"steps": steps, "abortScaleDownDelaySeconds": 0}}
    create(cluster, ns, k8s_rollout("shop", "v1", replicas=1, strategy=strategy))
    healthy_at(cluster, ns, "shop", "1", op)
    update(cluster, ns, "shop", {"template": k8s_rollout("shop", "v2")["spec"]["template"]})
    wait_for(lambda: _jobs(cluster, ns), 60, "the analysis Job")
    _ask(cluster, ns, "shop", "abort")
    wait_for(lambda: rollout_status(cluster, ns, "shop").get("phase") == "Degraded", 60, "aborted")
    if wait_gone:
        wait_for(lambda: not _jobs(cluster, ns), 60, "the Job deleted")
    return _jobs(cluster, ns)
