"""What the protocol faces keep between requests, and the rules that make keeping it safe.

Encoded Unleash answers are kept per key and revision (never served at another revision, bounded in
number); verified SDK tokens are kept for a second at most and dropped at once when a token is revoked
through this process; OFREP event stream channels are accepted only exactly.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gapless.flags.service.hub import Hub
from gapless.flags.service.ofrep import channel_of
from gapless.flags.service.protocol import Revisions, SdkScope, SdkTokens
from gapless.flags.service.store import RulesetChange
from gapless.flags.service.tokens import TokenRecord, digest, split_token
from gapless.flags.service.unleash_api import _Bodies
from tests.flags_service.conftest import Service
from tests.flags_service.test_ofrep import sdk_setup

OPS = st.lists(
    st.tuples(st.sampled_from(["put", "get"]), st.integers(0, 6), st.integers(1, 4), st.binary(max_size=3)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS, st.integers(1, 5))
def test_bodies_serve_only_the_revision_put_and_stay_bounded(ops: list[Any], limit: int) -> None:
    """A hit is exactly the last body put for that key at that revision; never more than `limit` entries."""
    bodies = _Bodies()
    bodies.limit = limit
    model: dict[int, tuple[int, str, bytes]] = {}
    for op, key, revision, body in ops:
        if op == "put":
            bodies.put((key,), revision, f"e{revision}", body)
            model[key] = (revision, f"e{revision}", body)
        else:
            hit = bodies.get((key,), revision)
            if hit is not None:  # evicted entries are misses; a hit must be the model's
                assert model[key][0] == revision
                assert hit == (model[key][1], model[key][2])
        assert len(bodies._cache) <= limit


class _Request:
    """What SdkTokens reads of a request: its headers."""

    def __init__(self, token: str) -> None:
        self.headers = {"authorization": f"Bearer {token}"}


class _Tokens:
    """A token table of one SDK token (the store's ``find_token``), revocable."""

    def __init__(self, token: str) -> None:
        self.record = TokenRecord(split_token(token) or "", "t", "sdk", "p", "prod", digest(token), 0.0)

    def find_token(self, id_: str) -> TokenRecord | None:
        return self.record if id_ == self.record.id else None

    def revoke(self, at: float) -> None:
        self.record = replace(self.record, revoked_at=at)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["tick", "ask", "revoke", "forget"]), max_size=30))
def test_verified_tokens_never_outlive_ttl_after_revocation(steps: list[str]) -> None:
    """After a revocation a token is refused once `ttl` passed or the cache was told to forget, never later."""
    token = "gfl_aaaaaaaaaaaa_secret"  # noqa: S105 -- a test token, never a real one
    table = _Tokens(token)
    now = [0.0]
    tokens = SdkTokens(table, clock=lambda: now[0])  # type: ignore[arg-type]
    revoked_at: float | None = None
    forgotten = False
    for step in steps:
        if step == "tick":
            now[0] += 0.4
        elif step == "revoke" and revoked_at is None:
            table.revoke(now[0])
            revoked_at = now[0]
        elif step == "forget":
            tokens.forget()
            forgotten = revoked_at is not None
        found = tokens.scope(_Request(token))  # type: ignore[arg-type]
        if revoked_at is None:
            assert found == SdkScope("aaaaaaaaaaaa", "p", "prod")
        elif forgotten or now[0] - revoked_at >= tokens.ttl:
            assert isinstance(found, tuple)
            assert found[0] == 401
    assert tokens.scope(_Request("gfl_aaaaaaaaaaaa_wrong"))[0] == 401  # type: ignore[arg-type,index]


def test_channels_are_exact(tmp_path: Path) -> None:
    """A channel is the token's id and an HMAC of its digest; another token's or a changed one differs."""
    a = TokenRecord("aaaaaaaaaaaa", "a", "sdk", "p", "prod", "d" * 64, 0.0)
    b = TokenRecord("aaaaaaaaaaaa", "a", "sdk", "p", "prod", "e" * 64, 0.0)
    assert channel_of(a).startswith("aaaaaaaaaaaa.")
    assert channel_of(a) == channel_of(a)
    assert channel_of(a) != channel_of(b)


async def test_a_revoked_token_is_refused_at_once(service: Service) -> None:
    """A token verified a moment ago and then revoked through the admin API is a 401 on the next request."""
    token = await sdk_setup(service)
    async with service.client(token) as c:
        assert (
            await c.post("/ofrep/v1/evaluate/flags", json={"context": {"targetingKey": "u"}})
        ).status_code == 200
    async with service.client() as admin:
        assert (await admin.delete(f"/api/v1/tokens/{token.split('_')[1]}")).status_code == 200
    async with service.client(token) as c:
        assert (
            await c.post("/ofrep/v1/evaluate/flags", json={"context": {"targetingKey": "u"}})
        ).status_code == 401
        c.headers["Authorization"] = token
        assert (await c.get("/api/client/features")).status_code == 401


class _Revisions:
    """A ruleset table of one environment (the store's ``revision``), written behind the hub's back."""

    def __init__(self) -> None:
        self.current = 1

    def revision(self, project: str, environment: str) -> int:
        return self.current


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["write", "publish", "tick"]), max_size=40))
def test_revisions_never_lag_a_publish_nor_the_database_beyond_ttl(steps: list[str]) -> None:
    """A published revision is seen at once; a write only in the database within `ttl`; never a lower one."""
    table, hub, now = _Revisions(), Hub(), [0.0]
    revisions = Revisions(table, hub, clock=lambda: now[0])  # type: ignore[arg-type]
    written_at: dict[int, float] = {1: 0.0}
    published = 0
    last = 0
    for step in steps:
        if step == "write":  # another process's write the relay has not passed on
            table.current += 1
            written_at[table.current] = now[0]
        elif step == "publish":  # this process's write: committed, then published
            table.current += 1
            written_at[table.current] = now[0]
            published = table.current
            hub.publish([RulesetChange("p", "e", table.current, "{}", now[0])])
        else:
            now[0] += 0.2
        got = revisions.get("p", "e")
        assert got >= published
        assert got >= last  # never goes back
        assert got <= table.current
        newest_due = (
            max(r for r, at in written_at.items() if now[0] - at >= revisions.ttl)
            if any(now[0] - at >= revisions.ttl for at in written_at.values())
            else 0
        )
        assert got >= newest_due
        last = got
