"""Replica math of the rolling update, as Kubernetes' deployment controller does it.

``resolve_fenceposts`` turns maxSurge/maxUnavailable (counts or percentages of the desired replicas) into
absolute numbers: surge rounds up, unavailable rounds down, and when both come out as zero
maxUnavailable becomes 1 so that a rollout can always make progress.
"""

from __future__ import annotations

__all__ = ["resolve_fenceposts", "scaled_value"]


def scaled_value(value: int | str, total: int, *, round_up: bool) -> int:
    """An int-or-percent resolved against ``total``."""
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        raise ValueError(f"not an integer or percentage: {value!r}")
    pct = int(value[:-1])
    exact = pct * total
    return -(-exact // 100) if round_up else exact // 100


def resolve_fenceposts(max_surge: int | str, max_unavailable: int | str, desired: int) -> tuple[int, int]:
    """Absolute (surge, unavailable) for ``desired`` replicas, following Kubernetes' ResolveFenceposts."""
    surge = scaled_value(max_surge, desired, round_up=True)
    unavailable = scaled_value(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable
