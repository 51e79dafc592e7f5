"""Instances as local process groups: the embedded default platform.

Each instance runs in its own session and process group (``start_new_session``), so it survives the
control plane that started it (a restarted control plane adopts it again through ``discover()``), and
so stopping it can signal everything it spawned at once: a shell wrapper, worker processes and their
children all share the group. Stopping follows the kubelet: preStop, SIGTERM to the group, wait, and
SIGKILL to the group when the grace period (counted from the start of the stop, preStop included) runs
out. Like the kubelet, when a preStop handler used up (nearly) all of the grace period, SIGTERM still
gets a short minimum before SIGKILL, so the service has a chance to drain at all. A stop is only done
when no process of the group is left.

Two identities guard against signalling a stranger. A handle names a process by pid *and* create time;
a pid reused by another program has a different create time. A process group id stays reserved by the
kernel while any member of the group lives, so once the leader's pid belongs to someone else the old
group is known to be empty and is never signalled.

Children are reaped without blocking: the ``Popen`` objects of the instances this object started are
polled whenever state is observed; instances adopted after a restart are someone else's children (init
reaps them) and are observed through psutil, where a zombie counts as exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from gapless.platform.base import (
    ENV_INSTANCE,
    ENV_REVISION,
    ENV_ROLE,
    ENV_ROLLOUT,
    ENV_STATE_DIR,
    ENV_STATE_ID,
    ROLE_INSTANCE,
    DiscoveredProcess,
    InstanceHandle,
    InstanceSpec,
    InstanceStartError,
    InstanceStopError,
    ResourceUsage,
    StopResult,
    marker_env,
)
from gapless.platform.probes import run_handler
from gapless.spec.models import PreStopHandler

if TYPE_CHECKING:
    from gapless.platform.base import Platform

__all__ = ["LocalPlatform"]

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.02
"""How often a stop looks for the group to be gone: short, so a fast exit is noticed fast."""
_KILL_WAIT_SECONDS = 5.0
"""How long SIGKILL may take to empty a group before the stop reports survivors."""
_MIN_TERM_AFTER_PRE_STOP = 2.0
"""The least time between SIGTERM and SIGKILL after a preStop handler ran, as the kubelet grants."""
_PORT_QUARANTINE_SECONDS = 300.0
"""A port handed out is not handed out again for this long, even if it looks free again."""
_CREATE_TIME_TOLERANCE = 1.0
"""Create times of the same process read at different moments differ only by clock steps (psutil adds
the boot time, which the kernel derives from the wall clock). A reused pid cannot come back within a
second of the original's creation unless the whole pid space wrapped in that second."""


class _RecentPorts:
    """Ports recently handed out by this process, across all platform objects.

    Ports are a machine-wide resource: a per-object set would let two platforms in one process give
    the same just-released port to two instances before either binds it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handed_out: dict[int, float] = {}

    def allocate(self) -> int:
        with self._lock:
            now = time.monotonic()
            self._handed_out = {
                p: t for p, t in self._handed_out.items() if now - t < _PORT_QUARANTINE_SECONDS
            }
            for _ in range(200):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", 0))
                    port: int = s.getsockname()[1]
                if port not in self._handed_out:
                    self._handed_out[port] = now
                    return port
        raise InstanceStartError("no free loopback port found")

    def reserve(self, port: int) -> None:
        with self._lock:
            self._handed_out[port] = time.monotonic()


_PORTS = _RecentPorts()


@dataclass
class _Child:
    """An instance this object started: the ``Popen`` to reap it and the environment it got."""

    popen: subprocess.Popen[bytes]
    started_at: float
    env: dict[str, str]


def _spawn(
    spec: InstanceSpec, argv: list[str], env: dict[str, str], port: int
) -> tuple[subprocess.Popen[bytes], float]:
    """Fork and exec one instance; returns its ``Popen`` and its create time."""
    if spec.working_dir is not None and not Path(spec.working_dir).is_dir():
        raise InstanceStartError(
            f"instance {spec.instance_id}: working directory {spec.working_dir!r} is not a directory"
        )
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    with spec.log_path.open("ab") as logfile:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        logfile.write(
            f"--- {stamp} gapless: starting instance {spec.instance_id} "
            f"(revision {spec.revision}) on port {port}\n".encode()
        )
        logfile.flush()
        try:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                cwd=spec.working_dir,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            # Popen reports a failed exec only after the forked child has exited and been reaped,
            # so nothing is left behind.
            not_in_path = isinstance(exc, FileNotFoundError) and "/" not in argv[0]
            hint = " (not found in PATH)" if not_in_path else ""
            raise InstanceStartError(
                f"instance {spec.instance_id}: cannot run {argv[0]!r}: {exc.strerror or exc}{hint}"
            ) from exc
    # Not reaped yet (only the platform polls it), so even a process that exited at once still has its
    # /proc entry and its create time.
    return popen, psutil.Process(popen.pid).create_time()


def _group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes whose process group is ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []  # the kernel's own answer, no scan needed
    except PermissionError:
        pass  # some member belongs to another user; the scan below still finds ours
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) != pgid:
                continue
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                continue
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue  # exited while we looked: not a member any more
        members.append(pid)
    return members


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is already empty
        os.killpg(pgid, sig)


def _check_pgid(pgid: int) -> None:
    """Refuse group ids that cannot be an instance's: ``killpg(0)`` would signal the caller's group."""
    if pgid <= 1:
        raise ValueError(f"refusing to signal process group {pgid}")
    if pgid == os.getpgrp():
        raise ValueError(f"refusing to signal process group {pgid}: it is the caller's own")


class LocalPlatform:
    """Runs instances as local process groups marked with ``state_dir``.

    The constructor does no I/O; the state directory is resolved on first use. ``state_id`` (the
    identity of the state database, see ``ENV_STATE_ID``) is marked on every instance started.
    """

    def __init__(
        self, state_dir: Path, *, state_id: str | None = None, instance_env: Mapping[str, str] | None = None
    ) -> None:
        """``instance_env``: variables every instance gets unless the control plane's own environment or
        the template's ``env`` sets them (the control plane's services an instance may use, such as the
        flag service's address)."""
        self.state_id = state_id
        self._instance_env = dict(instance_env or {})
        self._state_dir_arg = state_dir
        self._state_dir: Path | None = None
        self._children: dict[int, _Child] = {}
        self._cpu_samplers: dict[int, dict[tuple[int, float], psutil.Process]] = {}

    @property
    def state_dir(self) -> Path:
        """The resolved state directory, as written into ``GAPLESS_STATE_DIR``."""
        if self._state_dir is None:
            self._state_dir = self._state_dir_arg.resolve()
        return self._state_dir

    # -- start ---------------------------------------------------------------------------------

    async def start(self, spec: InstanceSpec) -> InstanceHandle:
        """Start an instance in its own session with its own port, log file and marker variables."""
        if not spec.command:
            raise InstanceStartError(f"instance {spec.instance_id}: empty command")
        if spec.port is None:
            port = _PORTS.allocate()
        else:
            port = spec.port
            _PORTS.reserve(port)
        argv = [arg.replace("${PORT}", str(port)) for arg in spec.command]
        env = {
            **self._instance_env,
            **os.environ,
            **spec.env,
            "PORT": str(port),
            **marker_env(
                self.state_dir,
                ROLE_INSTANCE,
                rollout=spec.rollout,
                instance_id=spec.instance_id,
                revision=spec.revision,
                state_id=self.state_id,
            ),
        }
        # Directory checks, the log file and fork/exec block; keep them off the event loop.
        popen, started_at = await asyncio.to_thread(_spawn, spec, argv, env, port)
        self._children[popen.pid] = _Child(popen=popen, started_at=started_at, env=env)
        log.info("started instance %s pid %d port %d", spec.instance_id, popen.pid, port)
        return InstanceHandle(
            instance_id=spec.instance_id,
            pid=popen.pid,
            pgid=popen.pid,  # start_new_session: the child leads a new session and group
            port=port,
            started_at=started_at,
            log_path=spec.log_path,
        )

    def release(self) -> None:
        """Forget the instances this object started, leaving them running.

        For a control plane that exits (or hands over) while its instances keep serving: they are then
        observed like adopted instances, through psutil. Without this, dropping the ``Popen`` objects of
        running children makes Python warn that a subprocess is still running; the warning is silenced
        here because leaving them running is the point. Python's subprocess module still reaps them if
        they exit while this process lives.
        """
        self._reap()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            self._children.clear()  # CPython runs each Popen.__del__ right here, inside the filter

    # -- observe -------------------------------------------------------------------------------

    def _reap(self) -> None:
        for pid, child in list(self._children.items()):
            if child.popen.poll() is not None:
                del self._children[pid]

    def _same_process(self, pid: int, started_at: float) -> bool | None:
        """True: alive; False: exited or a zombie; None: the pid now names another process."""
        self._reap()
        child = self._children.get(pid)
        if child is not None and abs(child.started_at - started_at) < _CREATE_TIME_TOLERANCE:
            return True  # polled just now by _reap: still running
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started_at) >= _CREATE_TIME_TOLERANCE:
                return None
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def is_running(self, handle: InstanceHandle) -> bool:
        """Whether the handle's process is alive: same pid, same create time, not a zombie."""
        return self._same_process(handle.pid, handle.started_at) is True

    def instance_env(self, handle: InstanceHandle) -> dict[str, str]:
        """The instance's environment: as started by this object, else read from the live process.

        When the process is gone or unreadable, the current environment with the instance's port and
        markers is the best approximation (the caller is about to find out the instance has exited).
        """
        child = self._children.get(handle.pid)
        if child is not None and abs(child.started_at - handle.started_at) < _CREATE_TIME_TOLERANCE:
            return dict(child.env)
        try:
            return dict(psutil.Process(handle.pid).environ())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            log.debug("environment of pid %d not readable; approximating it", handle.pid)
        markers = marker_env(self.state_dir, ROLE_INSTANCE, instance_id=handle.instance_id)
        return {**os.environ, "PORT": str(handle.port), **markers}

    def discover(self) -> list[DiscoveredProcess]:
        """Live processes whose ``GAPLESS_STATE_DIR`` is this state directory, one per process group.

        Processes of one group with the same markers (an instance and the children it spawned) are one
        entry: the group leader when it lives, else the oldest member. A process that left its group
        (``setsid`` in the instance) is a separate entry with its own ``pgid``. The calling process is
        never listed.
        """
        self._reap()
        want = str(self.state_dir)
        me = os.getpid()
        found: dict[tuple[int, str, str | None, str | None], DiscoveredProcess] = {}
        for proc in psutil.process_iter():
            if proc.pid == me:
                continue
            try:
                env = proc.environ()
                if env.get(ENV_STATE_DIR) != want:
                    continue
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                started_at = proc.create_time()
                pgid = os.getpgid(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
                # Exited while we looked, or another user's process: in both cases not ours to manage.
                continue
            entry = DiscoveredProcess(
                pid=proc.pid,
                pgid=pgid,
                role=env.get(ENV_ROLE, ""),
                rollout=env.get(ENV_ROLLOUT),
                instance_id=env.get(ENV_INSTANCE),
                revision=env.get(ENV_REVISION),
                started_at=started_at,
                state_id=env.get(ENV_STATE_ID),
                port=_port(env.get("PORT")),
            )
            key = (pgid, entry.role, entry.rollout, entry.instance_id)
            seen = found.get(key)
            if seen is None or _better_representative(entry, seen):
                found[key] = entry
        return sorted(found.values(), key=lambda d: d.pid)

    def resources(self, handle: InstanceHandle) -> ResourceUsage:
        """Resources summed over the instance's process group (all zero once it is gone).

        Raises ``ValueError`` for a handle whose group cannot be an instance's (0, 1, the caller's own).
        """
        _check_pgid(handle.pgid)
        if self._same_process(handle.pid, handle.started_at) is None:
            self._cpu_samplers.pop(handle.pgid, None)
            return ResourceUsage(cpu_percent=0.0, rss_bytes=0, open_files=0, num_processes=0)
        previous = self._cpu_samplers.get(handle.pgid, {})
        current: dict[tuple[int, float], psutil.Process] = {}
        cpu = cpu_seconds = 0.0
        rss = fds = count = 0
        for pid in _group_members(handle.pgid):
            try:
                proc = psutil.Process(pid)
                key = (pid, proc.create_time())
                proc = previous.get(key, proc)  # the same object keeps cpu_percent's last sample
                with proc.oneshot():
                    cpu += proc.cpu_percent(interval=None)
                    times = proc.cpu_times()
                    cpu_seconds += times.user + times.system
                    rss += proc.memory_info().rss
                    fds += proc.num_fds()
            except psutil.NoSuchProcess:
                continue  # exited between the scan and the read
            current[key] = proc
            count += 1
        if current:
            self._cpu_samplers[handle.pgid] = current
        else:
            self._cpu_samplers.pop(handle.pgid, None)
        return ResourceUsage(
            cpu_percent=cpu, rss_bytes=rss, open_files=fds, num_processes=count, cpu_seconds=cpu_seconds
        )

    # -- stop ----------------------------------------------------------------------------------

    async def stop(
        self, handle: InstanceHandle, *, pre_stop: PreStopHandler | None, grace_seconds: float
    ) -> StopResult:
        """preStop, SIGTERM to the group, wait; SIGKILL to the group when the grace period runs out.

        When a preStop handler leaves less than ``_MIN_TERM_AFTER_PRE_STOP`` seconds, the SIGTERM phase
        gets that long anyway (the kubelet's one-off extension). ``exited`` is False only when processes
        of the group survived SIGKILL for several seconds.
        """
        _check_pgid(handle.pgid)
        began = time.monotonic()
        deadline = began + max(grace_seconds, 0.0)
        state = self._same_process(handle.pid, handle.started_at)
        if state is None:
            # The pid belongs to a newer process, so the old group id is free: the group is empty.
            return StopResult(exited=True, killed=False, seconds=time.monotonic() - began)
        message = None
        if pre_stop is not None and state:
            result = await run_handler(
                pre_stop,
                port=handle.port,
                env=self.instance_env(handle),
                timeout=max(deadline - time.monotonic(), 0.0),
            )
            message = result.message
            if not result.success:
                log.warning("instance %s: preStop failed: %s", handle.instance_id, message)
            deadline = max(deadline, time.monotonic() + _MIN_TERM_AFTER_PRE_STOP)
        _signal_group(handle.pgid, signal.SIGTERM)
        if await self._wait_group_gone(handle.pgid, deadline):
            log.info("instance %s stopped", handle.instance_id)
            return StopResult(True, False, time.monotonic() - began, message)
        log.info("instance %s: grace period over, sending SIGKILL", handle.instance_id)
        _signal_group(handle.pgid, signal.SIGKILL)
        gone = await self._wait_group_gone(handle.pgid, time.monotonic() + _KILL_WAIT_SECONDS)
        if not gone:
            log.error(
                "instance %s: processes survived SIGKILL: %s", handle.instance_id, _group_members(handle.pgid)
            )
        return StopResult(gone, True, time.monotonic() - began, message)

    async def kill_group(self, pgid: int) -> None:
        """SIGKILL every process of group ``pgid`` and wait until none is left.

        Raises ``InstanceStopError`` when processes survive SIGKILL, and ``ValueError`` for the caller's
        own group or a group id that cannot be an instance's.
        """
        _check_pgid(pgid)
        _signal_group(pgid, signal.SIGKILL)
        if not await self._wait_group_gone(pgid, time.monotonic() + _KILL_WAIT_SECONDS):
            raise InstanceStopError(f"processes of group {pgid} survived SIGKILL: {_group_members(pgid)}")

    async def _wait_group_gone(self, pgid: int, deadline: float) -> bool:
        while True:
            self._reap()
            # A leader that is our child counts until reaped: a multithreaded process shows as a zombie
            # while its other threads are still exiting, and waitpid only succeeds after them.
            if pgid not in self._children and not _group_members(pgid):
                self._cpu_samplers.pop(pgid, None)
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(_POLL_SECONDS, remaining))


def _port(value: str | None) -> int | None:
    if value is None or not value.isdigit() or not 1 <= int(value) <= 65535:
        return None
    return int(value)


def _better_representative(candidate: DiscoveredProcess, current: DiscoveredProcess) -> bool:
    if current.pid == current.pgid:
        return False
    if candidate.pid == candidate.pgid:
        return True
    return candidate.started_at < current.started_at


if TYPE_CHECKING:
    _conforms: type[Platform] = LocalPlatform  # mypy checks that LocalPlatform implements the Protocol
