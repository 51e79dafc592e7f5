"""The flag model: projects, environments, flags, segments, rules, release plans; and the ruleset export.

These are the documents the flag service stores and its API accepts (camelCase, unknown fields refused,
every problem named by its path such as ``environments.production.rules[2].conditions[0].operator``).
SDKs never see them: the service compiles one environment of a project into a *ruleset*
(``ruleset_for``), a plain JSON document that :mod:`gapless.flags.evaluate` reads, so the model can grow
(descriptions, owners, release plans, timestamps) without SDKs changing.

Conditions are checked by the same code that compiles them in SDKs (``operators.parse_condition``), so
a flag the service accepts is a flag every SDK of this format evaluates.

A release plan replaces nothing at evaluation time: the ruleset of an environment with a plan has the
environment's own rules, then the current stage's rules, then the stage's rollout (or, if the stage has
none, the environment's default rollout). A stage says everything served at that stage, so advancing
one stage is one audited change whose before and after read as the whole difference, and going back a
stage is exact.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, Strict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from gapless.core.errors import NotFoundError, Problem, SpecError
from gapless.flags.bucketing import BUCKETS
from gapless.flags.evaluate import FORMAT_VERSION, kind_accepts
from gapless.flags.operators import ConditionError, check_fallback, parse_condition
from gapless.spec.base import SpecModel, field_error, parse_duration

__all__ = [
    "EXPECTED_LIFETIME_DAYS",
    "Condition",
    "Flag",
    "FlagEnvironment",
    "FlagType",
    "Kind",
    "Project",
    "ReleasePlan",
    "ReleaseStage",
    "Rollout",
    "Rule",
    "Segment",
    "Split",
    "Variant",
    "WeightedVariant",
    "parse_flag",
    "parse_project",
    "problems_from_validation",
    "reference_problems",
    "ruleset_for",
]

FlagType = Literal["release", "experiment", "operational", "kill-switch", "permission"]
Kind = Literal["boolean", "string", "number", "json"]

EXPECTED_LIFETIME_DAYS: dict[str, int | None] = {
    "release": 40,
    "experiment": 40,
    "operational": 7,
    "kill-switch": None,
    "permission": None,
}
"""How long a flag of each type is expected to live; None is permanent (stale-flag reports use it)."""

_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_VARIANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_KEY_LENGTH = 128


def _check_key(value: str) -> str:
    if len(value) > MAX_KEY_LENGTH or not _KEY_RE.match(value):
        raise ValueError(
            f"must be at most {MAX_KEY_LENGTH} lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def _check_variant_key(value: str) -> str:
    if len(value) > MAX_KEY_LENGTH or not _VARIANT_RE.match(value):
        raise ValueError(
            f"must be at most {MAX_KEY_LENGTH} letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


Key = Annotated[str, AfterValidator(_check_key)]
VariantKey = Annotated[str, AfterValidator(_check_variant_key)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Weight = Annotated[int, Field(ge=0, le=BUCKETS, strict=True)]
Timestamp = Annotated[datetime, Strict(False)]
"""An ISO 8601 time as JSON gives it (a string); the models are otherwise strict about types."""


class Condition(SpecModel):
    """A test of one context attribute (or, with ``inSegment``, of segments); see ``docs/flags.md``."""

    attribute: str | None = None
    operator: str
    value: Any = None
    values: list[Any] | None = None
    negate: bool = False
    case_insensitive: bool = False
    salt: str | None = None
    """For ``inRollout``: the bucketing salt (default: the flag key; required in segments)."""
    bucketing: Literal["gapless", "unleash"] | None = None
    """For ``inRollout``: ``unleash`` buckets as Unleash's SDKs do (whole percent; see bucketing)."""
    fallback: list[str] | None = None
    """For ``inRollout``: attributes tried after ``attribute`` (``random`` last, as Unleash's)."""

    @model_validator(mode="after")
    def _check(self) -> Condition:
        try:
            parse_condition(
                operator=self.operator,
                attribute=self.attribute,
                value=self.value,
                values=self.values,
                negate=self.negate,
                case_insensitive=self.case_insensitive,
                salt=self.salt,
                bucketing=self.bucketing,
                fallback=self.fallback,
            )
        except ConditionError as e:
            raise field_error(e.field, e.message) from None
        return self


class VariantPayload(SpecModel):
    """An Unleash variant payload: its type and its value, as text."""

    type: Literal["string", "json", "csv", "number"]
    value: Annotated[str, Field(max_length=64 * 1024)]


class Variant(SpecModel):
    """A named value of a flag; the value must be of the flag's kind."""

    key: VariantKey
    value: Any
    description: str = ""
    payload: VariantPayload | None = None
    """Unleash's variant payload, served as it is to Unleash's SDKs (gapless's own SDKs read ``value``)."""


class WeightedVariant(SpecModel):
    variant: str
    weight: Weight
    """In buckets of 0.001%: 25000 is 25%."""


class Split(SpecModel):
    """A percentage split; weights sum to 100,000. Ranges follow the flag's variant order, not this list's."""

    weights: Annotated[list[WeightedVariant], Field(min_length=1)]
    stickiness: Annotated[str, Field(min_length=1)] = "targetingKey"
    salt: str | None = None
    """Bucketing salt; default the flag key. Flags with one salt put a context in the same bucket."""
    bucketing: Literal["gapless", "unleash"] | None = None
    """``unleash``: as Unleash's variants (seed 86028157, modulo the weights' sum, which may be any
    positive total, such as Unleash's 1000)."""
    fallback: list[str] | None = None
    """With ``unleash`` bucketing: attributes tried after ``stickiness`` (``random`` last)."""

    @model_validator(mode="after")
    def _check(self) -> Split:
        seen: set[str] = set()
        for i, w in enumerate(self.weights):
            if w.variant in seen:
                raise field_error(f"weights[{i}].variant", f"variant {w.variant!r} appears twice")
            seen.add(w.variant)
        total = sum(w.weight for w in self.weights)
        if self.bucketing == "unleash":
            if total <= 0:
                raise field_error("weights", "must sum to more than 0")
        elif total != BUCKETS:
            raise field_error("weights", f"must sum to {BUCKETS:,} (100%), not {total:,}")
        if self.fallback is not None and self.bucketing != "unleash":
            raise field_error("fallback", "applies to splits with bucketing: unleash")
        if self.fallback is not None:
            try:
                check_fallback(self.fallback, "unleash")
            except ConditionError as e:
                raise field_error(e.field, e.message) from None
        return self


def _exactly_one_serve(variant: str | None, split: Split | None) -> None:
    if (variant is None) == (split is None):
        raise field_error("", "give exactly one of `variant` and `split`")


class Rollout(SpecModel):
    """What is served when no rule matches: one variant, or a split."""

    variant: str | None = None
    split: Split | None = None

    @model_validator(mode="after")
    def _check(self) -> Rollout:
        _exactly_one_serve(self.variant, self.split)
        return self


class Rule(SpecModel):
    """Conditions (all must hold; none means everyone) and what a match serves."""

    description: str = ""
    conditions: list[Condition] = Field(default_factory=list)
    variant: str | None = None
    split: Split | None = None

    @model_validator(mode="after")
    def _check(self) -> Rule:
        _exactly_one_serve(self.variant, self.split)
        return self


class ReleaseStage(SpecModel):
    """One stage of a release plan: its rules and rollout, and how long to watch it before advancing."""

    name: Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH)]
    rules: list[Rule] = Field(default_factory=list)
    rollout: Rollout | None = None
    monitoring_window: Duration | None = None
    """Seconds (or ``30m``, ``1h``) the stage must stay healthy before an automatic advance."""


class ReleasePlan(SpecModel):
    """Ordered stages such as internal -> beta -> 1% -> 100%, and the one in force."""

    stages: Annotated[list[ReleaseStage], Field(min_length=1)]
    current_stage: Annotated[int, Field(ge=0)] = 0
    stage_started_at: Timestamp | None = None

    @model_validator(mode="after")
    def _check(self) -> ReleasePlan:
        if self.current_stage >= len(self.stages):
            raise field_error("currentStage", f"must be below the number of stages ({len(self.stages)})")
        names = [s.name for s in self.stages]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise field_error(f"stages[{i}].name", f"duplicate stage {name!r}")
        return self

    @property
    def stage(self) -> ReleaseStage:
        return self.stages[self.current_stage]


class FlagEnvironment(SpecModel):
    """A flag in one environment. ``enabled: false`` is the kill switch: everyone gets the off variant."""

    enabled: bool = False
    rules: list[Rule] = Field(default_factory=list)
    default_rollout: Rollout | None = None
    """None serves the off variant."""
    release_plan: ReleasePlan | None = None
    updated_at: Timestamp | None = None

    def effective_rules(self) -> list[Rule]:
        """The rules evaluated, in order: the environment's, then the current release stage's."""
        return self.rules + (self.release_plan.stage.rules if self.release_plan else [])

    def effective_rollout(self) -> Rollout | None:
        if self.release_plan and self.release_plan.stage.rollout is not None:
            return self.release_plan.stage.rollout
        return self.default_rollout


_BOOLEAN_VARIANTS = [{"key": "on", "value": True}, {"key": "off", "value": False}]


def _problems_error(problems: list[tuple[str, str]]) -> PydanticCustomError:
    """Several problems found by one model validator, each with its path below the model."""
    summary = "; ".join(f"{p}: {m}" for p, m in problems)
    return PydanticCustomError("gapless_problems", "{summary}", {"summary": summary, "problems": problems})


class Flag(SpecModel):
    """A feature flag: its values (variants) and, per environment, who gets which."""

    key: Key
    description: str = ""
    owner: str = ""
    flag_type: FlagType = Field("release", alias="type")
    kind: Kind = "boolean"
    variants: Annotated[list[Variant], Field(min_length=1)]
    off_variant: str
    environments: dict[str, FlagEnvironment] = Field(default_factory=dict)
    archived: bool = False
    impression_data: bool = False
    """Unleash's impression data: Unleash SDKs emit an impression event for each evaluation."""
    tags: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}:[^\s]{1,128}$")]] = Field(
        default_factory=list
    )
    """``type:value`` labels (Unleash's tags; the Unleash client API filters on them)."""
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None

    @model_validator(mode="before")
    @classmethod
    def _boolean_defaults(cls, data: Any) -> Any:
        """A boolean flag without variants gets ``on: true`` and ``off: false``, off being the off variant."""
        if isinstance(data, Mapping) and data.get("kind", "boolean") == "boolean" and "variants" not in data:
            data = {**data, "variants": _BOOLEAN_VARIANTS}
            if "offVariant" not in data and "off_variant" not in data:
                data["offVariant"] = "off"
        return data

    @model_validator(mode="after")
    def _check(self) -> Flag:
        problems = list(self._problems())
        if problems:
            raise _problems_error(problems)
        return self

    def _problems(self) -> Iterator[tuple[str, str]]:
        names: list[str] = []
        for i, v in enumerate(self.variants):
            if v.key in names:
                yield f"variants[{i}].key", f"duplicate variant {v.key!r}"
            names.append(v.key)
            if not kind_accepts(self.kind, v.value):
                yield (
                    f"variants[{i}].value",
                    f"must be a {self.kind} value, as the flag's kind, not {v.value!r:.60}",
                )
        known = set(names)
        if self.off_variant not in known:
            yield "offVariant", f"unknown variant {self.off_variant!r}"
        for env, fe in self.environments.items():
            base = f"environments.{env}"
            yield from _serve_problems(fe.rules, fe.default_rollout, base, "defaultRollout", known)
            if fe.release_plan is not None:
                for s, stage in enumerate(fe.release_plan.stages):
                    yield from _serve_problems(
                        stage.rules, stage.rollout, f"{base}.releasePlan.stages[{s}]", "rollout", known
                    )

    @property
    def expected_lifetime_days(self) -> int | None:
        return EXPECTED_LIFETIME_DAYS[self.flag_type]

    def conditions(self) -> Iterator[tuple[str, Condition]]:
        """Every condition of the flag with its path (for reference checks)."""
        for env, fe in self.environments.items():
            base = f"environments.{env}"
            yield from _rule_conditions(fe.rules, f"{base}.rules")
            if fe.release_plan is not None:
                for s, stage in enumerate(fe.release_plan.stages):
                    yield from _rule_conditions(stage.rules, f"{base}.releasePlan.stages[{s}].rules")


def _rule_conditions(rules: list[Rule], path: str) -> Iterator[tuple[str, Condition]]:
    for r, rule in enumerate(rules):
        for c, cond in enumerate(rule.conditions):
            yield f"{path}[{r}].conditions[{c}]", cond


def _serve_problems(
    rules: list[Rule], rollout: Rollout | None, base: str, rollout_field: str, known: set[str]
) -> Iterator[tuple[str, str]]:
    for r, rule in enumerate(rules):
        yield from _target_problems(rule.variant, rule.split, f"{base}.rules[{r}]", known)
    if rollout is not None:
        yield from _target_problems(rollout.variant, rollout.split, f"{base}.{rollout_field}", known)


def _target_problems(
    variant: str | None, split: Split | None, path: str, known: set[str]
) -> Iterator[tuple[str, str]]:
    if variant is not None and variant not in known:
        yield f"{path}.variant", f"unknown variant {variant!r}"
    if split is not None:
        for w, weighted in enumerate(split.weights):
            if weighted.variant not in known:
                yield f"{path}.split.weights[{w}].variant", f"unknown variant {weighted.variant!r}"


class Segment(SpecModel):
    """A reusable set of conditions (all must hold), such as ``internal`` or ``beta``."""

    key: Key
    description: str = ""
    conditions: list[Condition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Segment:
        problems: list[tuple[str, str]] = []
        for c, cond in enumerate(self.conditions):
            if cond.operator == "inSegment":
                problems.append((f"conditions[{c}].operator", "a segment cannot refer to other segments"))
            if cond.operator == "inRollout" and cond.salt is None:
                problems.append((f"conditions[{c}].salt", "is required for inRollout in a segment"))
        if problems:
            raise _problems_error(problems)
        return self


def _check_environment(value: str) -> str:
    if len(value) > 63 or not _KEY_RE.match(value):
        raise ValueError("must be at most 63 lowercase letters, digits, '.', '_' or '-'")
    return value


EnvironmentName = Annotated[str, AfterValidator(_check_environment)]


class Project(SpecModel):
    """Flags and segments shared by a set of environments (such as development, staging, production)."""

    key: Key
    description: str = ""
    environments: Annotated[list[EnvironmentName], Field(min_length=1)]
    segments: list[Segment] = Field(default_factory=list)
    flags: list[Flag] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Project:
        problems: list[tuple[str, str]] = []
        for field, keys in (
            ("environments", self.environments),
            ("segments", [s.key for s in self.segments]),
            ("flags", [f.key for f in self.flags]),
        ):
            for i, key in enumerate(keys):
                if key in keys[:i]:
                    problems.append(
                        (
                            f"{field}[{i}]" + ("" if field == "environments" else ".key"),
                            f"duplicate key {key!r}",
                        )
                    )
        segments = {s.key for s in self.segments}
        for i, flag in enumerate(self.flags):
            problems.extend(
                (f"flags[{i}].{p}", m) for p, m in reference_problems(flag, self.environments, segments)
            )
        if problems:
            raise _problems_error(problems)
        return self

    def flag(self, key: str) -> Flag:
        for f in self.flags:
            if f.key == key:
                return f
        raise NotFoundError(f"no flag {key!r} in project {self.key!r}")


def reference_problems(flag: Flag, environments: list[str], segments: set[str]) -> list[tuple[str, str]]:
    """A flag's references outside itself: environments of the project, and segments that exist."""
    problems: list[tuple[str, str]] = [
        (f"environments.{env}", f"unknown environment {env!r}; the project has {', '.join(environments)}")
        for env in flag.environments
        if env not in environments
    ]
    for path, cond in flag.conditions():
        if cond.operator == "inSegment":
            for v, key in enumerate(cond.values or []):
                if key not in segments:
                    problems.append((f"{path}.values[{v}]", f"unknown segment {key!r}"))
        if cond.operator == "flagVariant" and cond.attribute == flag.key:
            problems.append((f"{path}.attribute", "a flag cannot depend on itself"))
    return problems


# --- parsing with paths ----------------------------------------------------------------------------

_INTERNAL_TAG = re.compile(r"^(function-[a-z]+\[.*\]|[a-z]+\[.*\]|int|str|float|bool|dict|list)$")


def _path(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part:
            out += f".{part}" if out else part
    return out


def _join(base: str, rest: str) -> str:
    if not rest:
        return base
    if not base:
        return rest
    return base + rest if rest.startswith("[") else f"{base}.{rest}"


def problems_from_validation(error: ValidationError) -> list[Problem]:
    """Every problem of a validation error, each with its path in ``a.b[2].c`` form."""
    problems: list[Problem] = []
    for err in error.errors(include_url=False):
        loc: list[str | int] = [x for x in err["loc"] if isinstance(x, int) or not _INTERNAL_TAG.match(x)]
        base = _path(loc)
        ctx = err.get("ctx") or {}
        if err["type"] == "gapless_problems":
            problems.extend(Problem(_join(base, p), m) for p, m in ctx["problems"])
            continue
        message = err["msg"]
        if err["type"] == "gapless_field":
            base = _join(base, str(ctx["field"]))
        elif err["type"] == "missing":
            message = "is required"
        elif err["type"] == "extra_forbidden":
            message = "unknown field"
        elif err["type"] == "literal_error":
            message = f"must be {ctx.get('expected', 'one of the allowed values')}"
        problems.append(Problem(base, message.removeprefix("Value error, ")))
    return problems


def parse_project(data: Any, *, source: str = "project") -> Project:
    """Validate a project document; ``SpecError`` lists every problem with its path."""
    if not isinstance(data, Mapping):
        raise SpecError(source, [Problem("", "expected an object")])
    try:
        return Project.model_validate(data)
    except ValidationError as e:
        raise SpecError(source, problems_from_validation(e)) from e


def parse_flag(data: Any, *, project: Project | None = None, source: str = "flag") -> Flag:
    """Validate a flag document, and with ``project`` its environments and segment references."""
    if not isinstance(data, Mapping):
        raise SpecError(source, [Problem("", "expected an object")])
    try:
        flag = Flag.model_validate(data)
    except ValidationError as e:
        raise SpecError(source, problems_from_validation(e)) from e
    if project is not None:
        found = reference_problems(flag, project.environments, {s.key for s in project.segments})
        if found:
            raise SpecError(source, [Problem(p, m) for p, m in found])
    return flag


# --- the ruleset: what SDKs get ------------------------------------------------------------------


def _condition_json(cond: Condition, salt: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"operator": cond.operator}
    if cond.attribute is not None:
        out["attribute"] = cond.attribute
    if cond.values is not None:
        out["values"] = list(cond.values)
    if cond.value is not None:
        out["value"] = cond.value
    if cond.negate:
        out["negate"] = True
    if cond.case_insensitive:
        out["caseInsensitive"] = True
    if cond.operator == "inRollout":
        out["salt"] = cond.salt if cond.salt is not None else salt
    if cond.bucketing is not None:
        out["bucketing"] = cond.bucketing
    if cond.fallback is not None:
        out["fallback"] = list(cond.fallback)
    return out


def _serve_json(variant: str | None, split: Split | None, flag: Flag) -> dict[str, Any]:
    if split is None:
        return {"variant": variant}
    weights = {w.variant: w.weight for w in split.weights}
    return {
        "split": {
            # Ranges are cumulative in the flag's variant order, whatever order the split was written in.
            "weights": [
                {"variant": v.key, "weight": weights[v.key]} for v in flag.variants if v.key in weights
            ],
            "stickiness": split.stickiness,
            "salt": split.salt if split.salt is not None else flag.key,
        }
        | ({"bucketing": split.bucketing} if split.bucketing is not None else {})
        | ({"fallback": list(split.fallback)} if split.fallback is not None else {})
    }


def _flag_json(flag: Flag, environment: str) -> dict[str, Any]:
    fe = flag.environments.get(environment) or FlagEnvironment()
    rollout = fe.effective_rollout()
    out: dict[str, Any] = {
        "kind": flag.kind,
        "type": flag.flag_type,
        "variants": [
            {"key": v.key, "value": v.value}
            | ({"payload": v.payload.model_dump()} if v.payload is not None else {})
            for v in flag.variants
        ],
        "offVariant": flag.off_variant,
        "enabled": fe.enabled,
        "rules": [
            {
                "conditions": [_condition_json(c, flag.key) for c in rule.conditions],
                **_serve_json(rule.variant, rule.split, flag),
            }
            for rule in fe.effective_rules()
        ],
        "defaultRollout": _serve_json(rollout.variant, rollout.split, flag)
        if rollout is not None
        else {"variant": flag.off_variant},
    }
    if fe.release_plan is not None:
        out["stage"] = {"index": fe.release_plan.current_stage, "name": fe.release_plan.stage.name}
    if flag.impression_data:
        out["impressionData"] = True
    if flag.tags:
        out["tags"] = list(flag.tags)
    return out


def ruleset_for(project: Project, environment: str, revision: int) -> dict[str, Any]:
    """One environment of a project as the ruleset SDKs evaluate: plain JSON-able data.

    Archived flags are left out (SDKs answer FLAG_NOT_FOUND); a flag without a configuration for the
    environment is disabled there. ``revision`` is the service's change counter for the environment.
    """
    if environment not in project.environments:
        raise NotFoundError(f"no environment {environment!r} in project {project.key!r}")
    return {
        "formatVersion": FORMAT_VERSION,
        "project": project.key,
        "environment": environment,
        "revision": revision,
        "segments": {
            s.key: {"conditions": [_condition_json(c, None) for c in s.conditions]} for s in project.segments
        },
        "flags": {f.key: _flag_json(f, environment) for f in project.flags if not f.archived},
    }
