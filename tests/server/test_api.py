"""The control plane API: token required, bad input rejected with field paths, nothing stored on error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from gapless.server.auth import read_token
from gapless.store.sqlite import Store


def doc(name: str = "shop", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {"listen": "127.0.0.1:18999", "template": {"command": ["true"]}} | spec,
    }


async def test_token_is_required_and_stored_hashed(
    api: tuple[httpx.AsyncClient, Store], state_dir: Path
) -> None:
    """Without or with a wrong token every API call is 401; the database holds only the digest."""
    client, store = api
    assert (await client.get("/healthz")).status_code == 200
    r = await client.get("/api/v1/rollouts", headers={"Authorization": ""})
    assert r.status_code == 401
    r = await client.put("/api/v1/rollouts/shop", json=doc(), headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert store.rollouts() == []
    token = read_token(state_dir)
    assert store.get_meta("api_token_sha256") != token
    assert (state_dir / "token").stat().st_mode & 0o077 == 0


async def test_bad_spec_is_400_with_every_problem_and_nothing_stored(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    """A bad document gets a 400 listing each problem by path; the store is untouched."""
    client, store = api
    bad = doc(replicas=-1, strategy={"rollingUpdate": {"maxSurge": "x"}})
    r = await client.put("/api/v1/rollouts/shop", json=bad)
    assert r.status_code == 400
    paths = {p["path"] for p in r.json()["problems"]}
    assert {"spec.replicas", "spec.strategy.rollingUpdate.maxSurge"} <= paths
    r = await client.put("/api/v1/rollouts/other", json=doc())
    assert r.status_code == 400
    assert r.json()["problems"][0]["path"] == "metadata.name"
    r = await client.put("/api/v1/rollouts/shop", content=b"{not json")
    assert r.status_code == 400
    r = await client.put("/api/v1/rollouts/shop", content=b"x" * (2 << 20))
    assert r.status_code == 400
    assert store.rollouts() == []


async def test_apply_generation_and_unknown_names(api: tuple[httpx.AsyncClient, Store]) -> None:
    """Applying bumps the generation only on change; unknown rollouts are 404; a bad undo is 400."""
    client, _ = api
    r = await client.put("/api/v1/rollouts/shop", json=doc())
    assert r.status_code == 200
    assert (r.json()["generation"], r.json()["changed"]) == (1, True)
    r = await client.put("/api/v1/rollouts/shop", json=doc())
    assert (r.json()["generation"], r.json()["changed"]) == (1, False)
    r = await client.put("/api/v1/rollouts/shop", json=doc(replicas=3))
    assert (r.json()["generation"], r.json()["changed"]) == (2, True)
    assert (await client.get("/api/v1/rollouts/nope")).status_code == 404
    assert (await client.post("/api/v1/rollouts/nope/pause")).status_code == 404
    r = await client.post("/api/v1/rollouts/shop/undo", json={"toRevision": "two"})
    assert r.status_code == 400
    assert (await client.get("/api/v1/events", params={"since": "x"})).status_code == 400
    r = await client.put("/api/v1/rollouts/cart", json=doc("cart"))
    assert r.status_code == 400
    assert r.json()["problems"][0]["path"] == "spec.listen"


async def test_every_authenticated_change_is_audited(api: tuple[httpx.AsyncClient, Store]) -> None:
    """Changes (accepted or refused) are in the audit log with their answer; reads and 401s are not."""
    client, store = api
    assert (await client.put("/api/v1/rollouts/shop", json=doc())).status_code == 200
    assert (await client.post("/api/v1/rollouts/shop/pause")).status_code == 200
    assert (await client.post("/api/v1/rollouts/nope/pause")).status_code == 404
    await client.get("/api/v1/rollouts/shop")
    assert (
        await client.post("/api/v1/rollouts/shop/resume", headers={"Authorization": ""})
    ).status_code == 401
    items = (await client.get("/api/v1/audit")).json()["items"]
    assert [(i["method"], i["path"], i["status"]) for i in items] == [
        ("PUT", "/api/v1/rollouts/shop", 200),
        ("POST", "/api/v1/rollouts/shop/pause", 200),
        ("POST", "/api/v1/rollouts/nope/pause", 404),
    ]
    assert (await client.get("/api/v1/audit", params={"since": items[1]["id"]})).json()["items"] == items[2:]
    assert (await client.get("/api/v1/audit", params={"limit": "0"})).status_code == 400
    assert store.rollout("shop").spec["spec"]["paused"] is True


async def test_bad_router_settings_and_backtracking_regex_are_400_naming_the_field(
    api: tuple[httpx.AsyncClient, Store],
) -> None:
    """spec.router refuses bools, infinities and non-positive values; a regex the safe engine refuses is a 400."""
    client, store = api
    router = {"maxConnections": True, "backendTimeoutSeconds": 0, "idleTimeoutSeconds": "inf"}
    evil = {"headerName": "X-User", "headerValue": {"regex": "^(a+)\\1$"}}
    canary = {"canary": {"steps": [{"setHeaderRoute": {"match": [evil]}}]}}
    r = await client.put("/api/v1/rollouts/shop", json=doc(router=router, strategy=canary))
    assert r.status_code == 400
    problems = {p["path"]: p["message"] for p in r.json()["problems"]}
    assert problems["spec.router.maxConnections"] == "must be an integer"
    assert "greater than 0" in problems["spec.router.backendTimeoutSeconds"]
    assert problems["spec.router.idleTimeoutSeconds"] == "must be a number of seconds"
    regex = problems["spec.strategy.canary.steps.0.setHeaderRoute.match.0.headerValue.regex"]
    assert "backreferences" in regex
    assert store.rollouts() == []
