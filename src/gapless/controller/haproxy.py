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
  it has no session left, ``state maint`` and ``del server`` (its counters are kept for its revision).

Health checks are off: a server is in the backend exactly while gapless's own probes say ready.
``gapless.controller.routers.Routers`` picks the built-in router or HAProxy per rollout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import resource
import signal
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

from gapless.controller.traffic import RouterChoice, RouterStartError, RouterState, Routing
from gapless.core.errors import Problem, TemporaryError
from gapless.haproxy.binary import BinaryError, check_binary
from gapless.haproxy.config import HaproxyConfig, backend_name, parse_server_name, render, server_name
from gapless.haproxy.runtime import RuntimeApiError, ServerStat, parse_stat, run, run_one, run_payload
from gapless.haproxy.tls import TlsError, TlsFiles, bundle
from gapless.haproxy.weights import Split, split_weights
from gapless.platform.base import ROLE_ROUTER, marker_env
from gapless.platform.local import LocalPlatform
from gapless.router.config import Backend, Limits
from gapless.router.stats import RESPONSE_CLASSES, BackendStats, RevisionStats, RouterStats
from gapless.spec.models import RolloutSpec

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
        if r.tls is not None:
            return [
                Problem(
                    "spec.router.tls",
                    "needs spec.router.type haproxy (the built-in router speaks plain HTTP)",
                )
            ]
        return []
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
        if canary.traffic_routing.stickiness is not None:
            problems.append(Problem("spec.strategy.canary.trafficRouting.stickiness", not_yet))
        for i, step in enumerate(canary.steps):
            if step.set_header_route is not None:
                problems.append(Problem(f"spec.strategy.canary.steps.{i}.setHeaderRoute", not_yet))
    return problems


@dataclass(frozen=True)
class _Wanted:
    """What one rollout's HAProxy should hold (saved as ``routers/NAME.haproxy.json``)."""

    listen: str
    binary: str | None = None
    limits: Limits = field(default_factory=Limits)
    backends: tuple[Backend, ...] = ()
    weights: dict[str, int] | None = None
    version: int = 0
    tls: TlsFiles | None = None

    def split(self) -> Split:
        by_revision: dict[str, list[str]] = {}
        for b in self.backends:
            by_revision.setdefault(b.revision, []).append(server_name(b))
        return split_weights(by_revision, self.weights)

    def servers(self) -> dict[str, tuple[Backend, int]]:
        weights = self.split().weights
        return {server_name(b): (b, weights[server_name(b)]) for b in self.backends}

    def to_json(self) -> str:
        return json.dumps(
            {
                "listen": self.listen,
                "binary": self.binary,
                "limits": self.limits.model_dump(mode="json"),
                "backends": [b.model_dump(mode="json") for b in self.backends],
                "weights": self.weights,
                "version": self.version,
                "tls": None if self.tls is None else [self.tls.cert_file, self.tls.key_file],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> _Wanted:
        doc = json.loads(text)
        return cls(
            listen=str(doc["listen"]),
            binary=doc.get("binary"),
            limits=Limits(**doc.get("limits") or {}),
            backends=tuple(Backend(**b) for b in doc.get("backends") or ()),
            weights=None
            if doc.get("weights") is None
            else {str(k): int(v) for k, v in doc["weights"].items()},
            version=int(doc.get("version") or 0),
            tls=None if not doc.get("tls") else TlsFiles(str(doc["tls"][0]), str(doc["tls"][1])),
        )


class HaproxyRouters:
    """HAProxy processes, one per rollout, found again after a control-plane restart."""

    def __init__(self, state_dir: Path, platform: LocalPlatform) -> None:
        self._dir = state_dir
        self._platform = platform
        self._wanted: dict[str, _Wanted] = {}
        self._applied: dict[str, dict[str, int]] = {}
        """Server -> weight last sent and made ready (this control plane's knowledge; empty after a restart)."""
        self._draining: dict[str, set[str]] = {}
        self._retired: dict[str, dict[str, RevisionStats]] = {}
        """Counters of deleted servers, per revision, so a revision's totals never go down."""
        self._pids: dict[str, int] = {}
        self._healthy_at: dict[str, float] = {}
        self._children: dict[str, subprocess.Popen[bytes]] = {}
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

    def bundle_path(self, rollout: str) -> Path:
        """The certificate-and-key PEM that ``rollout``'s HAProxy serves with TLS at the front (0600)."""
        return self._dir / "routers" / f"{rollout}.haproxy.pem"

    def has_state(self, rollout: str) -> bool:
        """Whether ``rollout`` has (or had, without a removal since) an HAProxy router."""
        return rollout in self._wanted or self.paths(rollout)[1].exists()

    def _load(self, rollout: str) -> _Wanted | None:
        w = self._wanted.get(rollout)
        if w is not None:
            return w
        try:
            w = _Wanted.from_json(self.paths(rollout)[1].read_text())
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.debug("%s: no usable saved HAProxy state: %s", rollout, e)
            return None
        self._wanted[rollout] = w
        return w

    def _save(self, rollout: str, wanted: _Wanted) -> None:
        _, state, _, _ = self.paths(rollout)
        state.parent.mkdir(parents=True, exist_ok=True)
        _write_private(state, wanted.to_json())
        self._wanted[rollout] = wanted

    async def _answers(self, rollout: str) -> bool:
        sock = self.paths(rollout)[0]
        if not sock.exists():
            return False
        try:
            return "Pid" in await run_one(sock, "show info")
        except RuntimeApiError:
            return False

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
        base = saved if saved is not None else _Wanted(listen=listen)
        wanted = replace(base, listen=listen, binary=binary, limits=limits or base.limits, tls=tls)
        if saved is not None and saved.listen == listen and await self._answers(rollout):
            self._healthy_at[rollout] = time.monotonic()
            if rollout not in self._pids:
                found = self._group(rollout)
                if found is not None:
                    self._pids[rollout] = found
            if wanted.limits != saved.limits or (wanted.tls is None) != (saved.tls is None):
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

    async def _start(self, rollout: str, wanted: _Wanted) -> None:
        try:
            binary = check_binary(wanted.binary)
        except BinaryError as e:
            raise RouterStartError(f"HAProxy router for {rollout} cannot start: {e}") from e
        sock, _, cfg_path, logfile = self.paths(rollout)
        logfile.parent.mkdir(parents=True, exist_ok=True)
        cert = self._write_bundle(rollout, wanted)
        self._save(rollout, wanted)
        self._write_config(rollout, wanted)
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
                self._applied[rollout] = {n: w for n, (_, w) in wanted.servers().items()}
                self._draining[rollout] = set()
                self.last_split[rollout] = wanted.split()
                self._cert[rollout] = cert
                return
            await asyncio.sleep(0.02)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        raise RouterStartError(f"HAProxy router for {rollout} did not answer within {START_WAIT:.0f}s")

    def _write_config(self, rollout: str, wanted: _Wanted) -> None:
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
                open_files=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
            )
        )
        _write_private(cfg_path, text)

    async def _reload(self, rollout: str, wanted: _Wanted) -> None:
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
        before = await run_one(self.paths(rollout)[0], "show info")
        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            try:
                now = await run_one(self.paths(rollout)[0], "show info")
            except RuntimeApiError:
                continue
            if _info_pid(now) not in (None, _info_pid(before)):
                self._applied[rollout] = {n: w for n, (_, w) in wanted.servers().items()}
                self._draining[rollout] = set()
                self._cert[rollout] = cert
                log.info("%s: HAProxy reloaded with a new configuration (worker %s)", rollout, _info_pid(now))
                return
        raise TemporaryError(f"HAProxy router of {rollout} did not reload within {START_WAIT:.0f}s")

    def _write_bundle(self, rollout: str, wanted: _Wanted) -> str:
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

    async def _servers(self, rollout: str) -> dict[str, ServerStat]:
        sock = self.paths(rollout)[0]
        return parse_stat(await run_one(sock, "show stat"), backend_name(rollout))

    async def set_backends(
        self, rollout: str, backends: list[Backend], routing: Routing | None = None
    ) -> bool:
        """Make HAProxy hold exactly these servers and weights (and delete drained servers it still has)."""
        saved = self._load(rollout)
        if saved is None:
            raise TemporaryError(f"HAProxy router of {rollout} is not started")
        if routing is not None and (routing.routes or routing.stickiness):
            raise TemporaryError(
                f"HAProxy router of {rollout}: header routes and stickiness are not mapped yet"
            )
        weights = saved.weights if routing is None else routing.weights
        wanted = replace(saved, backends=tuple(sorted(backends, key=lambda b: b.id)), weights=weights)
        sock = self.paths(rollout)[0]
        be = backend_name(rollout)
        try:
            observed = await self._servers(rollout)
        except (RuntimeApiError, ValueError) as e:
            raise TemporaryError(f"HAProxy router of {rollout} did not answer: {e}") from e
        servers = wanted.servers()
        applied = self._applied.setdefault(rollout, {})
        draining = self._draining.setdefault(rollout, set())
        commands: list[str] = []
        for name, (b, w) in servers.items():
            if name not in observed:
                commands += [
                    f"add server {be}/{name} {b.host}:{b.port} weight {w}",
                    f"enable server {be}/{name}",
                ]
            elif applied.get(name) != w or name in draining:
                commands += [f"set server {be}/{name} weight {w}", f"set server {be}/{name} state ready"]
        deleted: list[str] = []
        for name, stat in observed.items():
            if name in servers:
                continue
            if name not in draining:
                commands.append(f"set server {be}/{name} state drain")
            elif stat.current == 0:
                commands += [f"set server {be}/{name} state maint", f"del server {be}/{name}"]
                deleted.append(name)
        changed = wanted != saved
        if changed:
            wanted = replace(wanted, version=saved.version + 1)
            self._save(rollout, wanted)
        if not commands:
            return changed
        try:
            answers = await run(sock, commands)
        except RuntimeApiError as e:
            self._applied.pop(rollout, None)
            raise TemporaryError(f"HAProxy router of {rollout} did not take its servers: {e}") from e
        refused = [
            f"{c}: {a}"
            for c, a in zip(commands, answers, strict=True)
            if a and a != "New server registered." and not c.startswith("del server")
        ]
        for name, (_, w) in servers.items():
            applied[name] = w
            draining.discard(name)
        for name in observed:
            if name not in servers:
                draining.add(name)
        for name in deleted:
            c = f"del server {be}/{name}"
            answer = answers[commands.index(c)]
            if answer.startswith("Server deleted"):
                draining.discard(name)
                applied.pop(name, None)
                self._retire(rollout, observed[name])
            else:
                log.debug("%s: %s: %s (tried again on the next pass)", rollout, c, answer)
        split = wanted.split()
        if split != self.last_split.get(rollout) and (split.server_error or split.revision_error):
            log.info(
                "%s: weights %s over %d servers; integer rounding: revision shares off by at most %.4f %%, "
                "a server's share within its revision by at most %.4f %%",
                rollout,
                wanted.weights,
                len(servers),
                100 * split.revision_error,
                100 * split.server_error,
            )
        self.last_split[rollout] = split
        if refused:
            self._applied.pop(rollout, None)
            raise TemporaryError(f"HAProxy router of {rollout} refused: {'; '.join(refused)}")
        return True

    def _retire(self, rollout: str, stat: ServerStat) -> None:
        parsed = parse_server_name(stat.name)
        if parsed is None:
            return
        revs = self._retired.setdefault(rollout, {})
        revs[parsed[0]] = _add(revs.get(parsed[0], RevisionStats()), stat)

    def routing(self, rollout: str) -> Routing | None:
        w = self._load(rollout)
        return None if w is None else Routing(weights=w.weights)

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
            mine = [s for n, s in observed.items() if (parse_server_name(n) or ("", ""))[1] == backend_id]
            if all(s.current == 0 for s in mine):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)

    async def stats(self, rollout: str) -> RouterStats | None:
        """Per-revision and per-server counters from ``show stat`` (latency is not measured yet)."""
        w = self._load(rollout)
        try:
            observed = await self._servers(rollout)
        except (RuntimeApiError, ValueError):
            return None
        wanted = {server_name(b) for b in w.backends} if w is not None else set()
        revisions = {r: s.model_copy(deep=True) for r, s in self._retired.get(rollout, {}).items()}
        backends: dict[str, BackendStats] = {}
        for name, stat in observed.items():
            parsed = parse_server_name(name)
            if parsed is None:
                continue
            revision, instance = parsed
            revisions[revision] = _add(revisions.get(revision, RevisionStats()), stat)
            backends[instance] = BackendStats(
                revision=revision,
                in_flight=stat.current,
                requests=stat.total,
                connection_errors=stat.connection_errors,
                removed=name not in wanted,
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
        )

    async def remove(self, rollout: str) -> None:
        """Stop the rollout's HAProxy softly (SIGUSR1: in-flight requests finish), SIGKILL after 10 s."""
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
        for p in (*self.paths(rollout)[:3], self.bundle_path(rollout)):
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
        ):
            d.pop(rollout, None)

    async def aclose(self) -> None:
        for child in self._children.values():
            child.poll()


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
    for line in info.splitlines():
        if line.startswith("Pid:"):
            return line.split(":", 1)[1].strip()
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
