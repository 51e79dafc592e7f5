"""HAProxy as a rollout's router: started like the built-in one, then driven only through its runtime API.

``HaproxyRouters`` implements ``Traffic`` with one HAProxy per rollout (master-worker, started in its own
session with gapless's marker variables, so discovery, adoption and ``gapless down`` find it like the
built-in router). What the rollout wants is kept in ``routers/NAME.haproxy.json`` (0600, written
atomically before any change is sent): listen address, limits, backends and weights. The configuration
file is generated from it whenever HAProxy starts, so an HAProxy that died is started again with the
current servers and split; every later change is a batch of runtime commands on the socket
``routers/NAME.haproxy.sock`` (0600):

- a new instance: ``add server`` with its weight, then ``enable server`` (dynamic servers start in
  maintenance); dynamic servers rather than a ``server-template`` of slots because 2.6 adds and deletes
  them cleanly and they keep each server's name, ``<revision>.<instance>``, which maps stats to revisions;
- revision weights: ``set server ... weight`` on every server whose share changed
  (``gapless.haproxy.weights``: a revision's share is exact, the integer error is reported);
- a removed instance: ``set server ... state drain`` (requests in flight finish, no new ones), and once
  it has no session left, ``state maint`` and ``del server`` (its counters are kept for its revision);
- header routes and sticky ranges: the same per revision slot backend, and the map of bucket ranges and
  route targets replaced in one version (``gapless.haproxy.rules``);
- a renewed certificate: ``set ssl cert`` and ``commit ssl cert`` with the new bundle.

Latency comes from HAProxy's request log, a ring buffer followed as a stream on the runtime socket
(``gapless.haproxy.logs``). A
dynamic server is added with the idle-connection pool a configured server has by default
(``gapless.haproxy.commands.DYNAMIC_SERVER_POOL``): without it HAProxy 2.6 connects anew for every request.

Health checks are off: a server is in the backend exactly while gapless's own probes say ready.
``gapless.controller.routers.Routers`` picks the built-in router or HAProxy per rollout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import resource
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

from gapless.controller.traffic import RequestLog, RouterChoice, RouterStartError, RouterState, Routing
from gapless.core.errors import Problem, TemporaryError
from gapless.haproxy.binary import BinaryError, check_binary
from gapless.haproxy.commands import plan
from gapless.haproxy.config import HaproxyConfig, backend_name, parse_server_name, render, server_name
from gapless.haproxy.logs import RingReader
from gapless.haproxy.rules import (
    SLOTS,
    FrontRules,
    RuleError,
    frontend_lines,
    slot_backend,
)
from gapless.haproxy.runtime import RuntimeApiError, ServerStat, parse_stat, run, run_one, run_payload
from gapless.haproxy.tls import TlsError, TlsFiles, bundle
from gapless.haproxy.wanted import Wanted, applied_of, map_text, slots_for
from gapless.haproxy.weights import Split
from gapless.platform.base import ROLE_ROUTER, marker_env
from gapless.platform.local import LocalPlatform
from gapless.router.config import Backend, Limits, RouteMatch, Stickiness
from gapless.router.stats import RESPONSE_CLASSES, BackendStats, RevisionStats, RouterStats
from gapless.spec.models import RolloutSpec
from gapless.spec.router import DEFAULT_LATENCY_SAMPLING

__all__ = ["HaproxyRouters", "haproxy_problems"]

log = logging.getLogger(__name__)

START_WAIT = 10.0
"""Seconds HAProxy has to answer on its runtime socket after it was started."""

STOP_WAIT = 10.0
"""Seconds a soft stop (SIGUSR1: finish what is in flight) may take before SIGKILL."""


def haproxy_problems(spec: RolloutSpec) -> list[Problem]:
    """What stops ``spec`` from running on HAProxy: the binary, and features not mapped onto it yet."""
    r = spec.router
    if r.type != "haproxy":
        problems = []
        if r.tls is not None:
            problems.append(
                Problem(
                    "spec.router.tls",
                    "needs spec.router.type haproxy (the built-in router speaks plain HTTP)",
                )
            )
        # By value, not by presence: a stored spec dumped with its defaults and read back names every
        # field (a release's rollout step does), and the default is what the built-in router does anyway.
        if r.latency_sampling != DEFAULT_LATENCY_SAMPLING:
            problems.append(
                Problem(
                    "spec.router.latencySampling",
                    "needs spec.router.type haproxy (the built-in router times every request)",
                )
            )
        return problems
    problems = []
    try:
        check_binary(r.binary)
    except BinaryError as e:
        problems.append(Problem("spec.router.binary" if r.binary else "spec.router.type", str(e)))
    if r.tls is not None:
        try:
            bundle(TlsFiles(r.tls.cert_file, r.tls.key_file))
        except TlsError as e:
            problems.append(Problem(f"spec.router.tls.{e.field}", str(e)))
    not_yet = "is not available with spec.router.type haproxy yet (use the builtin router)"
    for f in ("eject_after_failures", "ejection_seconds"):
        if f in r.model_fields_set:
            alias = "ejectAfterFailures" if f == "eject_after_failures" else "ejectionSeconds"
            problems.append(
                Problem(f"spec.router.{alias}", "HAProxy's health checks are off by design: " + not_yet)
            )
    canary = spec.strategy.canary
    if canary is not None:
        sticky = canary.traffic_routing.stickiness
        if sticky is not None:
            rules = FrontRules(Stickiness(header=sticky.header, cookie=sticky.cookie))
            problems += _rule_problems(rules, "spec.strategy.canary.trafficRouting.stickiness")
        for i, step in enumerate(canary.steps):
            route = step.set_header_route
            if route is not None and route.match:
                rules = FrontRules(routes=(tuple(_route_match(m.model_dump()) for m in route.match),))
                problems += _rule_problems(rules, f"spec.strategy.canary.steps.{i}.setHeaderRoute")
    return problems


def _route_match(m: dict[str, Any]) -> RouteMatch:
    """A spec match (``header_name``/``header_value`` or the cookie pair) as the router's ``RouteMatch``."""
    if m.get("header_name"):
        return RouteMatch(header=str(m["header_name"]), value=m["header_value"])
    return RouteMatch(cookie=str(m["cookie_name"]), value=m["cookie_value"])


def _rule_problems(rules: FrontRules, field: str) -> list[Problem]:
    try:
        frontend_lines(rules, "/map", "b")
    except RuleError as e:
        return [Problem(field, f"cannot be expressed in HAProxy's configuration: {e}")]
    return []


class HaproxyRouters:
    """HAProxy processes, one per rollout, found again after a control-plane restart."""

    def __init__(self, state_dir: Path, platform: LocalPlatform) -> None:
        self._dir = state_dir
        self._platform = platform
        self._wanted: dict[str, Wanted] = {}
        self._applied: dict[str, dict[str, int]] = {}
        """Server -> weight last sent and made ready (this control plane's knowledge; empty after a restart)."""
        self._draining: dict[str, set[str]] = {}
        self._retired: dict[str, dict[str, RevisionStats]] = {}
        """Counters of deleted servers, per revision, so a revision's totals never go down."""
        self._pids: dict[str, int] = {}
        self._healthy_at: dict[str, float] = {}
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, RingReader] = {}
        """The request log reader per rollout (latency histograms per revision)."""
        self._map: dict[str, dict[str, int]] = {}
        """The map entries HAProxy holds, per rollout (this control plane's knowledge)."""
        self._cert: dict[str, str] = {}
        """The certificate bundle HAProxy holds, per rollout (this control plane's knowledge)."""
        self.last_split: dict[str, Split] = {}
        """The last weight split sent per rollout (its rounding errors)."""

    def paths(self, rollout: str) -> tuple[Path, Path, Path, Path]:
        """Runtime socket, saved state, configuration file and log of ``rollout``'s HAProxy."""
        base = self._dir / "routers"
        return (
            base / f"{rollout}.haproxy.sock",
            base / f"{rollout}.haproxy.json",
            base / f"{rollout}.haproxy.cfg",
            self._dir / "logs" / rollout / "router.log",
        )

    def _log_reader(self, rollout: str) -> RingReader:
        """The follower of ``rollout``'s request log ring (made on first use; it opens nothing yet)."""
        reader = self._logs.get(rollout)
        if reader is None:
            reader = self._logs[rollout] = RingReader(self.paths(rollout)[0])
        return reader

    async def _follow_log(self, rollout: str, pid: str | None) -> None:
        """Keep a stream open to the request log of the worker ``pid`` (after a reload: the new one)."""
        try:
            await self._log_reader(rollout).follow(pid)
        except (OSError, TimeoutError) as e:
            log.warning("%s: cannot follow HAProxy's request log (tried again next pass): %s", rollout, e)

    def log_wakeups(self, rollout: str) -> int:
        """Times the request log reader woke up (lines read per wakeup measure its batching)."""
        reader = self._logs.get(rollout)
        return reader.wakeups if reader is not None else 0

    def map_path(self, rollout: str) -> Path:
        """The map of bucket ranges and route targets of ``rollout``'s HAProxy (0600)."""
        return self._dir / "routers" / f"{rollout}.haproxy.map"

    def bundle_path(self, rollout: str) -> Path:
        """The certificate-and-key PEM that ``rollout``'s HAProxy serves with TLS at the front (0600)."""
        return self._dir / "routers" / f"{rollout}.haproxy.pem"

    def has_state(self, rollout: str) -> bool:
        """Whether ``rollout`` has (or had, without a removal since) an HAProxy router."""
        return rollout in self._wanted or self.paths(rollout)[1].exists()

    def _load(self, rollout: str) -> Wanted | None:
        w = self._wanted.get(rollout)
        if w is not None:
            return w
        try:
            w = Wanted.from_json(self.paths(rollout)[1].read_text())
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.debug("%s: no usable saved HAProxy state: %s", rollout, e)
            return None
        self._wanted[rollout] = w
        return w

    def _save(self, rollout: str, wanted: Wanted) -> None:
        _, state, _, _ = self.paths(rollout)
        state.parent.mkdir(parents=True, exist_ok=True)
        _write_private(state, wanted.to_json())
        self._wanted[rollout] = wanted

    async def _answers(self, rollout: str) -> bool:
        sock = self.paths(rollout)[0]
        if not sock.exists():
            return False
        try:
            info = await run_one(sock, "show info")
        except RuntimeApiError:
            return False
        pid = _info_pid(info)
        if pid is None:
            return False
        await self._follow_log(rollout, pid)
        return True

    def request_log(self, rollout: str) -> RequestLog | None:
        """What the request log holds and lost: lines read, numbered lines never read, the sampling rate."""
        w = self._wanted.get(rollout)
        reader = self._logs.get(rollout)
        if w is None or reader is None:
            return None
        book = reader.book
        return RequestLog(
            sampling=w.log_sampling,
            lines=book.lines,
            dropped=reader.lost,
            malformed=book.malformed,
            unrouted=book.unrouted,
        )

    async def address(self, rollout: str) -> str | None:
        w = self._load(rollout)
        if w is None or not await self._answers(rollout):
            return None
        return w.listen

    async def ensure(
        self,
        rollout: str,
        listen: str,
        limits: Limits | None = None,
        *,
        trust_for: float = 0.0,
        router: RouterChoice | None = None,
    ) -> None:
        """An HAProxy for ``rollout`` answers on its runtime socket and listens on ``listen``.

        Changed limits are applied by a hitless reload (``_reload``); a changed binary takes effect at
        HAProxy's next start.
        """
        binary = router.binary if router is not None else None
        saved = self._load(rollout)
        if router is not None:
            tls = None if router.tls is None else TlsFiles(*router.tls)
        else:
            tls = saved.tls if saved is not None else None
        pid = self._pids.get(rollout)
        if (
            trust_for > 0
            and tls is None
            and saved is not None
            and saved.listen == listen
            and time.monotonic() - self._healthy_at.get(rollout, -trust_for) < trust_for
            and pid is not None
            and _alive(pid)
        ):
            return
        base = saved if saved is not None else Wanted(listen=listen)
        rules = base.rules
        if router is not None:
            rules = FrontRules(router.stickiness, router.routes).with_routes([r.match for r in base.routes])
        sampling = router.latency_sampling if router is not None else base.log_sampling
        wanted = replace(
            base,
            listen=listen,
            binary=binary,
            limits=limits or base.limits,
            tls=tls,
            rules=rules,
            log_sampling=sampling,
        )
        if rules != base.rules:
            wanted = replace(wanted, slots=slots_for(wanted))
        if saved is not None and saved.listen == listen and await self._answers(rollout):
            self._healthy_at[rollout] = time.monotonic()
            if rollout not in self._pids:
                found = self._group(rollout)
                if found is not None:
                    self._pids[rollout] = found
            if (
                wanted.limits != saved.limits
                or (wanted.tls is None) != (saved.tls is None)
                or wanted.rules != saved.rules
                or wanted.log_sampling != saved.log_sampling
            ):
                await self._reload(rollout, wanted)
            elif wanted != saved:
                self._save(rollout, wanted)
            if wanted.tls is not None:
                await self._renew_cert(rollout, wanted.tls)
            return
        if saved is not None and saved.listen != listen:
            await self.remove(rollout)
        else:
            await self._kill_strays(rollout)
        self._log_reader(rollout).expect_new()
        await self._start(rollout, wanted)

    def _group(self, rollout: str) -> int | None:
        groups = sorted(
            {p.pgid for p in self._platform.discover() if p.role == ROLE_ROUTER and p.rollout == rollout}
        )
        return groups[0] if groups else None

    async def _kill_strays(self, rollout: str) -> None:
        for p in self._platform.discover():
            if p.role == ROLE_ROUTER and p.rollout == rollout:
                await self._platform.kill_group(p.pgid)

    async def _start(self, rollout: str, wanted: Wanted) -> None:
        try:
            binary = check_binary(wanted.binary)
        except BinaryError as e:
            raise RouterStartError(f"HAProxy router for {rollout} cannot start: {e}") from e
        sock, _, cfg_path, logfile = self.paths(rollout)
        logfile.parent.mkdir(parents=True, exist_ok=True)
        cert = self._write_bundle(rollout, wanted)
        self._save(rollout, wanted)
        self._write_config(rollout, wanted)
        _write_private(self.map_path(rollout), map_text(wanted.map_entries()))
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        markers = marker_env(self._dir, ROLE_ROUTER, rollout=rollout, state_id=self._platform.state_id)
        env = dict(os.environ) | markers
        argv = [binary.path, "-W", "-db", "-f", str(cfg_path)]
        with logfile.open("ab") as out:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                cwd=sock.parent,
                start_new_session=True,
            )
        old = self._children.get(rollout)
        if old is not None:
            old.poll()  # reap an HAProxy that died, so no zombie is left behind
        self._children[rollout] = child
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise RouterStartError(f"HAProxy router for {rollout} could not start: {_tail(logfile, 2)}")
            if await self._answers(rollout):
                self._pids[rollout] = child.pid
                self._healthy_at[rollout] = time.monotonic()
                self._applied[rollout] = applied_of(rollout, wanted)
                self._draining[rollout] = set()
                self.last_split[rollout] = wanted.split()
                self._cert[rollout] = cert
                self._map[rollout] = wanted.map_entries()
                return
            await asyncio.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        raise RouterStartError(f"HAProxy router for {rollout} did not answer within {START_WAIT:.0f}s")

    def _write_config(self, rollout: str, wanted: Wanted) -> None:
        sock, _, cfg_path, _ = self.paths(rollout)
        text = render(
            HaproxyConfig(
                rollout=rollout,
                listen=wanted.listen,
                # Relative to HAProxy's working directory: HAProxy takes socket paths of 97 bytes at most.
                runtime_socket=f"unix@{sock.name}",
                limits=wanted.limits,
                servers=wanted.servers(),
                tls_bundle=None if wanted.tls is None else str(self.bundle_path(rollout)),
                rules=wanted.rules,
                map_file=str(self.map_path(rollout)),
                request_log=True,
                log_sampling=wanted.log_sampling,
                slots=wanted.slots,
                open_files=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
            )
        )
        _write_private(cfg_path, text)

    async def _reload(self, rollout: str, wanted: Wanted) -> None:
        """Apply a configuration the runtime API cannot express without dropping a connection.

        The master re-executes itself on SIGUSR2 and reads the regenerated file (the servers and
        weights in force); the new worker takes the listening sockets from the master, the old one
        finishes the requests it has and exits. The master's pid stays the same.
        """
        pid = self._pids.get(rollout) or self._group(rollout)
        if pid is None:
            return
        cert = self._write_bundle(rollout, wanted)
        self._save(rollout, wanted)
        self._write_config(rollout, wanted)
        _write_private(self.map_path(rollout), map_text(wanted.map_entries()))
        before = await run_one(self.paths(rollout)[0], "show info")
        self._log_reader(rollout).expect_new()
        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            try:
                now = await run_one(self.paths(rollout)[0], "show info")
            except RuntimeApiError:
                continue
            if _info_pid(now) not in (None, _info_pid(before)):
                await self._follow_log(rollout, _info_pid(now))
                self._applied[rollout] = applied_of(rollout, wanted)
                self._draining[rollout] = set()
                self._cert[rollout] = cert
                self._map[rollout] = wanted.map_entries()
                log.info("%s: HAProxy reloaded with a new configuration (worker %s)", rollout, _info_pid(now))
                return
        raise TemporaryError(f"HAProxy router of {rollout} did not reload within {START_WAIT:.0f}s")

    def _write_bundle(self, rollout: str, wanted: Wanted) -> str:
        """Check and save the certificate bundle HAProxy is about to read; its text ('' without TLS)."""
        if wanted.tls is None:
            return ""
        try:
            text = bundle(wanted.tls)
        except TlsError as e:
            raise RouterStartError(f"HAProxy router for {rollout}: spec.router.tls.{e.field}: {e}") from e
        path = self.bundle_path(rollout)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, text)
        return text

    async def _renew_cert(self, rollout: str, tls: TlsFiles) -> None:
        """Send a changed certificate or key through the runtime API: new handshakes use it, nothing reloads.

        The bundle is saved first, so an HAProxy started later reads the new one; a certificate that
        became unusable is reported and the one in force stays.
        """
        try:
            text = bundle(tls)
        except TlsError as e:
            raise RouterStartError(
                f"HAProxy router of {rollout} keeps its certificate: spec.router.tls.{e.field}: {e}"
            ) from e
        if self._cert.get(rollout) == text:
            return
        path = self.bundle_path(rollout)
        _write_private(path, text)
        sock = self.paths(rollout)[0]
        try:
            staged = await run_payload(sock, f"set ssl cert {path}", text)
            committed = await run_one(sock, f"commit ssl cert {path}")
        except RuntimeApiError as e:
            raise TemporaryError(f"HAProxy router of {rollout} did not take its certificate: {e}") from e
        if "Success" not in committed:
            with contextlib.suppress(RuntimeApiError):
                await run_one(sock, f"abort ssl cert {path}")
            raise TemporaryError(
                f"HAProxy router of {rollout} refused its certificate: {staged.strip()} {committed.strip()}"
            )
        self._cert[rollout] = text
        log.info("%s: HAProxy serves a new certificate (no reload)", rollout)

    async def _servers(self, rollout: str) -> dict[str, dict[str, ServerStat]]:
        """Backend -> its servers' stats: the rollout's backend and its slot backends (when present)."""
        sock = self.paths(rollout)[0]
        text = await run_one(sock, "show stat")
        be = backend_name(rollout)
        names = [be, *(slot_backend(be, s) for s in range(SLOTS))]
        return {n: parse_stat(text, n) for n in names}

    async def set_backends(
        self, rollout: str, backends: list[Backend], routing: Routing | None = None
    ) -> bool:
        """Make HAProxy hold exactly these servers, weights, routes and sticky ranges.

        One pass in ``gapless.haproxy.commands``' order: servers added and weights raised, the map in one
        atomic version, weights lowered, servers that left drained and drained ones deleted; so a slot
        never points at a revision whose servers are not there yet, and no moment has every weight at 0. Routes or a sticky key the configuration lacks
        (a spec changed since HAProxy started) are added by a hitless reload.
        """
        saved = self._load(rollout)
        if saved is None:
            raise TemporaryError(f"HAProxy router of {rollout} is not started")
        weights = saved.weights if routing is None else routing.weights
        routes = saved.routes if routing is None else routing.routes
        rules = saved.rules
        if routing is not None:
            rules = FrontRules(
                routing.stickiness if routing.stickiness is not None else rules.stickiness, rules.routes
            ).with_routes([r.match for r in routes])
        wanted = replace(
            saved,
            backends=tuple(sorted(backends, key=lambda b: b.id)),
            weights=weights,
            routes=routes,
            rules=rules,
        )
        wanted = replace(wanted, slots=slots_for(wanted))
        if wanted.rules != saved.rules:
            await self._reload(rollout, replace(wanted, version=saved.version + 1))
            self.last_split[rollout] = wanted.split()
            return True
        sock = self.paths(rollout)[0]
        try:
            observed = await self._servers(rollout)
        except (RuntimeApiError, ValueError) as e:
            raise TemporaryError(f"HAProxy router of {rollout} did not answer: {e}") from e
        be = backend_name(rollout)
        targets = {be: {n: w for n, (_, w) in wanted.servers().items()}, **wanted.slot_servers(rollout)}
        addresses = {server_name(b): b for b in wanted.backends}
        applied = self._applied.setdefault(rollout, {})
        draining = self._draining.setdefault(rollout, set())
        todo = plan(observed, targets, addresses, applied, draining)
        entries = wanted.map_entries()
        map_changed = bool(entries) and self._map.get(rollout) != entries
        changed = wanted != saved
        if changed:
            wanted = replace(wanted, version=saved.version + 1)
            self._save(rollout, wanted)
        if map_changed:
            _write_private(self.map_path(rollout), map_text(entries))
        if not todo and not map_changed:
            return changed
        try:
            answers = await run(sock, todo.raises)
            if map_changed:
                await self._commit_map(rollout, entries)
            answers += await run(sock, todo.lowers + todo.drains)
        except RuntimeApiError as e:
            self._applied.pop(rollout, None)
            self._map.pop(rollout, None)
            raise TemporaryError(f"HAProxy router of {rollout} did not take its servers: {e}") from e
        commands = todo.commands
        refused = [
            f"{c}: {a}"
            for c, a in zip(commands, answers, strict=True)
            if a and a != "New server registered." and not c.startswith("del server")
        ]
        for backend, target in targets.items():
            for name, w in target.items():
                applied[f"{backend}/{name}"] = w
                draining.discard(f"{backend}/{name}")
        for backend, servers in observed.items():
            for name in servers:
                if name not in targets.get(backend, {}):
                    draining.add(f"{backend}/{name}")
        for key, stat in todo.deleted:
            c = f"del server {key}"
            answer = answers[commands.index(c)]
            if answer.startswith("Server deleted"):
                draining.discard(key)
                applied.pop(key, None)
                self._retire(rollout, stat)
            else:
                log.debug("%s: %s: %s (tried again on the next pass)", rollout, c, answer)
        split = wanted.split()
        if split != self.last_split.get(rollout) and (split.server_error or split.revision_error):
            log.info(
                "%s: weights %s over %d servers; integer rounding: revision shares off by at most %.4f %%, "
                "a server's share within its revision by at most %.4f %%",
                rollout,
                wanted.weights,
                len(wanted.backends),
                100 * split.revision_error,
                100 * split.server_error,
            )
        self.last_split[rollout] = split
        if refused:
            self._applied.pop(rollout, None)
            raise TemporaryError(f"HAProxy router of {rollout} refused: {'; '.join(refused)}")
        return True

    async def _commit_map(self, rollout: str, entries: dict[str, int]) -> None:
        """Replace the map's contents in one version (``prepare``, ``add @V`` each entry, ``commit``)."""
        sock = self.paths(rollout)[0]
        path = self.map_path(rollout)
        prepared = await run_one(sock, f"prepare map {path}")
        m = re.search(r"New version created: (\d+)", prepared)
        if m is None:
            raise TemporaryError(f"HAProxy router of {rollout}: prepare map answered {prepared!r}")
        version = m.group(1)
        answers = await run(
            sock,
            [f"add map @{version} {path} {k} {v}" for k, v in entries.items()]
            + [f"commit map @{version} {path}"],
        )
        bad = [a for a in answers if a.strip()]
        if bad:
            raise TemporaryError(f"HAProxy router of {rollout} refused its map: {bad[0]}")
        self._map[rollout] = entries

    def _retire(self, rollout: str, stat: ServerStat) -> None:
        parsed = parse_server_name(stat.name)
        if parsed is None:
            return
        revs = self._retired.setdefault(rollout, {})
        revs[parsed[0]] = _add(revs.get(parsed[0], RevisionStats()), stat)

    def routing(self, rollout: str) -> Routing | None:
        w = self._load(rollout)
        if w is None:
            return None
        return Routing(weights=w.weights, routes=w.routes, stickiness=w.rules.stickiness)

    def known(self) -> set[str]:
        return set(self._pids)

    async def wait_drained(self, rollout: str, backend_id: str, timeout: float) -> bool:
        """True once the instance's server has no session left (or is gone), polling every 50 ms."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                observed = await self._servers(rollout)
            except (RuntimeApiError, ValueError):
                return False
            mine = [
                s
                for servers in observed.values()
                for n, s in servers.items()
                if (parse_server_name(n) or ("", ""))[1] == backend_id
            ]
            if all(s.current == 0 for s in mine):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)

    async def stats(self, rollout: str) -> RouterStats | None:
        """Per-revision and per-server counters from ``show stat``; latency from the request log."""
        w = self._load(rollout)
        try:
            observed = await self._servers(rollout)
        except (RuntimeApiError, ValueError):
            return None
        await self._answers(rollout)
        wanted = {server_name(b) for b in w.backends} if w is not None else set()
        revisions = {r: s.model_copy(deep=True) for r, s in self._retired.get(rollout, {}).items()}
        backends: dict[str, BackendStats] = {}
        for servers in observed.values():
            for name, stat in servers.items():
                parsed = parse_server_name(name)
                if parsed is None:
                    continue
                revision, instance = parsed
                revisions[revision] = _add(revisions.get(revision, RevisionStats()), stat)
                was = backends.get(instance, BackendStats(revision=revision))
                backends[instance] = BackendStats(
                    revision=revision,
                    in_flight=was.in_flight + stat.current,
                    requests=was.requests + stat.total,
                    connection_errors=was.connection_errors + stat.connection_errors,
                    removed=name not in wanted,
                )
        reader = self._logs.get(rollout)
        for revision, h in (reader.book.revisions if reader is not None else {}).items():
            revisions[revision] = revisions.get(revision, RevisionStats()).model_copy(
                update={
                    "latency_counts": list(h.counts),
                    "latency_sum": h.total_seconds,
                    "latency_count": h.count,
                }
            )
        return RouterStats(
            name=rollout,
            config_version=0 if w is None else w.version,
            revisions=revisions,
            backends=backends,
        )

    def state(self, rollout: str) -> RouterState:
        w = self._wanted.get(rollout)
        pid = self._pids.get(rollout)
        return RouterState(
            running=pid is not None and _alive(pid),
            pid=pid,
            listen=None if w is None else w.listen,
            config_version=None if w is None else w.version,
            backends=0 if w is None else len(w.backends),
            request_log=self.request_log(rollout),
        )

    async def remove(self, rollout: str) -> None:
        """Stop the rollout's HAProxy softly (SIGUSR1: in-flight requests finish), SIGKILL after 10 s.

        The request log's streams are closed first: a worker with a stream attached would not exit.
        """
        reader = self._logs.pop(rollout, None)
        if reader is not None:
            reader.close()
        groups = {p.pgid for p in self._platform.discover() if p.role == ROLE_ROUTER and p.rollout == rollout}
        known = self._pids.get(rollout)
        if known is not None and _alive(known):
            groups.add(known)
        for g in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(g, signal.SIGUSR1)
        deadline = time.monotonic() + STOP_WAIT
        while groups and time.monotonic() < deadline:
            child = self._children.get(rollout)
            if child is not None:
                child.poll()
            groups = {g for g in groups if _alive(g)}
            await asyncio.sleep(0.05)
        for g in groups:
            await self._platform.kill_group(g)
        child = self._children.pop(rollout, None)
        if child is not None:
            child.poll()
        for p in (*self.paths(rollout)[:3], self.bundle_path(rollout), self.map_path(rollout)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        for d in (
            self._wanted,
            self._applied,
            self._draining,
            self._retired,
            self._pids,
            self._healthy_at,
            self._cert,
            self._map,
        ):
            d.pop(rollout, None)

    async def aclose(self) -> None:
        for child in self._children.values():
            child.poll()
        for reader in self._logs.values():
            reader.close()
        self._logs.clear()


def _add(into: RevisionStats, stat: ServerStat) -> RevisionStats:
    responses = dict(into.responses)
    for c in RESPONSE_CLASSES:
        responses[c] = responses.get(c, 0) + stat.responses.get(c, 0)
    return into.model_copy(
        update={
            "requests": into.requests + stat.total,
            "responses": responses,
            "connection_errors": into.connection_errors + stat.connection_errors + stat.response_errors,
            "in_flight": into.in_flight + stat.current,
            "bytes_in": into.bytes_in + stat.bytes_in,
            "bytes_out": into.bytes_out + stat.bytes_out,
        }
    )


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pgid).status() != psutil.STATUS_ZOMBIE
    return False


def _info_pid(info: str) -> str | None:
    """The worker's pid in ``show info``."""
    return _info_value(info, "Pid")


def _info_value(info: str, key: str) -> str | None:
    """The value of ``key`` in ``show info`` (``Key: value`` lines); None when absent."""
    prefix = key + ":"
    for line in info.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return None


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file, fsync, rename), readable by the owner alone."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


_LOG_PREFIX = re.compile(r"^\[(?:NOTICE|WARNING|ALERT)\]\s*\(\d+\)\s*:\s*")
_FUNCTION_TAG = re.compile(r"\[[^\]]*\(\)\]\s*")
_SUMMARY = re.compile(r"Error\(s\) found|Fatal errors found|Some protocols failed")


def _tail(path: Path, lines: int = 5) -> str:
    """HAProxy's last alerts (else log lines), without level/pid prefixes and square brackets (markup)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    recent = text.strip().splitlines()[-10:]
    alerts = [x for x in recent if x.startswith("[ALERT]") and not _SUMMARY.search(x)]
    kept = [_FUNCTION_TAG.sub("", _LOG_PREFIX.sub("", x)) for x in (alerts or recent)[-lines:]]
    return " | ".join(kept).replace("[", "(").replace("]", ")") or "(empty log)"
