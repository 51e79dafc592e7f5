"""Table tests of the replica math against Kubernetes' ResolveFenceposts."""

from __future__ import annotations

import pytest

from gapless.strategies.replicas import resolve_fenceposts, scaled_value


@pytest.mark.parametrize(
    ("surge", "unavailable", "desired", "expected"),
    [
        (2, 1, 10, (2, 1)),
        ("25%", "25%", 10, (3, 2)),  # surge rounds up, unavailable rounds down
        ("25%", "25%", 4, (1, 1)),
        ("25%", "25%", 1, (1, 0)),
        ("10%", "10%", 5, (1, 0)),
        ("0%", "10%", 5, (0, 1)),  # both resolve to 0: unavailable becomes 1
        (0, "10%", 5, (0, 1)),
        ("50%", 0, 3, (2, 0)),
        ("100%", "0%", 4, (4, 0)),
        (0, 1, 0, (0, 1)),
        ("30%", "30%", 0, (0, 1)),
        ("200%", 0, 3, (6, 0)),
    ],
)
def test_resolve_fenceposts(
    surge: int | str, unavailable: int | str, desired: int, expected: tuple[int, int]
) -> None:
    """Surge rounds up, unavailable rounds down, and both-zero becomes unavailable 1."""
    assert resolve_fenceposts(surge, unavailable, desired) == expected


@pytest.mark.parametrize(
    ("value", "total", "round_up", "expected"),
    [(3, 10, True, 3), ("33%", 10, True, 4), ("33%", 10, False, 3), ("0%", 7, True, 0), ("1%", 1, True, 1)],
)
def test_scaled_value(value: int | str, total: int, round_up: bool, expected: int) -> None:
    """Percentages resolve against the total in the requested rounding direction."""
    assert scaled_value(value, total, round_up=round_up) == expected
