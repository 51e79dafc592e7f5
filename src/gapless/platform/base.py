"""The seam between the controller and whatever runs instances.

The controller speaks only these frozen records and the ``Platform`` protocol, so the same reconcile
logic can later drive Kubernetes (a pod per instance, the kubelet stopping it) instead of local process
groups. Handles are plain data: they are persisted by the store and handed back after a control-plane
restart, which is why a handle carries the process create time and not a live ``Popen`` object.

Processes that belong to a gapless state directory are recognised by marker variables in their
environment (``GAPLESS_STATE_DIR``, ``GAPLESS_ROLE`` ...), not by pid files: the environment travels
with the process, survives a crash of whoever started it, and cannot go stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gapless.core.errors import GaplessError
from gapless.spec.models import PreStopHandler

__all__ = [
    "ENV_INSTANCE",
    "ENV_REVISION",
    "ENV_ROLE",
    "ENV_ROLLOUT",
    "ENV_STATE_DIR",
    "ENV_STATE_ID",
    "ROLE_CONTROL_PLANE",
    "ROLE_INSTANCE",
    "ROLE_ROUTER",
    "DiscoveredProcess",
    "InstanceHandle",
    "InstanceSpec",
    "InstanceStartError",
    "InstanceStopError",
    "Platform",
    "ResourceUsage",
    "StopResult",
    "marker_env",
]

ENV_STATE_DIR = "GAPLESS_STATE_DIR"
ENV_ROLE = "GAPLESS_ROLE"
ENV_ROLLOUT = "GAPLESS_ROLLOUT"
ENV_INSTANCE = "GAPLESS_INSTANCE"
ENV_REVISION = "GAPLESS_REVISION"
ENV_STATE_ID = "GAPLESS_STATE_ID"
"""The identity of the state database that started the process: a control plane whose ``state.db`` was
lost (or replaced) has another one, and so knows these processes are not in its records."""

ROLE_INSTANCE = "instance"
ROLE_ROUTER = "router"
ROLE_CONTROL_PLANE = "control-plane"


def marker_env(
    state_dir: Path,
    role: str,
    *,
    rollout: str | None = None,
    instance_id: str | None = None,
    revision: str | None = None,
    state_id: str | None = None,
) -> dict[str, str]:
    """The marker variables that let ``discover()`` find a process of this state directory.

    ``state_dir`` must already be resolved (absolute, no symlinks): discovery compares strings.
    ``state_id`` names the state database whose records know the process.
    """
    env = {ENV_STATE_DIR: str(state_dir), ENV_ROLE: role}
    if state_id is not None:
        env[ENV_STATE_ID] = state_id
    if rollout is not None:
        env[ENV_ROLLOUT] = rollout
    if instance_id is not None:
        env[ENV_INSTANCE] = instance_id
    if revision is not None:
        env[ENV_REVISION] = revision
    return env


class InstanceStartError(GaplessError):
    """An instance could not be started (missing program, not executable, bad working directory).

    Permanent for the revision: retrying the same template gives the same error.
    """


class InstanceStopError(GaplessError):
    """Processes of an instance survived SIGKILL (a process stuck in uninterruptible sleep)."""


@dataclass(frozen=True)
class InstanceSpec:
    """What to run for one instance. ``${PORT}`` in ``command`` is replaced by the instance's port."""

    rollout: str
    instance_id: str
    revision: str
    command: list[str]
    env: dict[str, str]
    working_dir: str | None
    log_path: Path
    port: int | None = None
    """A fixed port; ``None`` lets the platform pick a free loopback port."""


@dataclass(frozen=True)
class InstanceHandle:
    """A running instance, as plain data that can be persisted and used after a restart.

    ``pid`` with ``started_at`` (the process create time in epoch seconds) names one process: a pid
    reused by another program later has a different create time.
    """

    instance_id: str
    pid: int
    pgid: int
    port: int
    started_at: float
    log_path: Path


@dataclass(frozen=True)
class StopResult:
    """How a stop went. ``killed`` means SIGKILL was needed because the grace period ran out.

    ``pre_stop_message`` says how the preStop handler went (``None`` when there was none); as in
    Kubernetes, a failed handler does not prevent the stop.
    """

    exited: bool
    killed: bool
    seconds: float
    pre_stop_message: str | None = None


@dataclass(frozen=True)
class ResourceUsage:
    """Resources used by an instance's whole process group.

    ``cpu_percent`` is the sum over processes of the percentage of one CPU since the previous call for
    the same process (the first call for a process counts 0). ``open_files`` counts file descriptors
    (files, sockets, pipes). ``cpu_seconds`` is the cumulative user and system CPU time of the group's
    live processes: unlike ``cpu_percent`` it needs no previous call, so two readings taken by anyone
    give the CPU used in between (it drops when a process of the group exits).
    """

    cpu_percent: float
    rss_bytes: int
    open_files: int
    num_processes: int
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class DiscoveredProcess:
    """A live process carrying this state directory's markers; fields not set in its marker are None."""

    pid: int
    pgid: int
    role: str
    rollout: str | None
    instance_id: str | None
    revision: str | None
    started_at: float
    state_id: str | None = None
    """The state database that started it (``GAPLESS_STATE_ID``); None for processes of older gaplesses."""
    port: int | None = None
    """An instance's ``PORT``."""


class Platform(Protocol):
    """Starts, stops, observes and finds instances."""

    async def start(self, spec: InstanceSpec) -> InstanceHandle:
        """Start an instance; raises ``InstanceStartError`` when it cannot run at all."""
        ...

    async def stop(
        self, handle: InstanceHandle, *, pre_stop: PreStopHandler | None, grace_seconds: float
    ) -> StopResult:
        """preStop, SIGTERM, wait, SIGKILL at the end of the grace period: nothing of it is left."""
        ...

    def is_running(self, handle: InstanceHandle) -> bool:
        """Whether this very process (not a reused pid) is alive and not a zombie."""
        ...

    def instance_env(self, handle: InstanceHandle) -> dict[str, str]:
        """The environment the instance runs with; exec probes and exec hooks run with it."""
        ...

    def discover(self) -> list[DiscoveredProcess]:
        """Every live process marked with this platform's state directory."""
        ...

    async def kill_group(self, pgid: int) -> None:
        """SIGKILL a whole process group and wait until it is gone."""
        ...

    def resources(self, handle: InstanceHandle) -> ResourceUsage:
        """CPU, memory, descriptors and process count summed over the instance's process group."""
        ...
