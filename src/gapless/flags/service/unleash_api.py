"""The Unleash client API: Unleash's official server-side SDKs work against gapless unchanged.

An SDK is configured with the service's URL plus ``/api`` and a gapless SDK token as its API key
(sent as the whole ``Authorization`` header). The token names the project environment served.

- ``GET /api/client/features``: the environment's flags as Unleash features (``gapless.flags.unleash_export``:
  flags whose Unleash evaluation would differ from gapless's are left out and listed in
  ``meta.omitted``), with an ETag (``If-None-Match`` answers 304 while nothing changed) and Unleash's
  filters: ``namePrefix``, ``project`` (gapless's project key) and ``tag`` (``type:value``, any of them).
- Which constraint operators an SDK gets depends on its ``unleash-sdk`` header: SDKs known to evaluate
  the newer ones (SEMVER_GTE/LTE, REGEX, IN_CIDR) get them; any other SDK gets ``semverGte`` written
  as SEMVER_GT or SEMVER_EQ, and flags with a regex or CIDR condition omitted (named in ``meta``), so
  an older SDK never evaluates an operator it does not know (which it would take as false).
- ``GET /api/client/delta``: the same as delta events (one ``hydration`` event), for SDKs polling in
  Unleash's delta format; ETag and 304 as ``/features``.
- ``GET /api/client/streaming``: server-sent events, as Unleash's SDKs read them in streaming mode:
  ``unleash-connected`` with the whole state (a ``hydration`` delta event) at once, then
  ``unleash-updated`` with the new state after every change, so a kill switch reaches the SDK without
  waiting for a poll. A heartbeat comment every 15 s.
- ``POST /api/client/register`` and ``POST /api/client/metrics``: an SDK's start, and its evaluation
  counts (``yes`` counted as variant ``enabled``, ``no`` as ``disabled``, per flag of the environment)
  into gapless's usage table, which stale-flag detection reads. 202, as Unleash answers.

Each fetch, stream and update written to a stream also records the SDK (``unleash:<appName>:<instanceId>``)
as having that revision (in batches, off the request: ``protocol.Acks``), so the delivery report counts
Unleash SDKs too. A poll's answer is encoded once per revision, SDK kind and query (``_Bodies``), and
each change's stream event once for all streams of a kind; the revision a poll compares is read from the
database at most every 0.5 s and raised by every change published (``protocol.Revisions``). Errors are Unleash's shape,
``{"name", "message", "details": [{"message"}]}``: 401 without a valid token, 403 for an admin token,
400 naming the field of a malformed body; nothing is stored then.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from gapless.core.errors import NotFoundError
from gapless.flags.service.fanout import HEARTBEAT_SECONDS, EventStream, Sink
from gapless.flags.service.hub import Hub
from gapless.flags.service.protocol import (
    Acks,
    Compiled,
    ProtocolError,
    Revisions,
    SdkScope,
    SdkTokens,
    UsageCounter,
)
from gapless.flags.service.store import AppliedReport, FlagStore, RulesetChange
from gapless.flags.unleash_export import ALL_OPERATORS, CLASSIC_OPERATORS, Export, features_from_ruleset

__all__ = ["DELTA_SDKS", "HEARTBEAT_SECONDS", "delta_events", "known_operators", "mount_unleash"]

MAX_BODY = 256 * 1024


def _refusal(status: int, name: str, message: str) -> ProtocolError:
    return ProtocolError(status, {"name": name, "message": message, "details": [{"message": message}]})


def _bad(message: str) -> ProtocolError:
    return _refusal(400, "BadDataError", message)


DELTA_SDKS = frozenset({"unleash-node-sdk", "unleash-client-node"})
"""SDKs whose streaming mode applies every kind of delta event (checked in unleash-client 6.12's
``repository/index.js``: ``feature-updated``, ``feature-removed``, ``segment-updated``, ``segment-removed``
and ``hydration``); they get only what changed after their first event, the others the whole state."""

_EXTENDED_SINCE = {"unleash-python-sdk": (6, 9), "unleash-node-sdk": (6, 12), "unleash-client-node": (6, 12)}
"""SDKs known (by their own tests here) to evaluate SEMVER_GTE/LTE, REGEX and IN_CIDR, from these versions."""


def known_operators(sdk: str) -> frozenset[str]:
    """The constraint operators the SDK of an ``unleash-sdk: name:version`` header evaluates; an SDK
    not known to evaluate the newer ones gets flags written with the classic operators only."""
    name, _, version = sdk.strip().partition(":")
    since = _EXTENDED_SINCE.get(name)
    try:
        parsed = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return CLASSIC_OPERATORS
    return ALL_OPERATORS if since is not None and parsed >= since else CLASSIC_OPERATORS


class _Exports:
    """The Unleash translation of each environment's ruleset, made once per revision and operator set."""

    def __init__(self, store: FlagStore, revisions: Revisions) -> None:
        self._store = store
        self._revisions = revisions
        self._cache: dict[tuple[str, str, frozenset[str]], tuple[int, Export]] = {}

    def get(self, project: str, environment: str, known: frozenset[str]) -> tuple[int, Export]:
        cached = self._cache.get((project, environment, known))
        if cached is not None and cached[0] == self._revisions.get(project, environment):
            return cached
        revision, text = self._store.ruleset(project, environment)
        return self.of(project, environment, revision, text, known)

    def of(
        self, project: str, environment: str, revision: int, text: str, known: frozenset[str]
    ) -> tuple[int, Export]:
        cached = self._cache.get((project, environment, known))
        if cached is not None and cached[0] == revision:
            return cached
        made = (revision, features_from_ruleset(json.loads(text), project, known=known))
        self._cache[project, environment, known] = made
        return made


class _Bodies:
    """Encoded answers of ``/api/client/features`` and ``/delta`` with their ETags, one per project
    environment, SDK operator set, query and format, made once per revision: a poll that is not a 304
    writes bytes encoded before. Stale entries are replaced when asked for at a newer revision; the
    number of entries is bounded (queries are the client's), the oldest going first."""

    limit = 1024

    def __init__(self) -> None:
        self._cache: dict[tuple[object, ...], tuple[int, str, bytes]] = {}

    def get(self, key: tuple[object, ...], revision: int) -> tuple[str, bytes] | None:
        hit = self._cache.get(key)
        return (hit[1], hit[2]) if hit is not None and hit[0] == revision else None

    def put(self, key: tuple[object, ...], revision: int, etag: str, body: bytes) -> None:
        self._cache.pop(key, None)
        if len(self._cache) >= self.limit:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = (revision, etag, body)


class _States:
    """The last few states (features and segments) streamed per project environment, operator set and
    query, by revision: what a stream had before a change, to send it only what changed."""

    keep = 4
    """Revisions kept per stream kind: a stream that fell further behind gets a whole ``hydration``."""
    limit = 256

    def __init__(self) -> None:
        self._cache: dict[tuple[object, ...], dict[int, dict[str, Any]]] = {}

    def get(self, key: tuple[object, ...], revision: int) -> dict[str, Any] | None:
        return self._cache.get(key, {}).get(revision)

    def put(self, key: tuple[object, ...], revision: int, state: dict[str, Any]) -> None:
        by_revision = self._cache.pop(key, {})
        by_revision[revision] = state
        while len(by_revision) > self.keep:
            del by_revision[min(by_revision)]
        if len(self._cache) >= self.limit:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = by_revision


def delta_events(before: dict[str, Any], after: dict[str, Any], event_id: int) -> list[dict[str, Any]]:
    """Unleash delta events that turn an SDK's state ``before`` into ``after``: ``segment-updated`` and
    ``feature-updated`` for what is new or different, ``feature-removed`` and ``segment-removed`` for
    what is gone. Applied in order (as Unleash's SDKs apply them: a feature or segment replaced whole
    by its name or id), they leave exactly ``after``; a kill switch sends one feature, not all of them."""
    events: list[dict[str, Any]] = []
    old_segments = {seg["id"]: seg for seg in before["segments"]}
    new_segments = {seg["id"]: seg for seg in after["segments"]}
    for id_, seg in new_segments.items():
        if old_segments.get(id_) != seg:
            events.append({"type": "segment-updated", "eventId": event_id, "segment": seg})
    old_features = {f["name"]: f for f in before["features"]}
    new_features = {f["name"]: f for f in after["features"]}
    for name, feature in new_features.items():
        if old_features.get(name) != feature:
            events.append({"type": "feature-updated", "eventId": event_id, "feature": feature})
    for name, feature in old_features.items():
        if name not in new_features:
            removed = {"type": "feature-removed", "eventId": event_id, "featureName": name}
            events.append(removed | {"project": feature.get("project", "default")})
    events.extend(
        {"type": "segment-removed", "eventId": event_id, "segmentId": id_}
        for id_ in old_segments
        if id_ not in new_segments
    )
    return events


def _sdk_id(request: Request) -> str:
    """How the delivery report names an Unleash SDK: ``unleash:<appName>:<instanceId>``."""
    app_name = request.headers.get("unleash-appname", "unknown")
    instance = request.headers.get("unleash-instanceid", request.client.host if request.client else "")
    return f"unleash:{app_name}:{instance}"[:128]


def _encode(doc: object) -> bytes:
    """JSON as Starlette's ``JSONResponse`` writes it."""
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _filtered(export: Export, request: Request, project: str) -> list[dict[str, Any]]:
    params = request.query_params
    prefix = params.get("namePrefix") or ""
    projects = params.getlist("project")
    tags = set(params.getlist("tag"))
    if projects and project not in projects:
        return []
    return [
        f
        for f in export.features
        if f["name"].startswith(prefix) and (not tags or tags & set(f.get("tags") or []))
    ]


def _document(export: Export, features: list[dict[str, Any]], revision: int) -> dict[str, Any]:
    return {
        "version": 2,
        "features": [{k: v for k, v in f.items() if k != "tags"} for f in features],
        "segments": export.segments,
        "meta": {"revision": revision, "omitted": export.omitted},
    }


def _hydration(state: dict[str, Any], revision: int) -> dict[str, Any]:
    """A delta ``hydration`` event: the whole state, replacing what the SDK had."""
    return {
        "type": "hydration",
        "eventId": revision,
        "features": state["features"],
        "segments": state["segments"],
    }


def _body(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_BODY:
        raise _refusal(413, "ContentTooLarge", f"body larger than {MAX_BODY} bytes")
    try:
        doc = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _bad(f"the body is not JSON: {e}") from None
    except RecursionError:
        raise _bad("the body nests too deeply") from None
    if not isinstance(doc, dict):
        raise _bad(f"the body must be an object, not {type(doc).__name__}")
    return doc


def _name(doc: dict[str, Any], field: str) -> str:
    value = doc.get(field)
    if not isinstance(value, str) or not 1 <= len(value) <= 128:
        raise _bad(f"`{field}` must be a string of 1 to 128 characters")
    return value


def _counts(doc: dict[str, Any]) -> dict[str, dict[str, int]]:
    bucket = doc.get("bucket")
    if not isinstance(bucket, dict) or not isinstance(bucket.get("toggles"), dict):
        raise _bad("`bucket.toggles` must be an object of flag names")
    if len(bucket["toggles"]) > 10_000:
        raise _bad("`bucket.toggles` has more than 10,000 flags")
    out: dict[str, dict[str, int]] = {}
    for name, counts in bucket["toggles"].items():
        if not isinstance(counts, dict):
            raise _bad(f"`bucket.toggles.{name}` must be an object with yes and no")
        row = {}
        for field in ("yes", "no"):
            n = counts.get(field, 0)
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise _bad(f"`bucket.toggles.{name}.{field}` must be a count (an integer >= 0)")
            row[field] = n
        out[name] = row
    return out


def mount_unleash(
    app: FastAPI,
    store: FlagStore,
    tokens: SdkTokens,
    hub: Hub,
    revisions: Revisions,
    compiled: Compiled,
    usage: UsageCounter,
    acks: Acks,
) -> None:
    """Add the Unleash client API's endpoints to the flag service's app."""
    exports = _Exports(store, revisions)
    bodies = _Bodies()
    states = _States()

    def scope(request: Request) -> SdkScope:
        found = tokens.scope(request)
        if isinstance(found, tuple):
            raise _refusal(
                found[0], "AuthenticationRequired" if found[0] == 401 else "NoAccessError", found[1]
            )
        return found

    def current(s: SdkScope, request: Request) -> tuple[int, Export]:
        try:
            return exports.get(
                s.project, s.environment, known_operators(request.headers.get("unleash-sdk", ""))
            )
        except NotFoundError as e:
            raise _refusal(404, "NotFoundError", str(e)) from e

    def seen(s: SdkScope, request: Request, revision: int, *, streaming: bool) -> None:
        acks.add(AppliedReport(s.project, s.environment, _sdk_id(request), revision, streaming, time.time()))

    async def polled(request: Request, *, delta: bool) -> Response:
        s = scope(request)
        sdk = request.headers.get("unleash-sdk", "")
        known = known_operators(sdk)
        query = "&".join(sorted(f"{k}={v}" for k, v in request.query_params.multi_items()))
        key = (s.project, s.environment, known, query, sdk, delta)
        try:
            revision = revisions.get(s.project, s.environment)
        except NotFoundError as e:
            raise _refusal(404, "NotFoundError", str(e)) from e
        hit = bodies.get(key, revision)
        if hit is None:
            revision, export = current(s, request)
            query += "|" + sdk  # what it gets depends on the SDK too
            etag = f'"{revision}-{hashlib.sha256(query.encode()).hexdigest()[:8]}"'
            doc = _document(export, _filtered(export, request, s.project), revision)
            if delta:
                doc = {"events": [_hydration(doc, revision)]}
            body = _encode(doc)
            bodies.put(key, revision, etag, body)
        else:
            etag, body = hit
        seen(s, request, revision, streaming=False)
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(
            body, media_type="application/json", headers={"ETag": etag, "Cache-Control": "no-cache"}
        )

    @app.get("/api/client/features", tags=["Unleash"])
    async def unleash_features(request: Request) -> Response:
        """The environment's flags as Unleash features; ETag and ``If-None-Match``; Unleash's filters."""
        return await polled(request, delta=False)

    @app.get("/api/client/delta", tags=["Unleash"])
    async def unleash_delta(request: Request) -> Response:
        """The same as delta events (what SDKs polling in delta format read): one ``hydration`` event
        with the whole state whenever the revision changed, 304 while it has not."""
        return await polled(request, delta=True)

    @app.get("/api/client/streaming", tags=["Unleash"], response_class=EventStream, status_code=200)
    async def unleash_streaming(request: Request) -> EventStream:
        """Server-sent events: ``unleash-connected`` with the state, ``unleash-updated`` on every change
        (written by the publisher to every stream in one pass: ``fanout``)."""
        s = scope(request)
        sdk = request.headers.get("unleash-sdk", "")
        known = known_operators(sdk)
        query = "&".join(sorted(f"{k}={v}" for k, v in request.query_params.multi_items()))
        sdk_id = _sdk_id(request)

        deltas = sdk.strip().partition(":")[0] in DELTA_SDKS

        def event(change: RulesetChange, previous: int | None) -> bytes:
            """Encoded once per revision (and revision sent before) for all streams of the same SDK kind
            and filters: fan-out writes bytes made once, whatever the number of streams."""
            name = "unleash-connected" if previous is None else "unleash-updated"
            base = previous if deltas and previous is not None else None
            key = (s.project, s.environment, known, query, sdk, name, base)
            hit = bodies.get(key, change.revision)
            if hit is not None:
                return hit[1]
            rev, ex = exports.of(s.project, s.environment, change.revision, change.ruleset, known)
            state = _document(ex, _filtered(ex, request, s.project), rev)
            states.put((s.project, s.environment, known, query), rev, state)
            before = None if base is None else states.get((s.project, s.environment, known, query), base)
            events = [_hydration(state, rev)] if before is None else delta_events(before, state, rev)
            body = f"id: {rev}\nevent: {name}\ndata: {json.dumps({'events': events})}\n\n".encode()
            bodies.put(key, rev, "", body)
            return body

        def written(revision: int) -> None:  # written to it: counted as delivered
            acks.add(AppliedReport(s.project, s.environment, sdk_id, revision, True, time.time()))

        sink = Sink(s.project, s.environment, event, written, kind="unleash")
        hub.attach(sink)  # before reading the state: no change falls between
        try:
            revision, text = store.ruleset(s.project, s.environment)
        except NotFoundError as e:
            hub.detach(sink)
            raise _refusal(404, "NotFoundError", str(e)) from e
        except BaseException:
            hub.detach(sink)
            raise
        sink.offer(RulesetChange(s.project, s.environment, revision, text, 0.0))
        return EventStream(sink, lambda: hub.detach(sink))

    @app.post("/api/client/register", tags=["Unleash"])
    async def unleash_register(request: Request) -> Response:
        """An SDK starts: ``{"appName", "instanceId", ...}``; it counts as connected from now."""
        s = scope(request)
        doc = _body(await request.body())
        app_name, instance = _name(doc, "appName"), _name(doc, "instanceId")
        sdk_id = f"unleash:{app_name}:{instance}"[:128]
        acks.add(AppliedReport(s.project, s.environment, sdk_id, 0, False, time.time()))
        return Response(status_code=202)

    @app.post("/api/client/metrics", tags=["Unleash"])
    async def unleash_metrics(request: Request) -> Response:
        """Evaluation counts: ``{"appName", "instanceId", "bucket": {"toggles": {name: {"yes", "no"}}}}``."""
        s = scope(request)
        doc = _body(await request.body())
        _name(doc, "appName")
        counts = _counts(doc)
        rs = compiled.get(s.project, s.environment)
        for name, row in counts.items():
            if name not in rs:
                continue  # a flag the environment does not have: nothing to count it against
            for field, variant in (("yes", "enabled"), ("no", "disabled")):
                if row[field]:
                    usage.add(s.project, s.environment, name, variant, row[field])
        return Response(status_code=202)
