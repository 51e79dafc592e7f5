"""The controller's view of the database's migrations, for ``requiresSchema`` gating.

With a database (``gapless up --database-url``) the state is read from the database in a thread every
``interval`` seconds, and at once after a migration event is posted (``poke``); a pass of the reconcile
loop only reads the last snapshot, so a slow database never slows the loop. A database that cannot be
read gives a snapshot with an error: revisions that need a schema are then held (fail closed), and the
revisions already running keep running.

Without a database the snapshot is made from the migration events this control plane recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from gapless.providers.schema import (
    MIGRATION_EVENT_PHASES,
    MIGRATION_STREAM_PREFIX,
    DatabaseMigrations,
    snapshot_from_events,
)
from gapless.store.sqlite import Store
from gapless.strategies.schema import SchemaSnapshot

__all__ = ["SchemaWatch"]

log = logging.getLogger("gapless.controller")

EVENTS_TTL = 0.5
"""Seconds an event-made snapshot is reused (the loop asks once per rollout and pass)."""


class SchemaWatch:
    def __init__(
        self,
        store: Store,
        database: DatabaseMigrations | None = None,
        *,
        interval: float = 2.0,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self.database = database
        self.interval = interval
        self._wake = wake
        self._poke = asyncio.Event()
        self._last: SchemaSnapshot | None = None
        self._events_at = float("-inf")

    def snapshot(self) -> SchemaSnapshot:
        """The latest known state (never blocks on the database)."""
        now = time.monotonic()
        if self.database is None:
            if self._last is None or now - self._events_at >= EVENTS_TTL:
                events = self._store.events_of_streams(MIGRATION_STREAM_PREFIX, MIGRATION_EVENT_PHASES)
                self._last = snapshot_from_events(events)
                self._events_at = now
            return self._last
        if self._last is None:
            return SchemaSnapshot(self.database.source, error="not read yet")
        return self._last

    def poke(self) -> None:
        """A migration event arrived: read again now rather than at the next interval."""
        self._events_at = float("-inf")
        self._poke.set()

    async def refresh(self) -> SchemaSnapshot:
        if self.database is None:
            return self.snapshot()
        snap = await asyncio.to_thread(self.database.read)
        if snap != self._last:
            if snap.error and (self._last is None or self._last.error != snap.error):
                log.warning("migration state of %s: %s", snap.source, snap.error)
            self._last = snap
            if self._wake is not None:
                self._wake()
        return snap

    async def run(self) -> None:
        """Refresh from the database until cancelled (returns at once without a database)."""
        if self.database is None:
            return
        try:
            while True:
                await self.refresh()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poke.wait(), self.interval)
                self._poke.clear()
        finally:
            await asyncio.to_thread(self.database.close)
