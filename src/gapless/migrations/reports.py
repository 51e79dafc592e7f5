"""What the engine reports: progress events, refusals, and where every migration is.

Plain data, so faces (the CLI today, the control plane later) render them as they like.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gapless.core.errors import GaplessError
from gapless.migrations.backfill import BackfillProgress
from gapless.migrations.gate import Client, RevisionSchema
from gapless.migrations.locks import LockRetry
from gapless.migrations.steps import Phase, Step

__all__ = [
    "ClientsConnectedError",
    "CompleteReport",
    "EngineEvent",
    "MigrationStateError",
    "MigrationStatus",
    "Notice",
    "Status",
    "StepEvent",
]


@dataclass(frozen=True)
class StepEvent:
    """A step starts (``done`` False) or has finished (``done`` True)."""

    phase: Phase
    index: int
    total: int
    step: Step
    done: bool


@dataclass(frozen=True)
class Notice:
    """Something the operator should read; ``loud`` for what a --force skipped."""

    text: str
    loud: bool = False


EngineEvent = StepEvent | LockRetry | BackfillProgress | Notice


class MigrationStateError(GaplessError):
    """The command does not fit where the migrations are (nothing in progress, another one in progress...)."""


class ClientsConnectedError(GaplessError):
    """Complete (or rollback) refused: clients of another schema version are still connected."""

    def __init__(
        self,
        action: str,
        migration: str,
        clients: Sequence[Client],
        revisions: Sequence[RevisionSchema] = (),
    ) -> None:
        self.clients = list(clients)
        self.revisions = list(revisions)
        lines = [f"  {c.describe()}" for c in self.clients]
        lines += [
            f"  revision {r.revision} of {r.app} ({r.instances} instance(s), schema version {r.schema_version})"
            for r in self.revisions
        ]
        super().__init__(
            f"refusing to {action} {migration}: {len(lines)} client(s) still use another schema version "
            "or do not say which one they use:\n"
            + "\n".join(lines)
            + f"\nwait until they are gone (roll the application out first), or pass --force to {action} anyway"
        )


@dataclass(frozen=True)
class CompleteReport:
    """What complete did not check: what --force skipped, and checks that have no source yet."""

    skipped: list[str]
    unchecked: list[str]


def steps_phase(migration_phase: str) -> Phase:
    """Which list of steps a migration in ``migration_phase`` works through (both engines' phases)."""
    if migration_phase in ("completing", "completed"):
        return "complete"
    if migration_phase in ("rolling_back", "rolled_back"):
        return "rollback"
    return "start"


def steps_done(migration_phase: str, step: int, total: int) -> int:
    """Steps done: all of them once the phase has ended, else the step recorded as reached."""
    return total if migration_phase in ("started", "completed", "rolled_back") else step


@dataclass(frozen=True)
class MigrationStatus:
    name: str
    phase: str
    step: int
    steps: int
    version_schema: str
    previous_schema: str | None
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    error: str | None
    backfills: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase,
            "step": self.step,
            "steps": self.steps,
            "versionSchema": self.version_schema,
            "previousSchema": self.previous_schema,
            "startedAt": self.started_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
            "completedAt": self.completed_at.isoformat() if self.completed_at else None,
            "error": self.error,
            "backfills": self.backfills,
        }


@dataclass(frozen=True)
class Status:
    schema: str
    current_version: str | None
    active: MigrationStatus | None
    migrations: list[MigrationStatus]
    clients: list[Client]
    unidentified_clients: list[tuple[int, str]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "currentVersion": self.current_version,
            "active": self.active.as_dict() if self.active else None,
            "migrations": [m.as_dict() for m in self.migrations],
            "clients": [
                {"app": c.app, "version": c.version, "instance": c.instance, "pid": c.pid, "state": c.state}
                for c in self.clients
            ],
            "unidentifiedClients": [{"pid": p, "applicationName": a} for p, a in self.unidentified_clients],
        }
