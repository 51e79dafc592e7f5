"""Pure pieces: application_name identities, gating decisions, lock backoff and backfill throttling."""

from __future__ import annotations

import itertools

import pytest

from gapless.migrations.gate import (
    Client,
    RevisionSchema,
    application_name,
    blocking_clients,
    blocking_revisions,
    connect_kwargs,
    parse_application_name,
    search_path_for,
)
from gapless.migrations.policy import BatchPolicy, LockPolicy, backoff_delay, next_batch_delay


def test_application_name_round_trip() -> None:
    """gapless:<app>:<version>:<instance> is built and parsed back; an instance may contain colons."""
    name = application_name("shop", "0002_email", "web-1:8080")
    assert name == "gapless:shop:0002_email:web-1:8080"
    assert parse_application_name(name) == ("shop", "0002_email", "web-1:8080")
    assert parse_application_name("gapless:shop::web-1") == ("shop", "", "web-1")
    for other in ("psql", "gapless-migrate", "gapless:shop:v1", "gapless::v1:i"):
        assert parse_application_name(other) is None


@pytest.mark.parametrize(
    ("app", "version", "instance", "fragment"),
    [
        ("", "v", "i", "empty"),
        ("a:b", "v", "i", "':'"),
        ("shop", "v:1", "i", "':'"),
        ("shop", "v", "x" * 60, "63"),
    ],
)
def test_application_name_refuses_what_postgres_would_mangle(
    app: str, version: str, instance: str, fragment: str
) -> None:
    """Names PostgreSQL would truncate, or that would not parse back, are refused up front."""
    with pytest.raises(ValueError, match=fragment):
        application_name(app, version, instance)


def test_connect_kwargs_set_identity_and_schema_version() -> None:
    """One call gives a connection its identity and its schema version's search_path."""
    assert connect_kwargs("shop", "m2", "web-1") == {
        "application_name": "gapless:shop:m2:web-1",
        "options": "-c search_path=public_m2",
    }
    assert connect_kwargs("shop", None, "w", schema="app")["options"] == "-c search_path=app"
    assert search_path_for("m2", prefix="Shop", also=["ext"]) == '"Shop_m2", ext'
    assert connect_kwargs("s", "m2", "w", also=["ext"])["options"] == "-c search_path=public_m2,\\ ext"


def test_blocking_clients_and_revisions() -> None:
    """Every identified client or running revision of another version blocks complete; the new version does not."""
    clients = [Client("shop", "m1", "a"), Client("shop", "m2", "b"), Client("shop", "", "c")]
    assert [c.instance for c in blocking_clients("m2", clients)] == ["a", "c"]
    revisions = [
        RevisionSchema("shop", "r1", "m1"),
        RevisionSchema("shop", "r2", "m2"),
        RevisionSchema("shop", "r0", "m0", 0),
    ]
    assert [r.revision for r in blocking_revisions("m2", revisions)] == ["r1"]


def test_backoff_grows_with_jitter_and_a_ceiling() -> None:
    """Each retry waits between half and all of an exponentially growing step, never more than max_delay."""
    policy = LockPolicy(timeout=1, attempts=10, base_delay=0.2, max_delay=3)
    assert [backoff_delay(policy, n, 0.0) for n in (1, 2, 3)] == [0.1, 0.2, 0.4]
    assert [backoff_delay(policy, n, 0.999999) for n in (1, 2, 3)] == pytest.approx([0.2, 0.4, 0.8])
    assert backoff_delay(policy, 30, 0.999999) == pytest.approx(3.0)


def test_backfill_throttles_while_sessions_wait_and_relaxes_after() -> None:
    """The pause doubles while application sessions wait for locks, up to max_delay, and decays after."""
    policy = BatchPolicy(size=100, delay=0.0, max_delay=0.5)
    delays = [0.0]
    for waiters in (1, 1, 1, 1, 0, 0, 0, 0, 0):
        delays.append(next_batch_delay(policy, delays[-1], waiters))
    assert delays[:5] == [0.0, 0.1, 0.2, 0.4, 0.5]
    assert delays[-1] == 0.0
    assert all(b <= a for a, b in itertools.pairwise(delays[4:]))


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda: LockPolicy(timeout=0), "positive"),
        (lambda: LockPolicy(attempts=0), "at least 1"),
        (lambda: BatchPolicy(size=0), "between"),
        (lambda: BatchPolicy(delay=2, max_delay=1), "delay"),
    ],
)
def test_policies_refuse_nonsense(make: object, fragment: str) -> None:
    """Invalid settings fail at construction with a message."""
    with pytest.raises(ValueError, match=fragment):
        make()  # type: ignore[operator]
