"""Living with a state that cannot be written for a while (a full disk, a read-only file system).

A failed write rolls its transaction back (``gapless.store.sqlite``), so the state stays consistent; the
question is only what the running tasks do meanwhile. None of them ends: a reconcile pass that cannot
write stops where it is and the loop tries again after a backoff (0.5 s doubling to 5 s), probes keep
probing and their results are written by the next pass that can (level-triggered), a stop waits with
its last write until it succeeds. Events that could not be stored wait here, in order and bounded,
until one can; the failure itself is logged (first, then every 30 s), shown as the ``StateWritable``
condition by the API while it lasts, and stored as a ``StateWriteFailed`` event once it is over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from gapless.core.errors import StateWriteError
from gapless.store.sqlite import Store, WriteFailure

__all__ = [
    "PendingEvents",
    "retry_writes",
    "write_backoff",
    "write_condition",
    "write_failed_message",
]

log = logging.getLogger("gapless.controller")

MAX_PENDING_EVENTS = 1000
LOG_EVERY = 30.0


def write_backoff(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: 0.5 s doubling to 5 s."""
    return float(min(5.0, 0.5 * 2 ** max(0, attempts - 1)))


def write_condition(failure: WriteFailure | None) -> dict[str, Any] | None:
    """The ``StateWritable=False`` condition while writes fail (None when they work)."""
    if failure is None:
        return None
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(failure.since))
    return {
        "type": "StateWritable",
        "status": "False",
        "reason": "WriteFailed",
        "message": f"state.db cannot be written: {failure.message}; retrying ({failure.attempts} attempts)",
        "lastTransitionTime": stamp,
    }


def write_failed_message(failure: WriteFailure) -> str:
    """What a ``StateWriteFailed`` event says once the failure is over."""
    end = failure.until if failure.until is not None else time.time()
    return (
        f"state.db could not be written for {end - failure.since:.0f}s ({failure.attempts} attempts): "
        f"{failure.message}; every write was retried until it succeeded"
    )


class PendingEvents:
    """Events not stored yet because the state could not be written; stored in order once it can."""

    def __init__(self, store: Store, limit: int = MAX_PENDING_EVENTS) -> None:
        self._store = store
        self._events: deque[tuple[float, str, str, str, str]] = deque(maxlen=limit)
        self.dropped = 0
        self._logged_at = 0.0

    def __len__(self) -> int:
        return len(self._events)

    def add(self, time_: float, rollout: str, revision: str, type_: str, message: str) -> None:
        if len(self._events) == self._events.maxlen:
            self.dropped += 1  # the oldest goes; the log has it
        self._events.append((time_, rollout, revision, type_, message))

    def flush(self) -> None:
        """Store what waits, oldest first, in one transaction; raises ``StateWriteError`` if still failing."""
        if not self._events:
            return
        with self._store.transaction():
            for e in self._events:
                self._store.add_event(*e)
        self._events.clear()

    def note(self, error: StateWriteError) -> None:
        """Log a failing write: the first time, then every 30 s."""
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            log.warning("cannot write the state: %s; retrying with backoff (events wait in memory)", error)


async def retry_writes(write: Callable[[], None], what: str) -> None:
    """Do ``write`` until it succeeds, waiting ``write_backoff`` between attempts that could not write."""
    attempts = 0
    while True:
        try:
            write()
            return
        except StateWriteError as e:
            attempts += 1
            delay = write_backoff(attempts)
            if attempts == 1 or attempts % 10 == 0:
                log.warning("%s: %s; retrying in %.1fs", what, e, delay)
            await asyncio.sleep(delay)
