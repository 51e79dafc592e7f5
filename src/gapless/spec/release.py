"""The ``Release`` document: one ordered plan across schema, application and flags.

A release names what a change needs in the order it must happen: ``migrate`` (expand and backfill a
migration file against a named database), ``rollout`` (apply a Rollout file: its own strategy, steps
and analysis run inside the step), ``flag`` (turn a flag on or off, or move its staged release in an
environment), ``verify`` (an analysis run or an exec/httpGet check), ``wait`` (a monitoring window),
``approve`` (a manual gate, passed by ``gapless release promote``) and ``complete`` (contract a
migration: the point after which the old schema is gone). Each step may carry ``analysis`` that runs
while it runs and over its monitoring window, and ``onFailure``: ``rollback`` (default: undo what the
release did, newest first) or ``pause``.

The model checks each step's shape; ``gapless.strategies.release`` checks the order (what needs what)
and decides, purely, what runs next and what a rollback undoes.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from gapless.spec.base import SpecModel, field_error
from gapless.spec.models import DnsLabel, Metadata
from gapless.spec.strategy import Duration, ExecCheck, HTTPCheck, RolloutAnalysis, duplicates

__all__ = [
    "STEP_KINDS",
    "ApproveStep",
    "CompleteStep",
    "Database",
    "FlagStep",
    "MigrateStep",
    "Release",
    "ReleaseSpec",
    "ReleaseStep",
    "RolloutStep",
    "VerifyStep",
    "WaitStep",
    "sqlite_schema_problem",
]

STEP_KINDS = ("migrate", "rollout", "flag", "verify", "wait", "approve", "complete")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_env_name(value: str) -> str:
    if not _ENV_RE.match(value):
        raise ValueError("must be an environment variable name (letters, digits, '_')")
    return value


Name = DnsLabel
EnvName = Annotated[str, AfterValidator(_check_env_name)]
RelativePath = Annotated[str, Field(min_length=1, max_length=4096)]


class Database(SpecModel):
    """Where a migration runs: a URL, or the environment variable holding it (keeps secrets out of files).

    ``urlFromEnv`` is read from the control plane's environment (``gapless up``'s), so the URL is never
    stored. ``schema`` is the schema migrated (``gapless migrate --schema``).
    """

    url: str | None = Field(default=None, min_length=1)
    url_from_env: EnvName | None = None
    schema_: Annotated[str, Field(min_length=1, max_length=63, alias="schema")] = "public"

    @model_validator(mode="after")
    def _one(self) -> Database:
        if (self.url is None) == (self.url_from_env is None):
            raise ValueError("a database needs exactly one of url, urlFromEnv")
        if self.url is not None:
            why = sqlite_schema_problem(self.url, self.schema_)
            if why is not None:
                raise ValueError(why)
        return self


def sqlite_schema_problem(url: str, schema: str) -> str | None:
    """Why ``schema`` cannot go with ``url`` (SQLite has no schemas), or None."""
    if url.startswith("sqlite:") and schema != "public":
        return f"schema {schema!r}: a SQLite database has no schemas (leave schema out)"
    return None


class MigrateStep(SpecModel):
    """Start (expand and backfill) the migration in ``file`` on ``database`` (a name in ``spec.databases``).

    ``batchSize`` and ``batchDelay`` pace the backfill as ``gapless migrate start``'s options do.
    """

    file: RelativePath
    database: Name
    batch_size: int = Field(default=1000, ge=1, le=1_000_000)
    batch_delay: Duration = Field(default=0.0, ge=0, le=60)


class CompleteStep(SpecModel):
    """Complete (contract) migration ``migration`` on ``database``: after it, its old schema is gone."""

    migration: Annotated[str, Field(min_length=1, max_length=63)]
    database: Name


class RolloutStep(SpecModel):
    """Apply the Rollout in ``file``; the step succeeds when that revision is fully rolled out."""

    file: RelativePath


class FlagStep(SpecModel):
    """Set a flag in an environment: ``enabled`` on or off, or its staged release to ``stage`` (or the next)."""

    project: Annotated[str, Field(min_length=1, max_length=100)]
    flag: Annotated[str, Field(min_length=1, max_length=100)]
    environment: Annotated[str, Field(min_length=1, max_length=100)]
    enabled: bool | None = None
    stage: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    advance: bool | None = None

    @model_validator(mode="after")
    def _one(self) -> FlagStep:
        chosen = [k for k in ("enabled", "stage", "advance") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("a flag step needs exactly one of enabled, stage, advance")
        if self.advance is False:
            raise field_error("advance", "must be true (leave it out to not advance)")
        return self


class VerifyStep(SpecModel):
    """A check that must pass: an analysis run, a program (exit 0) or an HTTP GET against ``url``."""

    analysis: RolloutAnalysis | None = None
    exec: ExecCheck | None = None
    http_get: HTTPCheck | None = None
    url: str | None = Field(default=None, min_length=1)
    timeout_seconds: float = Field(default=60, gt=0, le=86400, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one(self) -> VerifyStep:
        if sum(x is not None for x in (self.analysis, self.exec, self.http_get)) != 1:
            raise ValueError("a verify step needs exactly one of analysis, exec, httpGet")
        if self.http_get is not None and self.url is None:
            raise field_error("url", "an httpGet check needs the base url to send it to")
        return self


class WaitStep(SpecModel):
    """A monitoring window: the release stays here ``duration`` (the step's analysis runs over it)."""

    duration: Duration


class ApproveStep(SpecModel):
    """A manual gate: ``gapless release promote NAME`` passes it."""

    message: Annotated[str, Field(max_length=1000)] = ""


class ReleaseStep(SpecModel):
    """One step: exactly one kind, an optional name, analysis and failure policy."""

    name: Name | None = None
    migrate: MigrateStep | None = None
    rollout: RolloutStep | None = None
    flag: FlagStep | None = None
    verify: VerifyStep | None = None
    wait: WaitStep | None = None
    approve: ApproveStep | None = None
    complete: CompleteStep | None = None
    analysis: RolloutAnalysis | None = None
    on_failure: Literal["rollback", "pause"] = "rollback"

    @model_validator(mode="after")
    def _one(self) -> ReleaseStep:
        kinds = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"a step needs exactly one of {', '.join(STEP_KINDS)} (got {', '.join(kinds) or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)

    @property
    def body(self) -> Any:
        return getattr(self, self.kind)


class ReleaseSpec(SpecModel):
    databases: dict[Name, Database] = Field(default_factory=dict)
    steps: Annotated[list[ReleaseStep], Field(min_length=1, max_length=200)]

    @model_validator(mode="after")
    def _references(self) -> ReleaseSpec:
        names = [s.name or "" for s in self.steps]
        if dup := [d for d in duplicates(names) if d[1]]:
            i, name = dup[0]
            raise field_error(f"steps.{i}.name", f"step name '{name}' is used twice")
        for i, step in enumerate(self.steps):
            body = step.body
            database = getattr(body, "database", None)
            if database is not None and database not in self.databases:
                raise field_error(
                    f"steps.{i}.{step.kind}.database",
                    f"names no database of spec.databases ({', '.join(sorted(self.databases)) or 'none is declared'})",
                )
        return self


class Release(SpecModel):
    """A whole Release document."""

    api_version: Literal["gapless.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Release"]
    metadata: Metadata
    spec: ReleaseSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    def step_label(self, index: int) -> str:
        """``steps.3 (expand)`` or ``steps.3 (migrate)``: how messages name a step."""
        step = self.spec.steps[index]
        return f"steps.{index} ({step.name or step.kind})"
