"""OFREP, the OpenFeature Remote Evaluation Protocol: any OpenFeature SDK evaluates gapless flags remotely.

``POST /ofrep/v1/evaluate/flags/{key}`` evaluates one flag for the request's ``context``;
``POST /ofrep/v1/evaluate/flags`` evaluates every flag of the token's environment (client-side
providers cache the answer and poll with ``If-None-Match``). The evaluation is the Python SDK's
``CompiledRuleset.evaluate`` on the same ruleset, so value, variant and reason are the same as the
Python SDK's and the gapless OpenFeature provider's for the same context.

Shapes follow the published OpenAPI document of open-feature/protocol:

- success: ``{"key", "value", "variant", "reason", "metadata"}``; reasons are OpenFeature's (gapless's
  ``DEFAULT`` included); ``metadata.ruleIndex`` names the rule that matched, as the Python provider's
  flag metadata does, and ``metadata.revision`` the ruleset revision.
- an unknown flag: 404 ``{"key", "errorCode": "FLAG_NOT_FOUND", "errorDetails"}``.
- a body that is not JSON, or no ``context`` object: 400 ``INVALID_CONTEXT`` naming what is wrong.
- an evaluation error (a split without a stickiness value: ``TARGETING_KEY_MISSING``; a flag that did
  not compile: ``PARSE_ERROR``): 400 with that code; in the bulk answer, an item with the code.
- no or a wrong token 401, an admin token 403 (``{"errorDetails"}``).

The bulk ETag is the revision plus a digest of the context, so a client that sends another context
with an old ETag gets a fresh answer rather than a 304 meant for someone else. Every evaluation is
counted into the flag's usage (stale-flag reports).

Change notification (OFREP's ADR 0008, ``service/event-streams.yaml``): the bulk answer carries
``eventStreams: [{"type": "sse", "endpoint": {"requestUri": "/ofrep/v1/events?channel=..."}}]``; a
provider connects there and gets ``event: message`` with ``data: {"type": "refetchEvaluation",
"etag", "lastModified"}`` after every change of the environment, and re-fetches the bulk evaluation
(``flagConfigEtag`` / ``flagConfigLastModified`` are accepted and need nothing: every evaluation reads
the current revision). So a kill switch reaches an OFREP client as fast as a push, not a poll
interval. The channel is a notify-only credential derived from the SDK token's stored digest (the
URL never carries the token, and the stream says only that something changed); the stream also
accepts the SDK token as a header. An ``id`` per event is the revision: a client reconnecting with an
older ``Last-Event-ID`` is told to re-fetch at once. Each change's event is encoded once for all streams.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from gapless.core.errors import NotFoundError
from gapless.flags.evaluate import ErrorCode, Evaluation
from gapless.flags.service.hub import Hub
from gapless.flags.service.protocol import Compiled, ProtocolError, SdkScope, SdkTokens, UsageCounter
from gapless.flags.service.store import FlagStore
from gapless.flags.service.tokens import TokenRecord

__all__ = ["EVENTS_PATH", "HEARTBEAT_SECONDS", "MAX_BODY", "channel_of", "mount_ofrep"]

EVENTS_PATH = "/ofrep/v1/events"
HEARTBEAT_SECONDS = 15.0

MAX_BODY = 256 * 1024
"""As the rest of the service: also for bodies sent without a Content-Length (chunked)."""


def _context(raw: bytes, key: str | None) -> dict[str, Any]:
    """The request's evaluation context; ``ProtocolError`` 400 ``INVALID_CONTEXT`` naming the fault."""

    def invalid(details: str) -> ProtocolError:
        body: dict[str, object] = {"errorCode": "INVALID_CONTEXT", "errorDetails": details}
        return ProtocolError(400, body if key is None else {"key": key} | body)

    if len(raw) > MAX_BODY:
        raise ProtocolError(
            413, {"errorCode": "INVALID_CONTEXT", "errorDetails": f"body larger than {MAX_BODY} bytes"}
        )
    try:
        doc = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise invalid(f"the request body is not JSON: {e}") from None
    except RecursionError:
        raise invalid("the request body nests too deeply") from None
    if not isinstance(doc, dict):
        raise invalid(f"the request body must be an object with `context`, not {type(doc).__name__}")
    context = doc.get("context", {})
    if not isinstance(context, dict):
        raise invalid(f"`context` must be an object, not {type(context).__name__}")
    targeting = context.get("targetingKey")
    if targeting is not None and not isinstance(targeting, str):
        raise invalid(f"`context.targetingKey` must be a string, not {type(targeting).__name__}")
    return context


def channel_of(record: TokenRecord) -> str:
    """The notify-only channel credential of an SDK token: its id and an HMAC of its stored digest."""
    mac = hmac.new(record.digest.encode(), b"ofrep-events", hashlib.sha256).hexdigest()[:32]
    return f"{record.id}.{mac}"


@functools.lru_cache(maxsize=256)
def _refetch(revision: int, changed_at: float) -> bytes:
    """OFREP's ``refetchEvaluation`` event for a revision, encoded once for every stream."""
    data = json.dumps({"type": "refetchEvaluation", "etag": f'"{revision}"', "lastModified": int(changed_at)})
    return f"id: {revision}\nevent: message\ndata: {data}\n\n".encode()


def _success(key: str, ev: Evaluation, revision: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {"revision": revision}
    if ev.rule_index is not None:
        metadata["ruleIndex"] = ev.rule_index
    out: dict[str, Any] = {"key": key, "value": ev.value, "reason": str(ev.reason), "metadata": metadata}
    if ev.variant is not None:
        out["variant"] = ev.variant
    return out


def _failure(key: str, ev: Evaluation) -> dict[str, Any]:
    return {"key": key, "errorCode": str(ev.error_code), "errorDetails": ev.error_message or ""}


def mount_ofrep(
    app: FastAPI, store: FlagStore, tokens: SdkTokens, hub: Hub, compiled: Compiled, usage: UsageCounter
) -> None:
    """Add the two OFREP endpoints and the change notification stream to the flag service's app."""
    channels: dict[str, str] = {}

    def scope(request: Request) -> SdkScope:
        found = tokens.scope(request)
        if isinstance(found, tuple):
            raise ProtocolError(found[0], {"errorDetails": found[1]})
        return found

    def evaluate(s: SdkScope, key: str, context: Mapping[str, Any]) -> tuple[Evaluation, int]:
        try:
            rs = compiled.get(s.project, s.environment)
        except NotFoundError as e:
            raise ProtocolError(
                404, {"key": key, "errorCode": "FLAG_NOT_FOUND", "errorDetails": str(e)}
            ) from e
        ev = rs.evaluate(key, context, clock=time.time)
        if ev.error_code != ErrorCode.FLAG_NOT_FOUND:
            usage.add(s.project, s.environment, key, ev.variant)
        return ev, rs.revision

    @app.post("/ofrep/v1/evaluate/flags/{key}", tags=["OFREP"])
    async def ofrep_flag(key: str, request: Request) -> Response:
        """Evaluate one flag for ``{"context": {...}}`` (OFREP ``evaluateFlag``)."""
        s = scope(request)
        context = _context(await request.body(), key)
        ev, revision = evaluate(s, key, context)
        if ev.error_code == ErrorCode.FLAG_NOT_FOUND:
            return JSONResponse(_failure(key, ev), status_code=404)
        if ev.error_code is not None:
            return JSONResponse(_failure(key, ev), status_code=400)
        return JSONResponse(_success(key, ev, revision))

    @app.post("/ofrep/v1/evaluate/flags", tags=["OFREP"])
    async def ofrep_bulk(request: Request) -> Response:
        """Evaluate every flag of the token's environment (OFREP ``evaluateFlagsBulk``), with an ETag."""
        s = scope(request)
        context = _context(await request.body(), None)
        try:
            rs = compiled.get(s.project, s.environment)
        except NotFoundError as e:
            raise ProtocolError(404, {"errorCode": "GENERAL", "errorDetails": str(e)}) from e
        digest = hashlib.sha256(json.dumps(context, sort_keys=True, default=str).encode()).hexdigest()[:16]
        etag = f'"{rs.revision}-{digest}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        flags = []
        for key in rs.keys():  # noqa: SIM118 -- a CompiledRuleset is not iterable
            ev = rs.evaluate(key, context, clock=time.time)
            usage.add(s.project, s.environment, key, ev.variant)
            flags.append(_failure(key, ev) if ev.error_code is not None else _success(key, ev, rs.revision))
        channel = channels.get(s.token_id)
        if channel is None:  # a token's digest never changes: its channel is looked up once
            record = store.find_token(s.token_id)
            channel = channels[s.token_id] = channel_of(record) if record is not None else ""
        streams = []
        if channel:
            uri = f"{request.scope.get('root_path', '')}{EVENTS_PATH}?channel={channel}"
            streams.append({"type": "sse", "endpoint": {"requestUri": uri}})
        body = {
            "flags": flags,
            "eventStreams": streams,
            "metadata": {"revision": rs.revision, "environment": s.environment},
        }
        return JSONResponse(body, headers={"ETag": etag, "Cache-Control": "no-cache"})

    def stream_scope(request: Request) -> SdkScope:
        channel = request.query_params.get("channel")
        if channel is None:
            return scope(request)
        id_, _, _ = channel.partition(".")
        record = store.find_token(id_) if id_ else None
        if (
            record is None
            or record.revoked_at is not None
            or not hmac.compare_digest(channel_of(record), channel)
        ):
            raise ProtocolError(401, {"errorDetails": "unknown or revoked event stream channel"})
        if record.kind != "sdk" or record.project is None or record.environment is None:
            raise ProtocolError(403, {"errorDetails": "the channel is not of an SDK token"})
        return SdkScope(record.id, record.project, record.environment)

    @app.get(EVENTS_PATH, tags=["OFREP"])
    async def ofrep_events(request: Request) -> StreamingResponse:
        """OFREP change notification (server-sent events): ``refetchEvaluation`` after every change."""
        s = stream_scope(request)
        queue = hub.subscribe(s.project, s.environment)
        try:
            revision = store.revision(s.project, s.environment)
        except NotFoundError as e:
            hub.unsubscribe(s.project, s.environment, queue)
            raise ProtocolError(404, {"errorCode": "GENERAL", "errorDetails": str(e)}) from e
        last = request.headers.get("last-event-id", "")
        missed = last.isdigit() and int(last) < revision

        async def events() -> AsyncIterator[bytes]:
            sent = revision
            try:
                yield b": connected\n\n"
                if missed:
                    yield _refetch(revision, time.time())
                while True:
                    try:
                        change = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                    except TimeoutError:
                        yield b": heartbeat\n\n"
                        continue
                    if change.revision > sent:
                        sent = change.revision
                        yield _refetch(change.revision, change.changed_at)
            finally:
                hub.unsubscribe(s.project, s.environment, queue)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
