"""``gapless dashboard --context C [-n NS]``: the web dashboard over a cluster's objects, with its actions.

On one machine the control plane serves the dashboard from its store. A cluster has no such process
beside the operator, and the cluster is the store: this command serves the same page from the CLI's own
process, over caches that watches keep (the operator's :class:`~gapless.platform.kubernetes.client.Informer`:
one list, then the watch; no polling) of the namespace's Rollouts, their ReplicaSets and Pods, and the
Events about Rollouts. Each answer is built from those caches by the CLI's own cluster views
(:mod:`gapless.cli.kube_view`, the shapes ``gapless status --context`` prints), so the page, the CLI and
the local control plane agree on phase, weights, revisions, events and analysis.

The actions (promote, abort, undo, pause, resume, retry) are the CLI's own: each runs the method of
:class:`~gapless.cli.kube.Kube` that ``gapless promote NAME --context C -n NS`` runs (a request annotation
or ``spec.paused`` / ``spec.template`` written with the resourceVersion read, and for promote, abort and
retry the wait until the operator has recorded it), with the same checks and the same refusals (409 for
a request the rollout's present state refuses, 404 for a missing Rollout or revision). There is no
second copy of what an action means on a cluster, and so nothing the operator could tell apart: it
records the same gapless events for a click as for the CLI verb (``PromoteRequested``, ``Aborted``,
``Paused``...). Releases, flags and migrations, which have no cluster counterpart, answer empty. There
is no router on a cluster whose counters could be charted, so ``/series`` answers no points. The page
needs a token as locally: a random one made at start, printed once on stderr, checked on every JSON
endpoint (``?token=`` for the event stream, which EventSource cannot give headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from lightkube.resources.core_v1 import Event
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gapless.cli.api import ApiError
from gapless.cli.kube_view import history_view, status_view
from gapless.core.errors import GaplessError, Problem, SpecError
from gapless.core.jsonbody import parse_json
from gapless.platform.kubernetes.client import Informer, KubeApi, Pod, ReplicaSet, RolloutResource
from gapless.platform.kubernetes.events import event_view
from gapless.server.auth import token_digest, token_matches
from gapless.server.dashboard import STATIC_DIR

if TYPE_CHECKING:
    from gapless.cli.kube import Kube

__all__ = ["ACTIONS", "ClusterView", "cluster_dashboard_app", "new_token", "run_action", "weights_in_force"]

PUSH_SECONDS = 1.0
"""How often the event stream pushes the status (from the caches: no request to the cluster)."""
MAX_BODY = 64 * 1024
"""An action's body is at most ``{"full": true}`` or ``{"toRevision": N}``."""
ACTIONS = ("promote", "abort", "undo", "pause", "resume", "retry")


def new_token() -> str:
    return secrets.token_urlsafe(24)


class ClusterView:
    """Watch-fed caches of one namespace and the dashboard's documents built from them."""

    def __init__(self, api: KubeApi, namespace: str, where: dict[str, str]) -> None:
        self.namespace = namespace
        self.where = where
        self.rollouts = Informer(api, RolloutResource, _ignore, namespace=namespace, labelled=False)
        self.replica_sets = Informer(api, ReplicaSet, _ignore, namespace=namespace, labelled=True)
        self.pods = Informer(api, Pod, _ignore, namespace=namespace, labelled=True)
        self.events = Informer(
            api,
            Event,
            _ignore,
            namespace=namespace,
            labelled=False,
            fields={"involvedObject.kind": "Rollout"},
        )

    @property
    def informers(self) -> tuple[Informer, ...]:
        return (self.rollouts, self.replica_sets, self.pods, self.events)

    async def run(self) -> None:
        """Follow the watches until cancelled."""
        await asyncio.gather(*(i.run() for i in self.informers))

    async def synced(self) -> None:
        await asyncio.gather(*(i.synced.wait() for i in self.informers))

    def status(self, name: str) -> dict[str, Any] | None:
        obj = self.rollouts.items.get((self.namespace, name))
        if obj is None:
            return None
        st = status_view(
            obj,
            self.replica_sets.of_rollout(self.namespace, name),
            self.pods.of_rollout(self.namespace, name),
            time.time(),
            self.where,
        )
        split = weights_in_force(st)
        if split is not None and not (st.get("strategy") or {}).get("weights"):
            st["strategy"] = dict(st.get("strategy") or {}) | {"weights": split}
        return st

    def rollout(self, name: str) -> dict[str, Any]:
        """What the local stream pushes for one rollout: its document (``spec``) and its status."""
        obj = self.rollouts.items.get((self.namespace, name))
        status = self.status(name)
        if obj is None or status is None:
            return {"name": name, "missing": True}
        doc = {k: obj.get(k) for k in ("apiVersion", "kind", "spec")}
        doc["metadata"] = {"name": name, "namespace": self.namespace}
        return {"name": name, "spec": doc, "status": status}

    def items(self) -> list[dict[str, Any]]:
        names = sorted(n for ns, n in self.rollouts.items if ns == self.namespace)
        return [s for s in (self.status(n) for n in names) if s is not None]

    def event_list(self, name: str | None) -> list[dict[str, Any]]:
        found = [event_view(e) for e in self.events.items.values()]
        if name is not None:
            found = [e for e in found if e["rollout"] == name]
        return sorted(found, key=lambda e: (e["time"], str(e["id"])))

    def analysis(self, name: str) -> dict[str, Any] | None:
        from gapless.cli.kube_cmd import run_view

        obj = self.rollouts.items.get((self.namespace, name))
        if obj is None:
            return None
        numbers = {
            r["hash"]: r["number"]
            for r in history_view(obj, self.replica_sets.of_rollout(self.namespace, name))
        }
        runs = (obj.get("status") or {}).get("analysisRuns") or []
        return {"name": name, "items": [run_view(name, run, numbers) for run in runs]}


_SPLIT = re.compile(r"^stable (\d+) / canary (\d+)|^canary (\d+)% by replica ratio|^active (\d+)")


def weights_in_force(status: dict[str, Any]) -> dict[str, int] | None:
    """The split the operator reports in ``status.weights`` (the HTTPRoute's weights, the pods' ratio
    without a router, blue-green's active revision) as the page's ``{revision number: percent}``;
    None when all traffic goes to one revision by replica count."""
    m = _SPLIT.match(str(status.get("weights") or ""))
    if m is None:
        return None
    current, stable = status.get("currentRevision"), status.get("stableRevision")
    if m.group(4) is not None:
        return {m.group(4): 100}
    canary = int(m.group(2) if m.group(2) is not None else m.group(3))
    if current is None or stable is None or current == stable:
        return None
    return {str(stable): 100 - canary, str(current): canary}


def _ignore(_namespace: str, _name: str) -> None:
    """The dashboard reconciles nothing: a change is read from the caches at the next push."""


def _error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=code)


def _action_args(action: str, raw: bytes) -> dict[str, Any]:
    """The options of an action from its JSON body, as the local API reads them; ``SpecError`` naming
    the field otherwise (400, nothing written)."""
    if len(raw) > MAX_BODY:
        raise SpecError("request", [Problem("", f"body larger than {MAX_BODY} bytes")])
    body = parse_json(raw) if raw else {}
    if not isinstance(body, dict):
        raise SpecError("request", [Problem("", "must be a JSON object")])
    known = {"promote": {"full"}, "undo": {"toRevision"}}.get(action, set())
    unknown = sorted(set(body) - known)
    if unknown:
        raise SpecError("request", [Problem(k, f"is not an option of {action}") for k in unknown])
    if action == "promote":
        full = body.get("full", False)
        if not isinstance(full, bool):
            raise SpecError("request", [Problem("full", "must be true or false")])
        return {"full": full}
    if action == "undo":
        to = body.get("toRevision")
        if to is not None and (not isinstance(to, int) or isinstance(to, bool) or to < 1):
            raise SpecError("request", [Problem("toRevision", "must be a positive integer")])
        return {"to_revision": to}
    return {}


def run_action(kube: Kube, action: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """What ``gapless ACTION NAME --context C -n NS`` does (blocking): the same ``Kube`` method, so the
    same checks, writes and wait for the operator."""
    if action == "promote":
        return kube.promote(name, bool(args["full"]))
    if action == "abort":
        return kube.abort(name)
    if action == "retry":
        return kube.retry(name)
    if action == "undo":
        return kube.undo(name, args["to_revision"])
    return kube.set_paused(name, action == "pause")


def _action_error(e: BaseException) -> JSONResponse:
    """An action's failure as the local API answers it: 400 naming the field, 404, 409 for a request
    the rollout's present state refuses, 502 when the cluster (or its operator) did not act."""
    if isinstance(e, SpecError):
        return JSONResponse(
            {
                "error": "; ".join(str(p) for p in e.problems),
                "problems": [{"path": p.path, "message": p.message} for p in e.problems],
            },
            status_code=400,
        )
    if isinstance(e, ApiError):
        return _error(e.status if 400 <= e.status < 500 else 502, str(e))
    return _error(502, str(e))


def cluster_dashboard_app(view: ClusterView, token: str, kube: Kube) -> Starlette:
    """The page, the JSON endpoints it reads (answered from ``view``) and its actions (done through
    ``kube``, the CLI's client of the same namespace)."""
    digest = token_digest(token)

    def allowed(request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        presented = auth[7:] if auth.lower().startswith("bearer ") else request.query_params.get("token")
        return token_matches(presented, digest)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-store"})

    async def api(request: Request) -> Response:
        if not allowed(request):
            return _error(401, "missing or wrong token (Authorization: Bearer <token>)")
        path = request.path_params["path"].strip("/")
        parts = path.split("/")
        if request.method != "GET":
            if (
                request.method == "POST"
                and parts[0] == "rollouts"
                and len(parts) == 3
                and parts[2] in ACTIONS
            ):
                return await act(request, parts[2], parts[1])
            return _error(405, f"{request.method} /api/v1/{path} is not served by the dashboard of a cluster")
        if path == "rollouts":
            return JSONResponse({"items": view.items()})
        if parts[0] == "rollouts" and len(parts) in (2, 3):
            name = parts[1]
            if len(parts) == 2:
                doc = view.rollout(name)
                return _error(404, f"rollout {name!r} not found") if doc.get("missing") else JSONResponse(doc)
            if parts[2] == "analysis":
                runs = view.analysis(name)
                return _error(404, f"rollout {name!r} not found") if runs is None else JSONResponse(runs)
            if parts[2] == "series":  # no router on a cluster: no per-revision counters to chart
                return JSONResponse({"name": name, "revisions": {}, "instances": {}})
            if parts[2] == "history":
                obj = view.rollouts.items.get((view.namespace, name))
                if obj is None:
                    return _error(404, f"rollout {name!r} not found")
                rs = view.replica_sets.of_rollout(view.namespace, name)
                return JSONResponse({"name": name, "items": history_view(obj, rs)})
        if path == "events":
            return JSONResponse({"items": view.event_list(request.query_params.get("rollout"))})
        if path == "dashboard/session":
            return JSONResponse({"readOnly": False, "kubernetes": view.where})
        if path in ("releases", "migrations"):
            return JSONResponse({"items": []})
        if path == "stream":
            return StreamingResponse(
                _stream(view, request), media_type="text/event-stream", headers={"cache-control": "no-store"}
            )
        return _error(404, f"/api/v1/{path} is not served by the dashboard of a cluster")

    async def act(request: Request, action: str, name: str) -> Response:
        try:
            args = _action_args(action, await request.body())
            # Blocking calls (and promote/abort/retry wait for the operator): off the loop that feeds the
            # page, so the watches and the event stream go on meanwhile.
            result = await asyncio.to_thread(run_action, kube, action, name, args)
        except (SpecError, GaplessError) as e:
            return _action_error(e)
        return JSONResponse(result)

    routes: list[BaseRoute] = [
        Route("/", index, methods=["GET"]),
        Route("/ui", index, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
        Route("/api/v1/{path:path}", api, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    return Starlette(routes=routes)


async def _stream(view: ClusterView, request: Request) -> AsyncIterator[str]:
    """``status`` (one rollout, or all) every second and the Events not pushed yet, as the local stream."""
    name = request.query_params.get("rollout")
    sent: set[str] = set()
    yield "retry: 1000\n\n"
    while not await request.is_disconnected():
        status: dict[str, Any] = view.rollout(name) if name else {"items": view.items()}
        yield f"event: status\ndata: {json.dumps(status)}\n\n"
        fresh = [e for e in view.event_list(name) if str(e["id"]) not in sent]
        if fresh:
            sent.update(str(e["id"]) for e in fresh)
            yield f"event: events\ndata: {json.dumps({'items': fresh})}\n\n"
        await asyncio.sleep(PUSH_SECONDS)


def serve(kube: Any, host: str, port: int, echo: Any) -> int:
    """Serve the dashboard of ``kube``'s namespace on ``host:port`` (0: any free port) until Ctrl-C or
    SIGTERM; ``echo(line)`` tells the user the URL and the token. 1 when the cluster does not answer."""
    import signal
    import socket

    from gapless.server.operator_http import quiet_server

    async def main() -> int:
        api = KubeApi(kube.config, namespace=kube.namespace)
        view = ClusterView(api, kube.namespace, kube.context_info())
        watching = asyncio.create_task(view.run(), name="dashboard watches")
        try:
            try:
                await asyncio.wait_for(view.synced(), 30)
            except TimeoutError:
                echo(
                    f"error: the cluster ({kube.config.cluster.server}) did not answer the lists within 30 s"
                )
                return 1
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server((host, port), family=family)
            bound = sock.getsockname()[1]
            token = new_token()
            hint = f"--context {kube.config.context_name} -n {kube.namespace}"
            server = quiet_server(cluster_dashboard_app(view, token, kube))
            shown = f"[{host}]" if ":" in host else host
            echo(f"dashboard of {kube.namespace} ({hint}) on http://{shown}:{bound}/")
            echo(f"log in with the token {token} (valid while this command runs)")
            loop = asyncio.get_running_loop()
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
            await serving
            return 0
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            await api.close()

    return asyncio.run(main())
