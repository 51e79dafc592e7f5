"""The pause before a write that met a 409 is tried again on a cluster: short, growing, bounded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gapless.cli.kube import RETRIES, _backoff


@given(st.integers(min_value=0, max_value=RETRIES - 2))
def test_each_pause_is_jittered_within_its_band(attempt: int) -> None:
    ceiling = min(0.5, 0.02 * 2**attempt)
    assert ceiling / 2 <= _backoff(attempt) <= ceiling


def test_all_retries_wait_less_than_two_seconds() -> None:
    """Under the operator's own writes the retries spread out, yet a command never waits long."""
    ceilings = [min(0.5, 0.02 * 2**a) for a in range(RETRIES - 1)]
    assert ceilings == sorted(ceilings)
    assert sum(ceilings) < 2.0
    assert sum(_backoff(a) for a in range(RETRIES - 1)) < 2.0
