"""AnalysisTemplates and analysis runs through the API: validation by field path, references, 401/404/409."""

from __future__ import annotations

from typing import Any

import httpx

from gapless.store.records import AnalysisRunRecord
from gapless.store.sqlite import Store
from tests.server.test_api import doc


def template(name: str = "errors", **metric: Any) -> dict[str, Any]:
    m = {
        "name": "error-rate",
        "provider": {"builtin": {}},
        "successCondition": "result.error_rate < 0.01",
    } | metric
    return {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {"metrics": [m]},
    }


CANARY = {
    "canary": {
        "steps": [{"setWeight": 10}, {"analysis": {"templates": [{"templateName": "errors"}]}}],
    }
}


async def test_template_apply_is_validated_and_versioned(api: tuple[httpx.AsyncClient, Store]) -> None:
    client, store = api
    r = await client.put(
        "/api/v1/analysistemplates/errors", json=template(successCondition="result.__class__")
    )
    assert r.status_code == 400
    assert r.json()["problems"][0]["path"].endswith("successCondition")
    r = await client.put("/api/v1/analysistemplates/errors", json=template(interval="-1s"))
    assert r.status_code == 400
    r = await client.put("/api/v1/analysistemplates/other", json=template())
    assert r.status_code == 400
    assert "the URL names" in r.text
    assert store.analysis_templates() == []
    r = await client.put("/api/v1/analysistemplates/errors", json=template())
    assert r.status_code == 200
    assert r.json() == {"name": "errors", "kind": "AnalysisTemplate", "generation": 1, "changed": True}
    r = await client.put("/api/v1/analysistemplates/errors", json=template())
    assert r.json()["changed"] is False
    r = await client.put("/api/v1/analysistemplates/errors", json=template(count=3))
    assert r.json()["generation"] == 2
    items = (await client.get("/api/v1/analysistemplates")).json()["items"]
    assert [i["name"] for i in items] == ["errors"]
    assert (await client.get("/api/v1/analysistemplates/errors")).json()["spec"]["spec"]["metrics"][0][
        "count"
    ] == 3
    assert (await client.get("/api/v1/analysistemplates/nope")).status_code == 404


async def test_rollout_needs_its_templates_and_a_used_template_cannot_be_deleted(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    client, store = api
    r = await client.put("/api/v1/rollouts/shop", json=doc(strategy=CANARY))
    assert r.status_code == 400
    problem = r.json()["problems"][0]
    assert problem["path"] == "spec.strategy.canary.steps.1.analysis.templates.0.templateName"
    assert "no AnalysisTemplate named 'errors'" in problem["message"]
    assert store.rollouts() == []
    assert (await client.put("/api/v1/analysistemplates/errors", json=template())).status_code == 200
    assert (await client.put("/api/v1/rollouts/shop", json=doc(strategy=CANARY))).status_code == 200
    r = await client.delete("/api/v1/analysistemplates/errors")
    assert r.status_code == 409
    assert "shop" in r.json()["error"]
    assert store.find_analysis_template("errors") is not None
    assert (await client.delete("/api/v1/analysistemplates/nope")).status_code == 404


async def test_analysis_runs_are_listed_per_revision(api: tuple[httpx.AsyncClient, Store]) -> None:
    client, store = api
    assert (await client.get("/api/v1/rollouts/shop/analysis")).status_code == 404
    assert (await client.put("/api/v1/rollouts/shop", json=doc())).status_code == 200
    metrics = [{"name": "error-rate", "phase": "failed", "measured": 2, "failed": 1, "measurements": []}]
    store.put_analysis_run(
        AnalysisRunRecord(
            "r1", "shop", "abc", "step-1", "failed", 5.0, {"templates": ["errors"]}, metrics, "bad"
        )
    )
    body = (await client.get("/api/v1/rollouts/shop/analysis")).json()
    assert [(i["key"], i["phase"], i["name"]) for i in body["items"]] == [
        ("step-1", "failed", "analysis of step 2")
    ]
    assert body["items"][0]["metrics"][0]["failed"] == 1
    assert (await client.get("/api/v1/rollouts/shop/analysis?revision=0")).status_code == 400
    assert (await client.get("/api/v1/rollouts/shop/analysis?revision=7")).status_code == 404


async def test_analysis_endpoints_need_the_token(api: tuple[httpx.AsyncClient, Store]) -> None:
    client, store = api
    no = {"Authorization": ""}
    assert (
        await client.put("/api/v1/analysistemplates/errors", json=template(), headers=no)
    ).status_code == 401
    assert (await client.delete("/api/v1/analysistemplates/errors", headers=no)).status_code == 401
    assert (await client.get("/api/v1/analysistemplates", headers=no)).status_code == 401
    assert (await client.get("/api/v1/rollouts/shop/analysis", headers=no)).status_code == 401
    assert store.analysis_templates() == []
