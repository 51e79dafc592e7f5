"""Changes made through other service processes on the same PostgreSQL reach this process's streams.

Every write transaction on PostgreSQL sends ``NOTIFY gapless_flags, '<project>'``, delivered at commit.
Each ``gapless flags serve`` process listens on its own connection and, on a notification, reads the
rulesets and publishes those with a newer revision than it has seen to its hub, so its SDK streams (gapless,
Unleash streaming) and dashboards hear of a kill switch thrown through any process within one round
trip. Streams compare revisions, so a change this process made itself and hears again is not sent twice.
Changes committed while the listening connection was down are caught up on reconnect (the rulesets are
read again, whatever the notification), so a lost connection delays changes but loses none.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from sqlalchemy.engine import make_url

from gapless.flags.service.hub import Hub
from gapless.flags.service.store import FlagStore

__all__ = ["CHANNEL", "relay_changes"]

CHANNEL = "gapless_flags"
log = logging.getLogger("gapless.flags")


async def relay_changes(store: FlagStore, hub: Hub, *, reconnect: float = 1.0) -> None:
    """Listen for other processes' changes and publish them to ``hub``, until cancelled."""
    conninfo = make_url(store.url).set(drivername="postgresql").render_as_string(hide_password=False)
    seen: dict[tuple[str, str], int] = {}

    async def catch_up() -> None:
        rulesets = await asyncio.to_thread(store.rulesets)
        fresh = [c for c in rulesets if c.revision > seen.get((c.project, c.environment), -1)]
        for c in fresh:
            seen[c.project, c.environment] = c.revision
        if fresh:
            hub.publish(fresh)

    for c in await asyncio.to_thread(store.rulesets):
        seen[c.project, c.environment] = c.revision
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                await catch_up()  # what was committed before LISTEN took effect
                async for _ in conn.notifies():
                    await catch_up()
        except psycopg.OperationalError as e:
            log.warning("listening for flag changes failed (%s); again in %.0f s", e, reconnect)
            await asyncio.sleep(reconnect)
