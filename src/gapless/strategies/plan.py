"""Plans: frozen data that says what one reconcile pass should do.

A strategy returns a ``Plan``; the controller's ``apply`` carries it out. Plans never contain I/O or
callbacks, so a plan can be compared in a table test and logged as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["InstancePhase", "InstanceView", "Plan", "RolloutView", "Start", "Terminate"]

InstancePhase = Literal["starting", "running", "backoff", "terminating"]


@dataclass(frozen=True)
class InstanceView:
    """What the planner needs to know about one instance."""

    id: str
    revision: str
    phase: InstancePhase
    ready: bool
    ready_since: float | None
    created_at: float

    def available(self, now: float, min_ready_seconds: float) -> bool:
        """Ready for at least ``min_ready_seconds``, as a Kubernetes available pod."""
        return (
            self.phase == "running"
            and self.ready
            and self.ready_since is not None
            and now - self.ready_since >= min_ready_seconds
        )


@dataclass(frozen=True)
class RolloutView:
    """The desired state of one rollout, reduced to what the rolling planner uses."""

    replicas: int
    max_surge: int | str
    max_unavailable: int | str
    min_ready_seconds: float
    progress_deadline_seconds: float
    paused: bool
    target: str
    target_failed: bool
    target_complete: bool
    stable: str | None
    progress_at: float


@dataclass(frozen=True)
class Start:
    revision: str
    count: int


@dataclass(frozen=True)
class Terminate:
    instance_id: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """One pass worth of changes. ``outcome`` marks the target revision complete or failed."""

    start: Start | None = None
    terminate: tuple[Terminate, ...] = ()
    outcome: Literal["complete", "failed"] | None = None
    reason: str = ""
    requeue_at: float | None = None

    @property
    def changes_instances(self) -> bool:
        return self.start is not None or bool(self.terminate)
