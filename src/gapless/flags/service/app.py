"""The flag service's HTTP API (FastAPI; the OpenAPI document is at ``/openapi.json``).

Two kinds of callers, each with its own token (``Authorization: Bearer gfl_...``):

- **admin** (``/api/v1/...``): projects, flags, segments, the kill switch, release plans, tokens, the
  audit log, stale-flag and delivery reports. Every change is audited with the token that made it.
  ``/api/v1/projects/{project}/changes`` is a server-sent-events stream of every committed change of a
  project (any environment), for dashboards; it also takes the token as ``?token=`` since a browser's
  EventSource cannot send headers.
- **SDK** (``/sdk/v1/...``): the ruleset of the token's one project environment, by server-sent events
  (``/sdk/v1/stream``: the current ruleset at once, then every new revision) or by ETag polling
  (``/sdk/v1/ruleset``); SDKs report the revision they applied and their evaluation counts.

Only ``/healthz`` and ``/openapi.json`` answer without a token. Bad input is a 400 whose ``problems``
name each field; an unknown thing is a 404, a duplicate or a thing in use a 409, a body over 256 KiB
a 413; nothing is stored when a request is refused.

``on_change`` (optional) hears of every committed flag change made through this API (create, replace,
archive, kill, enable, release advance) as a ``FlagChange``, after it is published to the SDK streams:
the control plane records them as deployment events. A failing hook is logged, never turned into an
error of the request that made the change.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Receive, Scope, Send

from gapless.core.errors import NotFoundError, Problem, SpecError
from gapless.core.jsonbody import MAX_INT, parse_json
from gapless.flags.service.fanout import EventStream, Sink
from gapless.flags.service.hub import Hub, ProjectChange
from gapless.flags.service.protocol import Acks, SdkScope, SdkTokens, UsageCounter
from gapless.flags.service.protocols import mount_protocols
from gapless.flags.service.store import Actor, AppliedReport, ConflictError, FlagStore, RulesetChange
from gapless.flags.service.tokens import TokenKind, TokenRecord, split_token, verify

__all__ = [
    "CHANGES_STREAM_SECONDS",
    "HEARTBEAT_SECONDS",
    "MAX_BODY",
    "FlagChange",
    "OnChange",
    "build_flag_app",
]

MAX_BODY = 256 * 1024
MAX_ACK_AGE = 60.0
"""An SDK's acknowledgement may say it applied the revision up to this many seconds before it reported
(SDKs report after a short random delay, so that their reports do not compete with a change's delivery)."""
HEARTBEAT_SECONDS = 15.0
CHANGES_STREAM_SECONDS = 300.0
"""A project's change stream ends after this long (EventSource reconnects by itself, and reads the
project afresh); a shutdown never waits on it."""

log = logging.getLogger("gapless.flags")


@dataclass(frozen=True)
class FlagChange:
    """One committed change of a flag: the audit action, who made it, and the new revision per environment."""

    action: str
    """``flag.create``, ``flag.put``, ``flag.archive``, ``flag.kill``, ``flag.enable`` or ``flag.release.advance``."""
    project: str
    flag: str
    actor: Actor
    changes: tuple[RulesetChange, ...]
    environment: str | None = None
    """The environment the endpoint named (kill, enable, release advance); None for whole-flag changes."""


OnChange = Callable[[FlagChange], None]


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _token(request: Request, *, query: bool = False) -> TokenRecord:
    """The token of ``Authorization: Bearer``; with ``query``, ``?token=`` too (for EventSource)."""
    store: FlagStore = request.app.state.store
    auth = request.headers.get("authorization", "")
    presented = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not presented and query:
        presented = request.query_params.get("token", "").strip()
    id_ = split_token(presented)
    record = store.find_token(id_) if id_ else None
    if record is None or not verify(presented, record):
        where = "Authorization: Bearer gfl_... or ?token=" if query else "Authorization: Bearer gfl_..."
        raise AuthError(401, f"missing, wrong or revoked token ({where})")
    return record


def _admin(request: Request) -> Actor:
    record = _token(request)
    if record.kind != "admin":
        raise AuthError(403, "this endpoint needs an admin token")
    return Actor(record.id, record.name)


def _admin_stream(request: Request) -> Actor:
    record = _token(request, query=True)
    if record.kind != "admin":
        raise AuthError(403, "this endpoint needs an admin token")
    return Actor(record.id, record.name)


def _sdk(request: Request) -> SdkScope:
    """The SDK token's scope; verified tokens are kept for a second (``SdkTokens``), so the reports
    every SDK sends after a change do not each read the database on the event loop."""
    tokens: SdkTokens = request.app.state.sdk_tokens
    found = tokens.scope(request)
    if isinstance(found, tuple):
        status = found[0]
        raise AuthError(
            status,
            "this endpoint needs an SDK token (one project environment)"
            if status == 403
            else "missing, wrong or revoked token (Authorization: Bearer gfl_...)",
        )
    return found


Admin = Annotated[Actor, Depends(_admin)]
AdminStream = Annotated[Actor, Depends(_admin_stream)]
Sdk = Annotated[SdkScope, Depends(_sdk)]


def _problems(status: int, problems: list[Problem]) -> JSONResponse:
    return JSONResponse(
        {
            "error": "; ".join(str(p) for p in problems),
            "problems": [{"path": p.path, "message": p.message} for p in problems],
        },
        status_code=status,
    )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": message, "problems": [{"path": "", "message": message}]}, status_code=status
    )


def build_flag_app(
    store: FlagStore, hub: Hub, *, root_path: str = "", on_change: OnChange | None = None
) -> FastAPI:
    """The app over an open store; ``hub`` carries committed changes to connected streams."""
    app = FastAPI(
        title="gapless flags",
        version="1",
        description="Feature flags: admin API, SDK delivery by server-sent events or ETag polling.",
        root_path=root_path,
        docs_url=None,
        redoc_url=None,
    )
    app.state.store = store
    acks, usage, sdk_tokens = Acks(store), UsageCounter(store), SdkTokens(store)
    app.state.sdk_tokens = sdk_tokens

    app.add_middleware(_BodyLimit)

    @app.exception_handler(SpecError)
    async def _spec(_: Request, e: SpecError) -> Response:
        return _problems(400, e.problems)

    @app.exception_handler(NotFoundError)
    async def _missing(_: Request, e: NotFoundError) -> Response:
        return _error(404, str(e))

    @app.exception_handler(ConflictError)
    async def _conflict(_: Request, e: ConflictError) -> Response:
        return _error(409, str(e))

    @app.exception_handler(OperationalError)
    async def _database(_: Request, e: OperationalError) -> Response:
        # A full disk, a read-only file system, a database that does not answer: temporary, and the
        # transaction was rolled back, so the client may simply try again.
        log.warning("flag database error: %s", e.orig)
        response = _error(
            503, f"the flag database cannot be used now: {e.orig}; nothing was changed, try again later"
        )
        response.headers["retry-after"] = "5"
        return response

    @app.exception_handler(AuthError)
    async def _auth(_: Request, e: AuthError) -> Response:
        return _error(e.status, str(e))

    async def body_json(request: Request) -> Any:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise AuthError(413, f"body larger than {MAX_BODY} bytes")
        return parse_json(raw or b"{}")

    def published(
        result: dict[str, Any],
        changes: list[RulesetChange],
        project: str,
        action: str,
        key: str | None = None,
        environment: str | None = None,
    ) -> dict[str, Any]:
        revisions = {c.environment: c.revision for c in changes}
        announce = None
        if result.get("changed", True):  # also a change without a new ruleset (an owner, a description)
            announce = ProjectChange(project, action, key, environment, revisions)
        hub.publish(changes, announce)
        return result | {"revisions": revisions}

    def flag_published(
        action: str,
        project: str,
        key: str,
        actor: Actor,
        outcome: tuple[dict[str, Any], list[RulesetChange]],
        environment: str | None = None,
    ) -> dict[str, Any]:
        result, changes = outcome
        body = published(result, changes, project, action, key, environment)
        if on_change is not None and result.get("changed"):
            change = FlagChange(action, project, key, actor, tuple(changes), environment)
            try:
                on_change(change)
            except Exception:
                log.exception("the change hook failed for %s %s/%s", action, project, key)
        return body

    # -- health ---------------------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True}

    # -- projects -------------------------------------------------------------------------------------

    @app.put("/api/v1/projects/{project}")
    async def put_project(project: str, actor: Admin, request: Request) -> dict[str, Any]:
        doc = await body_json(request)
        if isinstance(doc, dict) and doc.get("key", project) != project:
            raise SpecError(
                "request", [Problem("key", f"is {doc.get('key')!r} but the URL names {project!r}")]
            )
        if isinstance(doc, dict):
            doc = {"key": project} | doc
        return published(*store.put_project(doc, actor), project, "project.put")

    @app.get("/api/v1/projects")
    async def list_projects(_: Admin) -> dict[str, Any]:
        return {"items": store.projects()}

    @app.get("/api/v1/projects/{project}")
    async def get_project(project: str, _: Admin) -> dict[str, Any]:
        p = store.project(project)
        revisions = {c.environment: c.revision for c in store.rulesets() if c.project == project}
        return p.model_dump(mode="json", by_alias=True, exclude_none=True) | {"revisions": revisions}

    # -- flags ----------------------------------------------------------------------------------------

    @app.post("/api/v1/projects/{project}/flags", status_code=201)
    async def create_flag(project: str, actor: Admin, request: Request) -> dict[str, Any]:
        doc = await body_json(request)
        outcome = store.put_flag(project, doc, actor, create=True)
        return flag_published("flag.create", project, str(outcome[0]["key"]), actor, outcome)

    @app.put("/api/v1/projects/{project}/flags/{key}")
    async def put_flag(project: str, key: str, actor: Admin, request: Request) -> dict[str, Any]:
        doc = await body_json(request)
        if isinstance(doc, dict) and doc.get("key", key) != key:
            raise SpecError("request", [Problem("key", f"is {doc.get('key')!r} but the URL names {key!r}")])
        if isinstance(doc, dict):
            doc = {"key": key} | doc
        return flag_published("flag.put", project, key, actor, store.put_flag(project, doc, actor))

    @app.get("/api/v1/projects/{project}/flags")
    async def list_flags(project: str, _: Admin) -> dict[str, Any]:
        usage.flush_now()  # the counts SDKs reported up to now count
        return {"items": store.flag_report(project)}

    @app.get("/api/v1/projects/{project}/flags/{key}")
    async def get_flag(project: str, key: str, _: Admin) -> dict[str, Any]:
        return store.flag(project, key)

    @app.delete("/api/v1/projects/{project}/flags/{key}")
    async def archive_flag(project: str, key: str, actor: Admin) -> dict[str, Any]:
        """Archive (SDKs then answer FLAG_NOT_FOUND); the document and its history are kept."""
        outcome = store.change_flag(project, key, actor, "flag.archive", lambda d: d | {"archived": True})
        return flag_published("flag.archive", project, key, actor, outcome)

    def _env_change(
        env: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def mutate(doc: dict[str, Any]) -> dict[str, Any]:
            envs = dict(doc.get("environments") or {})
            envs[env] = change(dict(envs.get(env) or {}))
            return doc | {"environments": envs}

        return mutate

    @app.post("/api/v1/projects/{project}/flags/{key}/environments/{env}/kill")
    async def kill(project: str, key: str, env: str, actor: Admin) -> dict[str, Any]:
        """The kill switch: everyone in ``env`` gets the off variant, pushed to streaming SDKs at once."""
        _known_env(store, project, env)
        mutate = _env_change(env, lambda e: e | {"enabled": False})
        outcome = store.change_flag(project, key, actor, "flag.kill", mutate)
        return flag_published("flag.kill", project, key, actor, outcome, env)

    @app.post("/api/v1/projects/{project}/flags/{key}/environments/{env}/enable")
    async def enable(project: str, key: str, env: str, actor: Admin) -> dict[str, Any]:
        _known_env(store, project, env)
        mutate = _env_change(env, lambda e: e | {"enabled": True})
        outcome = store.change_flag(project, key, actor, "flag.enable", mutate)
        return flag_published("flag.enable", project, key, actor, outcome, env)

    @app.post("/api/v1/projects/{project}/flags/{key}/environments/{env}/release/advance")
    async def advance(project: str, key: str, env: str, actor: Admin, request: Request) -> dict[str, Any]:
        """Move a release plan to its next stage (or ``{"stage": N}``); every advance is audited."""
        body = await body_json(request)
        target = body.get("stage") if isinstance(body, dict) else None
        if target is not None and (not isinstance(target, int) or isinstance(target, bool) or target < 0):
            raise SpecError("request", [Problem("stage", "must be a stage index (0, 1, ...)")])
        _known_env(store, project, env)

        def step(e: dict[str, Any]) -> dict[str, Any]:
            plan = e.get("releasePlan")
            if not plan:
                raise ConflictError(f"flag {key!r} has no release plan in {env!r}")
            stages = len(plan.get("stages", []))
            to = plan.get("currentStage", 0) + 1 if target is None else target
            if to >= stages:
                raise ConflictError(
                    f"the release plan of {key!r} in {env!r} has {stages} stages; cannot go to {to}"
                )
            now = datetime.fromtimestamp(time.time(), UTC).isoformat()
            return e | {"releasePlan": plan | {"currentStage": to, "stageStartedAt": now}}

        outcome = store.change_flag(project, key, actor, "flag.release.advance", _env_change(env, step))
        return flag_published("flag.release.advance", project, key, actor, outcome, env)

    # -- segments -------------------------------------------------------------------------------------

    @app.put("/api/v1/projects/{project}/segments/{key}")
    async def put_segment(project: str, key: str, actor: Admin, request: Request) -> dict[str, Any]:
        doc = await body_json(request)
        if isinstance(doc, dict):
            doc = {"key": key} | doc
        return published(*store.put_segment(project, doc, actor), project, "segment.put", key)

    @app.delete("/api/v1/projects/{project}/segments/{key}")
    async def delete_segment(project: str, key: str, actor: Admin) -> dict[str, Any]:
        changes = store.delete_segment(project, key, actor)
        return published({"key": key, "deleted": True}, changes, project, "segment.delete", key)

    # -- audit, tokens, delivery ----------------------------------------------------------------------

    @app.get("/api/v1/audit")
    async def audit(
        _: Admin, project: str | None = None, target: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        if not 1 <= limit <= 1000:
            raise SpecError("request", [Problem("limit", "must be between 1 and 1000")])
        return {"items": store.audit_log(project, target, limit)}

    @app.post("/api/v1/tokens", status_code=201)
    async def create_token(actor: Admin, request: Request) -> dict[str, Any]:
        """A new token; its secret is in this answer only (the service keeps its SHA-256)."""
        body = await body_json(request)
        if not isinstance(body, dict):
            raise SpecError("request", [Problem("", "expected an object")])
        kind, name = body.get("kind"), body.get("name")
        problems = []
        if kind not in ("admin", "sdk"):
            problems.append(Problem("kind", "must be admin or sdk"))
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            problems.append(Problem("name", "must be a name of 1 to 128 characters"))
        if problems:
            raise SpecError("request", problems)
        kind_: TokenKind = "admin" if kind == "admin" else "sdk"
        record, token = store.create_token(kind_, str(name), body.get("project"), body.get("environment"))
        return {
            "id": record.id,
            "token": token,
            "kind": record.kind,
            "project": record.project,
            "environment": record.environment,
        }

    @app.get("/api/v1/tokens")
    async def list_tokens(_: Admin) -> dict[str, Any]:
        return {
            "items": [
                {
                    "id": r.id,
                    "name": r.name,
                    "kind": r.kind,
                    "project": r.project,
                    "environment": r.environment,
                    "createdAt": r.created_at,
                    "revokedAt": r.revoked_at,
                }
                for r in store.tokens()
            ]
        }

    @app.delete("/api/v1/tokens/{token_id}")
    async def revoke_token(token_id: str, actor: Admin) -> dict[str, Any]:
        if token_id == actor.token_id:
            raise ConflictError("a token cannot revoke itself")
        store.revoke_token(token_id)
        app.state.sdk_tokens.forget()  # the protocol faces' verified tokens
        return {"id": token_id, "revoked": True}

    @app.get("/api/v1/projects/{project}/environments/{env}/delivery")
    async def delivery(
        project: str, env: str, _: Admin, revision: Annotated[int | None, Query(ge=0, le=MAX_INT)] = None
    ) -> dict[str, Any]:
        """How many connected SDKs applied a revision, and how long after the change."""
        acks.flush_now()  # what SDKs reported up to now counts
        d = store.delivery(project, env, revision)
        lat = d.latencies
        return {
            "revision": d.revision,
            "changedAt": d.changed_at,
            "connected": d.connected,
            "streams": hub.connected(project, env),
            "applied": d.applied,
            "latency": {
                "p50": _quantile(lat, 0.5),
                "p99": _quantile(lat, 0.99),
                "max": lat[-1] if lat else None,
            },
        }

    @app.get("/api/v1/projects/{project}/changes")
    async def changes(project: str, _: AdminStream) -> StreamingResponse:
        """Server-sent events of every committed change of the project, in any environment (dashboards).

        At once ``event: revisions`` with ``{"project", "revisions": {env: revision}}`` (the current
        state); then ``event: change`` with ``{"project", "action", "flag", "environment", "revisions"}``
        after each committed change: flags created, replaced, killed, enabled, archived, release-plan
        advances (by command or timer; ``action`` null for the timer), segments and the project itself.
        ``revisions`` holds the environments whose ruleset changed. Changes arriving faster than the
        reader are merged into one. A heartbeat comment every 15 s; the stream ends after 5 min and the
        browser reconnects (``retry: 1000``). The admin token may be ``?token=``: EventSource cannot send
        headers.
        """
        store.project(project)  # 404 for an unknown project

        async def events() -> AsyncIterator[bytes]:
            deadline = time.monotonic() + CHANGES_STREAM_SECONDS
            queue = hub.subscribe_project(project)  # before reading the state: no change falls between
            try:
                current = {c.environment: c.revision for c in store.rulesets() if c.project == project}
                yield b"retry: 1000\n\n"
                yield _event("revisions", {"project": project, "revisions": current})
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        change = await asyncio.wait_for(queue.get(), min(HEARTBEAT_SECONDS, left))
                    except TimeoutError:
                        yield b": heartbeat\n\n"  # a gone reader shows here, as on the SDK stream
                        continue
                    yield _event(
                        "change",
                        {
                            "project": change.project,
                            "action": change.action,
                            "flag": change.flag,
                            "environment": change.environment,
                            "revisions": dict(change.revisions),
                        },
                    )
            finally:
                hub.unsubscribe_project(project, queue)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- SDK --------------------------------------------------------------------------------------------

    @app.get("/sdk/v1/ruleset")
    async def ruleset(token: Sdk, request: Request) -> Response:
        """The ruleset; ``If-None-Match`` with the last ETag answers 304 while nothing changed."""
        revision, body = store.ruleset(token.project, token.environment)
        etag = f'"{revision}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(
            body, media_type="application/json", headers={"ETag": etag, "Cache-Control": "no-cache"}
        )

    @app.get("/sdk/v1/stream", response_class=EventStream, status_code=200)
    async def stream(token: Sdk, sdkId: str | None = None) -> EventStream:  # noqa: N803
        """Server-sent events: ``event: ruleset`` with ``id:`` the revision, now and on every change
        (written by the publisher to every stream in one pass: ``fanout``)."""
        project, env = token.project, token.environment
        sink = Sink(project, env, _sse_event)
        hub.attach(sink)  # before reading the state: no change falls between
        try:
            revision, body = store.ruleset(project, env)
        except BaseException:
            hub.detach(sink)
            raise
        sink.offer(RulesetChange(project, env, revision, body, 0.0))
        sdk_id = sdkId[:128] if sdkId else None
        if sdk_id:
            acks.add(AppliedReport(project, env, sdk_id, 0, True, time.time()))

        def closed() -> None:
            hub.detach(sink)
            if sdk_id:
                store.set_streaming(project, env, sdk_id, False)

        return EventStream(sink, closed)

    @app.post("/sdk/v1/applied")
    async def applied(token: Sdk, request: Request) -> dict[str, Any]:
        """An SDK says which revision it evaluates with now: ``{"sdkId", "revision", "streaming", "age"}``,
        ``age`` (optional) the seconds since it applied it, so a delayed report is dated when it was applied."""
        body = await body_json(request)
        sdk_id = body.get("sdkId") if isinstance(body, dict) else None
        revision = body.get("revision") if isinstance(body, dict) else None
        age = body.get("age", 0) if isinstance(body, dict) else 0
        problems = []
        if not isinstance(sdk_id, str) or not 1 <= len(sdk_id) <= 128:
            problems.append(Problem("sdkId", "must be a string of 1 to 128 characters"))
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
            problems.append(Problem("revision", "must be a revision number"))
        if not isinstance(age, int | float) or isinstance(age, bool) or not 0 <= age < 1e9:
            problems.append(Problem("age", "must be the seconds since the SDK applied the revision (>= 0)"))
        if problems:
            raise SpecError("request", problems)
        acks.add(
            AppliedReport(
                token.project,
                token.environment,
                str(sdk_id),
                int(str(revision)),
                bool(body.get("streaming", False)),
                time.time() - min(float(age), MAX_ACK_AGE),
            )
        )
        return {"ok": True}

    @app.post("/sdk/v1/evaluations")
    async def evaluations(token: Sdk, request: Request) -> dict[str, Any]:
        """Evaluation counts since the SDK's last report: ``{"counts": [{"flag", "variant", "count"}]}``."""
        body = await body_json(request)
        counts = body.get("counts") if isinstance(body, dict) else None
        if not isinstance(counts, list) or len(counts) > 10_000:
            raise SpecError("request", [Problem("counts", "must be a list of at most 10,000 entries")])
        rows: list[tuple[str, str, int]] = []
        problems = []
        for i, c in enumerate(counts):
            if not (
                isinstance(c, dict)
                and isinstance(c.get("flag"), str)
                and isinstance(c.get("variant"), str)
                and isinstance(c.get("count"), int)
                and not isinstance(c.get("count"), bool)
                and c["count"] >= 0
            ):
                problems.append(
                    Problem(f"counts[{i}]", "needs flag (string), variant (string), count (>= 0)")
                )
                continue
            rows.append((c["flag"][:128], c["variant"][:128], c["count"]))
        if problems:
            raise SpecError("request", problems)
        usage.add_rows(token.project, token.environment, rows)  # written within a second, off the loop
        return {"ok": True, "recorded": len(rows)}

    mount_protocols(app, store, hub, acks, sdk_tokens, usage)  # OFREP and the Unleash client API
    return app


class _BodyLimit:
    """A declared body over ``MAX_BODY`` (or a Content-Length that is no number) is a 413 before the app
    reads it. Plain ASGI: Starlette's ``@app.middleware("http")`` runs every request through a task
    group and a stream pair, which cost the SDK polls more than their own work."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    if not value.isdigit() or int(value) > MAX_BODY:
                        await _error(413, f"body larger than {MAX_BODY} bytes")(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


def _known_env(store: FlagStore, project: str, env: str) -> None:
    if env not in store.project(project).environments:
        raise NotFoundError(f"project {project!r} has no environment {env!r}")


def _sse_event(change: RulesetChange, previous: int | None) -> bytes:
    return _sse(change.revision, change.ruleset)


@functools.lru_cache(maxsize=64)
def _sse(revision: int, ruleset: str) -> bytes:
    """A ruleset as one server-sent event, encoded once per change: every stream of the environment is
    handed the same ``RulesetChange``, so the cache is hit by the same string object (its hash is
    cached in it, and equality is identity), and fan-out costs a write per stream, not an encoding."""
    return f"id: {revision}\nevent: ruleset\ndata: {ruleset}\n\n".encode()


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _quantile(values: tuple[float, ...], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]
