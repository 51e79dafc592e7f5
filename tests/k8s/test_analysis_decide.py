"""Rules of analysis in the operator's pass (``decide`` with ``Observed``), on the simulated cluster of
test_decide.py (a double of the ReplicaSet controller and kubelet, for these rule tests only;
tests/k8s/test_analysis.py runs the real ones with a real Prometheus and real Jobs)."""

from __future__ import annotations

from collections.abc import Callable
from random import Random
from typing import Any

import pytest

from gapless.controller.kube_analysis import RUNS_FIELD, Observed, due_queries
from gapless.controller.kubernetes import Decision, decide
from gapless.platform.kubernetes.jobs import LABEL_RUN, MEASUREMENT_ANNOTATION
from gapless.platform.kubernetes.manifests import LABEL_REVISION, LABEL_ROLLOUT
from tests.k8s.operator import k8s_rollout
from tests.k8s.test_decide import SimCluster, _obj, run_until_settled

T0 = 1_800_000_000.0


def prom_template(condition: str = "result < 0.05", **metric: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "errors", "namespace": "ns"},
        "spec": {
            "metrics": [
                {
                    "name": "error-ratio",
                    "interval": "1s",
                    "count": 2,
                    "successCondition": condition,
                    "provider": {
                        "prometheus": {
                            "address": "http://prometheus.invalid:9090",
                            "query": 'ratio{revision="{{args.canary}}"} - ratio{revision="{{args.stable}}"}',
                        }
                    },
                }
                | metric
            ]
        },
    }


def job_template() -> dict[str, Any]:
    pod = {"containers": [{"name": "smoke", "image": "example.invalid/smoke:1"}]}
    return {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "smoke", "namespace": "ns"},
        "spec": {
            "metrics": [
                {
                    "name": "smoke-test",
                    "count": 1,
                    "provider": {"job": {"spec": {"backoffLimit": 0, "template": {"spec": pod}}}},
                }
            ]
        },
    }


def canary(template: str, *, background: bool = False) -> dict[str, Any]:
    ref = {"templates": [{"templateName": template}]}
    steps: list[dict[str, Any]] = [{"setWeight": 50}]
    if not background:
        steps.append({"analysis": ref})
    else:
        steps.append({"pause": {"duration": "30s"}})
    spec: dict[str, Any] = {"steps": steps, "scaleDownDelaySeconds": 0, "abortScaleDownDelaySeconds": 0}
    if background:
        spec["analysis"] = ref
    return {"canary": spec}


class Run:
    """Drives a v1 -> v2 canary through ``decide`` on the simulated cluster."""

    def __init__(self, strategy: dict[str, Any], templates: list[dict[str, Any]]) -> None:
        self.sim = SimCluster(Random(7), T0)  # noqa: S311 -- a seeded simulation
        first = _obj(k8s_rollout("shop", "v1", replicas=2, strategy=strategy))
        settled = run_until_settled(self.sim, first, 100)
        self.stable = settled["status"]["currentPodHash"]
        self.obj = _obj(k8s_rollout("shop", "v2", replicas=2, strategy=strategy), settled["status"], 2)
        self.templates = {t["metadata"]["name"]: t for t in templates}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str, bool]] = []
        self.last: Decision | None = None

    def step(self, readings: Callable[[str, str], float | list[float] | str] | None = None) -> Decision:
        due = due_queries(self.obj["status"], self.sim.now)
        values = {(q.run_id, q.metric): readings(q.query, q.metric) for q in due} if readings else {}
        observed = Observed(self.templates, list(self.jobs.values()), values)
        d = decide(self.obj, list(self.sim.rs.values()), list(self.sim.pods.values()), self.sim.now, observed)
        for rs in d.replica_sets:
            self.sim.apply(rs)
        for pod in d.mark_pods:
            self.sim.mark(pod)
        for job in d.jobs:
            self.jobs.setdefault(job["metadata"]["name"], job)
        for name in d.delete_jobs:
            self.jobs.pop(name, None)
        self.events += d.events
        self.obj = self.obj | {"status": d.status}
        self.sim.tick()
        self.last = d
        return d

    def until(self, check: Callable[[dict[str, Any]], bool], readings: Any = None, passes: int = 80) -> None:
        for _ in range(passes):
            self.step(readings)
            if check(self.obj["status"]):
                return
        raise AssertionError(f"not reached after {passes} passes: {self.obj['status']}")

    @property
    def canary(self) -> str:
        return str(self.obj["status"]["currentPodHash"])

    def live(self, revision: str) -> int:
        return sum(
            1
            for p in self.sim.pods.values()
            if p["metadata"]["labels"][LABEL_REVISION] == revision
            and not p["metadata"].get("deletionTimestamp")
        )


def test_a_passing_prometheus_analysis_step_lets_the_canary_complete_with_args_as_revision_hashes() -> None:
    """The query gets the canary's and stable's hashes; two passing measurements end the run successful and
    the rollout completes."""
    r = Run(canary("errors"), [prom_template()])
    queries: list[str] = []

    def read(q: str, _metric: str) -> float:
        queries.append(q)
        return 0.0

    r.until(lambda s: s["phase"] == "Healthy" and s["currentRevision"] == "2", read)
    assert queries, "no query was due"
    assert queries[0] == f'ratio{{revision="{r.canary}"}} - ratio{{revision="{r.stable}"}}'
    (run,) = r.obj["status"][RUNS_FIELD]
    assert (run["key"], run["revision"], run["phase"]) == ("step-1", r.canary, "successful")
    assert run["metrics"][0]["measured"] == 2
    assert "AnalysisRunSuccessful" in [e[0] for e in r.events]
    assert len(queries) == 2


def test_a_failing_prometheus_measurement_aborts_naming_the_metric() -> None:
    """A measurement whose condition is false fails the run (failureLimit 0): the rollout aborts, the status
    names the metric and the value, the Services select stable and the canary is removed."""
    r = Run(canary("errors"), [prom_template()])
    r.until(lambda s: s["phase"] == "Degraded", lambda q, m: 0.3)
    message = r.obj["status"]["message"]
    assert "analysis of step 2 failed" in message, message
    assert "error-ratio" in message, message
    assert "traffic back on stable" in message
    assert r.obj["status"][RUNS_FIELD][0]["phase"] == "failed"
    assert [e for e in r.events if e[0] == "RolloutAborted" and e[2]]
    assert r.last is not None
    selectors = {s["metadata"]["name"]: s["spec"]["selector"][LABEL_REVISION] for s in r.last.services}
    assert selectors["shop-stable"] == r.stable
    r.until(lambda s: r.live(r.canary) == 0)
    assert r.live(r.stable) == 2


def test_an_inconclusive_measurement_pauses_until_the_promote_annotation() -> None:
    """Neither condition true is inconclusive: the rollout waits, Paused, saying how to continue."""
    r = Run(canary("errors"), [prom_template("result < 0.05", failureCondition="result > 0.5")])
    r.until(lambda s: s["phase"] == "Paused", lambda q, m: 0.2)
    assert "inconclusive" in r.obj["status"]["message"]
    assert f"gapless.dev/promote={r.canary}" in r.obj["status"]["message"]
    for _ in range(5):
        r.step(lambda q, m: 0.2)
    assert r.obj["status"]["phase"] == "Paused"


def test_a_query_that_cannot_be_answered_errors_after_the_consecutive_error_limit() -> None:
    """Prometheus unreachable: each try is an error; the fifth in a row (limit 4) errors the run and aborts."""
    r = Run(canary("errors"), [prom_template(count=10)])
    r.until(lambda s: s["phase"] == "Degraded", lambda q, m: "Prometheus at http://x: ConnectError")
    metric = r.obj["status"][RUNS_FIELD][0]["metrics"][0]
    assert (metric["phase"], metric["errors"]) == ("error", 5)
    assert "ConnectError" in r.obj["status"]["message"]


@pytest.mark.parametrize("condition", ["Complete", "Failed"])
def test_a_job_metric_creates_one_job_and_its_outcome_is_the_measurement(condition: str) -> None:
    """The Job is asked for once (same name on every pass), owned by the Rollout and labelled with the
    rollout, revision and run, its pods unlabelled; Complete passes the step, Failed aborts."""
    r = Run(canary("smoke"), [job_template()])
    r.until(lambda s: bool(r.jobs))
    r.step()
    r.step()
    (job,) = r.jobs.values()
    meta = job["metadata"]
    assert meta["labels"][LABEL_ROLLOUT] == "shop"
    assert meta["labels"][LABEL_REVISION] == r.canary
    assert meta["labels"][LABEL_RUN] == r.obj["status"][RUNS_FIELD][0]["id"]
    assert meta["annotations"][MEASUREMENT_ANNOTATION] == "1"
    assert meta["ownerReferences"][0]["kind"] == "Rollout"
    assert "labels" not in job["spec"]["template"].get("metadata", {})
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    job["status"] = {"conditions": [{"type": condition, "status": "True", "message": "exit code 1"}]}
    if condition == "Complete":
        r.until(lambda s: s["phase"] == "Healthy" and s["currentRevision"] == "2")
        assert r.obj["status"][RUNS_FIELD][0]["phase"] == "successful"
    else:
        r.until(lambda s: s["phase"] == "Degraded")
        assert "smoke-test" in r.obj["status"]["message"]
        assert "failed" in r.obj["status"]["message"]
    assert len(r.jobs) == 1


def test_a_missing_template_or_a_provider_of_one_machine_errors_the_run_naming_it() -> None:
    """A template that does not exist, or a builtin metric, cannot run on Kubernetes: the run errors
    (naming the template or the metric) and, as locally, the rollout aborts."""
    r = Run(canary("nowhere"), [])
    r.until(lambda s: s["phase"] == "Degraded")
    assert "AnalysisTemplate 'nowhere' does not exist" in r.obj["status"]["message"]
    builtin = prom_template()
    builtin["spec"]["metrics"][0] = {
        "name": "router-errors",
        "successCondition": "result < 1",
        "provider": {"builtin": {}},
    }
    r = Run(canary("errors"), [builtin])
    r.until(lambda s: s["phase"] == "Degraded")
    assert "'router-errors' uses the builtin provider" in r.obj["status"]["message"]


def test_background_analysis_runs_from_the_first_step_and_a_failure_aborts() -> None:
    """strategy.canary.analysis starts with the rollout and its failure aborts during the pause."""
    r = Run(canary("errors", background=True), [prom_template(count=None)])
    r.until(lambda s: bool(s.get(RUNS_FIELD)), lambda q, m: 0.0)
    assert r.obj["status"][RUNS_FIELD][0]["key"] == "background"
    r.until(lambda s: s["phase"] == "Degraded", lambda q, m: 0.9)
    assert "background analysis failed" in r.obj["status"]["message"]


def test_the_run_lives_in_the_status_so_a_fresh_pass_continues_it() -> None:
    """A measurement is due only ``interval`` after the last one recorded in the status; a pass over the
    same status (a restarted operator) asks for nothing more and keeps the run's id and counts."""
    r = Run(canary("errors"), [prom_template(count=3)])
    r.until(
        lambda s: any(m["measured"] == 1 for x in s.get(RUNS_FIELD, []) for m in x["metrics"]),
        lambda q, m: 0.0,
    )
    (run,) = r.obj["status"][RUNS_FIELD]
    at = run["metrics"][0]["measurements"][-1]["at"]
    assert due_queries(r.obj["status"], at + 0.5) == []
    assert [q.metric for q in due_queries(r.obj["status"], at + 1.0)] == ["error-ratio"]
    r.until(lambda s: s["phase"] == "Healthy", lambda q, m: 0.0)
    (done,) = r.obj["status"][RUNS_FIELD]
    assert done["id"] == run["id"]
    assert done["metrics"][0]["measured"] == 3


def blue_green(key: str, template: str = "errors", **extra: Any) -> dict[str, Any]:
    """Automatic promotion, blue kept 30 s after the switch (or after the post-promotion analysis passed)."""
    ref = {"templates": [{"templateName": template}]}
    return {
        "blueGreen": {
            "autoPromotionSeconds": 1,
            "scaleDownDelaySeconds": 30,
            "abortScaleDownDelaySeconds": 0,
            key: ref,
        }
        | extra
    }


def active(d: Decision | None) -> str:
    assert d is not None
    return str(
        next(
            s["spec"]["selector"][LABEL_REVISION]
            for s in d.services
            if s["metadata"]["name"] == "shop-stable"
        )
    )


@pytest.mark.parametrize("outcome", ["passes", "fails"])
def test_pre_promotion_analysis_runs_on_green_before_the_switch(outcome: str) -> None:
    """prePromotionAnalysis measures green (args: green's and blue's hashes) while the active Service stays
    on blue; passing lets the automatic promotion switch, failing aborts with blue never left."""
    r = Run(blue_green("prePromotionAnalysis"), [prom_template()])
    value = 0.0 if outcome == "passes" else 0.3
    queries: list[str] = []
    seen: list[tuple[str, str]] = []  # (active revision, run phase) per pass

    def read(q: str, _metric: str) -> float:
        queries.append(q)
        return value

    def check(s: dict[str, Any]) -> bool:
        runs = s.get(RUNS_FIELD) or []
        seen.append((active(r.last), runs[0]["phase"] if runs else "-"))
        done = s["phase"] == ("Healthy" if outcome == "passes" else "Degraded")
        return bool(done and s["currentRevision"] == "2")

    r.until(check, read, passes=150)
    (run,) = r.obj["status"][RUNS_FIELD]
    assert (run["key"], run["revision"]) == ("prePromotion", r.canary)
    assert run["spec"]["args"] == {"rollout": "shop", "canary": r.canary, "stable": r.stable}
    assert queries[0] == f'ratio{{revision="{r.canary}"}} - ratio{{revision="{r.stable}"}}'
    assert all(a == r.stable for a, phase in seen if phase in ("-", "running"))
    if outcome == "passes":
        assert run["phase"] == "successful"
        assert active(r.last) == r.canary
    else:
        assert run["phase"] == "failed"
        message = r.obj["status"]["message"]
        assert "pre-promotion analysis failed" in message, message
        assert "error-ratio" in message
        assert {a for a, _ in seen} == {r.stable}  # never switched
        r.until(lambda s: r.live(r.canary) == 0)
        assert r.live(r.stable) == 2


@pytest.mark.parametrize("outcome", ["passes", "fails"])
def test_post_promotion_analysis_runs_after_the_switch_and_a_failure_switches_back_to_warm_blue(
    outcome: str,
) -> None:
    """postPromotionAnalysis starts once the active Service selects green; blue keeps its pods meanwhile.
    Passing starts the scale-down delay and completes; failing switches the active Service back to blue's
    same pods (none started or stopped) and removes green."""
    r = Run(blue_green("postPromotionAnalysis"), [prom_template()])
    value = 0.0 if outcome == "passes" else 0.3
    seen: list[tuple[str, str, int]] = []  # (active revision, run phase, blue pods) per pass

    def check(s: dict[str, Any]) -> bool:
        runs = s.get(RUNS_FIELD) or []
        seen.append((active(r.last), runs[0]["phase"] if runs else "-", r.live(r.stable)))
        return bool(runs) and runs[0]["phase"] != "running"

    r.until(check, lambda q, m: value, passes=150)
    (run,) = r.obj["status"][RUNS_FIELD]
    assert (run["key"], run["revision"]) == ("postPromotion", r.canary)
    assert all(a == r.canary for a, phase, _ in seen if phase == "running"), seen
    assert all(blue == 2 for _, phase, blue in seen if phase == "running"), seen
    if outcome == "passes":
        assert run["phase"] == "successful"
        r.until(lambda s: s["phase"] == "Healthy" and s["currentRevision"] == "2", passes=150)
        assert r.live(r.stable) == 0
        assert r.sim.now >= float(run["finishedAt"]) + 30  # the delay counts from the analysis's success
    else:
        assert run["phase"] == "failed"
        r.until(lambda s: s["phase"] == "Degraded")
        assert active(r.last) == r.stable
        assert "post-promotion analysis failed" in r.obj["status"]["message"]
        assert r.live(r.stable) == 2
        r.until(lambda s: r.live(r.canary) == 0)
        assert active(r.last) == r.stable
