"""A plan as data: steps with their phase, lock and the application versions each state serves.

Also the names gapless gives to what it creates (version schemas, constraints, trigger functions), so
that planning, the engine and the docs agree on them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from gapless.migrations.actions import Action
from gapless.migrations.lint import Finding
from gapless.migrations.shape import TableShape

__all__ = [
    "BOTH",
    "NEW",
    "OLD",
    "OperationFinding",
    "Phase",
    "PhasedSteps",
    "Plan",
    "Serves",
    "Step",
    "StepView",
    "constraint_name",
    "is_constant",
    "step_dict",
    "trigger_function_name",
    "version_schema_name",
]

Phase = Literal["start", "complete", "rollback"]
Serves = tuple[str, ...]
OLD: Serves = ("old",)
BOTH: Serves = ("old", "new")
NEW: Serves = ("new",)

_CONSTANT_RE = re.compile(
    r"""^\s*(?:
        [-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?     # number
      | '(?:[^']|'')*'                           # string
      | true | false | null
    )\s*(?:::\s*[A-Za-z_][A-Za-z0-9_ ]*(?:\(\s*\d+\s*(?:,\s*\d+\s*)?\))?(?:\[\])*)?\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


def is_constant(expression: str) -> bool:
    """Whether a default is a literal (optionally cast): PostgreSQL 11+ stores it without rewriting."""
    return bool(_CONSTANT_RE.match(expression))


def version_schema_name(prefix: str, migration: str) -> str:
    """The schema of views through which code written for ``migration`` sees the database."""
    return f"{prefix}_{migration}"


def _short(name: str, limit: int = 63) -> str:
    if len(name.encode()) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name.encode()[: limit - 9].decode(errors='ignore')}_{digest}"


def constraint_name(table: str, column: str, suffix: str) -> str:
    """PostgreSQL's own naming convention (``users_email_key``), shortened with a digest past 63 bytes."""
    return _short(f"{table}_{column}_{suffix}")


def trigger_function_name(migration: str, table: str) -> str:
    """The sync trigger function of one table in one migration (in the state schema)."""
    digest = hashlib.sha256(f"{migration}\0{table}".encode()).hexdigest()[:12]
    return _short(f"sync_{table}_{digest}")


class StepView(Protocol):
    """A step of either engine's plan, as the CLI and ``as_dict`` read it."""

    @property
    def phase(self) -> Phase: ...
    @property
    def operation(self) -> int | None: ...
    @property
    def serves(self) -> Serves: ...
    @property
    def reversible(self) -> bool: ...
    @property
    def lock(self) -> str: ...
    @property
    def duration(self) -> str: ...
    @property
    def rewrites(self) -> bool: ...
    def describe(self) -> str: ...


def step_dict(step: StepView, estimate: dict[str, object] | None = None) -> dict[str, object]:
    """A step as JSON, the same keys for both engines; ``estimate``: the engine's own keys, after ``duration``."""
    return {
        "phase": step.phase,
        "operation": step.operation,
        "step": step.describe(),
        "lock": step.lock,
        "duration": step.duration,
        **(estimate or {}),
        "rewrites": step.rewrites,
        "serves": list(step.serves),
        "reversible": step.reversible,
    }


S = TypeVar("S", bound=StepView)


class PhasedSteps(Generic[S]):
    """What the plans of both engines share: their steps by phase, and where rollback stops being possible."""

    steps: tuple[S, ...]

    def phase(self, phase: Phase) -> list[S]:
        return [s for s in self.steps if s.phase == phase]

    @property
    def point_of_no_return(self) -> int:
        """Index of the first complete step after which rollback is impossible."""
        for i, s in enumerate(self.phase("complete")):
            if not s.reversible:
                return i
        return len(self.phase("complete"))


@dataclass(frozen=True)
class Step:
    """One step of a plan: an action, the phase it belongs to, and what it means for the application."""

    phase: Phase
    action: Action
    operation: int | None
    """Index of the operation in the migration file that asked for it (None: gapless's own steps)."""
    serves: Serves
    """Which application versions can run once this step is done."""
    reversible: bool = True

    @property
    def lock(self) -> str:
        return self.action.lock

    @property
    def rewrites(self) -> bool:
        return self.action.rewrites

    @property
    def duration(self) -> str:
        return self.action.duration

    def describe(self) -> str:
        return self.action.describe()

    def as_dict(self) -> dict[str, object]:
        return step_dict(self)


@dataclass(frozen=True)
class OperationFinding:
    """A lint finding in the SQL of one ``sql`` operation."""

    operation: int
    finding: Finding
    ignored: bool

    @property
    def path(self) -> str:
        return f"operations.{self.operation}.sql.up"


@dataclass(frozen=True)
class Plan(PhasedSteps[Step]):
    """The whole lifecycle of one migration, as data."""

    migration: str
    schema: str
    version_schema: str
    previous_schema: str | None
    """The old version's schema of views; None when the old version uses the base schema directly."""
    steps: tuple[Step, ...]
    shapes: tuple[TableShape, ...]
    findings: tuple[OperationFinding, ...] = ()

    @property
    def blocking_findings(self) -> list[OperationFinding]:
        """Lint errors not acknowledged by ``ignore_lint``: start refuses while there are any."""
        return [f for f in self.findings if f.finding.severity == "error" and not f.ignored]

    def states(self) -> list[tuple[str, Serves]]:
        """Which versions each state of the lifecycle serves."""
        old = self.previous_schema or self.schema
        return [
            (f"before start: the old version uses {old}", OLD),
            (f"after start: the old version uses {old}, the new version uses {self.version_schema}", BOTH),
            (f"after complete: the new version uses {self.version_schema}", NEW),
            (f"after rollback: the old version uses {old}", OLD),
        ]
