"""What the protocol faces (OFREP, the Unleash client API) share: SDK tokens, compiled rulesets, usage counts.

The protocol faces translate; they do not evaluate on their own. Each request reads the current ruleset
of the token's project environment (one indexed row) and evaluates with the same compiled engine the
Python SDK uses; a ruleset is compiled once per revision and kept until the next one. Evaluations made
on the service (OFREP) and counts that SDKs report (Unleash metrics) go into the same usage table as the
Python SDK's counts, so stale-flag detection sees every kind of SDK. Service-side counts are added up in
memory and written once a second in a thread, never per request; so are the reports of which revision
each SDK has (``Acks``, every 50 ms): a poll never waits for a database write.

Tokens: OFREP clients send ``Authorization: Bearer <token>`` or ``X-API-Key: <token>``; Unleash SDKs send
the token as the whole ``Authorization`` header. Only SDK tokens are accepted (an admin token is a 403,
as an SDK token is on the admin API), and the token names the one project environment served.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from gapless.flags.evaluate import CompiledRuleset, compile_ruleset
from gapless.flags.service.hub import Hub
from gapless.flags.service.store import AppliedReport, FlagStore
from gapless.flags.service.tokens import split_token, verify

__all__ = [
    "Acks",
    "Compiled",
    "ProtocolError",
    "Revisions",
    "SdkScope",
    "SdkTokens",
    "UsageCounter",
    "sdk_scope",
]

log = logging.getLogger("gapless.flags")


class ProtocolError(Exception):
    """A refused protocol request: its status and the body in the protocol's own error shape."""

    def __init__(self, status: int, body: dict[str, object]) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class SdkScope:
    """What an SDK token may read: one project environment."""

    token_id: str
    project: str
    environment: str


def presented_token(request: Request) -> str:
    """The token of ``Authorization`` (``Bearer <token>`` or the bare token) or ``X-API-Key``."""
    auth = request.headers.get("authorization", "").strip()
    if auth.lower().startswith("bearer "):
        auth = auth[7:].strip()
    return auth or request.headers.get("x-api-key", "").strip()


class SdkTokens:
    """SDK tokens already verified, so that a poll does not look its token up in the database.

    A verified token's scope is kept for ``ttl`` seconds: a token revoked through this process is
    refused at once (``forget``), one revoked through another process on the same database within
    ``ttl``. Only accepted tokens are kept, at most ``limit`` (then the cache starts over).
    """

    ttl = 1.0
    limit = 10_000

    def __init__(self, store: FlagStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._verified: dict[str, tuple[SdkScope, float]] = {}

    def scope(self, request: Request) -> SdkScope | tuple[int, str]:
        """The scope of the request's SDK token, or ``(status, message)`` when it is refused."""
        presented = presented_token(request)
        now = self._clock()
        hit = self._verified.get(presented)
        if hit is not None and now - hit[1] < self.ttl:
            return hit[0]
        found = sdk_scope(self._store, presented)
        if isinstance(found, SdkScope):
            if len(self._verified) >= self.limit:
                self._verified.clear()
            self._verified[presented] = (found, now)
        return found

    def forget(self) -> None:
        """Drop every verified token (after a revocation)."""
        self._verified.clear()


def sdk_scope(store: FlagStore, presented: str) -> SdkScope | tuple[int, str]:
    """The scope of a presented SDK token, or ``(status, message)`` when it is refused."""
    id_ = split_token(presented)
    record = store.find_token(id_) if id_ else None
    if record is None or not verify(presented, record):
        return 401, "missing, wrong or revoked token (Authorization: Bearer gfl_..., or X-API-Key)"
    if record.kind != "sdk" or record.project is None or record.environment is None:
        return 403, "this endpoint needs an SDK token (one project environment), not an admin token"
    return SdkScope(record.id, record.project, record.environment)


class Revisions:
    """The current revision of each project environment, as a poll needs it: read from the database at
    most once per ``ttl``, and raised at once by every change published to the hub (this process's own
    writes, and other processes' through the relay). So a kill switch thrown through any process on the
    database reaches polling SDKs at their next poll; a write the relay did not pass on (its
    connection down) within ``ttl``."""

    ttl = 0.5

    def __init__(self, store: FlagStore, hub: Hub, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._hub = hub
        self._clock = clock
        self._read: dict[tuple[str, str], tuple[int, float]] = {}

    def get(self, project: str, environment: str) -> int:
        """The revision (``NotFoundError`` when the environment has no ruleset)."""
        key = (project, environment)
        now = self._clock()
        hit = self._read.get(key)
        if hit is None or now - hit[1] >= self.ttl:
            hit = self._read[key] = (self._store.revision(project, environment), now)
        return max(hit[0], self._hub.latest(project, environment))


class Compiled:
    """The compiled ruleset of each project environment, recompiled when its revision changes."""

    def __init__(self, store: FlagStore, revisions: Revisions) -> None:
        self._store = store
        self._revisions = revisions
        self._cache: dict[tuple[str, str], CompiledRuleset] = {}
        self._lock = threading.Lock()

    def get(self, project: str, environment: str) -> CompiledRuleset:
        """The current compiled ruleset (``NotFoundError`` when the environment has none). Asks the store
        for the revision only; the ruleset's text is read and compiled once per new revision."""
        key = (project, environment)
        cached = self._cache.get(key)
        if cached is not None and cached.revision == self._revisions.get(project, environment):
            return cached
        _, text = self._store.ruleset(project, environment)
        compiled = compile_ruleset(json.loads(text))
        with self._lock:
            old = self._cache.get(key)
            if old is None or old.revision <= compiled.revision:
                self._cache[key] = compiled
        return compiled


class UsageCounter:
    """Evaluation counts made on the service, written to the store once a second, off the event loop.

    A crash loses at most the last second's counts; usage is a report, and only ever under-counts.
    """

    interval = 1.0

    def __init__(self, store: FlagStore) -> None:
        self._store = store
        self._pending: Counter[tuple[str, str, str, str]] = Counter()
        self._task: asyncio.Task[None] | None = None

    def add(self, project: str, environment: str, flag: str, variant: str | None, count: int = 1) -> None:
        self._pending[project, environment, flag[:128], (variant or "error")[:128]] += count
        self._flush_later()

    def add_rows(self, project: str, environment: str, rows: list[tuple[str, str, int]]) -> None:
        """Counts an SDK reported: ``(flag, variant, count)``, kept as they are."""
        for flag, variant, count in rows:
            self._pending[project, environment, flag, variant] += count
        self._flush_later()

    def _flush_later(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        while self._pending:
            await asyncio.sleep(self.interval)
            await asyncio.to_thread(self.flush_now)

    def flush_now(self) -> None:
        batch, self._pending = self._pending, Counter()
        by_env: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
        for (project, env, flag, variant), n in batch.items():
            by_env.setdefault((project, env), []).append((flag, variant, n))
        for (project, env), rows in by_env.items():
            try:
                self._store.record_evaluations(project, env, rows)
            except Exception:
                log.exception("storing %d evaluation counts of %s/%s failed", len(rows), project, env)


class Acks:
    """SDK acknowledgements, written in batches off the event loop.

    A change makes every connected SDK report back at once; writing each report synchronously on the
    event loop delayed the pushes still going out (about 0.3 s for 100 SDKs on SQLite). Reports are
    kept in memory (the newest per SDK) with the time they arrived and written every ``interval``
    seconds in one transaction, in a thread. ``flush_now`` writes synchronously (for reports asked
    for right away). A crash loses at most the last interval's reports; SDKs report again on the next
    change, and ``delivery`` only ever under-counts.
    """

    interval = 0.05

    def __init__(self, store: FlagStore) -> None:
        self._store = store
        self._pending: dict[tuple[str, str, str], AppliedReport] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, report: AppliedReport) -> None:
        key = (report.project, report.environment, report.sdk_id)
        old = self._pending.get(key)
        if old is None or report.revision >= old.revision:
            self._pending[key] = report
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_soon())

    def _take(self) -> list[AppliedReport]:
        batch, self._pending = list(self._pending.values()), {}
        return batch

    async def _flush_soon(self) -> None:
        while self._pending:
            await asyncio.sleep(self.interval)
            batch = self._take()
            try:
                await asyncio.to_thread(self._store.record_applied_many, batch)
            except Exception:
                log.exception("storing %d SDK reports failed", len(batch))

    def flush_now(self) -> None:
        self._store.record_applied_many(self._take())
