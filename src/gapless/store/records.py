"""Rows of the control plane's state, as frozen dataclasses.

These are the persisted facts: what was asked (rollout spec, revisions) and what was done (instances with
their pid and port, events). Everything the controller derives is recomputed from them on each pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "AnalysisRunRecord",
    "AnalysisTemplateRecord",
    "EventRecord",
    "InstanceRecord",
    "InstanceState",
    "ReleaseRecord",
    "RevisionPhase",
    "RevisionRecord",
    "RolloutRecord",
]

InstanceState = Literal["starting", "running", "backoff", "terminating", "stopped"]
RevisionPhase = Literal["pending", "progressing", "complete", "failed", "superseded"]


@dataclass(frozen=True)
class RolloutRecord:
    name: str
    spec: dict[str, Any]
    generation: int
    created_at: float
    updated_at: float
    status: dict[str, Any] = field(default_factory=dict)
    deleting: bool = False


@dataclass(frozen=True)
class RevisionRecord:
    rollout: str
    hash: str
    number: int
    template: dict[str, Any]
    created_at: float
    phase: RevisionPhase = "pending"
    message: str = ""
    progress_at: float | None = None
    step_state: dict[str, Any] = field(default_factory=dict)
    completed_at: float | None = None
    """When the revision last completed (served everyone); ``gapless undo`` goes to the latest such."""
    change_cause: str = ""
    """Why it was made (``gapless apply --change-cause``, like Kubernetes' ``change-cause``); "" if untold."""


@dataclass(frozen=True)
class InstanceRecord:
    id: str
    rollout: str
    revision: str
    state: InstanceState
    created_at: float
    log_path: str
    pid: int | None = None
    pgid: int | None = None
    port: int | None = None
    started_at: float | None = None
    ready: bool = False
    ready_since: float | None = None
    restarts: int = 0
    next_start_at: float | None = None
    message: str = ""
    restart_pending: bool = False


@dataclass(frozen=True)
class EventRecord:
    id: int
    time: float
    rollout: str
    revision: str
    type: str
    message: str
    revision_number: int | None = None
    """The revision's number when the event happened; None for an event of no (or a not yet made) revision."""

    def to_json(self, number: int | None = None) -> dict[str, Any]:
        """The event as the API shows it; ``number`` stands in when none was recorded."""
        return {
            "id": self.id,
            "time": self.time,
            "rollout": self.rollout,
            "revision": self.revision,
            "revisionNumber": self.revision_number if self.revision_number is not None else number,
            "type": self.type,
            "message": self.message,
        }


@dataclass(frozen=True)
class AnalysisTemplateRecord:
    name: str
    spec: dict[str, Any]
    generation: int
    updated_at: float


@dataclass(frozen=True)
class AnalysisRunRecord:
    """One analysis run of one revision: where it runs (``key``), what it measures and what it found.

    ``spec`` holds the resolved templates (arguments substituted) so a restarted control plane resumes
    exactly what was started; ``metrics`` holds per-metric progress and the last measurements. ``active``
    is cleared when ``gapless retry`` starts the revision over, so old verdicts stay visible as history
    but no longer decide.
    """

    id: str
    rollout: str
    revision: str
    key: str
    phase: str
    created_at: float
    spec: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""
    finished_at: float | None = None
    active: bool = True


@dataclass(frozen=True)
class ReleaseRecord:
    """A release as stored: its document (with the Rollouts it applies) and its state (step phases, records)."""

    name: str
    doc: dict[str, Any]
    state: dict[str, Any]
    created_at: float
    updated_at: float
