"""Schema gating of rollouts: may code written for schema version M run now? Pure.

A revision whose template declares ``requiresSchema: M`` needs the schema version of migration M: the
views (PostgreSQL) or columns (SQLite) that ``gapless migrate start M`` creates. The database moves
through these states, and so does the answer:

- M not started, starting (expand and backfill under way), rolling back or rolled back: code for M
  cannot run yet (or any more). The controller holds such a revision: it starts no instance of it and
  says why.
- M started, completing or completed: code for M runs.
- A later migration N completing or completed: ``complete`` drops every version but N's, so code for M
  (M < N; migration names sort in the order they are applied) cannot run again. That is the point after
  which an app rollback to a revision needing M is impossible: ``rollback_barrier`` names it.

Revisions that declare no ``requiresSchema`` are never judged: gapless cannot know what they need.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "MigrationPhase",
    "MigrationState",
    "SchemaSnapshot",
    "describe_unrunnable",
    "rollback_barrier",
    "schema_gate",
    "schema_gone",
]

MigrationPhase = Literal["starting", "started", "completing", "completed", "rolling_back", "rolled_back"]

SERVING: frozenset[str] = frozenset({"started", "completing", "completed"})
"""Phases in which the migration's own schema version is served."""

CONTRACTING: frozenset[str] = frozenset({"completing", "completed"})
"""Phases after which only the migration's own schema version is left."""


@dataclass(frozen=True)
class MigrationState:
    """Where one migration of the database is, and since when (seconds since the epoch, if known)."""

    name: str
    phase: MigrationPhase
    since: float | None = None


@dataclass(frozen=True)
class SchemaSnapshot:
    """Every migration known to one source at one time, or why the source could not be read."""

    source: str
    migrations: tuple[MigrationState, ...] = ()
    error: str = ""

    def find(self, name: str) -> MigrationState | None:
        return next((m for m in self.migrations if m.name == name), None)


def rollback_barrier(snapshot: SchemaSnapshot) -> MigrationState | None:
    """The latest migration completed (or completing): code for any older schema version cannot run."""
    done = [m for m in snapshot.migrations if m.phase in CONTRACTING]
    return max(done, key=lambda m: m.name) if done else None


def schema_gone(required: str, snapshot: SchemaSnapshot) -> str | None:
    """Why code needing ``required`` can never run again on this database, or None if it still may."""
    barrier = rollback_barrier(snapshot)
    if barrier is None or barrier.name <= required:
        return None
    verb = "was completed" if barrier.phase == "completed" else "is completing"
    return (
        f"schema version {required} is gone: migration {barrier.name} {verb}, which removes every older "
        "schema version"
    )


def schema_gate(required: str, snapshot: SchemaSnapshot) -> str | None:
    """None when code written for schema version ``required`` can run now; otherwise why it cannot."""
    if snapshot.error:
        return f"cannot tell whether migration {required} has started: {snapshot.source}: {snapshot.error}"
    gone = schema_gone(required, snapshot)
    if gone is not None:
        return gone
    state = snapshot.find(required)
    if state is None:
        return (
            f"migration {required} has not started ({snapshot.source}); run `gapless migrate start` "
            "with its file first"
        )
    if state.phase in SERVING:
        return None
    if state.phase == "starting":
        return (
            f"migration {required} is starting (expand and backfill under way); waiting until it has started"
        )
    return f"migration {required} was rolled back ({state.phase}); start it again first"


def describe_unrunnable(revisions: Iterable[tuple[int, str]], snapshot: SchemaSnapshot) -> list[str]:
    """For (number, required schema) pairs: one line per revision that can no longer run."""
    out = []
    for number, required in revisions:
        gone = schema_gone(required, snapshot)
        if gone is not None:
            out.append(f"revision {number} ({gone})")
    return out
