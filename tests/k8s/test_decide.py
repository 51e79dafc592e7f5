"""Rules of the operator's reconcile pass (``decide``), checked on a simulated cluster without an apiserver.

A small simulation stands in for the ReplicaSet controller and the kubelet (named as what it is: a
double for these rule tests only; tests/k8s/test_operator.py runs the real ones): it creates and deletes
pods to match each ReplicaSet's ``spec.replicas`` (pods marked with the lowest deletion cost first) and
makes pods ready at random, and often lags behind the operator, which then passes again on the same
pods (as when a pod's watch event arrives before the ReplicaSet controller has acted). Whatever the replica count, maxSurge, maxUnavailable and readiness order:
the pods never exceed replicas + maxSurge, available pods never drop below replicas - maxUnavailable,
each revision has exactly one ReplicaSet, and the update completes.
"""

from __future__ import annotations

import time
from random import Random
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gapless.controller.kubernetes import DELETION_COST, decide
from gapless.core.errors import SpecError
from gapless.platform.kubernetes.manifests import LABEL_REVISION, LABEL_ROLLOUT
from gapless.spec.load import validate_rollout
from gapless.strategies.replicas import resolve_fenceposts
from tests.k8s.operator import k8s_rollout


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class SimCluster:
    """ReplicaSets and Pods as dicts; ``tick`` does what the ReplicaSet controller and kubelet would."""

    def __init__(self, rng: Random, now: float) -> None:
        self.rng = rng
        self.now = now
        self.rs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.created = 0

    def apply(self, rs: dict[str, Any]) -> None:
        name = rs["metadata"]["name"]
        old = self.rs.get(name)
        self.rs[name] = rs | {"status": (old or {}).get("status", {})}

    def pods_of(self, revision: str) -> list[dict[str, Any]]:
        return [p for p in self.pods.values() if p["metadata"]["labels"][LABEL_REVISION] == revision]

    def tick(self) -> None:
        for p in [p for p in self.pods.values() if p["metadata"].get("deletionTimestamp")]:
            if self.rng.random() < 0.5:
                del self.pods[p["metadata"]["name"]]
        for rs in self.rs.values():
            revision = rs["metadata"]["labels"][LABEL_REVISION]
            live = [p for p in self.pods_of(revision) if not p["metadata"].get("deletionTimestamp")]
            want = rs["spec"]["replicas"]
            for _ in range(want - len(live)):
                self.created += 1
                name = f"{rs['metadata']['name']}-{self.created}"
                self.pods[name] = {
                    "metadata": {
                        "name": name,
                        "labels": {LABEL_ROLLOUT: "shop", LABEL_REVISION: revision},
                        "creationTimestamp": _iso(self.now),
                        "annotations": {},
                    },
                    "status": {"phase": "Pending", "conditions": []},
                }
            if len(live) > want:

                def rank(p: dict[str, Any]) -> tuple[int, int]:
                    marked = 0 if p["metadata"]["annotations"].get(DELETION_COST) else 1
                    return (marked, 1 if _ready(p) else 0)

                for p in sorted(live, key=rank)[: len(live) - want]:
                    p["metadata"]["deletionTimestamp"] = _iso(self.now)
        for p in self.pods.values():
            if not _ready(p) and not p["metadata"].get("deletionTimestamp") and self.rng.random() < 0.6:
                p["status"] = {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _iso(self.now)}],
                }
        self.now += 1.0

    def settled(self) -> bool:
        """Every ReplicaSet has exactly its pods, all ready, none terminating."""
        if any(p["metadata"].get("deletionTimestamp") or not _ready(p) for p in self.pods.values()):
            return False
        return all(
            len(self.pods_of(r["metadata"]["labels"][LABEL_REVISION])) == r["spec"]["replicas"]
            for r in self.rs.values()
        )

    def mark(self, pod: str) -> None:
        if pod in self.pods:
            self.pods[pod]["metadata"]["annotations"][DELETION_COST] = "-1000"


def _rng(seed: int) -> Random:
    return Random(seed)  # noqa: S311 -- a seeded simulation, not secrets


def _ready(p: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))


def _obj(doc: dict[str, Any], status: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    meta = doc["metadata"] | {"namespace": "ns", "uid": "u-1", "generation": generation}
    return doc | {"metadata": meta, "status": status or {}}


def run_until_settled(
    sim: SimCluster,
    obj: dict[str, Any],
    steps: int,
    check: Any = None,
    events: list[tuple[str, str, bool]] | None = None,
) -> dict[str, Any]:
    """Pass and let the simulated cluster act until the rollout is Healthy and still; ``events``
    collects the events of every pass."""
    for _ in range(steps):
        d = decide(obj, list(sim.rs.values()), list(sim.pods.values()), sim.now)
        if events is not None:
            events.extend(d.events)
        for pod in d.mark_pods:
            sim.mark(pod)
        for rs in d.replica_sets:
            sim.apply(rs)
        for name in d.delete_replica_sets:
            sim.rs.pop(name, None)
        obj = obj | {"status": d.status}
        if check is not None:
            check(sim)
        if d.status.get("phase") == "Healthy" and not d.replica_sets and not d.mark_pods and sim.settled():
            return obj
        if sim.rng.random() < 0.5:  # else the operator passes again before the cluster has acted
            sim.tick()
        if check is not None:
            check(sim)
    raise AssertionError(f"not settled after {steps} steps: {obj['status']}")


@settings(deadline=None, max_examples=60)
@given(
    replicas=st.integers(1, 8),
    surge=st.one_of(st.integers(0, 3), st.sampled_from(["25%", "50%", "100%"])),
    unavailable=st.one_of(st.integers(0, 3), st.sampled_from(["0%", "25%", "50%"])),
    seed=st.integers(0, 2**16),
)
def test_a_rolling_update_stays_within_its_bounds_and_completes(
    replicas: int, surge: int | str, unavailable: int | str, seed: int
) -> None:
    """Pods <= replicas + maxSurge (terminating ones included); available >= replicas - maxUnavailable."""
    strategy = {"rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}
    try:
        validate_rollout(k8s_rollout("shop", "v1", replicas=replicas, strategy=strategy))
    except SpecError:
        assume(False)  # both zero: refused by the spec itself
    sim = SimCluster(_rng(seed), 1_800_000_000.0)
    obj = run_until_settled(sim, _obj(k8s_rollout("shop", "v1", replicas=replicas, strategy=strategy)), 200)
    max_surge, max_unavailable = resolve_fenceposts(surge, unavailable, replicas)
    assert len(sim.pods) == replicas

    def bounds(s: SimCluster) -> None:
        assert len(s.pods) <= replicas + max_surge, (len(s.pods), replicas, max_surge)
        available = [p for p in s.pods.values() if _ready(p) and not p["metadata"].get("deletionTimestamp")]
        assert len(available) >= replicas - max_unavailable, (len(available), replicas, max_unavailable)

    v2 = k8s_rollout("shop", "v2", replicas=replicas, strategy=strategy)
    first = obj["status"]["currentPodHash"]
    old_pods = set(sim.pods)
    events: list[tuple[str, str, bool]] = []
    obj = run_until_settled(sim, _obj(v2, obj["status"], 2), 600, bounds, events)
    target = obj["status"]["currentPodHash"]
    assert obj["status"]["currentRevision"] == "2"
    # Each of revision 1's pods stopped once, as the local ScalingDown event names it.
    stopped = [m for kind, m, _ in events if kind == "ScalingDown"]
    assert all(m.startswith(f"revision 1 ({first}): stopping ") for m in stopped), stopped
    assert sorted(m.split()[4].rstrip(":") for m in stopped) == sorted(old_pods)
    assert {p["metadata"]["labels"][LABEL_REVISION] for p in sim.pods.values()} == {target}
    assert len(sim.rs) == 2
    assert sorted(r["spec"]["replicas"] for r in sim.rs.values()) == [0, replicas]


@settings(deadline=None, max_examples=20)
@given(limit=st.integers(0, 3), updates=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_revision_history_limit_keeps_that_many_old_replica_sets(limit: int, updates: int, seed: int) -> None:
    """After N updates, the current ReplicaSet and at most revisionHistoryLimit scaled-down ones remain."""
    sim = SimCluster(_rng(seed), 1_800_000_000.0)
    obj = _obj(k8s_rollout("shop", "v0", replicas=2, revisionHistoryLimit=limit))
    for n in range(updates + 1):
        doc = k8s_rollout("shop", f"v{n}", replicas=2, revisionHistoryLimit=limit)
        obj = run_until_settled(sim, _obj(doc, obj.get("status"), n + 1), 200)
    assert len(sim.rs) == 1 + min(limit, updates)
    assert obj["status"]["currentRevision"] == str(updates + 1)
    numbers = sorted(
        int(r["metadata"]["annotations"]["gapless.dev/revision-number"]) for r in sim.rs.values()
    )
    assert numbers == list(range(updates + 2 - len(numbers), updates + 2))


def test_a_paused_rollout_changes_nothing_until_resumed() -> None:
    """spec.paused holds a rollout mid-way: no ReplicaSet is scaled; resuming completes it."""
    sim = SimCluster(_rng(1), 1_800_000_000.0)
    obj = run_until_settled(sim, _obj(k8s_rollout("shop", "v1")), 100)
    obj = _obj(k8s_rollout("shop", "v2"), obj["status"], 2)
    d = decide(obj, list(sim.rs.values()), list(sim.pods.values()), sim.now)
    for rs in d.replica_sets:
        sim.apply(rs)
    obj = obj | {"status": d.status}
    sim.tick()
    paused = _obj(k8s_rollout("shop", "v2", paused=True), obj["status"], 3)
    before = {n: r["spec"]["replicas"] for n, r in sim.rs.items()}
    kinds: list[str] = []
    for _ in range(10):
        d = decide(paused, list(sim.rs.values()), list(sim.pods.values()), sim.now)
        assert d.replica_sets == []
        assert d.mark_pods == []
        kinds += [e[0] for e in d.events]
        paused = paused | {"status": d.status}
        sim.tick()
    assert paused["status"]["phase"] == "Paused"
    assert kinds == ["Paused"]  # once, on the pass that first sees spec.paused
    assert {n: r["spec"]["replicas"] for n, r in sim.rs.items()} == before
    events: list[tuple[str, str, bool]] = []
    done = run_until_settled(sim, _obj(k8s_rollout("shop", "v2"), paused["status"], 4), 100, events=events)
    assert done["status"]["currentRevision"] == "2"
    assert [e[0] for e in events].count("Resumed") == 1


def test_the_progress_deadline_fails_the_revision_and_restores_the_previous_one() -> None:
    """A revision whose pods never become ready fails at progressDeadlineSeconds; stable is back to full size."""
    sim = SimCluster(_rng(2), 1_800_000_000.0)
    obj = run_until_settled(sim, _obj(k8s_rollout("shop", "v1", replicas=3)), 100)
    stable = obj["status"]["currentPodHash"]
    sim.rng = _rng(3)
    obj = _obj(k8s_rollout("shop", "v2", replicas=3, progressDeadlineSeconds=5), obj["status"], 2)
    never_ready = SimCluster.tick

    def tick_without_readiness(self: SimCluster) -> None:
        keep = {n for n, p in self.pods.items() if _ready(p)}
        never_ready(self)
        for n, p in self.pods.items():
            if n not in keep and p["metadata"]["labels"][LABEL_REVISION] != stable:
                p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}

    sim.tick = tick_without_readiness.__get__(sim)  # type: ignore[method-assign]
    for _ in range(30):
        d = decide(obj, list(sim.rs.values()), list(sim.pods.values()), sim.now)
        for pod in d.mark_pods:
            sim.mark(pod)
        for rs in d.replica_sets:
            sim.apply(rs)
        obj = obj | {"status": d.status}
        sim.tick()
    assert obj["status"]["phase"] == "Degraded"
    assert "made no progress" in obj["status"]["message"]
    live = [p for p in sim.pods.values() if not p["metadata"].get("deletionTimestamp")]
    assert {p["metadata"]["labels"][LABEL_REVISION] for p in live} == {stable}
    assert len(live) == 3


def test_going_back_to_an_earlier_template_reuses_its_replica_set_as_the_newest_revision() -> None:
    """v1 -> v2 -> v1 again (an undo): no third ReplicaSet, v1's is scaled back up, numbered 3."""
    sim = SimCluster(_rng(4), 1_800_000_000.0)
    obj = run_until_settled(sim, _obj(k8s_rollout("shop", "v1", replicas=3)), 100)
    v1 = obj["status"]["currentPodHash"]
    obj = run_until_settled(sim, _obj(k8s_rollout("shop", "v2", replicas=3), obj["status"], 2), 200)
    obj = run_until_settled(sim, _obj(k8s_rollout("shop", "v1", replicas=3), obj["status"], 3), 200)
    assert obj["status"]["currentPodHash"] == v1
    assert obj["status"]["currentRevision"] == "3"
    assert len(sim.rs) == 2
    assert {p["metadata"]["labels"][LABEL_REVISION] for p in sim.pods.values()} == {v1}
    rs = next(r for r in sim.rs.values() if r["metadata"]["labels"][LABEL_REVISION] == v1)
    assert rs["metadata"]["annotations"]["gapless.dev/revision-number"] == "3"


def _active(d: Any) -> str:
    return next(s for s in d.services if s["metadata"]["name"].endswith("-stable"))["spec"]["selector"][
        LABEL_REVISION
    ]


def _preview(d: Any) -> str | None:
    found = [s for s in d.services if s["metadata"]["name"].endswith("-preview")]
    return found[0]["spec"]["selector"][LABEL_REVISION] if found else None


@settings(deadline=None, max_examples=25)
@given(replicas=st.integers(1, 5), seed=st.integers(0, 2**16), manual=st.booleans())
def test_blue_green_switches_the_active_service_once_with_green_fully_available(
    replicas: int, seed: int, manual: bool
) -> None:
    """The active Service selects blue until every green pod is available and then green, in one change;
    blue is still at full size at the switch; the preview Service selects green throughout. With automatic
    promotion off, nothing switches until the promote annotation names green."""
    bg: dict[str, Any] = {"blueGreen": {"scaleDownDelaySeconds": 5}}
    if manual:
        bg["blueGreen"]["autoPromotionEnabled"] = False
    sim = SimCluster(_rng(seed), 1_800_000_000.0)
    obj = run_until_settled(sim, _obj(k8s_rollout("shop", "v1", replicas=replicas, strategy=bg)), 100)
    blue = obj["status"]["currentPodHash"]
    doc = k8s_rollout("shop", "v2", replicas=replicas, strategy=bg)
    obj = _obj(doc, obj["status"], 2)
    actives: list[str] = []
    green = ""
    for step in range(400):
        if manual and step == 60:
            doc["metadata"]["annotations"] = {"gapless.dev/promote": green}
            obj = _obj(doc, obj["status"], 3)
        d = decide(obj, list(sim.rs.values()), list(sim.pods.values()), sim.now)
        green = d.status["currentPodHash"]
        for pod in d.mark_pods:
            sim.mark(pod)
        for rs in d.replica_sets:
            sim.apply(rs)
        obj = obj | {"status": d.status}
        assert _preview(d) == green
        if not actives or actives[-1] != _active(d):
            actives.append(_active(d))
            if _active(d) == green:
                live = [p for p in sim.pods.values() if not p["metadata"].get("deletionTimestamp")]
                by_rev = [p["metadata"]["labels"][LABEL_REVISION] for p in live if _ready(p)]
                assert by_rev.count(green) == replicas
                assert by_rev.count(blue) == replicas
                assert not manual or step >= 60
        if d.status["phase"] == "Healthy" and sim.settled() and not d.replica_sets:
            break
        sim.tick()
    assert actives == [blue, green]
    assert obj["status"]["phase"] == "Healthy"
    assert {p["metadata"]["labels"][LABEL_REVISION] for p in sim.pods.values()} == {green}


@settings(deadline=None, max_examples=25)
@given(replicas=st.integers(2, 6), weight=st.integers(1, 99), seed=st.integers(0, 2**16))
def test_a_basic_canary_scales_the_canary_by_its_weight_and_waits_at_a_pause(
    replicas: int, weight: int, seed: int
) -> None:
    """setWeight W starts ceil(W% of replicas) canary pods beside stable at full size; an indefinite pause
    holds until the promote annotation names the canary; NAME-stable selects stable until completion;
    the status gives the weight the pods make."""
    canary = {"canary": {"steps": [{"setWeight": weight}, {"pause": {}}], "scaleDownDelaySeconds": 0}}
    sim = SimCluster(_rng(seed), 1_800_000_000.0)
    obj = run_until_settled(sim, _obj(k8s_rollout("shop", "v1", replicas=replicas, strategy=canary)), 100)
    stable = obj["status"]["currentPodHash"]
    doc = k8s_rollout("shop", "v2", replicas=replicas, strategy=canary)
    obj = _obj(doc, obj["status"], 2)
    want = max(1, -(-replicas * weight // 100))
    for _ in range(60):
        d = decide(obj, list(sim.rs.values()), list(sim.pods.values()), sim.now)
        for rs in d.replica_sets:
            sim.apply(rs)
        for pod in d.mark_pods:
            sim.mark(pod)
        obj = obj | {"status": d.status}
        assert _active(d) == stable
        sim.tick()
    live = [p for p in sim.pods.values() if not p["metadata"].get("deletionTimestamp")]
    revs = [p["metadata"]["labels"][LABEL_REVISION] for p in live]
    canary_hash = obj["status"]["currentPodHash"]
    assert revs.count(canary_hash) == want
    assert revs.count(stable) == replicas
    assert obj["status"]["weights"].startswith(
        f"canary {round(100 * want / (want + replicas))}% by replica ratio"
    )
    doc["metadata"]["annotations"] = {"gapless.dev/promote": canary_hash}
    done = run_until_settled(sim, _obj(doc, obj["status"], 3), 300)
    assert done["status"]["currentPodHash"] == canary_hash
    assert {p["metadata"]["labels"][LABEL_REVISION] for p in sim.pods.values()} == {canary_hash}


def test_a_retry_request_restarts_a_failed_revision_once() -> None:
    """``gapless.dev/retry: HASH at TIME`` makes a revision failed by its progress deadline progress again
    (event Retry); the same value in a later pass is not acted on again."""
    sim = SimCluster(_rng(5), 1_800_000_000.0)
    obj = run_until_settled(sim, _obj(k8s_rollout("shop", "v1", replicas=2)), 100)
    doc = k8s_rollout("shop", "v2", replicas=2, progressDeadlineSeconds=5)
    obj = _obj(doc, obj["status"], 2)
    for _ in range(10):  # no tick: v2's pods never come, so the deadline passes
        d = decide(obj, list(sim.rs.values()), list(sim.pods.values()), sim.now)
        for rs in d.replica_sets:
            sim.apply(rs)
        obj = obj | {"status": d.status}
        sim.now += 1.0
    target = obj["status"]["currentPodHash"]
    assert obj["status"]["revisions"][target]["phase"] == "failed"
    value = f"{target} at 2026-12-05T10:00:00.000Z"
    doc["metadata"]["annotations"] = {"gapless.dev/retry": value}
    d = decide(_obj(doc, obj["status"], 2), list(sim.rs.values()), list(sim.pods.values()), sim.now)
    rec = d.status["revisions"][target]
    assert (rec["phase"], rec["retryHandled"]) == ("progressing", value)
    assert [e[0] for e in d.events] == ["Retry"]
    again = decide(_obj(doc, d.status, 2), list(sim.rs.values()), list(sim.pods.values()), sim.now)
    assert "Retry" not in [e[0] for e in again.events]


def test_replica_sets_record_their_template_and_change_cause() -> None:
    """The ReplicaSet of a revision carries the Rollout template (JSON, the same hash when read back) and
    the change cause it was made with; going back to it keeps that cause."""
    import json

    from gapless.spec.models import Template, template_hash

    sim = SimCluster(_rng(6), 1_800_000_000.0)
    v1 = k8s_rollout("shop", "v1", replicas=2)
    v1["metadata"]["annotations"] = {"gapless.dev/change-cause": "first"}
    obj = run_until_settled(sim, _obj(v1), 100)
    first = obj["status"]["currentPodHash"]
    v2 = k8s_rollout("shop", "v2", replicas=2)
    v2["metadata"]["annotations"] = {"gapless.dev/change-cause": "second"}
    obj = run_until_settled(sim, _obj(v2, obj["status"], 2), 200)
    by_rev = {r["metadata"]["labels"][LABEL_REVISION]: r["metadata"]["annotations"] for r in sim.rs.values()}
    assert by_rev[first]["gapless.dev/change-cause"] == "first"
    template = Template.model_validate(json.loads(by_rev[first]["gapless.dev/template"]))
    assert template_hash(template) == first
    v1["metadata"]["annotations"] = {"gapless.dev/change-cause": "second"}  # as left by the last apply
    run_until_settled(sim, _obj(v1, obj["status"], 3), 200)
    rs = next(r for r in sim.rs.values() if r["metadata"]["labels"][LABEL_REVISION] == first)
    assert rs["metadata"]["annotations"]["gapless.dev/change-cause"] == "first"


def test_a_blue_green_undo_inside_the_scale_down_delay_numbers_blue_as_locally() -> None:
    """v1 (blue, 1) -> v2 (green, 2) switched -> v1 again while blue is still warm and stable: blue becomes
    revision 3 (the local platform's number), its ReplicaSet says so, an event names it, and no pod of
    blue is started or stopped; applying v2 again then makes green revision 4."""
    bg = {"blueGreen": {"autoPromotionSeconds": 0, "scaleDownDelaySeconds": 600}}
    sim = SimCluster(_rng(5), 1_800_000_000.0)
    obj = run_until_settled(sim, _obj(k8s_rollout("shop", "v1", replicas=2, strategy=bg)), 100)
    blue = obj["status"]["currentPodHash"]
    obj = _obj(k8s_rollout("shop", "v2", replicas=2, strategy=bg), obj["status"], 2)
    for _ in range(200):
        d = decide(obj, list(sim.rs.values()), list(sim.pods.values()), sim.now)
        for rs in d.replica_sets:
            sim.apply(rs)
        obj = obj | {"status": d.status}
        if _active(d) != blue:
            break
        sim.tick()
    green = obj["status"]["currentPodHash"]
    assert (_active(d), obj["status"]["currentRevision"]) == (green, "2")
    blue_pods = sorted(n for n, p in sim.pods.items() if p["metadata"]["labels"][LABEL_REVISION] == blue)
    obj = _obj(k8s_rollout("shop", "v1", replicas=2, strategy=bg), obj["status"], 3)
    d = decide(obj, list(sim.rs.values()), list(sim.pods.values()), sim.now)
    assert (_active(d), d.status["currentPodHash"], d.status["currentRevision"]) == (blue, blue, "3")
    assert ("RevisionReused", f"revision 3 ({blue}) is an earlier template again", False) in d.events
    (rs,) = [r for r in d.replica_sets if r["metadata"]["labels"][LABEL_REVISION] == blue]
    assert rs["metadata"]["annotations"]["gapless.dev/revision-number"] == "3"
    assert rs["spec"]["replicas"] == 2
    for r in d.replica_sets:
        sim.apply(r)
    obj = obj | {"status": d.status}
    again = decide(obj, list(sim.rs.values()), list(sim.pods.values()), sim.now)
    assert again.status["currentRevision"] == "3"
    assert not [e for e in again.events if e[0] == "RevisionReused"]  # renumbered once
    obj = run_until_settled(sim, obj | {"status": again.status}, 200)
    assert (
        sorted(n for n, p in sim.pods.items() if p["metadata"]["labels"][LABEL_REVISION] == blue) == blue_pods
    )
    assert obj["status"]["revisions"][green]["number"] == 2
    obj = _obj(k8s_rollout("shop", "v2", replicas=2, strategy=bg), obj["status"], 4)
    d = decide(obj, list(sim.rs.values()), list(sim.pods.values()), sim.now)
    assert d.status["currentRevision"] == "4"


@settings(deadline=None, max_examples=40)
@given(
    applies=st.lists(st.sampled_from(["v1", "v2", "v3"]), min_size=2, max_size=6),
    passes=st.lists(st.integers(0, 40), min_size=6, max_size=6),
    blue_green=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_revision_numbers_follow_the_local_rule_whatever_the_order_of_applies(
    applies: list[str], passes: list[int], blue_green: bool, seed: int
) -> None:
    """Templates applied in any order, each after any number of passes (mid-rollout or settled): a new
    template gets the next number; an earlier one keeps its number if it is the highest, else takes the
    next (the local platform's rule, as ``gapless undo`` on one machine numbers it)."""
    strategy = {"blueGreen": {"autoPromotionSeconds": 0, "scaleDownDelaySeconds": 5}} if blue_green else None
    sim = SimCluster(_rng(seed), 1_800_000_000.0)
    expected: dict[str, int] = {}
    current = ""
    obj: dict[str, Any] = {"status": {}}
    for generation, (version, n) in enumerate(zip(["v1", *applies], [30, *passes], strict=False), start=1):
        obj = _obj(k8s_rollout("shop", version, replicas=2, strategy=strategy), obj["status"], generation)
        if version != current:
            highest = max(expected.values(), default=0)
            if version not in expected or expected[version] != highest:
                expected[version] = highest + 1
            current = version
        for _ in range(max(n, 1)):
            d = decide(obj, list(sim.rs.values()), list(sim.pods.values()), sim.now)
            for pod in d.mark_pods:
                sim.mark(pod)
            for rs in d.replica_sets:
                sim.apply(rs)
            for name in d.delete_replica_sets:
                sim.rs.pop(name, None)
            obj = obj | {"status": d.status}
            assert d.status["currentRevision"] == str(expected[version]), (version, expected)
            sim.tick()
