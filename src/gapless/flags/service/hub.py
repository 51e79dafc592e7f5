"""In-process fan-out of new ruleset revisions to the SDK streams connected to this service process.

Each stream has a queue of one: an SDK only ever needs the newest ruleset, so a slow reader never makes
the service hold a backlog, and a burst of changes collapses into the last one. ``publish`` is called on
the event loop after the change is committed, so a stream never announces a revision that could still
be rolled back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from gapless.flags.service.store import RulesetChange

__all__ = ["Hub"]


class Hub:
    def __init__(self) -> None:
        self._subscribers: dict[tuple[str, str], set[asyncio.Queue[RulesetChange]]] = {}

    def subscribe(self, project: str, environment: str) -> asyncio.Queue[RulesetChange]:
        queue: asyncio.Queue[RulesetChange] = asyncio.Queue(maxsize=1)
        self._subscribers.setdefault((project, environment), set()).add(queue)
        return queue

    def unsubscribe(self, project: str, environment: str, queue: asyncio.Queue[RulesetChange]) -> None:
        subs = self._subscribers.get((project, environment))
        if subs is not None:
            subs.discard(queue)
            if not subs:
                del self._subscribers[project, environment]

    def connected(self, project: str, environment: str) -> int:
        return len(self._subscribers.get((project, environment), ()))

    def publish(self, changes: Iterable[RulesetChange]) -> None:
        for change in changes:
            for queue in self._subscribers.get((change.project, change.environment), ()):
                if queue.full():
                    queue.get_nowait()  # only the newest ruleset matters
                queue.put_nowait(change)
