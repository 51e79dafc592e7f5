"""Traffic: the controller's view of the data plane, behind a small protocol.

``Traffic`` is what the reconcile loop needs from any data plane: make sure a router serves a rollout's
address, give it the set of ready backends, wait until a removed backend has drained, and remove it.
``LocalRouters`` implements it with gapless's built-in router, one process per rollout, started
detached (its own session, marked with the state directory) so that it outlives the control plane.
``gapless.controller.haproxy`` implements it with HAProxy; a Kubernetes Gateway could do the same.

A router process is a supervisor holding the listening socket and a worker it restarts when it dies
(``gapless.router.supervisor``), so the admin socket can be gone for the moment a worker takes to start
while the router still owns its address: ``ensure`` then waits for it (``RESTART_WAIT``) instead of
killing the router and refusing connections while a new one binds. A router that cannot start says why:
the last line of its log (``cannot listen on ADDRESS: address already in use``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
import psutil

from gapless.core.errors import GaplessError, TemporaryError
from gapless.core.files import ROUTERS_DIR, router_socket
from gapless.platform.base import ROLE_ROUTER, marker_env
from gapless.platform.local import LocalPlatform
from gapless.router.client import RouterAdminError, RouterClient
from gapless.router.config import Backend, Limits, Route, RouteMatch, RouterConfig, Stickiness
from gapless.router.stats import RouterStats
from gapless.spec.router import DEFAULT_LATENCY_SAMPLING

__all__ = [
    "PREVIEW_SUFFIX",
    "RESTART_WAIT",
    "LocalRouters",
    "RequestLog",
    "RouterChoice",
    "RouterStartError",
    "RouterState",
    "Routing",
    "Traffic",
]

PREVIEW_SUFFIX = ".preview"
"""A blue-green preview router is a router of its own, named after its rollout with this suffix."""

RESTART_WAIT = 3.0
"""Seconds to wait for the admin socket of a router whose process still runs (its worker restarting)."""


class RouterStartError(GaplessError):
    """The router could not start (typically: its listen address is in use)."""


@dataclass(frozen=True)
class RouterState:
    running: bool
    pid: int | None
    listen: str | None
    config_version: int | None
    backends: int
    restarts: int = 0
    """Workers the router's supervisor restarted since it started."""
    request_log: RequestLog | None = None
    """HAProxy: what its request log (the latency histograms' source) holds and lost."""


@dataclass(frozen=True)
class RequestLog:
    """HAProxy's request log as the control plane read it, so a sampled or lossy histogram is never silent.

    ``lines`` were read (since this control plane started reading); ``dropped`` were sampled but never
    read: numbers of HAProxy's numbered lines that did not arrive (the ring overwrote them, or HAProxy
    could not write them because the reader was behind), summed over its workers. Request counts come
    from HAProxy's stats whatever the log holds.
    """

    sampling: int
    """One request in this many is logged, picked at random."""
    lines: int
    dropped: int
    malformed: int = 0
    unrouted: int = 0

    @property
    def dropped_share(self) -> float:
        """Share of the sampled lines that were lost (0 when none were sent)."""
        sent = self.lines + self.dropped
        return self.dropped / sent if sent else 0.0

    def status(self) -> dict[str, int | float]:
        """The rollout status' ``router.requestLog``."""
        return {
            "sampling": self.sampling,
            "linesRead": self.lines,
            "linesDropped": self.dropped,
            "droppedShare": round(self.dropped_share, 4),
            "malformed": self.malformed,
            "unrouted": self.unrouted,
        }


@dataclass(frozen=True)
class RouterChoice:
    """Which data plane serves a rollout (``spec.router.type`` and ``binary``)."""

    type: str = "builtin"
    binary: str | None = None
    tls: tuple[str, str] | None = None
    """Certificate and key files (PEM) to terminate TLS at the front (HAProxy only)."""
    stickiness: Stickiness | None = None
    """The spec's sticky key, known before any step asks for it (HAProxy builds its rules at start)."""
    routes: tuple[tuple[RouteMatch, ...], ...] = ()
    """The match lists of every ``setHeaderRoute`` in the spec, for the same reason."""
    latency_sampling: int = DEFAULT_LATENCY_SAMPLING
    """HAProxy: the request log keeps one request in this many (``spec.router.latencySampling``)."""


@dataclass(frozen=True)
class Routing:
    """How requests split between revisions; ``weights=None`` splits evenly over all backends."""

    weights: dict[str, int] | None = None
    routes: tuple[Route, ...] = ()
    stickiness: Stickiness | None = None


class Traffic(Protocol):
    async def ensure(
        self,
        rollout: str,
        listen: str,
        limits: Limits | None = None,
        *,
        trust_for: float = 0.0,
        router: RouterChoice | None = None,
    ) -> None: ...
    async def address(self, rollout: str) -> str | None: ...
    async def set_backends(
        self, rollout: str, backends: list[Backend], routing: Routing | None = None
    ) -> bool: ...
    def routing(self, rollout: str) -> Routing | None: ...
    async def wait_drained(self, rollout: str, backend_id: str, timeout: float) -> bool: ...
    async def stats(self, rollout: str) -> RouterStats | None: ...
    def state(self, rollout: str) -> RouterState: ...
    def known(self) -> set[str]: ...
    async def remove(self, rollout: str) -> None: ...


class LocalRouters:
    """Built-in router processes, one per rollout, found again after a control-plane restart."""

    def __init__(self, state_dir: Path, token: str, platform: LocalPlatform) -> None:
        self._dir = state_dir
        self._token = token
        self._platform = platform
        self._clients: dict[str, RouterClient] = {}
        self._configs: dict[str, RouterConfig] = {}
        self._listen: dict[str, str] = {}
        self._pids: dict[str, int] = {}
        self._healthy_at: dict[str, float] = {}
        """When each router last answered its health check on its address (monotonic seconds)."""
        self._limits: dict[str, Limits] = {}
        self._restarts: dict[str, int] = {}
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def _paths(self, rollout: str) -> tuple[Path, Path, Path]:
        base = self._dir / ROUTERS_DIR
        return (
            router_socket(self._dir, rollout),
            base / f"{rollout}.json",
            self._dir / "logs" / rollout / "router.log",
        )

    def _client(self, rollout: str) -> RouterClient:
        c = self._clients.get(rollout)
        if c is None:
            sock, _, _ = self._paths(rollout)
            c = RouterClient(sock, self._token)
            self._clients[rollout] = c
        return c

    async def _healthz(self, rollout: str) -> dict[str, object] | None:
        sock, _, _ = self._paths(rollout)
        if not sock.exists():
            return None
        try:
            return dict(await self._client(rollout).healthz())
        except (httpx.HTTPError, OSError):
            return None

    async def address(self, rollout: str) -> str | None:
        """The address a running router of ``rollout`` serves, or None when none answers."""
        health = await self._healthz(rollout)
        return None if health is None else str(health.get("listen"))

    async def ensure(
        self,
        rollout: str,
        listen: str,
        limits: Limits | None = None,
        *,
        trust_for: float = 0.0,
        router: RouterChoice | None = None,
    ) -> None:
        """A router for ``rollout`` answers on its admin socket and listens on ``listen``.

        ``limits`` go to the router with the next configuration push (``set_backends``). With
        ``trust_for`` seconds, a router that answered its health check that recently on the same address
        and whose process still runs is not asked again (a command's own pass saves a round trip; the
        loop's passes always ask).
        """
        if limits is not None:
            self._limits[rollout] = limits
        pid = self._pids.get(rollout)
        if (
            trust_for > 0
            and self._listen.get(rollout) == listen
            and time.monotonic() - self._healthy_at.get(rollout, -trust_for) < trust_for
            and pid is not None
            and _group_alive(pid)
        ):
            return
        health = await self._healthz(rollout)
        if health is None and self._running(rollout):
            health = await self._wait_healthz(rollout)
        if health is not None and health.get("listen") == listen:
            self._healthy_at[rollout] = time.monotonic()
            self._pids[rollout] = int(str(health.get("pid")))
            self._restarts[rollout] = int(str(health.get("restarts") or 0))
            self._listen[rollout] = listen
            if rollout not in self._configs:
                self._configs[rollout] = await self._client(rollout).get_config()
            return
        if health is not None:
            # The address changed: the old router stops and a new one binds the new address.
            await self.remove(rollout)
        else:
            await self._kill_strays(rollout)
        await self._start(rollout, listen)

    def _running(self, rollout: str) -> bool:
        """Whether a router process of ``rollout`` runs (whatever its admin socket says)."""
        known = self._pids.get(rollout)
        if known is not None and _group_alive(known):
            return True
        return any(p.role == ROLE_ROUTER and p.rollout == rollout for p in self._platform.discover())

    async def _wait_healthz(self, rollout: str) -> dict[str, object] | None:
        """The router's ``/healthz`` once its restarted worker answers, None after ``RESTART_WAIT``."""
        deadline = time.monotonic() + RESTART_WAIT
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            health = await self._healthz(rollout)
            if health is not None:
                return health
        return None

    async def _kill_strays(self, rollout: str) -> None:
        for p in self._platform.discover():
            if p.role == ROLE_ROUTER and p.rollout == rollout:
                await self._platform.kill_group(p.pgid)

    async def _start(self, rollout: str, listen: str) -> None:
        sock, cfg, log = self._paths(rollout)
        sock.parent.mkdir(parents=True, exist_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        token_file = self._dir / "token"
        # SPT_NOENV: setproctitle must not overwrite the environment, where the markers live.
        markers = marker_env(self._dir, ROLE_ROUTER, rollout=rollout, state_id=self._platform.state_id)
        env = dict(os.environ) | markers | {"SPT_NOENV": "1"}
        argv = [
            sys.executable,
            "-m",
            "gapless.router",
            "--name",
            rollout,
            "--listen",
            listen,
            "--admin-socket",
            str(sock),
            "--token-file",
            str(token_file),
            "--config-file",
            str(cfg),
        ]
        with log.open("ab") as out:
            child = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
            )
        self._children[rollout] = child
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise RouterStartError(f"router for {rollout} could not start: {_tail(log, 1)}")
            health = await self._healthz(rollout)
            if health is not None:
                self._pids[rollout] = child.pid
                self._restarts[rollout] = int(str(health.get("restarts") or 0))
                self._listen[rollout] = listen
                self._configs[rollout] = await self._client(rollout).get_config()
                return
            await asyncio.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        raise RouterStartError(f"router for {rollout} did not answer within 10s: {_tail(log)}")

    async def set_backends(
        self, rollout: str, backends: list[Backend], routing: Routing | None = None
    ) -> bool:
        """Give the router exactly these backends (and this routing, or the one in force).

        Returns whether anything changed. The push is one whole configuration, applied atomically.
        """
        current = self._configs.get(rollout)
        if current is None:
            current = await self._client(rollout).get_config()
        if routing is None:
            routing = Routing(weights=current.weights, routes=current.routes, stickiness=current.stickiness)
        limits = self._limits.get(rollout, current.limits)
        wanted = tuple(sorted(backends, key=lambda b: b.id))
        same_routing = (current.weights, current.routes, current.stickiness) == (
            routing.weights,
            routing.routes,
            routing.stickiness,
        )
        if (
            tuple(sorted(current.backends, key=lambda b: b.id)) == wanted
            and same_routing
            and current.limits == limits
        ):
            self._configs[rollout] = current
            return False
        cfg = RouterConfig(
            version=current.version + 1,
            backends=wanted,
            weights=routing.weights,
            routes=routing.routes,
            stickiness=routing.stickiness,
            limits=limits,
        )
        try:
            await self._client(rollout).put_config(cfg)
        except (httpx.HTTPError, OSError, RouterAdminError) as e:
            # Forget what we believed the router has: the next pass reads its config afresh.
            self._configs.pop(rollout, None)
            raise TemporaryError(f"router of {rollout} did not take its configuration: {e}") from e
        self._configs[rollout] = cfg
        return True

    def routing(self, rollout: str) -> Routing | None:
        cfg = self._configs.get(rollout)
        if cfg is None:
            return None
        return Routing(weights=cfg.weights, routes=cfg.routes, stickiness=cfg.stickiness)

    def known(self) -> set[str]:
        """Routers this object has started or adopted."""
        return set(self._pids)

    async def wait_drained(self, rollout: str, backend_id: str, timeout: float) -> bool:
        try:
            return await self._client(rollout).wait_drained(backend_id, timeout)
        except (httpx.HTTPError, OSError):
            return False

    async def stats(self, rollout: str) -> RouterStats | None:
        try:
            return await self._client(rollout).stats()
        except (httpx.HTTPError, OSError):
            return None

    def state(self, rollout: str) -> RouterState:
        cfg = self._configs.get(rollout)
        pid = self._pids.get(rollout)
        running = pid is not None and psutil.pid_exists(pid)
        return RouterState(
            running=running,
            pid=pid,
            listen=self._listen.get(rollout),
            config_version=None if cfg is None else cfg.version,
            backends=0 if cfg is None else len(cfg.backends),
            restarts=self._restarts.get(rollout, 0),
        )

    async def remove(self, rollout: str) -> None:
        """Stop the rollout's router gracefully (SIGTERM, then SIGKILL after 10 s)."""
        pids = {p.pgid for p in self._platform.discover() if p.role == ROLE_ROUTER and p.rollout == rollout}
        known = self._pids.get(rollout)
        if known is not None and _group_alive(known):
            pids.add(known)
        for pgid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        while pids and time.monotonic() < deadline:
            pids = {g for g in pids if _group_alive(g)}
            child = self._children.get(rollout)
            if child is not None:
                child.poll()
            await asyncio.sleep(0.05)
        for pgid in pids:
            await self._platform.kill_group(pgid)
        child = self._children.pop(rollout, None)
        if child is not None:
            child.poll()
        client = self._clients.pop(rollout, None)
        if client is not None:
            await client.aclose()
        self._configs.pop(rollout, None)
        self._pids.pop(rollout, None)
        self._listen.pop(rollout, None)
        self._healthy_at.pop(rollout, None)
        self._restarts.pop(rollout, None)

    async def aclose(self) -> None:
        for c in self._clients.values():
            await c.aclose()
        self._clients.clear()
        for child in self._children.values():
            child.poll()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(psutil.Error, OSError):
        leader = psutil.Process(pgid)  # a router's supervisor leads its group: one look, not a scan
        if os.getpgid(pgid) == pgid and leader.status() != psutil.STATUS_ZOMBIE:
            return True
    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"
