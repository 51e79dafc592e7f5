"""The Unleash client API on the flag service (ASGI, SQLite and PostgreSQL): features, filters, ETags,
registration, metrics into usage, tokens and bad input."""

from __future__ import annotations

from typing import Any

from tests.flags_service.conftest import Service

ROLLOUT = {
    "attribute": "userId",
    "operator": "inRollout",
    "value": 30_000,
    "bucketing": "unleash",
    "fallback": ["sessionId", "random"],
}


def unleash_flag(key: str, **extra: Any) -> dict[str, Any]:
    """A boolean flag on for a 30% Unleash-bucketed rollout in production."""
    return {
        "key": key,
        "environments": {
            "production": {"enabled": True, "rules": [{"conditions": [dict(ROLLOUT)], "variant": "on"}]}
        },
    } | extra


async def setup(svc: Service) -> str:
    """Project shop with three flags (one not expressible for Unleash), and an SDK token for production."""
    async with svc.client() as c:
        assert (
            await c.put("/api/v1/projects/shop", json={"environments": ["production"]})
        ).status_code == 200
        for doc in (
            unleash_flag("checkout.new", tags=["team:checkout"]),
            unleash_flag("search.v2", impressionData=True),
            {
                "key": "gapless-split",
                "environments": {
                    "production": {
                        "enabled": True,
                        "defaultRollout": {
                            "split": {
                                "weights": [
                                    {"variant": "on", "weight": 50_000},
                                    {"variant": "off", "weight": 50_000},
                                ]
                            }
                        },
                    }
                },
            },
        ):
            r = await c.post("/api/v1/projects/shop/flags", json=doc)
            assert r.status_code == 201, r.text
        r = await c.post(
            "/api/v1/tokens",
            json={"kind": "sdk", "name": "unleash", "project": "shop", "environment": "production"},
        )
        return str(r.json()["token"])


def unleash_client(svc: Service, token: str) -> Any:
    """A client that authenticates as Unleash's SDKs do: the token as the whole Authorization header."""
    c = svc.client(token)
    c.headers["Authorization"] = token
    c.headers["UNLEASH-APPNAME"] = "web"
    c.headers["UNLEASH-INSTANCEID"] = "web-1"
    return c


async def test_features_filters_and_etag(service: Service) -> None:
    """Features come with an ETag (304 while unchanged); namePrefix, project and tag filter them."""
    token = await setup(service)
    async with unleash_client(service, token) as c:
        r = await c.get("/api/client/features")
        assert r.status_code == 200, r.text
        body = r.json()
        assert [f["name"] for f in body["features"]] == ["checkout.new", "search.v2"]
        assert "gapless-split" in body["meta"]["omitted"]
        checkout = body["features"][0]
        assert checkout["strategies"] == [
            {
                "name": "flexibleRollout",
                "parameters": {"rollout": "30", "stickiness": "default", "groupId": "checkout.new"},
                "constraints": [],
            }
        ]
        assert body["features"][1]["impressionData"] is True
        etag = r.headers["etag"]
        assert (await c.get("/api/client/features", headers={"If-None-Match": etag})).status_code == 304
        for params, names in (
            ({"namePrefix": "search"}, ["search.v2"]),
            ({"project": "shop"}, ["checkout.new", "search.v2"]),
            ({"project": "other"}, []),
            ({"tag": "team:checkout"}, ["checkout.new"]),
            ({"tag": "team:nobody"}, []),
        ):
            r = await c.get("/api/client/features", params=params)
            assert [f["name"] for f in r.json()["features"]] == names, params
    async with service.client() as c:
        assert (
            await c.post("/api/v1/projects/shop/flags/checkout.new/environments/production/kill")
        ).status_code == 200
    async with unleash_client(service, token) as c:
        r = await c.get("/api/client/features", headers={"If-None-Match": etag})
        assert r.status_code == 200
        assert r.json()["features"][0]["enabled"] is False
    service.app.state.acks.flush_now()  # reports are written in batches, off the request
    report = service.store.delivery("shop", "production")
    assert report.applied == 1  # the Unleash SDK's fetch counts as having the current revision


async def test_register_and_metrics_count_as_usage(service: Service) -> None:
    """register and metrics answer 202; metrics' yes/no counts reach the usage report of known flags."""
    token = await setup(service)
    async with unleash_client(service, token) as c:
        r = await c.post(
            "/api/client/register", json={"appName": "web", "instanceId": "web-1", "strategies": []}
        )
        assert r.status_code == 202, r.text
        metrics = {
            "appName": "web",
            "instanceId": "web-1",
            "bucket": {
                "start": "2026-01-01T00:00:00Z",
                "stop": "2026-01-01T00:01:00Z",
                "toggles": {
                    "checkout.new": {"yes": 7, "no": 3, "variants": {}},
                    "unknown": {"yes": 1, "no": 0},
                },
            },
        }
        assert (await c.post("/api/client/metrics", json=metrics)).status_code == 202
    service.app.state.usage.flush_now()
    report = {f["key"]: f for f in service.store.flag_report("shop")}
    assert report["checkout.new"]["evaluations"] == {"production/enabled": 7, "production/disabled": 3}
    assert report["search.v2"]["evaluations"] == {}
    assert "unknown" not in report


async def test_bad_bodies_are_400_naming_the_field(service: Service) -> None:
    """Malformed register and metrics bodies are refused with the field named; nothing is counted."""
    token = await setup(service)
    async with unleash_client(service, token) as c:
        for url, content, words in (
            ("/api/client/register", b"{nope", "not JSON"),
            ("/api/client/register", b'{"appName": "web"}', "instanceId"),
            ("/api/client/metrics", b'{"appName": "web", "bucket": {}}', "bucket.toggles"),
            (
                "/api/client/metrics",
                b'{"appName": "web", "bucket": {"toggles": {"checkout.new": {"yes": -1}}}}',
                "bucket.toggles.checkout.new.yes",
            ),
            ("/api/client/metrics", b"[]", "must be an object"),
            ("/api/client/metrics", b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
        ):
            r = await c.post(url, content=content, headers={"Content-Type": "application/json"})
            assert r.status_code == 400, (url, content, r.text)
            assert words in r.json()["message"], r.json()
    service.app.state.usage.flush_now()
    assert all(f["evaluations"] == {} for f in service.store.flag_report("shop"))


async def test_tokens(service: Service) -> None:
    """No or a wrong token is 401, an admin token 403; the SDK token does nothing on the admin API."""
    token = await setup(service)
    async with unleash_client(service, "gfl_000000000000_wrong") as c:
        r = await c.get("/api/client/features")
        assert r.status_code == 401
        assert "token" in r.json()["message"]
    async with service.client() as c:
        c.headers["Authorization"] = service.admin_token
        r = await c.get("/api/client/features")
        assert r.status_code == 403
        assert "SDK token" in r.json()["message"]
        assert (await c.post("/api/client/metrics", json={})).status_code == 403
    async with unleash_client(service, token) as c:
        r = await c.post("/api/v1/projects/shop/flags/checkout.new/environments/production/kill")
        assert r.status_code == 401  # the admin API wants "Bearer": a bare token is no token there
        c.headers["Authorization"] = f"Bearer {token}"
        r = await c.post("/api/v1/projects/shop/flags/checkout.new/environments/production/kill")
        assert r.status_code == 403
    assert service.store.flag("shop", "checkout.new")["environments"]["production"]["enabled"] is True


async def test_bad_unleash_semantics_are_refused_by_field(service: Service) -> None:
    """Bad bucketing, fallback, payload or a self-dependency: 400 naming the field; nothing is stored."""
    await setup(service)
    rollout_bad_bucketing = unleash_flag("bad-1")
    rollout_bad_bucketing["environments"]["production"]["rules"][0]["conditions"][0]["bucketing"] = "ketama"
    random_without_unleash = unleash_flag("bad-2")
    random_without_unleash["environments"]["production"]["rules"][0]["conditions"][0] |= {
        "bucketing": "gapless"
    }
    half_percent = unleash_flag("bad-3")
    half_percent["environments"]["production"]["rules"][0]["conditions"][0]["value"] = 12_500
    self_dependent = {
        "key": "bad-4",
        "environments": {
            "production": {
                "enabled": True,
                "rules": [
                    {
                        "conditions": [{"attribute": "bad-4", "operator": "flagVariant", "values": ["on"]}],
                        "variant": "on",
                    }
                ],
            }
        },
    }
    bad_payload = {
        "key": "bad-5",
        "variants": [
            {"key": "off", "value": False},
            {"key": "on", "value": True, "payload": {"type": "xml", "value": "<a/>"}},
        ],
        "offVariant": "off",
    }
    async with service.client() as c:
        for doc, path in (
            (rollout_bad_bucketing, "bucketing"),
            (random_without_unleash, "fallback[1]"),
            (half_percent, "value"),
            (self_dependent, "attribute"),
            (bad_payload, "variants[1].payload.type"),
        ):
            r = await c.post("/api/v1/projects/shop/flags", json=doc)
            assert r.status_code == 400, (doc["key"], r.text)
            assert any(p["path"].endswith(path) for p in r.json()["problems"]), (doc["key"], r.json())
        keys = {f["key"] for f in (await c.get("/api/v1/projects/shop/flags")).json()["items"]}
    assert keys == {"checkout.new", "search.v2", "gapless-split"}


async def test_delta_polling_is_a_hydration_event(service: Service) -> None:
    """/api/client/delta answers the state as one hydration event, with an ETag and 304 while unchanged."""
    token = await setup(service)
    async with unleash_client(service, token) as c:
        full = (await c.get("/api/client/features")).json()
        r = await c.get("/api/client/delta")
        assert r.status_code == 200, r.text
        (event,) = r.json()["events"]
        assert event["type"] == "hydration"
        assert event["features"] == full["features"]
        assert event["segments"] == full["segments"]
        assert (
            await c.get("/api/client/delta", headers={"If-None-Match": r.headers["etag"]})
        ).status_code == 304
