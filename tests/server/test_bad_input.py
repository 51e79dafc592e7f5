"""Regression tests of issue 14: bad input to the control-plane API is a 4xx naming the problem, never a 5xx.

Deep nesting exhausted the recursion limit, ``1e309`` parsed as infinity (unencodable in the answer),
integers of thousands of digits hit Python's conversion limit and big ones SQLite's 64 bits: each was an
"Internal Server Error" before.
"""

from __future__ import annotations

import httpx
import pytest

from gapless.store.sqlite import Store

ROLLOUT = (
    b'{"apiVersion": "gapless.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "web"}, '
    b'"spec": {"listen": "127.0.0.1:8000", "replicas": %s, "template": {"command": ["x"]}}}'
)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than"),
        (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "nested deeper than"),
        (ROLLOUT % b"1e309", "out of range"),
        (ROLLOUT % b"-1e309", "out of range"),
        (ROLLOUT % b"NaN", "not a number"),
        (ROLLOUT % b"Infinity", "not a number"),
        (ROLLOUT % (b"9" * 5000), "out of range"),
        (ROLLOUT % b"99999999999999999999", "out of range"),
        (ROLLOUT % b"true", "spec.replicas"),
    ],
)
async def test_bad_rollout_bodies_are_400_naming_the_problem(
    api: tuple[httpx.AsyncClient, Store], body: bytes, says: str
) -> None:
    """Deep nesting, infinities, NaN, huge integers and a bool for a count are a 400 that says so; nothing is stored."""
    client, store = api
    r = await client.put("/api/v1/rollouts/web", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert says in r.json()["error"]
    assert store.find_rollout("web") is None


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/rollouts/web/undo", b'{"toRevision": 1e309}'),
        ("POST", "/api/v1/rollouts/web/promote", b'{"full": ' * 200 + b"1" + b"}" * 200),
        (
            "POST",
            "/api/v1/events",
            b'{"rollout": "migrations:db", "revision": "1", "type": "MigrationStarted", "message": 123456789012345678901234567890}',
        ),
        (
            "PUT",
            "/api/v1/migrations/db/progress",
            b'{"migration": "m", "table": "t", "rowsDone": 1e400, "rowsEstimate": 1}',
        ),
        ("GET", "/api/v1/events?since=99999999999999999999999", b""),
        ("GET", "/api/v1/audit?since=99999999999999999999999", b""),
        ("GET", "/api/v1/audit?limit=-5", b""),
        ("GET", "/api/v1/rollouts/web/analysis?revision=99999999999999999999999", b""),
    ],
)
async def test_other_endpoints_answer_bad_numbers_with_400(
    api: tuple[httpx.AsyncClient, Store], method: str, path: str, body: bytes
) -> None:
    """Every endpoint taking a body or a numeric parameter answers a bad one with a 400, not a 500."""
    client, _ = api
    r = await client.request(method, path, content=body)
    assert r.status_code == 400, (path, r.status_code, r.text)
    assert r.json()["problems"]
