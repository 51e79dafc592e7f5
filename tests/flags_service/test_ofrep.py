"""OFREP on the flag service (ASGI, SQLite and PostgreSQL): answers, ETags, errors and tokens."""

from __future__ import annotations

from typing import Any

from gapless.flags.evaluate import compile_ruleset
from tests.flags_service.conftest import Service, flag_doc


async def sdk_setup(svc: Service, flag: dict[str, Any] | None = None) -> str:
    """A project with one flag, and an SDK token for its production environment."""
    async with svc.client() as c:
        r = await c.put("/api/v1/projects/shop", json={"environments": ["staging", "production"]})
        assert r.status_code == 200, r.text
        assert (await c.post("/api/v1/projects/shop/flags", json=flag or flag_doc())).status_code == 201
        r = await c.post(
            "/api/v1/tokens",
            json={"kind": "sdk", "name": "ofrep", "project": "shop", "environment": "production"},
        )
        return str(r.json()["token"])


async def test_single_flag_answers_as_the_evaluator_does(service: Service) -> None:
    """Value, variant, reason and rule index over OFREP are the evaluator's on the same ruleset."""
    token = await sdk_setup(service)
    async with service.client(token) as c:
        ruleset = compile_ruleset((await c.get("/sdk/v1/ruleset")).json())
        for ctx in ({"targetingKey": "u1", "plan": "pro"}, *({"targetingKey": f"u{i}"} for i in range(200))):
            r = await c.post("/ofrep/v1/evaluate/flags/new-checkout", json={"context": ctx})
            assert r.status_code == 200, r.text
            ev = ruleset.evaluate("new-checkout", ctx)
            body = r.json()
            assert (body["value"], body["variant"], body["reason"]) == (ev.value, ev.variant, ev.reason)
            assert body["metadata"].get("ruleIndex") == ev.rule_index
            assert body["key"] == "new-checkout"


async def test_unknown_flag_is_404_and_missing_key_is_400(service: Service) -> None:
    """An unknown flag is FLAG_NOT_FOUND (404); a split without a key is TARGETING_KEY_MISSING (400)."""
    token = await sdk_setup(service)
    async with service.client(token) as c:
        r = await c.post("/ofrep/v1/evaluate/flags/nope", json={"context": {"targetingKey": "u"}})
        assert r.status_code == 404
        assert r.json()["errorCode"] == "FLAG_NOT_FOUND"
        assert r.json()["key"] == "nope"
        r = await c.post("/ofrep/v1/evaluate/flags/new-checkout", json={"context": {}})
        assert r.status_code == 400
        assert r.json()["errorCode"] == "TARGETING_KEY_MISSING"


async def test_malformed_bodies_are_invalid_context_naming_the_fault(service: Service) -> None:
    """A body that is not JSON, a context that is not an object, a non-string targetingKey: 400s."""
    token = await sdk_setup(service)
    async with service.client(token) as c:
        for content, words in (
            (b"{not json", "not JSON"),
            (b"[1, 2]", "must be an object"),
            (b'{"context": "u1"}', "`context` must be an object"),
            (b'{"context": {"targetingKey": 5}}', "targetingKey"),
        ):
            for url in ("/ofrep/v1/evaluate/flags/new-checkout", "/ofrep/v1/evaluate/flags"):
                r = await c.post(url, content=content, headers={"Content-Type": "application/json"})
                assert r.status_code == 400, (content, r.text)
                assert r.json()["errorCode"] == "INVALID_CONTEXT"
                assert words in r.json()["errorDetails"], r.json()


async def test_bulk_evaluation_with_etag(service: Service) -> None:
    """The bulk answer has every flag; the same context and ETag is a 304 until the ruleset changes."""
    token = await sdk_setup(service)
    ctx = {"context": {"targetingKey": "u1", "plan": "pro"}}
    async with service.client(token) as c:
        r = await c.post("/ofrep/v1/evaluate/flags", json=ctx)
        assert r.status_code == 200, r.text
        assert [f["key"] for f in r.json()["flags"]] == ["new-checkout"]
        assert r.json()["flags"][0]["value"] is True
        etag = r.headers["etag"]
        same = await c.post("/ofrep/v1/evaluate/flags", json=ctx, headers={"If-None-Match": etag})
        assert same.status_code == 304
        other = await c.post(
            "/ofrep/v1/evaluate/flags",
            json={"context": {"targetingKey": "u2"}},
            headers={"If-None-Match": etag},
        )
        assert other.status_code == 200, "another context must not get a 304 meant for the first"
    async with service.client() as c:
        r = await c.post("/api/v1/projects/shop/flags/new-checkout/environments/production/kill")
        assert r.status_code == 200
    async with service.client(token) as c:
        r = await c.post("/ofrep/v1/evaluate/flags", json=ctx, headers={"If-None-Match": etag})
        assert r.status_code == 200
        assert r.json()["flags"][0] | {"metadata": None} == {
            "key": "new-checkout",
            "value": False,
            "variant": "off",
            "reason": "DISABLED",
            "metadata": None,
        }


async def test_tokens_admin_refused_and_nothing_changes(service: Service) -> None:
    """No token or a wrong one is 401, an admin token 403; X-API-Key works as well as Bearer."""
    token = await sdk_setup(service)
    async with service.client("gfl_000000000000_wrong") as c:
        r = await c.post("/ofrep/v1/evaluate/flags/new-checkout", json={"context": {}})
        assert r.status_code == 401
        assert "token" in r.json()["errorDetails"]
    async with service.client() as c:  # the admin token
        r = await c.post("/ofrep/v1/evaluate/flags", json={"context": {}})
        assert r.status_code == 403
        assert "SDK token" in r.json()["errorDetails"]
    async with service.client("unused") as c:
        c.headers.pop("Authorization")
        r = await c.post(
            "/ofrep/v1/evaluate/flags/new-checkout",
            json={"context": {"targetingKey": "u1", "plan": "pro"}},
            headers={"X-API-Key": token},
        )
        assert r.status_code == 200
    async with service.client(token) as c:
        r = await c.post("/api/v1/projects/shop/flags/new-checkout/environments/production/kill")
        assert r.status_code == 403
    assert service.store.flag("shop", "new-checkout")["environments"]["production"]["enabled"] is True


async def test_evaluations_are_counted_as_usage(service: Service) -> None:
    """OFREP evaluations reach the flag's usage counts, which stale-flag detection reads."""
    token = await sdk_setup(service)
    async with service.client(token) as c:
        for i in range(5):
            r = await c.post(
                "/ofrep/v1/evaluate/flags/new-checkout",
                json={"context": {"targetingKey": "x", "plan": "pro"}},
            )
            assert r.status_code == 200, (i, r.text)
    service.app.state.usage.flush_now()
    report = service.store.flag_report("shop")
    assert report[0]["evaluations"] == {"production/on": 5}
    assert report[0]["lastEvaluatedAt"] is not None


async def test_deep_and_large_bodies_are_4xx(service: Service) -> None:
    """A context nested 100,000 deep is a 400, a chunked body over 256 KiB a 413: never a 500."""
    token = await sdk_setup(service)
    deep = b'{"context": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"

    async def chunks() -> Any:
        for _ in range(300):
            yield b" " * 1024  # no Content-Length: the middleware cannot see the size
        yield b'{"context": {}}'

    async with service.client(token) as c:
        r = await c.post("/ofrep/v1/evaluate/flags/new-checkout", content=deep)
        assert r.status_code == 400, r.text  # 200,000 bytes: under the size limit
        assert "nests too deeply" in r.json()["errorDetails"]
        r = await c.post("/ofrep/v1/evaluate/flags/new-checkout", content=chunks())
        assert r.status_code == 413, r.text
