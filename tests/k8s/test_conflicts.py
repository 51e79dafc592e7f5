"""A status write that meets a 409 on the real apiserver: counted, the Rollout read again, the pass rerun."""

from __future__ import annotations

import copy

import pytest

from gapless.controller.kube_operator import Operator
from gapless.platform.kubernetes.client import KubeApi, load_config
from tests.k8s.cluster import Cluster
from tests.k8s.operator import GROUP, k8s_rollout, namespace
from tests.k8s.test_crds import install

MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.mark.asyncio
async def test_a_stale_rollout_gets_a_409_then_a_fresh_read_and_a_new_pass(cluster: Cluster) -> None:
    install(cluster)
    ns = namespace(cluster, "conflicts")
    with cluster.client() as c:
        r = c.post(f"{GROUP}/namespaces/{ns}/rollouts", json=k8s_rollout("shop", "v1", replicas=1))
        assert r.status_code == 201, r.text
        created = r.json()
        # Someone else changes the Rollout after the operator's cache saw it.
        r = c.patch(f"{GROUP}/namespaces/{ns}/rollouts/shop", json={"spec": {"replicas": 2}}, headers=MERGE)
        assert r.status_code == 200, r.text
    api = KubeApi(load_config(cluster.kubeconfig), namespace=ns)
    try:
        op = Operator(api, namespace=ns)
        op.rollouts.items[(ns, "shop")] = copy.deepcopy(created)  # the stale copy
        await op.reconcile((ns, "shop"))
        assert op.conflicts == 1
        fresh = op.rollouts.items[(ns, "shop")]
        assert fresh["spec"]["replicas"] == 2  # read again
        assert (ns, "shop") in op._dirty  # and queued for another pass
        await op.reconcile((ns, "shop"))
        assert op.conflicts == 1
        stored = await api.get_rollout(ns, "shop")
        assert stored is not None
        assert stored["status"]["observedGeneration"] == 2
        assert stored["status"]["phase"] == "Progressing"
    finally:
        await api.close()
