"""Header and cookie routes, and sticky splits by a hash of a header or cookie."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from gapless.router.config import Backend, Route, RouteMatch, RouterConfig, Stickiness, StringMatch
from gapless.router.sticky import BUCKETS, bucket_of, murmur3_32
from tests.router.backends import TestBackend
from tests.router.conftest import RouterHarness

MakeBackend = Callable[..., Awaitable[TestBackend]]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0),
        (b"hello", 613153351),
        (b"foo", 4138058784),
        (b"The quick brown fox jumps over the lazy dog", 0x2E4FF723),
    ],
)
def test_murmur3_matches_reference_vectors(data: bytes, expected: int) -> None:
    """The sticky hash is MurmurHash3 x86 32-bit with seed 0, as the config contract says."""
    assert murmur3_32(data) == expected


async def _push(harness: RouterHarness, a: TestBackend, b: TestBackend, **routing: object) -> None:
    harness.version += 1
    config = RouterConfig.model_validate(
        {
            "version": harness.version,
            "backends": [
                Backend(id=a.id, port=a.port, revision="stable").model_dump(),
                Backend(id=b.id, port=b.port, revision="canary").model_dump(),
            ],
            **routing,
        }
    )
    await harness.admin_client.put_config(config)


async def test_header_and_cookie_routes(harness: RouterHarness, backends: MakeBackend) -> None:
    """Requests matching every condition of a route reach its revision even at weight 0; others follow weights."""
    stable, canary = await backends("stable1"), await backends("canary1")
    routes = (
        Route(match=(RouteMatch(header="X-Canary", value=StringMatch(exact="1")),), revision="canary"),
        Route(match=(RouteMatch(cookie="beta", value=StringMatch(prefix="yes")),), revision="canary"),
        Route(
            match=(
                RouteMatch(header="user-agent", value=StringMatch(regex=r"Mobile")),
                RouteMatch(header="X-Region", value=StringMatch(exact="eu")),
            ),
            revision="canary",
        ),
    )
    await _push(harness, stable, canary, weights={"canary": 0, "stable": 1}, routes=routes)

    async def backend_for(headers: dict[str, str]) -> str:
        return (await harness.http.get("/", headers=headers)).headers["x-backend"]

    assert await backend_for({}) == "stable1"
    assert await backend_for({"x-canary": "1"}) == "canary1"
    assert await backend_for({"X-Canary": "2"}) == "stable1"
    assert await backend_for({"Cookie": "a=b; beta=yes-please"}) == "canary1"
    assert await backend_for({"Cookie": "beta=no"}) == "stable1"
    assert await backend_for({"User-Agent": "x Mobile y", "X-Region": "eu"}) == "canary1"
    assert await backend_for({"User-Agent": "x Mobile y"}) == "stable1"


async def test_sticky_split_keeps_users_and_only_grows(harness: RouterHarness, backends: MakeBackend) -> None:
    """A user keeps its revision; revisions own bucket ranges by weight, so growing the first only adds users."""
    stable, canary = await backends("stable1"), await backends("canary1")
    sticky = Stickiness(header="X-User")
    await _push(harness, stable, canary, weights={"canary": 20, "stable": 80}, stickiness=sticky)
    users = [f"user-{i}" for i in range(200)]
    first: dict[str, str] = {}
    for user in users:
        seen = {
            (await harness.http.get("/", headers={"X-User": user})).headers["x-backend"] for _ in range(2)
        }
        assert len(seen) == 1
        first[user] = seen.pop()
        expected = "canary1" if bucket_of(user.encode()) < BUCKETS * 20 // 100 else "stable1"
        assert first[user] == expected
    assert 20 <= Counter(first.values())["canary1"] <= 65
    without_key = Counter([(await harness.http.get("/")).headers["x-backend"] for _ in range(10)])
    assert without_key == {"canary1": 2, "stable1": 8}
    await _push(harness, stable, canary, weights={"canary": 50, "stable": 50}, stickiness=sticky)
    for user in users:
        now = (await harness.http.get("/", headers={"X-User": user})).headers["x-backend"]
        if first[user] == "canary1":
            assert now == "canary1"


async def test_sticky_by_cookie(harness: RouterHarness, backends: MakeBackend) -> None:
    """Stickiness by cookie reads the named cookie among others."""
    stable, canary = await backends("stable1"), await backends("canary1")
    await _push(
        harness, stable, canary, weights={"canary": 50, "stable": 50}, stickiness=Stickiness(cookie="uid")
    )
    for i in range(20):
        expected = "canary1" if bucket_of(b"u%d" % i) < BUCKETS // 2 else "stable1"
        r = await harness.http.get("/", headers={"Cookie": f"theme=dark; uid=u{i}"})
        assert r.headers["x-backend"] == expected
