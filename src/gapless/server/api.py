"""The control plane's HTTP API (Starlette). The CLI speaks only this.

Every endpoint but ``/healthz`` needs ``Authorization: Bearer <token>``. Bad input is a 400 whose body
lists every problem with its field path; a missing rollout is a 404; a state conflict a 409. Nothing is
written when a request is rejected.

``build_metrics_app`` is the other face: ``GET /metrics`` and ``GET /healthz`` alone, without a token,
for the optional TCP address Prometheus scrapes. It only reads, like any exporter, and it serves the very
body the token-protected ``/metrics`` of the API does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from gapless.controller.adoption import AdoptionError, describe_unclaimed
from gapless.controller.commands import Commands, ConflictError
from gapless.controller.reconcile import Controller
from gapless.controller.release import ReleaseCommands
from gapless.controller.writes import write_condition
from gapless.core.errors import NotFoundError, Problem, SpecError, StateWriteError
from gapless.core.jsonbody import MAX_INT, parse_json
from gapless.providers.schema import MIGRATION_STREAM_PREFIX
from gapless.server.auth import token_matches
from gapless.server.dashboard import (
    MigrationProgress,
    SeriesSampler,
    analysis_readings,
    progress_body,
    stream_events,
)
from gapless.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gapless.server.metrics import MetricsSource, render_control_plane_metrics
from gapless.spec.load import validate_rollout, validate_template
from gapless.store.sqlite import Store, WriteFailure

__all__ = [
    "MIGRATION_EVENT_TYPES",
    "MIGRATION_STREAM_PREFIX",
    "build_app",
    "build_metrics_app",
    "schema_versions",
]

MAX_BODY = 1 << 20

log = logging.getLogger("gapless.api")

Handler = Callable[[Request], Awaitable[Response]]

MIGRATION_EVENT_TYPES = frozenset(
    {"MigrationStarted", "BackfillDone", "MigrationCompleted", "MigrationRolledBack"}
)
_MAX_EVENT_NAME = 200
_MAX_EVENT_MESSAGE = 4000


def _event_body(body: Any) -> tuple[str, str, str, str]:
    """(rollout, revision, type, message) of a posted event, or a SpecError listing every problem."""
    if not isinstance(body, dict):
        raise SpecError("request", [Problem("", "must be a JSON object")])
    problems = [
        Problem(k, "unknown field") for k in sorted(set(body) - {"rollout", "revision", "type", "message"})
    ]

    def text(key: str, limit: int, *, required: bool) -> str:
        value = body.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            problems.append(Problem(key, "must be a non-empty string" if required else "must be a string"))
            return ""
        if len(value) > limit:
            problems.append(Problem(key, f"must be at most {limit} characters"))
        elif key != "message" and not value.isprintable():
            problems.append(Problem(key, "must be printable text"))
        return value

    rollout = text("rollout", _MAX_EVENT_NAME, required=True)
    revision = text("revision", _MAX_EVENT_NAME, required=True)
    type_ = text("type", _MAX_EVENT_NAME, required=True)
    message = text("message", _MAX_EVENT_MESSAGE, required=False)
    if rollout and not (rollout.startswith(MIGRATION_STREAM_PREFIX) and rollout != MIGRATION_STREAM_PREFIX):
        problems.append(Problem("rollout", f"must be {MIGRATION_STREAM_PREFIX}<database name>"))
    if type_ and type_ not in MIGRATION_EVENT_TYPES:
        problems.append(Problem("type", f"must be one of {', '.join(sorted(MIGRATION_EVENT_TYPES))}"))
    if problems:
        raise SpecError("request", problems)
    return rollout, revision, type_, message


def schema_versions(store: Store) -> list[dict[str, Any]]:
    """Per rollout, the revisions with live instances, the schema version each declares and how many run.

    An instance is live unless it is stopped: a terminating instance may still hold connections.
    """
    items: list[dict[str, Any]] = []
    for rec in store.rollouts():
        counts: dict[str, int] = {}
        for inst in store.instances(rec.name):
            if inst.state != "stopped":
                counts[inst.revision] = counts.get(inst.revision, 0) + 1
        by_hash = {r.hash: r for r in store.revisions(rec.name)}
        revisions = []
        for hash_, n in sorted(
            counts.items(), key=lambda kv: by_hash[kv[0]].number if kv[0] in by_hash else 0
        ):
            rev = by_hash.get(hash_)
            version = rev.template.get("requiresSchema") if rev is not None else None
            revisions.append(
                {
                    "revision": hash_,
                    "number": rev.number if rev is not None else None,
                    "requiresSchema": version if isinstance(version, str) else None,
                    "instances": n,
                }
            )
        items.append({"rollout": rec.name, "revisions": revisions})
    return items


def _problems(status: int, problems: list[Problem]) -> JSONResponse:
    return JSONResponse(
        {
            "error": "; ".join(str(p) for p in problems),
            "problems": [{"path": p.path, "message": p.message} for p in problems],
        },
        status_code=status,
    )


def _unwritable(e: StateWriteError) -> JSONResponse:
    """503: the request needs a write the state cannot take now (nothing was changed)."""
    response = _error(
        503, f"the control plane cannot write its state: {e}; nothing was changed, try again later"
    )
    response.headers["retry-after"] = "5"
    return response


def _with_write_condition(status: dict[str, Any], failure: WriteFailure | None) -> dict[str, Any]:
    """A status with the ``StateWritable=False`` condition while the state cannot be written."""
    condition = write_condition(failure)
    if condition is None:
        return status
    kept = [c for c in status.get("conditions", []) if c.get("type") != "StateWritable"]
    return status | {"conditions": [*kept, condition]}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": message, "problems": [{"path": "", "message": message}]}, status_code=status
    )


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise SpecError("request", [Problem("", f"body larger than {MAX_BODY} bytes")])
    if not body:
        return {}
    return parse_json(body)


def _int_param(request: Request, name: str, default: int, low: int = 0, high: int = MAX_INT) -> int:
    """An integer query parameter within ``[low, high]``; a ``SpecError`` naming it otherwise."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    text = raw.strip()
    if len(text) > 20 or not text.lstrip("-").isdigit() or not low <= int(text) <= high:
        raise SpecError("request", [Problem(name, f"must be an integer from {low} to {high}")])
    return int(text)


def _healthz(store: Store) -> Handler:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "rollouts": len(store.rollouts())})

    return healthz


def _metrics(store: Store, source: MetricsSource | None) -> Handler:
    async def metrics(request: Request) -> Response:
        if source is not None:
            body = await source.render()
        else:
            body = render_control_plane_metrics([r.status | {"name": r.name} for r in store.rollouts()])
        return Response(body, media_type=METRICS_CONTENT_TYPE)

    return metrics


def build_metrics_app(store: Store, metrics: MetricsSource) -> Starlette:
    """``GET /metrics`` and ``GET /healthz`` without a token; any other path is a 404."""
    routes = [
        Route("/healthz", _healthz(store), methods=["GET"]),
        Route("/metrics", _metrics(store, metrics), methods=["GET"]),
    ]
    return Starlette(routes=routes)


_MUTATING = frozenset({"POST", "PUT", "DELETE", "PATCH"})


def _audit(store: Store, request: Request, status: int) -> None:
    """Every authenticated change, accepted or refused: when, what, through which address, and the answer."""
    client = request.client
    via = "socket" if client is None or not client.host else f"{client.host}"
    store.add_audit(time.time(), request.method, request.url.path, via, status)


def build_app(
    store: Store,
    controller: Controller,
    commands: Commands,
    token_digest: str,
    metrics: MetricsSource | None = None,
    flags: ASGIApp | None = None,
    series: SeriesSampler | None = None,
    flags_token: Callable[[], str | None] | None = None,
    progress: MigrationProgress | None = None,
    releases: ReleaseCommands | None = None,
) -> Starlette:
    """The API. Without a ``metrics`` source, ``/metrics`` shows the stored statuses alone.

    ``flags`` (the flag service's app) is mounted at ``/flags``; it checks its own admin and SDK tokens.
    ``series`` (the dashboard's sampler) adds ``/api/v1/rollouts/{name}/series``; without it that
    endpoint answers with empty series. ``/api/v1/stream`` (server-sent events) also takes the token as
    ``?token=``, because a browser's EventSource cannot send headers.

    ``flags_token`` gives the flag admin token of the dashboard: ``GET /api/v1/dashboard/session``
    (control-plane token required, like every endpoint) hands it to a logged-in dashboard, which calls
    ``/flags/api/v1/...`` with it. Whoever holds the control-plane token may act on flags too.

    ``progress`` keeps the backfill progress ``PUT`` to ``/api/v1/migrations/{database}/progress`` (a
    fresh one when not given); ``/api/v1/stream`` of all rollouts pushes it as ``event: progress``.

    ``releases`` adds ``/api/v1/releases`` (list), ``/api/v1/releases/{name}`` (GET, PUT) and its
    ``promote``, ``abort`` and ``undo`` (POST).
    """
    backfills = progress if progress is not None else MigrationProgress()

    def guarded(handler: Handler, *, audit_accepted: bool = True) -> Handler:
        async def wrapper(request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            presented = auth[7:] if auth.lower().startswith("bearer ") else None
            if not token_matches(presented, token_digest):
                return _error(401, "missing or wrong token (Authorization: Bearer <token>)")
            try:
                response = await handler(request)
            except SpecError as e:
                response = _problems(400, e.problems)
            except NotFoundError as e:
                response = _error(404, str(e))
            except (ConflictError, AdoptionError) as e:
                response = _error(409, str(e))
            except StateWriteError as e:
                response = _unwritable(e)
            if request.method in _MUTATING and (audit_accepted or response.status_code >= 400):
                try:
                    _audit(store, request, response.status_code)
                except StateWriteError as e:
                    log.warning("audit of %s %s not written: %s", request.method, request.url.path, e)
            return response

        return wrapper

    async def list_rollouts(request: Request) -> Response:
        unclaimed = [
            {
                "rollout": name,
                "message": describe_unclaimed(name, procs),
                "pids": sorted(p.pid for p in procs),
            }
            for name, procs in sorted(controller.unclaimed().items())
        ]
        return JSONResponse(
            {
                "items": [
                    _with_write_condition(r.status, store.write_failure)
                    | {"name": r.name, "generation": r.generation}
                    for r in store.rollouts()
                ],
                "unclaimed": unclaimed,
            }
        )

    async def get_rollout(request: Request) -> Response:
        name = request.path_params["name"]
        found = store.find_rollout(name)
        if found is None:
            raise NotFoundError(controller.unclaimed_message(name) or f"rollout {name!r} not found")
        rec = found
        status = _with_write_condition(dict(rec.status), store.write_failure)
        status.setdefault("name", rec.name)
        status["generation"] = rec.generation
        status.setdefault("observedGeneration", 0)
        status["deleting"] = rec.deleting
        return JSONResponse({"spec": rec.spec, "status": status})

    async def put_rollout(request: Request) -> Response:
        name = request.path_params["name"]
        doc = await _json_body(request)
        rollout = validate_rollout(doc, source="request")
        if rollout.name != name:
            raise SpecError(
                "request", [Problem("metadata.name", f"is {rollout.name!r} but the URL names {name!r}")]
            )
        if request.query_params.get("adopt") in ("1", "true"):
            return JSONResponse(await controller.adopt(rollout))
        unclaimed = controller.unclaimed_message(name)
        if unclaimed is not None:
            raise ConflictError(unclaimed)
        return await settled(name, commands.apply(rollout))

    async def settled(name: str, result: dict[str, Any]) -> Response:
        """Answer a command once its rollout's own pass has applied it (the router holds the weights)."""
        await controller.settle(name)
        return JSONResponse(result)

    async def pause(request: Request) -> Response:
        name = request.path_params["name"]
        return await settled(name, commands.set_paused(name, True))

    async def resume(request: Request) -> Response:
        name = request.path_params["name"]
        return await settled(name, commands.set_paused(name, False))

    async def undo(request: Request) -> Response:
        body = await _json_body(request)
        to = body.get("toRevision") if isinstance(body, dict) else None
        if to is not None and (not isinstance(to, int) or isinstance(to, bool) or to < 1):
            raise SpecError("request", [Problem("toRevision", "must be a positive integer")])
        name = request.path_params["name"]
        return await settled(name, commands.undo(name, to))

    async def promote(request: Request) -> Response:
        body = await _json_body(request)
        full = body.get("full", False) if isinstance(body, dict) else False
        if not isinstance(full, bool):
            raise SpecError("request", [Problem("full", "must be true or false")])
        name = request.path_params["name"]
        return await settled(name, commands.promote(name, full=full))

    async def abort(request: Request) -> Response:
        name = request.path_params["name"]
        return await settled(name, commands.abort(name))

    async def retry(request: Request) -> Response:
        name = request.path_params["name"]
        return await settled(name, commands.retry(name))

    async def history(request: Request) -> Response:
        return JSONResponse({"items": commands.history(request.path_params["name"])})

    async def put_template(request: Request) -> Response:
        name = request.path_params["name"]
        template = validate_template(await _json_body(request))
        if template.metadata.name != name:
            raise SpecError(
                "request",
                [Problem("metadata.name", f"is {template.metadata.name!r} but the URL names {name!r}")],
            )
        return JSONResponse(commands.apply_template(template))

    async def list_templates(request: Request) -> Response:
        return JSONResponse({"items": commands.templates()})

    async def get_template(request: Request) -> Response:
        return JSONResponse(commands.template(request.path_params["name"]))

    async def delete_template(request: Request) -> Response:
        commands.delete_template(request.path_params["name"])
        return JSONResponse({"deleted": True})

    async def analysis(request: Request) -> Response:
        revision: int | None = _int_param(request, "revision", 0, 1, 1 << 31) or None
        name = request.path_params["name"]
        body = commands.analysis(name, revision)
        runs = {r.id: r for r in store.analysis_runs(name)}
        for item in body["items"]:  # the dashboard's analysis panel reads these
            run = runs.get(item["id"])
            item["readings"] = analysis_readings(run) if run is not None else []
        return JSONResponse(body)

    async def delete_rollout(request: Request) -> Response:
        commands.delete(request.path_params["name"])
        return JSONResponse({"deleting": True}, status_code=202)

    async def audit(request: Request) -> Response:
        since = _int_param(request, "since", 0)
        limit = _int_param(request, "limit", 100, 1, 1000)
        return JSONResponse({"items": store.audit(since, limit)})

    async def events(request: Request) -> Response:
        rollout = request.query_params.get("rollout") or None
        since = _int_param(request, "since", 0)
        found = store.events(rollout, since)
        numbers: dict[str, dict[str, int]] = {}
        for name in {e.rollout for e in found if e.revision_number is None and e.revision}:
            numbers[name] = {r.hash: r.number for r in store.revisions(name)}
        items = [e.to_json(numbers.get(e.rollout, {}).get(e.revision)) for e in found]
        return JSONResponse({"items": items})

    async def post_event(request: Request) -> Response:
        rollout, revision, type_, message = _event_body(await _json_body(request))
        controller.event(rollout, revision, type_, message)
        if rollout.startswith(MIGRATION_STREAM_PREFIX):
            controller.schema.poke()  # a migration moved: gating reads its state again now
        return JSONResponse(
            {"rollout": rollout, "revision": revision, "type": type_, "message": message}, status_code=201
        )

    async def get_schema_versions(request: Request) -> Response:
        return JSONResponse({"items": schema_versions(store)})

    async def get_series(request: Request) -> Response:
        name = request.path_params["name"]
        store.rollout(name)
        if series is None:
            return JSONResponse({"name": name, "interval": 1.0, "revisions": {}, "instances": {}})
        return JSONResponse(series.series(name))

    async def stream(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        presented = auth[7:] if auth.lower().startswith("bearer ") else request.query_params.get("token")
        if not token_matches(presented, token_digest):
            return _error(401, "missing or wrong token (Authorization: Bearer <token> or ?token=)")
        name = request.query_params.get("rollout") or None
        try:
            since = _int_param(request, "since", 0)
        except SpecError as e:
            return _problems(400, e.problems)
        if name is not None and store.find_rollout(name) is None:
            return _error(404, f"rollout {name!r} not found")
        return StreamingResponse(
            stream_events(
                store, name, since, request.is_disconnected, progress=backfills if name is None else None
            ),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def dashboard_session(request: Request) -> Response:
        token = flags_token() if flags_token is not None else None
        return JSONResponse(
            {"flagsToken": token, "flagsAvailable": token is not None},
            headers={"cache-control": "no-store"},
        )

    async def shutdown(request: Request) -> Response:
        controller.request_shutdown()
        return JSONResponse({"shuttingDown": True}, status_code=202)

    routes: list[BaseRoute] = [
        Route("/healthz", _healthz(store)),
        Route("/api/v1/rollouts", guarded(list_rollouts)),
        Route("/api/v1/rollouts/{name}", guarded(get_rollout), methods=["GET"]),
        Route("/api/v1/rollouts/{name}", guarded(put_rollout), methods=["PUT"]),
        Route("/api/v1/rollouts/{name}", guarded(delete_rollout), methods=["DELETE"]),
        Route("/api/v1/rollouts/{name}/pause", guarded(pause), methods=["POST"]),
        Route("/api/v1/rollouts/{name}/resume", guarded(resume), methods=["POST"]),
        Route("/api/v1/rollouts/{name}/undo", guarded(undo), methods=["POST"]),
        Route("/api/v1/rollouts/{name}/promote", guarded(promote), methods=["POST"]),
        Route("/api/v1/rollouts/{name}/abort", guarded(abort), methods=["POST"]),
        Route("/api/v1/rollouts/{name}/retry", guarded(retry), methods=["POST"]),
        Route("/api/v1/rollouts/{name}/history", guarded(history)),
        Route("/api/v1/rollouts/{name}/analysis", guarded(analysis)),
        Route("/api/v1/analysistemplates", guarded(list_templates)),
        Route("/api/v1/analysistemplates/{name}", guarded(get_template), methods=["GET"]),
        Route("/api/v1/analysistemplates/{name}", guarded(put_template), methods=["PUT"]),
        Route("/api/v1/analysistemplates/{name}", guarded(delete_template), methods=["DELETE"]),
        Route("/api/v1/rollouts/{name}/series", guarded(get_series), methods=["GET"]),
        Route("/api/v1/events", guarded(events), methods=["GET"]),
        Route("/api/v1/events", guarded(post_event), methods=["POST"]),
        Route("/api/v1/schema-versions", guarded(get_schema_versions), methods=["GET"]),
        Route("/api/v1/audit", guarded(audit)),
        Route("/api/v1/stream", stream, methods=["GET"]),
        Route("/api/v1/dashboard/session", guarded(dashboard_session), methods=["GET"]),
        Route("/api/v1/shutdown", guarded(shutdown), methods=["POST"]),
        Route("/metrics", guarded(_metrics(store, metrics)), methods=["GET"]),
    ]

    # Backfill progress of `gapless migrate start`: in memory, pushed on /api/v1/stream, never an event.
    # Accepted reports (one a second per table) are not audited; refused ones are.
    async def put_progress(request: Request) -> Response:
        reading = progress_body(request.path_params["database"], await _json_body(request))
        return JSONResponse(backfills.put(reading))

    async def get_progress(request: Request) -> Response:
        return JSONResponse({"items": backfills.items(request.path_params["database"])})

    progress_path = "/api/v1/migrations/{database}/progress"
    routes += [
        Route(progress_path, guarded(put_progress, audit_accepted=False), methods=["PUT"]),
        Route(progress_path, guarded(get_progress), methods=["GET"]),
    ]
    if releases is not None:
        routes += _release_routes(releases, guarded)
    if flags is not None:
        routes.append(Mount("/flags", app=flags))

    async def unwritable(request: Request, exc: Exception) -> Response:
        return _unwritable(exc) if isinstance(exc, StateWriteError) else _error(500, "internal error")

    return Starlette(routes=routes, exception_handlers={StateWriteError: unwritable})


def _release_routes(releases: ReleaseCommands, guarded: Callable[[Handler], Handler]) -> list[BaseRoute]:
    """The release endpoints; a PUT carries ``{"release": <Release>, "rollouts": {"<step>": <Rollout>}}``."""

    async def list_releases(request: Request) -> Response:
        return JSONResponse({"items": releases.list()})

    async def get_release(request: Request) -> Response:
        return JSONResponse(releases.get(request.path_params["name"]))

    async def put_release(request: Request) -> Response:
        name = request.path_params["name"]
        return JSONResponse(await releases.apply(name, await _json_body(request)))

    async def promote_release(request: Request) -> Response:
        return JSONResponse(releases.promote(request.path_params["name"]))

    async def abort_release(request: Request) -> Response:
        return JSONResponse(releases.abort(request.path_params["name"]))

    async def undo_release(request: Request) -> Response:
        return JSONResponse(releases.undo(request.path_params["name"]))

    return [
        Route("/api/v1/releases", guarded(list_releases), methods=["GET"]),
        Route("/api/v1/releases/{name}", guarded(get_release), methods=["GET"]),
        Route("/api/v1/releases/{name}", guarded(put_release), methods=["PUT"]),
        Route("/api/v1/releases/{name}/promote", guarded(promote_release), methods=["POST"]),
        Route("/api/v1/releases/{name}/abort", guarded(abort_release), methods=["POST"]),
        Route("/api/v1/releases/{name}/undo", guarded(undo_release), methods=["POST"]),
    ]
