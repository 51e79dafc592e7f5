"""Flag evaluation: compile a ruleset once, then evaluate flags against contexts, never raising.

Pure logic (the standard library and mmh3): no I/O, no clock of its own, no pydantic, so the SDK that
applications import carries none of the control plane. ``compile_ruleset`` does every piece of work that
does not depend on the context (checking the structure, parsing operands, building one closure per
condition and one ``Evaluation`` per possible outcome), so ``CompiledRuleset.evaluate`` only looks up
attributes, compares and, for a split, hashes once. A result that does not depend on the caller's
default is a preallocated object: a flag with no rules costs a dict lookup and a type check.

Evaluating one flag:

1. no such flag in the ruleset: the default, ``ERROR`` / ``FLAG_NOT_FOUND``;
2. a default of another type than the flag's kind: the default, ``ERROR`` / ``TYPE_MISMATCH``;
3. a flag this SDK could not compile (an operator from a newer service, say): the default,
   ``ERROR`` / ``PARSE_ERROR``; the other flags of the ruleset are unaffected;
4. the environment is disabled (the kill switch): the off variant, ``DISABLED``;
5. the rules in order; the first whose conditions all hold serves its variant (``TARGETING_MATCH``)
   or its split (``SPLIT``), and ``rule_index`` says which rule;
6. otherwise the default rollout: its variant (``STATIC`` when the flag has no rules, else
   ``DEFAULT``) or its split (``SPLIT``).

A split buckets the context by its ``stickiness`` attribute, else by ``targetingKey``; with neither, the
evaluation is the default with ``ERROR`` / ``TARGETING_KEY_MISSING`` (a split that gives every bucket to
one variant needs no key). Any exception, from a hostile ``Mapping`` say, gives the default with
``ERROR`` / ``GENERAL``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import mmh3

from gapless.flags.bucketing import BUCKETS, split_bounds
from gapless.flags.operators import (
    OPERATORS,
    ConditionError,
    Matcher,
    ParsedCondition,
    matcher,
    parse_condition,
)

__all__ = [
    "FORMAT_VERSION",
    "KINDS",
    "CompiledRuleset",
    "ErrorCode",
    "Evaluation",
    "Reason",
    "RulesetError",
    "compile_ruleset",
    "kind_accepts",
]

FORMAT_VERSION = 1
"""The ruleset format this SDK reads; a ruleset with a higher ``formatVersion`` is refused whole."""

KINDS = ("boolean", "string", "number", "json")
DEFAULT_STICKINESS = "targetingKey"
CURRENT_TIME = "currentTime"
_MAX_MESSAGE = 300


class Reason(StrEnum):
    """Why an evaluation gave its value (OpenFeature's reasons)."""

    STATIC = "STATIC"
    TARGETING_MATCH = "TARGETING_MATCH"
    SPLIT = "SPLIT"
    DISABLED = "DISABLED"
    DEFAULT = "DEFAULT"
    ERROR = "ERROR"


class ErrorCode(StrEnum):
    """Why an evaluation failed and gave the caller's default (OpenFeature's error codes)."""

    FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
    TYPE_MISMATCH = "TYPE_MISMATCH"
    TARGETING_KEY_MISSING = "TARGETING_KEY_MISSING"
    PARSE_ERROR = "PARSE_ERROR"
    PROVIDER_NOT_READY = "PROVIDER_NOT_READY"
    GENERAL = "GENERAL"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of evaluating one flag for one context."""

    value: Any
    variant: str | None
    reason: Reason
    error_code: ErrorCode | None = None
    error_message: str | None = None
    rule_index: int | None = None
    """The index of the rule that matched (the environment's rules, then the release stage's)."""


class RulesetError(ValueError):
    """A ruleset that cannot be used at all, or (with ``strict=True``) one with a flag that cannot."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" if path else message for path, message in problems))


class _CompileError(Exception):
    """A problem at a path while compiling; becomes a RulesetError or a broken flag."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message


_KIND_TYPES: dict[str, frozenset[type]] = {
    "boolean": frozenset({bool}),
    "string": frozenset({str}),
    "number": frozenset({int, float}),
    "json": frozenset({dict, list}),
}


def kind_accepts(kind: str, value: object) -> bool:
    """Whether ``value`` is a value of a flag of ``kind`` (booleans are not numbers; NaN is no number)."""
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return not isinstance(value, float) or math.isfinite(value)
    if kind == "json":
        return isinstance(value, dict | list)
    return False


def _copy_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


class _Split:
    """A percentage split: the bucket of the stickiness value picks one preallocated evaluation."""

    __slots__ = ("bounds", "evaluations", "fixed", "prefix", "stickiness")

    def __init__(
        self, stickiness: str, salt: str, weights: list[int], evaluations: tuple[Evaluation, ...]
    ) -> None:
        self.stickiness = stickiness
        self.prefix = f"{salt}:"
        self.bounds = split_bounds(weights)
        self.evaluations = evaluations
        owners = [e for e, w in zip(evaluations, weights, strict=True) if w > 0]
        # One variant owns every bucket: no key is needed to know the answer.
        self.fixed: Evaluation | None = owners[0] if len(owners) == 1 else None

    def pick(self, ctx: Mapping[str, Any]) -> Evaluation | None:
        if self.fixed is not None:
            return self.fixed
        v = ctx.get(self.stickiness)
        if type(v) is not str or not v:
            v = _sticky(v)
            if v is None and self.stickiness != DEFAULT_STICKINESS:
                v = _sticky(ctx.get(DEFAULT_STICKINESS))
            if v is None:
                return None
        # bucketing.bucket(salt, v), inlined: this is the hot path of every percentage rollout.
        key = self.prefix + v
        h = mmh3.hash(key if key.isascii() else key.encode("utf-8", "surrogatepass"), 0, False)
        return self.evaluations[bisect_right(self.bounds, h % BUCKETS)]


def _sticky(v: object) -> str | None:
    """A stickiness value: a non-empty string, or an integer as its decimal text."""
    if type(v) is str:
        return v or None
    if isinstance(v, int) and not isinstance(v, bool):
        try:
            return str(int(v))
        except ValueError:
            return None
    if isinstance(v, str):
        return str.__str__(v) or None
    return None


Outcome = Evaluation | _Split


def _all(matchers: tuple[Matcher, ...]) -> Matcher:
    if len(matchers) == 1:
        return matchers[0]
    if not matchers:
        return _always

    def all_of(ctx: Mapping[str, Any]) -> bool:
        for m in matchers:  # noqa: SIM110 -- all() of a generator allocates one per evaluation
            if not m(ctx):
                return False
        return True

    return all_of


def _always(ctx: Mapping[str, Any]) -> bool:
    return True


class _Flag:
    """One compiled flag. ``static`` is set when the answer never depends on the context."""

    __slots__ = (
        "accepts",
        "broken",
        "copy_values",
        "default",
        "key",
        "kind",
        "problem",
        "rules",
        "static",
        "uses_current_time",
    )

    def __init__(self, key: str, kind: str) -> None:
        self.key = key
        self.kind = kind
        self.accepts = _KIND_TYPES.get(kind, frozenset())
        self.copy_values = kind == "json"
        self.rules: tuple[tuple[Matcher, Outcome], ...] = ()
        self.default: Outcome | None = None
        self.static: Evaluation | None = None
        self.broken: str | None = None
        self.problem: tuple[str, str] | None = None
        self.uses_current_time = False

    def resolve(self, ctx: Mapping[str, Any]) -> Evaluation | None:
        for match, outcome in self.rules:
            if match(ctx):
                return outcome.pick(ctx) if isinstance(outcome, _Split) else outcome
        d = self.default
        return d.pick(ctx) if isinstance(d, _Split) else d


_EMPTY: Mapping[str, Any] = {}


def _error(default: Any, code: ErrorCode, message: str) -> Evaluation:
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return Evaluation(default, None, Reason.ERROR, code, message)


def _describe(e: Exception) -> str:
    try:
        return f"{type(e).__name__}: {e}"
    except Exception:  # an exception whose str() raises
        return type(e).__name__


class CompiledRuleset:
    """An environment's flags, compiled; immutable, so any number of threads may evaluate at once."""

    __slots__ = ("_flags", "environment", "problems", "project", "revision")

    def __init__(
        self,
        revision: int,
        flags: dict[str, _Flag],
        problems: list[tuple[str, str]],
        project: str | None = None,
        environment: str | None = None,
    ) -> None:
        self.revision = revision
        self._flags = flags
        self.problems = problems
        """Flags (and segments) that did not compile, as (path, message); those flags give PARSE_ERROR."""
        self.project = project
        self.environment = environment

    def __contains__(self, key: object) -> bool:
        return key in self._flags

    def keys(self) -> list[str]:
        """The flag keys, in ruleset order."""
        return list(self._flags)

    def kind(self, key: str) -> str | None:
        """The value kind of a flag, or None when the ruleset has no such flag."""
        flag = self._flags.get(key)
        return None if flag is None else flag.kind

    def evaluate(
        self,
        key: str,
        context: Mapping[str, Any] | None = None,
        default: Any = None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> Evaluation:
        """Evaluate flag ``key`` for ``context``; never raises.

        ``default`` is returned on every error; when it is not None its type must fit the flag's kind.
        ``clock`` (seconds since the epoch) fills ``currentTime`` for date conditions on it when the
        context has none; without it such conditions see a missing attribute.
        """
        try:
            flag = self._flags.get(key)
            if flag is None:
                return _error(
                    default, ErrorCode.FLAG_NOT_FOUND, f"no flag {key!r} in revision {self.revision}"
                )
            if flag.broken is not None:
                return _error(default, ErrorCode.PARSE_ERROR, flag.broken)
            if (
                default is not None
                and type(default) not in flag.accepts
                and not kind_accepts(flag.kind, default)
            ):
                return _error(
                    default,
                    ErrorCode.TYPE_MISMATCH,
                    f"flag {key!r} is a {flag.kind} flag; the default is a {type(default).__name__}",
                )
            result = flag.static
            if result is None:
                if context is None:
                    ctx = _EMPTY
                elif type(context) is dict or isinstance(context, Mapping):
                    ctx = context
                else:
                    return _error(
                        default,
                        ErrorCode.GENERAL,
                        f"the context must be a mapping, not {type(context).__name__}",
                    )
                if flag.uses_current_time and clock is not None and ctx.get(CURRENT_TIME) is None:
                    ctx = {**ctx, CURRENT_TIME: clock()}
                result = flag.resolve(ctx)
                if result is None:
                    return _error(
                        default,
                        ErrorCode.TARGETING_KEY_MISSING,
                        f"flag {key!r} splits by a stickiness attribute the context does not have, nor a targetingKey",
                    )
            if flag.copy_values:
                return Evaluation(
                    _copy_json(result.value), result.variant, result.reason, rule_index=result.rule_index
                )
            return result
        except Exception as e:  # a hostile context or key: the promise is an Evaluation, whatever happens
            return _error(default, ErrorCode.GENERAL, _describe(e))

    def __repr__(self) -> str:
        return f"CompiledRuleset(revision={self.revision}, flags={len(self._flags)}, problems={len(self.problems)})"


# --- compiling -------------------------------------------------------------------------------------


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _CompileError(path, f"must be an object, not {type(value).__name__}")
    return value


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _CompileError(path, f"must be a list, not {type(value).__name__}")
    return value


def _string(value: object, path: str) -> str:
    if type(value) is not str or not value:
        raise _CompileError(path, "must be a non-empty string")
    return value


def _only(raw: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
    """Refuse unknown fields where they could change what is served (conditions, rules, splits)."""
    extra = sorted(k for k in raw if k not in allowed)
    if extra:
        raise _CompileError(f"{path}.{extra[0]}", "unknown field (from a newer ruleset format?)")


_CONDITION_FIELDS = frozenset(
    {"attribute", "operator", "value", "values", "negate", "caseInsensitive", "salt"}
)
_RULE_FIELDS = frozenset({"conditions", "variant", "split"})
_SERVE_FIELDS = frozenset({"variant", "split"})
_SPLIT_FIELDS = frozenset({"weights", "stickiness", "salt"})
_WEIGHT_FIELDS = frozenset({"variant", "weight"})


class _Segment:
    __slots__ = ("broken", "matcher", "uses_current_time")

    def __init__(
        self, match: Matcher | None, broken: tuple[str, str] | None, uses_current_time: bool
    ) -> None:
        self.matcher = match
        self.broken = broken
        self.uses_current_time = uses_current_time


class _Compiler:
    """Compiles one ruleset; per-flag problems make broken flags, others raise ``_CompileError``."""

    def __init__(self, segments: dict[str, _Segment]) -> None:
        self.segments = segments
        self.uses_current_time = False

    def condition(self, raw: object, path: str, *, salt: str | None, in_segment: bool) -> Matcher:
        c = _mapping(raw, path)
        _only(c, _CONDITION_FIELDS, path)
        try:
            parsed = parse_condition(
                operator=c.get("operator"),
                attribute=c.get("attribute"),
                value=c.get("value"),
                values=c.get("values"),
                negate=c.get("negate", False),
                case_insensitive=c.get("caseInsensitive", False),
                salt=c.get("salt"),
            )
        except ConditionError as e:
            raise _CompileError(f"{path}.{e.field}" if e.field else path, e.message) from None
        if parsed.operator == "inSegment":
            if in_segment:
                raise _CompileError(f"{path}.operator", "a segment cannot refer to other segments")
            return self.in_segment(parsed, path)
        if parsed.attribute == CURRENT_TIME and OPERATORS[parsed.operator].operand == "date":
            self.uses_current_time = True
        if parsed.operator == "inRollout" and parsed.salt is None:
            if salt is None:
                raise _CompileError(f"{path}.salt", "is required for inRollout in a segment")
            parsed = ParsedCondition(
                parsed.operator,
                parsed.attribute,
                parsed.operands,
                parsed.negate,
                parsed.case_insensitive,
                salt,
            )
        return matcher(
            parsed.operator,
            parsed.attribute,
            parsed.operands,
            negate=parsed.negate,
            case_insensitive=parsed.case_insensitive,
            salt=parsed.salt or "",
        )

    def in_segment(self, parsed: ParsedCondition, path: str) -> Matcher:
        members: list[Matcher] = []
        for i, key in enumerate(parsed.operands):
            segment = self.segments.get(key)
            if segment is None:
                raise _CompileError(f"{path}.values[{i}]", f"unknown segment {key!r}")
            if segment.matcher is None:
                raise _CompileError(f"{path}.values[{i}]", f"segment {key!r} did not compile")
            members.append(segment.matcher)
            self.uses_current_time |= segment.uses_current_time
        found = tuple(members)
        neg = parsed.negate
        if len(found) == 1 and not neg:
            return found[0]  # the segment's own matcher: one call fewer
        if len(found) == 1:
            (only,) = found

            def in_one_segment(ctx: Mapping[str, Any]) -> bool:
                return only(ctx) is not neg

            return in_one_segment

        def in_segment(ctx: Mapping[str, Any]) -> bool:
            for m in found:
                if m(ctx):
                    return not neg
            return neg

        return in_segment

    def conditions(self, raw: object, path: str, *, salt: str | None, in_segment: bool = False) -> Matcher:
        items = _list(raw, path)
        return _all(
            tuple(
                self.condition(c, f"{path}[{i}]", salt=salt, in_segment=in_segment)
                for i, c in enumerate(items)
            )
        )


def _compile_segment(key: str, raw: object) -> _Segment:
    path = f"segments.{key}"
    compiler = _Compiler({})
    try:
        body = _mapping(raw, path)
        match = compiler.conditions(
            body.get("conditions", []), f"{path}.conditions", salt=None, in_segment=True
        )
    except _CompileError as e:
        return _Segment(None, (e.path, e.message), uses_current_time=False)
    return _Segment(match, None, compiler.uses_current_time)


class _FlagCompiler:
    def __init__(self, key: str, raw: Mapping[str, Any], segments: dict[str, _Segment]) -> None:
        self.key = key
        self.path = f"flags.{key}"
        self.raw = raw
        self.compiler = _Compiler(segments)
        self.values: dict[str, Any] = {}

    def compile(self, flag: _Flag) -> None:
        raw, path = self.raw, self.path
        if not flag.kind:
            raise _CompileError(f"{path}.kind", f"must be one of {', '.join(KINDS)}")
        for i, v in enumerate(_list(raw.get("variants"), f"{path}.variants")):
            entry = _mapping(v, f"{path}.variants[{i}]")
            name = _string(entry.get("key"), f"{path}.variants[{i}].key")
            if name in self.values:
                raise _CompileError(f"{path}.variants[{i}].key", f"duplicate variant {name!r}")
            if "value" not in entry or not kind_accepts(flag.kind, entry["value"]):
                raise _CompileError(f"{path}.variants[{i}].value", f"must be a {flag.kind} value")
            self.values[name] = entry["value"]
        if not self.values:
            raise _CompileError(f"{path}.variants", "must have at least one variant")
        off = self.variant(raw.get("offVariant"), f"{path}.offVariant")
        enabled = raw.get("enabled", False)
        if type(enabled) is not bool:
            raise _CompileError(f"{path}.enabled", "must be true or false")
        rules: list[tuple[Matcher, Outcome]] = []
        for i, r in enumerate(_list(raw.get("rules", []), f"{path}.rules")):
            rpath = f"{path}.rules[{i}]"
            rule = _mapping(r, rpath)
            _only(rule, _RULE_FIELDS, rpath)
            match = self.compiler.conditions(rule.get("conditions", []), f"{rpath}.conditions", salt=self.key)
            rules.append((match, self.serve(rule, rpath, Reason.TARGETING_MATCH, i)))
        default_raw = raw.get("defaultRollout")
        if default_raw is None:
            default_raw = {"variant": off}
        dpath = f"{path}.defaultRollout"
        default_map = _mapping(default_raw, dpath)
        _only(default_map, _SERVE_FIELDS, dpath)
        default = self.serve(default_map, dpath, Reason.DEFAULT if rules else Reason.STATIC, None)
        flag.rules = tuple(rules)
        flag.default = default
        flag.uses_current_time = self.compiler.uses_current_time
        if not enabled:
            flag.static = self.evaluation(off, Reason.DISABLED, None)
            flag.rules = ()
        elif not rules and isinstance(default, Evaluation):
            flag.static = default

    def variant(self, raw: object, path: str) -> str:
        name = _string(raw, path)
        if name not in self.values:
            raise _CompileError(path, f"unknown variant {name!r}; the flag has {', '.join(self.values)}")
        return name

    def evaluation(self, variant: str, reason: Reason, rule_index: int | None) -> Evaluation:
        return Evaluation(self.values[variant], variant, reason, rule_index=rule_index)

    def serve(self, raw: Mapping[str, Any], path: str, reason: Reason, rule_index: int | None) -> Outcome:
        has_variant, has_split = raw.get("variant") is not None, raw.get("split") is not None
        if has_variant == has_split:
            raise _CompileError(path, "must give exactly one of `variant` and `split`")
        if has_variant:
            return self.evaluation(self.variant(raw["variant"], f"{path}.variant"), reason, rule_index)
        spath = f"{path}.split"
        split = _mapping(raw["split"], spath)
        _only(split, _SPLIT_FIELDS, spath)
        names: list[str] = []
        weights: list[int] = []
        for i, w in enumerate(_list(split.get("weights"), f"{spath}.weights")):
            entry = _mapping(w, f"{spath}.weights[{i}]")
            _only(entry, _WEIGHT_FIELDS, f"{spath}.weights[{i}]")
            name = self.variant(entry.get("variant"), f"{spath}.weights[{i}].variant")
            if name in names:
                raise _CompileError(f"{spath}.weights[{i}].variant", f"variant {name!r} appears twice")
            weight = entry.get("weight")
            if type(weight) is not int or not 0 <= weight <= BUCKETS:
                raise _CompileError(f"{spath}.weights[{i}].weight", f"must be an integer from 0 to {BUCKETS}")
            names.append(name)
            weights.append(weight)
        if sum(weights) != BUCKETS:
            raise _CompileError(f"{spath}.weights", f"must sum to {BUCKETS} (100%), not {sum(weights)}")
        stickiness = _string(split.get("stickiness", DEFAULT_STICKINESS), f"{spath}.stickiness")
        salt = split.get("salt", self.key)
        if type(salt) is not str:
            raise _CompileError(f"{spath}.salt", "must be a string")
        evaluations = tuple(self.evaluation(n, Reason.SPLIT, rule_index) for n in names)
        return _Split(stickiness, salt, weights, evaluations)


def compile_ruleset(data: Mapping[str, Any], *, strict: bool = False) -> CompiledRuleset:
    """Compile a ruleset (the JSON document the flag service ships) for evaluation.

    Raises ``RulesetError`` when the document as a whole is unusable: not an object, no integer
    ``revision``, a ``formatVersion`` newer than ``FORMAT_VERSION``, ``flags`` or ``segments`` not
    objects. A flag that does not compile is kept as a broken flag that evaluates to the caller's
    default with ``PARSE_ERROR`` and is listed in ``problems``; ``strict=True`` raises instead.
    Unknown fields are ignored at the top and in flags (metadata a newer service may add) but break
    a rule, condition or split, where they could change what is served.
    """
    try:
        revision, segments_raw, flags_raw = _header(data)
    except _CompileError as e:
        raise RulesetError([(e.path, e.message)]) from None
    problems: list[tuple[str, str]] = []
    segments: dict[str, _Segment] = {}
    for key, raw in segments_raw.items():
        segment = _compile_segment(str(key), raw)
        segments[str(key)] = segment
        if segment.broken is not None:
            problems.append(segment.broken)
    flags: dict[str, _Flag] = {}
    for key, raw in flags_raw.items():
        flag = _compile_flag(str(key), raw, segments)
        flags[str(key)] = flag
        if flag.problem is not None:
            problems.append(flag.problem)
    if strict and problems:
        raise RulesetError(problems)
    project, environment = data.get("project"), data.get("environment")
    return CompiledRuleset(
        revision,
        flags,
        problems,
        project if isinstance(project, str) else None,
        environment if isinstance(environment, str) else None,
    )


def _header(data: object) -> tuple[int, Mapping[str, Any], Mapping[str, Any]]:
    doc = _mapping(data, "")
    fmt = doc.get("formatVersion", FORMAT_VERSION)
    if type(fmt) is not int or fmt < 1:
        raise _CompileError("formatVersion", "must be a positive integer")
    if fmt > FORMAT_VERSION:
        raise _CompileError(
            "formatVersion", f"{fmt} is newer than this SDK reads ({FORMAT_VERSION}); upgrade the SDK"
        )
    revision = doc.get("revision")
    if type(revision) is not int or revision < 0:
        raise _CompileError("revision", "must be a non-negative integer")
    return revision, _mapping(doc.get("segments", {}), "segments"), _mapping(doc.get("flags"), "flags")


def _compile_flag(key: str, raw: object, segments: dict[str, _Segment]) -> _Flag:
    path = f"flags.{key}"
    raw_kind = raw.get("kind") if isinstance(raw, Mapping) else None
    flag = _Flag(key, raw_kind if isinstance(raw_kind, str) and raw_kind in KINDS else "")
    try:
        _FlagCompiler(key, _mapping(raw, path), segments).compile(flag)
    except _CompileError as e:
        broken = _Flag(key, flag.kind)
        broken.problem = (e.path, e.message)
        broken.broken = f"{e.path}: {e.message}"
        return broken
    return flag
