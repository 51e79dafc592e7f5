"""Schema gating decisions (pure): when code written for a schema version may run."""

from __future__ import annotations

import pytest

from gapless.strategies.schema import (
    MigrationState,
    SchemaSnapshot,
    describe_unrunnable,
    rollback_barrier,
    schema_gate,
    schema_gone,
)


def snap(*states: tuple[str, str], error: str = "") -> SchemaSnapshot:
    return SchemaSnapshot(
        "db",
        tuple(MigrationState(n, p, 1.0) for n, p in states),
        error=error,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("states", "verdict"),
    [
        ((), "m1 has not started (db); run `gapless migrate start` with its file first"),
        ((("m0", "completed"),), "m1 has not started"),
        ((("m1", "starting"),), "m1 is starting"),
        ((("m1", "started"),), None),
        ((("m1", "completing"),), None),
        ((("m1", "completed"),), None),
        ((("m1", "rolling_back"),), "m1 was rolled back (rolling_back)"),
        ((("m1", "rolled_back"),), "m1 was rolled back (rolled_back)"),
        ((("m1", "completed"), ("m2", "started")), None),  # m1's version is still served beside m2's
        (
            (("m1", "completed"), ("m2", "completing")),
            "schema version m1 is gone: migration m2 is completing",
        ),
        ((("m1", "completed"), ("m2", "completed")), "schema version m1 is gone: migration m2 was completed"),
    ],
)
def test_gate(states: tuple[tuple[str, str], ...], verdict: str | None) -> None:
    result = schema_gate("m1", snap(*states))
    if verdict is None:
        assert result is None
    else:
        assert result is not None
        assert verdict in result


def test_unreadable_source_holds_and_says_why() -> None:
    result = schema_gate("m1", snap(("m1", "started"), error="connection refused"))
    assert result == "cannot tell whether migration m1 has started: db: connection refused"


def test_barrier_is_the_latest_completed_migration() -> None:
    s = snap(("0001_a", "completed"), ("0003_c", "started"), ("0002_b", "completed"))
    barrier = rollback_barrier(s)
    assert barrier is not None
    assert barrier.name == "0002_b"
    assert schema_gone("0001_a", s) is not None
    assert schema_gone("0002_b", s) is None
    assert schema_gone("0003_c", s) is None
    assert rollback_barrier(snap(("0001_a", "started"))) is None
    assert describe_unrunnable([(1, "0001_a"), (2, "0002_b"), (3, "0003_c")], s) == [
        "revision 1 (schema version 0001_a is gone: migration 0002_b was completed, which removes every "
        "older schema version)"
    ]
