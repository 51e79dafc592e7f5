"""One injected clock.

Every pure function takes ``now`` as an argument; the loops that call them read it from a ``Clock`` and
sleep through the same clock, so tests can substitute a clock that jumps instead of patching time.
Wall-clock time (``time.time``) is used because it is persisted and compared across process restarts:
a monotonic clock does not survive a restart of the control plane.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    """A source of the current time in seconds since the epoch."""

    def now(self) -> float: ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to; for tests of time-dependent logic."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._now += seconds
