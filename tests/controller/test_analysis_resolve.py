"""Resolving an analysis run's templates, shared by the local control plane and the Kubernetes operator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gapless.controller.analysis import AnalysisRunner, resolve_run
from gapless.core.clock import SystemClock
from gapless.core.errors import GaplessError
from gapless.spec.strategy import RolloutAnalysis
from gapless.store.records import AnalysisTemplateRecord
from gapless.store.sqlite import Store

JOB_TEMPLATE: dict[str, Any] = {
    "apiVersion": "gapless.dev/v1alpha1",
    "kind": "AnalysisTemplate",
    "metadata": {"name": "smoke"},
    "spec": {
        "metrics": [
            {"name": "smoke-test", "provider": {"job": {"spec": {"template": {"spec": {"containers": []}}}}}}
        ]
    },
}


def ref(*names: str) -> RolloutAnalysis:
    return RolloutAnalysis.model_validate({"templates": [{"templateName": n} for n in names]})


def test_resolve_run_fills_the_revision_hashes_and_names_a_missing_template() -> None:
    """The built-in args are the rollout and the two revision hashes; a missing template is named."""
    prom = {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "errors"},
        "spec": {
            "metrics": [
                {
                    "name": "ratio",
                    "successCondition": "result < 1",
                    "provider": {
                        "prometheus": {
                            "address": "http://p:9090",
                            "query": 'r{rev="{{args.canary}}"} / r{rev="{{args.stable}}"}',
                        }
                    },
                }
            ]
        },
    }
    got = resolve_run("shop", "step-1", ref("errors"), "c4n", "s7b", {"errors": prom}.get)
    assert got["args"] == {"rollout": "shop", "canary": "c4n", "stable": "s7b"}
    assert got["metrics"][0]["provider"]["prometheus"]["query"] == 'r{rev="c4n"} / r{rev="s7b"}'
    with pytest.raises(GaplessError, match="AnalysisTemplate 'nope' does not exist"):
        resolve_run("shop", "step-1", ref("nope"), "c4n", "s7b", {}.get)


def test_a_job_metric_errors_the_run_on_the_local_platform(tmp_path: Path) -> None:
    """The local platform has no Jobs: the run is stored as an error naming the metric and the provider."""
    store = Store(tmp_path / "state.db").open()
    store.put_analysis_template(AnalysisTemplateRecord("smoke", JOB_TEMPLATE, 1, 0.0))
    events: list[tuple[str, str, str, str]] = []
    runner = AnalysisRunner(
        store,
        traffic=None,  # type: ignore[arg-type] -- a run that errors at its start reaches no router
        platform=None,  # type: ignore[arg-type] -- nor any instance
        clock=SystemClock(),
        event=lambda *e: events.append(e),
        wake=lambda: None,
        spawn=lambda coro, name: pytest.fail(f"nothing may run: {name}"),
    )
    run = runner.ensure_run("r-1", "shop", "c4n", "step-1", ref("smoke"))
    assert run is not None
    assert run.phase == "error"
    assert "'smoke-test' uses the job provider, which runs only on Kubernetes" in run.message
    assert events[0][2] == "AnalysisRunError"
