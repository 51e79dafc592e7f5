"""The flag service API on SQLite and PostgreSQL: validation, audit, revisions, tokens, delivery, staleness."""

from __future__ import annotations

import json

from tests.flags_service.conftest import Service, flag_doc


async def setup_project(svc: Service) -> None:
    async with svc.client() as c:
        r = await c.put("/api/v1/projects/shop", json={"environments": ["staging", "production"]})
        assert r.status_code == 200, r.text


async def test_flag_lifecycle_is_audited_with_revisions(service: Service) -> None:
    await setup_project(service)
    async with service.client() as c:
        r = await c.post("/api/v1/projects/shop/flags", json=flag_doc())
        assert r.status_code == 201, r.text
        assert r.json()["revisions"] == {"production": 2, "staging": 2}
        dup = await c.post("/api/v1/projects/shop/flags", json=flag_doc())
        assert dup.status_code == 409
        same = await c.put("/api/v1/projects/shop/flags/new-checkout", json=flag_doc())
        assert same.json() == {"key": "new-checkout", "changed": False, "revisions": {}}
        kill = await c.post("/api/v1/projects/shop/flags/new-checkout/environments/production/kill")
        assert kill.json()["revisions"] == {"production": 3}  # staging's ruleset did not change
        rs = await c.get("/api/v1/projects/shop")
        assert rs.json()["revisions"] == {"staging": 2, "production": 3}
        log = (await c.get("/api/v1/audit", params={"project": "shop"})).json()["items"]
    assert [e["action"] for e in log] == ["flag.kill", "flag.create", "project.put"]
    kill_entry = log[0]
    assert kill_entry["token"]["name"] == "test admin"
    assert kill_entry["before"]["environments"]["production"]["enabled"] is True
    assert kill_entry["after"]["environments"]["production"]["enabled"] is False


async def test_bad_input_is_refused_by_field_and_nothing_is_stored(service: Service) -> None:
    await setup_project(service)
    bad_operator = flag_doc()
    bad_operator["environments"]["production"]["rules"][0]["conditions"][0]["operator"] = "sortOf"
    bad_regex = flag_doc()
    bad_regex["environments"]["production"]["rules"][0]["conditions"][0] |= {
        "operator": "regex",
        "values": ["(a"],
    }
    bad_kind = flag_doc()
    bad_kind["variants"][0]["value"] = "yes"
    unknown_env = flag_doc()
    unknown_env["environments"]["qa"] = unknown_env["environments"].pop("production")
    async with service.client() as c:
        for doc, field in (
            (bad_operator, "operator"),
            (bad_regex, "values"),
            (bad_kind, "variants"),
            (unknown_env, "environments"),
        ):
            r = await c.post("/api/v1/projects/shop/flags", json=doc)
            assert r.status_code == 400, (field, r.text)
            assert any(field in p["path"] for p in r.json()["problems"]), (field, r.json())
        r = await c.post(
            "/api/v1/projects/shop/flags",
            content=json.dumps(flag_doc() | {"description": "x" * 300_000}),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 413
        r = await c.post(
            "/api/v1/projects/shop/flags", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400
        assert (await c.get("/api/v1/projects/shop/flags")).json()["items"] == []
        log = (await c.get("/api/v1/audit")).json()["items"]
    assert [e["action"] for e in log] == ["project.put"]


async def test_tokens_are_required_hashed_and_scoped(service: Service) -> None:
    await setup_project(service)
    async with service.client() as c:
        await c.post("/api/v1/projects/shop/flags", json=flag_doc())
        r = await c.post(
            "/api/v1/tokens",
            json={"kind": "sdk", "name": "web", "project": "shop", "environment": "production"},
        )
        assert r.status_code == 201, r.text
        sdk_token, sdk_id = r.json()["token"], r.json()["id"]
        bad = await c.post(
            "/api/v1/tokens", json={"kind": "sdk", "name": "x", "project": "shop", "environment": "qa"}
        )
        assert bad.status_code == 400
    assert all(sdk_token not in (rec.digest, rec.id) for rec in service.store.tokens())
    async with service.client("gfl_000000000000_wrong") as c:
        assert (await c.get("/api/v1/projects")).status_code == 401
        assert (
            await c.post("/api/v1/projects/shop/flags/new-checkout/environments/production/kill")
        ).status_code == 401
        assert (await c.get("/sdk/v1/ruleset")).status_code == 401
    async with service.client(sdk_token) as c:
        assert (await c.get("/api/v1/projects")).status_code == 403
        assert (
            await c.post("/api/v1/projects/shop/flags/new-checkout/environments/production/kill")
        ).status_code == 403
        r = await c.get("/sdk/v1/ruleset")
        assert r.status_code == 200
        assert r.json()["revision"] == 2
        assert set(r.json()["flags"]) == {"new-checkout"}
        etag = r.headers["etag"]
        assert (await c.get("/sdk/v1/ruleset", headers={"If-None-Match": etag})).status_code == 304
    async with service.client() as c:
        assert (await c.delete(f"/api/v1/tokens/{sdk_id}")).status_code == 200
    async with service.client(sdk_token) as c:
        assert (await c.get("/sdk/v1/ruleset")).status_code == 401
    async with service.client() as c:
        unauthenticated = c.headers.copy()
        del unauthenticated["Authorization"]
        assert (await c.get("/healthz", headers=unauthenticated)).status_code == 200
        assert (await c.get("/openapi.json")).json()["info"]["title"] == "gapless flags"


async def test_delivery_counts_applied_sdks_and_latency(service: Service) -> None:
    await setup_project(service)
    async with service.client() as c:
        await c.post("/api/v1/projects/shop/flags", json=flag_doc())
        token = (
            await c.post(
                "/api/v1/tokens",
                json={"kind": "sdk", "name": "web", "project": "shop", "environment": "production"},
            )
        ).json()["token"]
    async with service.client(token) as c:
        for i in range(3):
            r = await c.post("/sdk/v1/applied", json={"sdkId": f"sdk-{i}", "revision": 2})
            assert r.status_code == 200
        assert (await c.post("/sdk/v1/applied", json={"sdkId": "", "revision": -1})).status_code == 400
        r = await c.post(
            "/sdk/v1/evaluations",
            json={
                "counts": [
                    {"flag": "new-checkout", "variant": "on", "count": 5},
                    {"flag": "new-checkout", "variant": "off", "count": 7},
                ]
            },
        )
        assert r.json() == {"ok": True, "recorded": 2}
    async with service.client() as c:
        await c.post("/api/v1/projects/shop/flags/new-checkout/environments/production/kill")
    async with service.client(token) as c:
        await c.post("/sdk/v1/applied", json={"sdkId": "sdk-0", "revision": 3})
    async with service.client() as c:
        d = (await c.get("/api/v1/projects/shop/environments/production/delivery")).json()
        flags = (await c.get("/api/v1/projects/shop/flags")).json()["items"]
    assert (d["revision"], d["connected"], d["applied"]) == (3, 3, 1)
    assert d["latency"]["max"] is not None
    assert flags[0]["evaluations"] == {"production/on": 5, "production/off": 7}
    assert flags[0]["environments"]["production"]["enabled"] is False
    assert flags[0]["stale"] is False


async def test_segments_are_checked_and_cannot_be_deleted_while_used(service: Service) -> None:
    await setup_project(service)
    doc = flag_doc()
    doc["environments"]["production"]["rules"] = [
        {"conditions": [{"operator": "inSegment", "values": ["internal"]}], "variant": "on"}
    ]
    internal = {"conditions": [{"attribute": "email", "operator": "endsWith", "values": ["@example.com"]}]}
    async with service.client() as c:
        assert (await c.post("/api/v1/projects/shop/flags", json=doc)).status_code == 400  # unknown segment
        assert (await c.put("/api/v1/projects/shop/segments/internal", json=internal)).status_code == 200
        assert (await c.post("/api/v1/projects/shop/flags", json=doc)).status_code == 201
        assert (await c.delete("/api/v1/projects/shop/segments/internal")).status_code == 409
        assert (await c.delete("/api/v1/projects/shop/flags/new-checkout")).status_code == 200  # archived
        assert (await c.delete("/api/v1/projects/shop/segments/nope")).status_code == 404


async def test_release_plan_advances_by_command_with_audit(service: Service) -> None:
    await setup_project(service)
    stages = [
        {
            "name": "internal",
            "rules": [
                {
                    "conditions": [{"attribute": "plan", "operator": "in", "values": ["staff"]}],
                    "variant": "on",
                }
            ],
        },
        {
            "name": "1%",
            "rollout": {
                "split": {
                    "weights": [{"variant": "on", "weight": 1_000}, {"variant": "off", "weight": 99_000}]
                }
            },
        },
        {"name": "100%", "rollout": {"variant": "on"}},
    ]
    doc = flag_doc(rules=[], releasePlan={"stages": stages})
    async with service.client() as c:
        assert (await c.post("/api/v1/projects/shop/flags", json=doc)).status_code == 201, doc
        path = "/api/v1/projects/shop/flags/new-checkout/environments/production/release/advance"
        assert (await c.post(path)).status_code == 200
        assert (await c.post(path, json={"stage": 2})).status_code == 200
        assert (await c.post(path)).status_code == 409  # past the last stage
        flags = (await c.get("/api/v1/projects/shop/flags")).json()["items"]
        log = (await c.get("/api/v1/audit", params={"target": "new-checkout"})).json()["items"]
    assert flags[0]["environments"]["production"]["stage"] == {"index": 2, "name": "100%", "of": 3}
    assert [e["action"] for e in log].count("flag.release.advance") == 2


async def test_release_plan_advances_on_its_own_after_the_monitoring_window(service: Service) -> None:
    from datetime import UTC, datetime

    from gapless.flags.service.serve import advance_due

    await setup_project(service)
    started = datetime(2026, 1, 1, tzinfo=UTC)
    stages = [
        {
            "name": "1%",
            "monitoringWindow": "10m",
            "rollout": {
                "split": {
                    "weights": [{"variant": "on", "weight": 1_000}, {"variant": "off", "weight": 99_000}]
                }
            },
        },
        {"name": "100%", "rollout": {"variant": "on"}},
    ]
    doc = flag_doc(rules=[], releasePlan={"stages": stages, "stageStartedAt": started.isoformat()})
    async with service.client() as c:
        assert (await c.post("/api/v1/projects/shop/flags", json=doc)).status_code == 201
    queue = service.hub.subscribe("shop", "production")
    heard: list[object] = []
    assert advance_due(service.store, service.hub, started.timestamp() + 599, heard.append) == 0
    assert advance_due(service.store, service.hub, started.timestamp() + 601, heard.append) == 1
    assert [(c.action, c.flag, c.environment) for c in heard] == [  # type: ignore[attr-defined]
        ("flag.release.advance", "new-checkout", "production")
    ]
    assert advance_due(service.store, service.hub, started.timestamp() + 10_000) == 0  # the last stage stays
    change = queue.get_nowait()
    assert change.revision == 3
    async with service.client() as c:
        log = (await c.get("/api/v1/audit", params={"target": "new-checkout"})).json()["items"]
    assert (log[0]["action"], log[0]["token"]["name"]) == ("flag.release.advance", "gapless release plan")
    assert log[0]["after"]["environments"]["production"]["releasePlan"]["currentStage"] == 1
