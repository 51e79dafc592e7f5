"""Deployment events as Grafana annotations, sent from a background task that never holds up a rollout.

``Controller.event`` stores every event first and then hands it to ``AnnotationSender.submit``, which
only appends to a bounded queue (``put_nowait``): a full queue drops the annotation and counts it, so a
slow or dead Grafana can never block the reconcile loop or grow memory without bound. ``run()`` takes
annotations off the queue one at a time and POSTs each to ``{url}/api/annotations`` (Grafana's HTTP API:
``time`` in epoch milliseconds, ``text``, ``tags``) with ``Authorization: Bearer <token>``. A failed
attempt (connection error, timeout, 5xx or 429) is retried with exponential backoff a few times; a
4xx other than 429 is permanent (a bad token does not get better by asking again). Every failure is
logged and counted in ``statistics()``; the event itself is already stored whatever happens here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import httpx

__all__ = ["Annotation", "AnnotationSender", "AnnotationStatistics", "annotation_body"]

log = logging.getLogger("gapless.annotations")

QUEUE_SIZE = 1000
"""Annotations waiting to be sent; beyond that new ones are dropped (and counted)."""
ATTEMPTS = 4
"""Tries per annotation: the first and three retries after 0.5 s, 1 s and 2 s (by default)."""
TIMEOUT = 5.0
"""Seconds one POST may take."""


@dataclass(frozen=True)
class Annotation:
    """One stored event, as much of it as Grafana shows: ``time`` in seconds since the epoch."""

    time: float
    rollout: str
    revision: str
    type: str
    message: str


@dataclass(frozen=True)
class AnnotationStatistics:
    """Counters since start: sent, failed after every attempt, dropped for a full queue, and retries."""

    sent: int
    failed: int
    dropped: int
    retries: int
    queued: int


def annotation_body(a: Annotation) -> dict[str, object]:
    """The JSON Grafana's ``POST /api/annotations`` takes for one event."""
    tags = ["gapless", a.rollout, a.type]
    if a.revision:
        tags.insert(2, a.revision)
    text = f"{a.rollout}: {a.type}"
    if a.message:
        text += f" - {a.message}"
    return {"time": round(a.time * 1000), "text": text, "tags": [t for t in tags if t]}


class AnnotationSender:
    """Posts annotations to one Grafana. Inert until ``run()``; ``submit()`` works before and never blocks."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        queue_size: int = QUEUE_SIZE,
        attempts: int = ATTEMPTS,
        backoff: float = 0.5,
        timeout: float = TIMEOUT,
    ) -> None:
        self._endpoint = url.rstrip("/") + "/api/annotations"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._queue: asyncio.Queue[Annotation] = asyncio.Queue(maxsize=queue_size)
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._timeout = timeout
        self._sent = self._failed = self._dropped = self._retries = 0

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def submit(self, annotation: Annotation) -> bool:
        """Queue an annotation; False (and counted as dropped) when the queue is full."""
        try:
            self._queue.put_nowait(annotation)
        except asyncio.QueueFull:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 100 == 0:
                log.warning("annotation queue full; %d annotation(s) dropped so far", self._dropped)
            return False
        return True

    def statistics(self) -> AnnotationStatistics:
        return AnnotationStatistics(
            sent=self._sent,
            failed=self._failed,
            dropped=self._dropped,
            retries=self._retries,
            queued=self._queue.qsize(),
        )

    async def run(self) -> None:
        """Send queued annotations one by one, forever (until cancelled)."""
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            while True:
                annotation = await self._queue.get()
                try:
                    await self._send(client, annotation)
                finally:
                    self._queue.task_done()

    async def wait_sent(self) -> None:
        """Wait until every queued annotation was sent or given up on."""
        await self._queue.join()

    async def _send(self, client: httpx.AsyncClient, annotation: Annotation) -> None:
        body = annotation_body(annotation)
        for attempt in range(1, self._attempts + 1):
            retry_reason = await self._attempt(client, body)
            if retry_reason is None:
                return
            if attempt == self._attempts:
                self._failed += 1
                log.warning(
                    "could not post annotation %r to %s after %d attempts: %s",
                    body["text"],
                    self._endpoint,
                    attempt,
                    retry_reason,
                )
                return
            self._retries += 1
            await asyncio.sleep(self._backoff * 2 ** (attempt - 1))

    async def _attempt(self, client: httpx.AsyncClient, body: dict[str, object]) -> str | None:
        """One POST; None when done (sent, or refused for good), else why it is worth another try."""
        try:
            r = await client.post(self._endpoint, json=body, headers=self._headers)
        except (httpx.HTTPError, OSError) as e:
            return str(e) or type(e).__name__
        if r.status_code == 429 or r.status_code >= 500:
            return f"HTTP {r.status_code}"
        if r.status_code >= 400:
            self._failed += 1
            log.warning(
                "grafana refused annotation %r: HTTP %d %s", body["text"], r.status_code, r.text[:200]
            )
            return None
        self._sent += 1
        return None
