"""How hard the engine pushes: lock timeouts with backoff, and backfill batches that yield to the application.

Pure functions of their inputs (the random draw is an argument), so the retry and throttle schedules are
tested without a database or a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BatchPolicy", "LockPolicy", "backoff_delay", "next_batch_delay"]


@dataclass(frozen=True)
class LockPolicy:
    """Every DDL statement waits at most ``timeout`` seconds for its lock, and is tried ``attempts`` times.

    A statement that waits for a lock makes every later query on the table wait behind it, so the wait
    must be short: 50 ms by default, so that no application query waits 100 ms on one attempt (the
    lock wait plus the catalog-only statement itself). Between attempts the application's queued
    queries run; the pauses grow (0.1 s, 0.2 s, ... up to 5 s, jittered) for about 90 s in all before
    the command gives up, long enough for most long transactions to end.
    """

    timeout: float = 0.05
    attempts: int = 30
    base_delay: float = 0.1
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("lock timeout must be positive")
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("delays must satisfy 0 <= base_delay <= max_delay")


@dataclass(frozen=True)
class BatchPolicy:
    """Backfill batches: rows per transaction, pause between batches, and the pause's ceiling when throttled."""

    size: int = 1000
    delay: float = 0.0
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if not 1 <= self.size <= 1_000_000:
            raise ValueError("batch size must be between 1 and 1000000")
        if self.delay < 0 or self.max_delay < self.delay:
            raise ValueError("delays must satisfy 0 <= delay <= max_delay")


def backoff_delay(policy: LockPolicy, attempt: int, draw: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): exponential with "equal jitter".

    Half of the exponential step is fixed, half is random (``draw`` in [0, 1)), so retries spread out
    but never collapse to zero.
    """
    step = min(policy.max_delay, policy.base_delay * 2.0 ** (attempt - 1))
    return step / 2 + draw * step / 2


def next_batch_delay(policy: BatchPolicy, current: float, waiters: int) -> float:
    """The pause before the next batch: doubled while application sessions wait for locks, relaxed after."""
    if waiters > 0:
        return min(policy.max_delay, max(current, policy.delay, 0.05) * 2)
    if current > policy.delay:
        relaxed = current / 2
        return relaxed if relaxed > policy.delay + 0.05 else policy.delay
    return policy.delay
