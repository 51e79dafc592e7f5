"""The control-plane process: store, platform, routers, controller and API wired together.

One control plane per state directory, guarded by an exclusive lock on ``control-plane.lock``. It is
restartable at any moment: SIGTERM or SIGKILL leave instances and routers running (they are in their own
sessions), and the next start adopts them. Only an explicit shutdown (``gapless down``) stops them.

With a metrics address, a second HTTP server serves ``/metrics`` and ``/healthz`` on TCP for Prometheus.
Its socket is bound right after the lock is taken and before anything else starts, so an address in use
stops the start with a message naming it, and nothing half-started is left behind. The API server owns
the signals; the metrics server simply stops with it.

With a dashboard address, a third server on TCP serves the web dashboard (``gapless.server.dashboard``):
its page and, below it, the very API app of the unix socket, token and all. It is bound as early as the
metrics socket, and its URL is written to ``dashboard.url`` in the state directory for ``gapless
dashboard`` (removed on exit). With a Grafana URL, every stored event is also sent as an annotation
(``gapless.controller.annotations``).

The flag service is mounted at ``/flags`` of that API app, so it is reachable on the dashboard address
too (``http://HOST:PORT/flags``: the dashboard's Flags view and SDKs' ``HttpTransport`` use it). Every
flag change made through it becomes a control-plane event (``FlagChanged`` / ``FlagKilled``, rollout
``flags:<project>``, revision ``<environment>:<revision>``), stored, streamed and annotated like any.
Instances are told where it is: ``$GAPLESS_FLAGS_URL`` is ``unix:<state dir>/api.sock:/flags``
(``flags_env``), so an application's SDK reaches it without a TCP port (``HttpTransport.from_env``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import logging.handlers
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import setproctitle
import uvicorn
import uvloop
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from gapless.controller.annotations import AnnotationSender
from gapless.controller.commands import Commands
from gapless.controller.haproxy import HaproxyRouters
from gapless.controller.reconcile import Controller
from gapless.controller.release import ReleaseCommands, ReleaseController
from gapless.controller.routers import Routers
from gapless.controller.traffic import LocalRouters
from gapless.core.clock import SystemClock
from gapless.core.files import (
    API_SOCKET,
    DASHBOARD_URL_FILE,
    FLAGS_DASHBOARD_TOKEN,
    FLAGS_DB,
    LOCK_FILE,
    LOG_FILE,
    STDERR_FILE,
)
from gapless.flags.address import ENV_URL, unix_address
from gapless.platform.local import LocalPlatform
from gapless.providers.schema import DatabaseMigrations
from gapless.server.addresses import dashboard_url, is_loopback, metrics_url, parse_metrics_listen
from gapless.server.api import build_app, build_metrics_app
from gapless.server.auth import ensure_token, read_token
from gapless.server.dashboard import SeriesSampler, build_dashboard_app
from gapless.server.metrics import MetricsSource
from gapless.server.release_flags import HttpFlags
from gapless.store.sqlite import Store

if TYPE_CHECKING:
    from gapless.flags.service.app import FlagChange, OnChange
    from gapless.flags.service.store import FlagStore

__all__ = [
    "API_SOCKET",
    "DASHBOARD_URL_FILE",
    "FLAGS_DASHBOARD_TOKEN",
    "LOCK_FILE",
    "LOG_FILE",
    "STDERR_FILE",
    "FlagsMount",
    "GrafanaTarget",
    "configure_logging",
    "dashboard_url",
    "flag_events",
    "is_loopback",
    "metrics_url",
    "parse_metrics_listen",
    "run_control_plane",
]

LOG_MAX_BYTES = 10 << 20
LOG_BACKUPS = 3

log = logging.getLogger("gapless.control-plane")


def configure_logging(state_dir: Path) -> None:
    """Log to ``control-plane.log``, rotated by size (``LOG_MAX_BYTES``, ``LOG_BACKUPS`` old files kept).

    The file is written by this handler alone: ``gapless up`` sends the process's own stdout and stderr
    (what escapes logging: a crash before it is set up, a fatal error) to ``control-plane.stderr``, so no
    second descriptor keeps writing into a file that was rotated away. A terminal on stderr (the control
    plane run by hand in the foreground) gets the log too. A failed write of the log (a full disk) is
    reported by ``logging`` on stderr and costs nothing else.
    """
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = logging.handlers.RotatingFileHandler(
        state_dir / LOG_FILE, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(fmt)
    handlers: list[logging.Handler] = [handler]
    if sys.stderr.isatty():
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(fmt)
        handlers.append(console)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)


@dataclass(frozen=True)
class GrafanaTarget:
    """Where deployment events go as annotations: Grafana's base URL and an API token ("" for none)."""

    url: str
    token: str


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


class _MetricsServer(uvicorn.Server):
    """A uvicorn server that leaves the signals to the API server; it stops when ``should_exit`` is set."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def run_control_plane(
    state_dir: Path,
    metrics_listen: str | None = None,
    *,
    dashboard_listen: str | None = None,
    grafana: GrafanaTarget | None = None,
    database: tuple[str, str] | None = None,
) -> int:
    """Run until shut down through the API (exit 0) or signalled.

    Exits 3 if another control plane holds the lock, 2 for a malformed ``metrics_listen`` or
    ``dashboard_listen`` and 1 when one cannot be bound.
    """
    address = dashboard_address = None
    try:
        if metrics_listen is not None:
            address = parse_metrics_listen(metrics_listen)
        if dashboard_listen is not None:
            dashboard_address = parse_metrics_listen(dashboard_listen)
    except ValueError as e:
        message = str(e)
        if (
            dashboard_listen is not None
            and dashboard_listen in message
            and metrics_listen != dashboard_listen
        ):
            message = message.replace("--metrics-listen", "--dashboard-listen")
        print(f"error: {message}", file=sys.stderr)
        return 2
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    os.umask(0o077)
    setproctitle.setproctitle("gapless control-plane")
    configure_logging(state_dir)
    lock = (state_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another control plane is running for {state_dir}", file=sys.stderr)
        return 3
    try:
        metrics_sock = None
        if address is not None:
            try:
                metrics_sock = _bind(*address)
            except OSError as e:
                print(f"error: cannot serve metrics on {metrics_listen}: {e.strerror or e}", file=sys.stderr)
                return 1
        dashboard_sock = None
        if dashboard_address is not None:
            try:
                dashboard_sock = _bind(*dashboard_address)
            except OSError as e:
                if metrics_sock is not None:
                    metrics_sock.close()
                print(
                    f"error: cannot serve the dashboard on {dashboard_listen}: {e.strerror or e}",
                    file=sys.stderr,
                )
                return 1
        uvloop.run(_serve(state_dir, metrics_sock, dashboard_sock, grafana, database))
        return 0
    finally:
        lock.close()


def _out_of_the_collectors_reach(what: str) -> None:
    """Move what ``what`` made (modules, the apps, pydantic's and SQLAlchemy's structures) out of the collector's reach.

    They live as long as the process, and every full collection walked them: measured during
    ``bench/strategies.py``, full collections of 78-84 ms in the control plane, each one a stall for a
    promote or abort that arrived meanwhile (the benchmark's slowest commands were 126 ms against a
    median of 30). Frozen, a full collection walks only what was made since.
    """
    gc.collect()
    gc.freeze()
    log.debug("%d objects made by %s are out of the collector's reach", gc.get_freeze_count(), what)


class FlagsMount:
    """The flag service at ``/flags`` of the API, loaded in the background so the control plane starts fast.

    Its imports (SQLAlchemy, Alembic, FastAPI) and its migrations take a moment; until they are done,
    ``/flags`` answers 503. The store is ``<state dir>/flags.db``; a first admin token is written to
    ``<state dir>/flags-admin-token`` as ``gapless flags serve`` does. Release plans advance here too.

    The dashboard gets its own flag admin token, named ``gapless dashboard`` so its changes are told
    apart in the flag audit log; it is kept in ``<state dir>/flags-dashboard-token`` (mode 0600) and made
    afresh when that file is missing or its token was revoked. ``on_change`` hears of every flag change
    made through the mounted API (``gapless.flags.service.app.FlagChange``).
    """

    def __init__(self, state_dir: Path, on_change: OnChange | None = None) -> None:
        self._dir = state_dir
        self._on_change = on_change
        self._app: ASGIApp | None = None
        self._close: Callable[[], None] | None = None
        self.dashboard_token: str | None = None
        """The flag admin token handed to a logged-in dashboard; None until the service is loaded."""
        self.release_flags: HttpFlags | None = None
        """Release steps' way to the flag service (its API, as ``gapless releases``); None until loaded."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            response = JSONResponse({"error": "the flag service is starting; try again"}, status_code=503)
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)

    async def run(self) -> None:
        def load() -> tuple[ASGIApp, Any, Any, Callable[[], None], str, str]:
            from gapless.flags.service.app import build_flag_app
            from gapless.flags.service.hub import Hub
            from gapless.flags.service.serve import ensure_admin_token
            from gapless.flags.service.store import FlagStore

            flag_store = FlagStore(f"sqlite:///{self._dir / FLAGS_DB}").open()
            ensure_admin_token(flag_store, self._dir)
            token = _dashboard_flags_token(flag_store, self._dir / FLAGS_DASHBOARD_TOKEN)
            releases = _dashboard_flags_token(flag_store, self._dir / FLAGS_RELEASE_TOKEN, "gapless releases")
            hub = Hub()
            app = build_flag_app(flag_store, hub, on_change=self._on_change)
            return app, flag_store, hub, flag_store.close, token, releases

        try:
            app, flag_store, hub, close, token, releases = await asyncio.to_thread(load)
        except Exception:
            log.exception("the flag service could not start; /flags stays unavailable")
            return
        from gapless.flags.service.serve import advance_forever

        self._app, self._close, self.dashboard_token = app, close, token
        self.release_flags = HttpFlags(app, releases)
        _out_of_the_collectors_reach("the flag service's start")
        await advance_forever(flag_store, hub, on_change=self._on_change)

    def close(self) -> None:
        if self._close is not None:
            self._close()


FLAGS_RELEASE_TOKEN = "flags-release-token"  # noqa: S105 -- a file name, not a secret


def _dashboard_flags_token(flag_store: FlagStore, path: Path, name: str = "gapless dashboard") -> str:
    """A flag admin token (the dashboard's) from ``path`` if it still works, else a new one written there."""
    from gapless.flags.service.tokens import split_token, verify

    with contextlib.suppress(OSError):
        token = path.read_text().strip()
        id_ = split_token(token)
        record = flag_store.find_token(id_) if id_ else None
        if record is not None and record.kind == "admin" and verify(token, record):
            return token
    _, token = flag_store.create_token("admin", name)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return str(token)


def flag_events(controller: Controller) -> OnChange:
    """The flag service's change hook: one control-plane event per environment whose ruleset changed."""

    def on_change(change: FlagChange) -> None:
        killed = change.action == "flag.kill"
        verb = {
            "flag.kill": "killed (kill switch)",
            "flag.enable": "enabled",
            "flag.create": "created",
            "flag.put": "changed",
            "flag.archive": "archived",
            "flag.release.advance": "advanced to its next release stage",
        }.get(change.action, change.action)
        for c in change.changes:
            controller.event(
                f"flags:{change.project}",
                f"{c.environment}:{c.revision}",
                "FlagKilled" if killed else "FlagChanged",
                f"flag {change.flag!r} {verb} in {c.environment} by token {change.actor.name!r}",
            )

    return on_change


def flags_env(sock: Path) -> dict[str, str]:
    """What instances are told of the flag service mounted at ``/flags`` of the API socket ``sock``:
    ``$GAPLESS_FLAGS_URL`` (``unix:SOCKET:/flags``), for ``HttpTransport.from_env()``. Their SDK token is
    their own (``$GAPLESS_FLAGS_SDK_TOKEN_FILE``); no token of the control plane is handed out.
    Nothing when the socket's path cannot be written as an address (it contains ``:``)."""
    try:
        return {ENV_URL: unix_address(str(sock.resolve()), "/flags")}
    except ValueError as e:
        log.warning("instances are not told of the flag service: %s", e)
        return {}


def _write_url(path: Path, url: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(url + "\n")
    os.replace(tmp, path)


async def _serve(
    state_dir: Path,
    metrics_sock: socket.socket | None,
    dashboard_sock: socket.socket | None = None,
    grafana: GrafanaTarget | None = None,
    database: tuple[str, str] | None = None,
) -> None:
    store = Store(state_dir / "state.db").open()
    digest = ensure_token(state_dir, store)
    platform = LocalPlatform(
        state_dir, state_id=store.state_id, instance_env=flags_env(state_dir / API_SOCKET)
    )
    traffic = Routers(
        LocalRouters(state_dir, read_token(state_dir), platform), HaproxyRouters(state_dir, platform)
    )
    clock = SystemClock()
    annotations = AnnotationSender(grafana.url, grafana.token) if grafana is not None else None
    migrations = DatabaseMigrations(*database) if database is not None else None
    controller = Controller(
        store, platform, traffic, clock, state_dir, annotations=annotations, database=migrations
    )
    commands = Commands(store, controller, clock)
    metrics = MetricsSource(store, traffic, platform)
    flags = FlagsMount(state_dir, on_change=flag_events(controller))
    sampler = SeriesSampler(store, traffic, platform)
    releases = ReleaseController(store, controller, commands, clock, lambda: flags.release_flags)
    release_commands = ReleaseCommands(store, controller, releases, clock, lambda: flags.release_flags)
    app = build_app(
        store,
        controller,
        commands,
        digest,
        metrics,
        flags,
        sampler,
        flags_token=lambda: flags.dashboard_token,
        releases=release_commands,
    )
    sock = state_dir / API_SOCKET
    sock.unlink(missing_ok=True)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            uds=str(sock),
            log_level="warning",
            lifespan="off",
            access_log=False,
            log_config=None,
            # Instances' SDKs stream rulesets from /flags here ($GAPLESS_FLAGS_URL), and a stream never
            # ends on its own: give open requests two seconds at shutdown, then close them.
            timeout_graceful_shutdown=2,
        )
    )
    metrics_server = None
    if metrics_sock is not None:
        metrics_server = _MetricsServer(
            uvicorn.Config(
                build_metrics_app(store, metrics),
                log_level="warning",
                lifespan="off",
                access_log=False,
                log_config=None,
            )
        )
    dashboard_server = None
    url_file = state_dir / DASHBOARD_URL_FILE
    url_file.unlink(missing_ok=True)
    if dashboard_sock is not None:
        dashboard_server = _MetricsServer(
            uvicorn.Config(
                build_dashboard_app(app),
                # h11: SDKs reach /flags here, and Java's client asks every request to upgrade to h2c,
                # which makes uvicorn's httptools protocol drop the body (see flags/service/serve.py)
                http="h11",
                log_level="warning",
                lifespan="off",
                access_log=False,
                log_config=None,
                timeout_graceful_shutdown=2,
            )
        )
    log.info("control plane for %s (pid %d) listening on %s", state_dir, os.getpid(), sock)
    if annotations is not None:
        log.info("deployment events go to %s as annotations", annotations.endpoint)
    if migrations is not None:
        log.info("requiresSchema is checked against the migrations of %s", migrations.source)
    _out_of_the_collectors_reach("start-up")
    try:
        async with asyncio.TaskGroup() as tg:
            ctl = tg.create_task(controller.run(), name="controller")
            srv = tg.create_task(server.serve(), name="api")
            flag_task = tg.create_task(flags.run(), name="flag service")
            release_task = tg.create_task(releases.run(), name="releases")
            if metrics_server is not None and metrics_sock is not None:
                tg.create_task(metrics_server.serve(sockets=[metrics_sock]), name="metrics")
                log.info("metrics on %s", metrics_url(*metrics_sock.getsockname()[:2]))
            sampling = tg.create_task(sampler.run(), name="dashboard series")
            if dashboard_server is not None and dashboard_sock is not None:
                tg.create_task(dashboard_server.serve(sockets=[dashboard_sock]), name="dashboard")
                url = dashboard_url(*dashboard_sock.getsockname()[:2])
                _write_url(url_file, url)
                log.info("dashboard on %s", url)
            done, _ = await asyncio.wait({ctl, srv}, return_when=asyncio.FIRST_COMPLETED)
            if ctl in done:
                log.info("all rollouts stopped; exiting")
                server.should_exit = True
            else:
                ctl.cancel()
            if metrics_server is not None:
                metrics_server.should_exit = True  # it follows the API server out
            if dashboard_server is not None:
                dashboard_server.should_exit = True
            sampling.cancel()
            releases.stop()
            release_task.cancel()
            flag_task.cancel()
    finally:
        url_file.unlink(missing_ok=True)
        if metrics_sock is not None:
            metrics_sock.close()
        if dashboard_sock is not None:
            dashboard_sock.close()
        await traffic.aclose()
        platform.release()
        flags.close()
        store.close()
        sock.unlink(missing_ok=True)
