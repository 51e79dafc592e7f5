"""Plans: frozen data that says what one reconcile pass should do.

A strategy returns a ``Plan``; the controller's ``apply`` carries it out. Plans never contain I/O or
callbacks, so a plan can be compared in a table test and logged as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "InstancePhase",
    "InstanceView",
    "Plan",
    "RolloutView",
    "Start",
    "StepState",
    "Terminate",
    "Traffic",
]

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
    analyses: Mapping[str, str] = field(default_factory=dict)
    """Phase of each active analysis run of the target revision, by key (``step-2``, ``background``,
    ``prePromotion``, ``postPromotion``): ``running``, ``successful``, ``failed``, ``error``, ``inconclusive``."""


@dataclass(frozen=True)
class Start:
    revision: str
    count: int


@dataclass(frozen=True)
class Terminate:
    instance_id: str
    reason: str


@dataclass(frozen=True)
class Traffic:
    """How the router should split requests.

    ``weights`` is an ordered list of (revision, percent); ``None`` splits evenly over every ready
    instance whatever its revision (a rolling update). The order matters for sticky splits: the first
    revision owns the lowest hash buckets, so a growing canary weight only ever adds users to it.
    ``header_route`` (a list of match dicts) sends matching requests to ``route_revision`` whatever the
    weights; ``preview`` is the revision served on the preview address.
    """

    weights: tuple[tuple[str, int], ...] | None = None
    header_route: tuple[dict[str, Any], ...] = ()
    route_revision: str | None = None
    preview: str | None = None


@dataclass(frozen=True)
class StepState:
    """Progress of a canary or blue-green rollout of one revision, persisted with the revision.

    Commands change it (``promote`` sets ``promote`` or ``full``, ``abort`` sets ``aborted_at``); the
    planner reads it and returns the next one.
    """

    index: int = 0
    pause_started_at: float | None = None
    promote: bool = False
    full: bool = False
    aborted_at: float | None = None
    abort_reason: str = ""
    weight: int = 0
    canary_scale: dict[str, Any] | None = None
    header_route: tuple[dict[str, Any], ...] = ()
    switched_at: float | None = None
    ready_at: float | None = None
    checks: Literal["pending", "running", "passed", "failed"] = "pending"
    checks_message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["header_route"] = list(self.header_route)
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> StepState:
        if not data:
            return cls()
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["header_route"] = tuple(known.get("header_route") or ())
        return cls(**known)


@dataclass(frozen=True)
class Plan:
    """One pass worth of changes. ``outcome`` marks the target revision complete or failed.

    ``traffic`` is the split the router must have (``None``: even over ready instances); ``state`` the
    new step state of the target revision (``None``: unchanged); ``run_checks`` asks the controller to
    run the pre-promotion checks against the preview address and record their result in the state.
    ``analyses`` names the analysis runs (by key) that should be running now; the controller starts the
    missing ones and stops running ones that are no longer named. ``waiting`` says, for the status, what
    the rollout waits for when it is held (an analysis, a human).
    """

    start: Start | None = None
    terminate: tuple[Terminate, ...] = ()
    outcome: Literal["complete", "failed"] | None = None
    reason: str = ""
    requeue_at: float | None = None
    traffic: Traffic | None = None
    state: StepState | None = None
    run_checks: bool = False
    analyses: tuple[str, ...] = ()
    waiting: str = ""

    @property
    def changes_instances(self) -> bool:
        return self.start is not None or bool(self.terminate)
