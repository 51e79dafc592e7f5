"""Flag evaluation: compile a ruleset once, then evaluate flags against contexts, never raising.

Pure logic (the standard library and mmh3): no I/O, no clock of its own, no pydantic, so the SDK that
applications import carries none of the control plane. ``compile_ruleset`` does every piece of work that
does not depend on the context (checking the structure, parsing operands, building one closure per
condition and one ``Evaluation`` per possible outcome), so ``CompiledRuleset.evaluate`` only looks up
attributes, compares and, for a split, hashes once. A result that does not depend on the caller's
default is a preallocated object: a flag with no rules costs a dict lookup and a type check. Every
other flag is one closure specialised to its shape (a two-way rollout alone; rules), which tests
positive ``in`` / ``equals`` conditions inline and calls the matchers of the others. Nothing is
remembered between evaluations except, per semver condition, the parses of the last few thousand
version strings it saw.

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

import itertools
import math
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import lru_cache, partial
from types import CodeType
from typing import Any

import mmh3

from gapless.flags.bucketing import BUCKETS, GAPLESS, RANDOM, UNLEASH, UNLEASH_VARIANT_SEED, split_bounds
from gapless.flags.operators import (
    OPERATORS,
    ConditionError,
    Matcher,
    ParsedCondition,
    as_text,
    check_fallback,
    matcher,
    parse_condition,
    stickiness_value,
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


_hash = mmh3.hash


class _Split:
    """A percentage split: the bucket of the stickiness value picks one preallocated evaluation."""

    __slots__ = ("bounds", "evaluations", "fixed", "prefix", "stickiness")
    inline = True
    """Whether generated code may inline the two-way case (gapless's own bucketing only)."""

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
        """The general case, for any stickiness value; ``_picker`` adds the fast path in front of it."""
        if self.fixed is not None:
            return self.fixed
        v = ctx.get(self.stickiness)
        if type(v) is not str or not v:
            v = _sticky(v)
            if v is None and self.stickiness != DEFAULT_STICKINESS:
                v = _sticky(ctx.get(DEFAULT_STICKINESS))
            if v is None:
                return None
        # bucketing.bucket(salt, v), inlined; non-ASCII text is hashed as UTF-8 bytes (see hash_input).
        key = self.prefix + v
        h = _hash(key if key.isascii() else key.encode("utf-8", "surrogatepass"), 0, False)
        return self.evaluations[bisect_right(self.bounds, h % BUCKETS)]


class _UnleashSplit(_Split):
    """A split bucketed as Unleash's variants: seed 86028157, modulo the sum of the weights, and a
    stickiness chain (Unleash's ``default``: userId, sessionId, remoteAddress, then random)."""

    __slots__ = ("chain", "salt", "total")
    inline = False

    def __init__(
        self,
        stickiness: str,
        salt: str,
        weights: list[int],
        evaluations: tuple[Evaluation, ...],
        chain: tuple[str, ...],
    ) -> None:
        total = sum(weights)
        super().__init__(stickiness, salt, [*weights[:-1], weights[-1] + BUCKETS - total], evaluations)
        self.bounds = tuple(itertools.accumulate(weights[:-1]))
        owners = [e for e, w in zip(evaluations, weights, strict=True) if w > 0]
        self.fixed = owners[0] if len(owners) == 1 else None
        self.total = total
        self.salt = salt
        self.chain = (stickiness, *chain)

    def pick(self, ctx: Mapping[str, Any]) -> Evaluation | None:
        if self.fixed is not None:
            return self.fixed
        v = ctx.get(self.stickiness) if self.stickiness != RANDOM else None
        if type(v) is not str or not v:
            v = stickiness_value(ctx, self.chain)
            if v is None:
                return None
        key = self.prefix + v
        h = _hash(key if key.isascii() else key.encode("utf-8", "surrogatepass"), UNLEASH_VARIANT_SEED, False)
        return self.evaluations[bisect_right(self.bounds, h % self.total)]


Picker = Callable[[Mapping[str, Any]], Evaluation | None]


def _picker(split: _Split) -> Picker:
    """``split.pick`` with a fast path for the common case, a non-empty ASCII string as the stickiness
    value: that is hashed as it is (its characters are its UTF-8 bytes) after the precomputed prefix,
    and a two-way split is one comparison instead of a bisection."""
    fixed = split.fixed
    if not split.inline and fixed is None:
        return split.pick
    if fixed is not None:

        def pick_fixed(ctx: Mapping[str, Any]) -> Evaluation | None:
            return fixed

        return pick_fixed
    general = split.pick
    stickiness, prefix, bounds, evaluations = split.stickiness, split.prefix, split.bounds, split.evaluations
    if not prefix.isascii():
        return general
    if len(bounds) == 1:
        bound = bounds[0]
        first, second = evaluations

        def pick_two(ctx: Mapping[str, Any]) -> Evaluation | None:
            v = ctx.get(stickiness)
            if type(v) is str and v.isascii() and v:
                return first if _hash(prefix + v, 0, False) % BUCKETS < bound else second
            return general(ctx)

        return pick_two

    def pick_many(ctx: Mapping[str, Any]) -> Evaluation | None:
        v = ctx.get(stickiness)
        if type(v) is str and v.isascii() and v:
            return evaluations[bisect_right(bounds, _hash(prefix + v, 0, False) % BUCKETS)]
        return general(ctx)

    return pick_many


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

InCheck = tuple[str, frozenset[str]]
"""A positive, case-sensitive ``in`` or ``equals`` condition, (attribute, values): the most common
condition, which ``_runner``'s rule loop tests inline instead of calling a matcher for it."""
Condition = Matcher | InCheck


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
        "broken",
        "copy_values",
        "default",
        "key",
        "kind",
        "problem",
        "rules",
        "static",
        "uses_current_time",
        "variants",
    )

    def __init__(self, key: str, kind: str) -> None:
        self.key = key
        self.kind = kind
        self.copy_values = kind == "json"
        self.rules: tuple[tuple[tuple[Condition, ...], Outcome], ...] = ()
        """Each rule's conditions (all must hold) and what it serves."""
        self.default: Outcome | None = None
        self.static: Evaluation | None = None
        self.broken: str | None = None
        self.problem: tuple[str, str] | None = None
        self.uses_current_time = False
        self.variants: tuple[str, ...] = ()


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


def _general(default: Any, e: Exception) -> Evaluation:
    return _error(default, ErrorCode.GENERAL, _describe(e))


def _not_a_mapping(default: Any, context: object) -> Evaluation:
    return _error(default, ErrorCode.GENERAL, f"the context must be a mapping, not {type(context).__name__}")


def _copied(result: Evaluation) -> Evaluation:
    return Evaluation(_copy_json(result.value), result.variant, result.reason, rule_index=result.rule_index)


# The types a default of each kind is checked against first, with no call; anything else goes through
# kind_accepts (a subclass, a NaN...). Two per kind, the same type twice where there is one.
_KIND_TYPES: dict[str, tuple[type, type]] = {
    "boolean": (bool, bool),
    "string": (str, str),
    "number": (int, float),
    "json": (dict, list),
}

Run = Callable[[Mapping[str, Any] | None, Any, Callable[[], float] | None], Evaluation]
"""One flag's evaluation, ``run(context, default, clock)``: everything ``CompiledRuleset.evaluate`` does
once it has found the flag, never raising."""


def _runner(flag: _Flag) -> Run:
    """The function that evaluates ``flag`` for ``CompiledRuleset.evaluate``, specialised to its shape.

    Each shape does the same steps in the same order (default type, context type, rules, default
    rollout, key check, JSON copy). A broken or static flag is a small closure (``evaluate`` serves a
    static answer itself when the default's type is plainly right); any other flag is generated code.
    """
    key, kind = flag.key, flag.kind
    broken = flag.broken
    if broken is not None:

        def run_broken(
            context: Mapping[str, Any] | None, default: Any, clock: Callable[[], float] | None
        ) -> Evaluation:
            return _error(default, ErrorCode.PARSE_ERROR, broken)

        return run_broken
    t1, t2 = _KIND_TYPES[kind]

    static = flag.static
    copy_values = flag.copy_values
    if static is not None:
        fixed = static

        def run_static(
            context: Mapping[str, Any] | None, default: Any, clock: Callable[[], float] | None
        ) -> Evaluation:
            try:
                if (
                    default is not None
                    and type(default) is not t1
                    and type(default) is not t2
                    and not kind_accepts(kind, default)
                ):
                    return _mismatch(key, kind, default)
                return _copied(fixed) if copy_values else fixed
            except Exception as e:
                return _general(default, e)

        return run_static

    fallback = flag.default
    if fallback is None:  # not reached: a flag that compiled has its default rollout
        raise RuntimeError(f"flag {key!r} has no default rollout")
    run: Run = _generated(
        flag.rules,
        fallback,
        uses_current_time=flag.uses_current_time,
        copy_values=copy_values,
        kind=kind,
        key=key,
    )
    return run


# --- flags with rules or a split: generated code -----------------------------------------------------
#
# A flag that depends on the context becomes one generated function: its rules in order as straight-line
# code, the common condition (a positive, case-sensitive `in` or `equals`) and the common outcome (a
# two-way split on an ASCII stickiness value) inline, every other condition a call of its matcher. This
# saves the frames, loops and iterator objects of a generic interpreter of rules, which are most of the
# cost of an evaluation. The source names only the generated names below, never anything from the
# ruleset: attribute names, operands, salts and outcomes are values in the function's own globals. It
# depends only on the flag's shape (how many rules, which conditions are inline), so it is compiled
# once per shape and reused.

_PREAMBLE = """\
def run(context, default, clock):
    try:
        if (
            default is not None
            and type(default) is not t1
            and type(default) is not t2
            and not kind_accepts(kind, default)
        ):
{mismatch}
"""
_CONTEXT = """\
        if type(context) is not dict:
            if context is None:
                context = EMPTY
            elif not isinstance(context, Mapping):
{not_a_mapping}
"""
_CURRENT_TIME = """\
        if clock is not None and context.get(CURRENT_TIME) is None:
            context = {**context, CURRENT_TIME: clock()}
"""
_IN_CHECK = """\
            v = context.get(a{n})
            if (v if type(v) is str else as_text(v)) not in s{n}:
                break
"""
_MATCHER = """\
            if not m{n}(context):
                break
"""
_TWO_WAY = """\
{i}v = context.get(k{n})
{i}if type(v) is str and v.isascii() and v:
{i}    if mmh3_hash(p{n} + v, 0, False) % BUCKETS < b{n}:
{first}
{second}
"""
_PICK = """\
{i}result = pick{n}(context)
{i}if result is None:
{no_key}
"""
_POSTAMBLE = """\
    except Exception as e:
{general}
"""


class _Mode:
    """What generated code returns: an ``Evaluation`` (``evaluate``), or, for ``is_enabled``, the bool and
    a count (``next()`` of the served variant's counter, of ``cE`` for an error)."""

    def __init__(self, counters: Mapping[str | None, Iterator[object]] | None) -> None:
        self.counters = counters

    def error(self, call: str, indent: str) -> str:
        if self.counters is None:
            return f"{indent}return {call}\n"
        return f"{indent}next(cE)\n{indent}return default\n"

    def fixed(
        self, name: str, evaluation: Evaluation, copy: bool, indent: str, values: dict[str, Any]
    ) -> str:
        if self.counters is None:
            values[name] = evaluation
            return f"{indent}return copied({name})\n" if copy else f"{indent}return {name}\n"
        values[f"c{name}"], values[f"v{name}"] = self.counters[evaluation.variant], evaluation.value
        return f"{indent}next(c{name})\n{indent}return v{name}\n"

    def picked(self, copy: bool, indent: str) -> str:
        if self.counters is None:
            return f"{indent}return copied(result)\n" if copy else f"{indent}return result\n"
        return f"{indent}next(counters[result.variant])\n{indent}return result.value\n"


@lru_cache(maxsize=256)
def _compiled(source: str) -> CodeType:
    return compile(source, "<gapless.flags.evaluate: generated>", "exec")


def _generated(
    rules: tuple[tuple[tuple[Condition, ...], Outcome], ...],
    fallback: Outcome,
    *,
    uses_current_time: bool,
    copy_values: bool,
    kind: str,
    key: str,
    counters: Mapping[str | None, Iterator[object]] | None = None,
) -> Callable[[Mapping[str, Any] | None, Any, Callable[[], float] | None], Any]:
    """One flag's function, in the mode ``counters`` says (see ``_Mode``)."""
    t1, t2 = _KIND_TYPES[kind]
    values: dict[str, Any] = {
        "t1": t1,
        "t2": t2,
        "kind": kind,
        "kind_accepts": kind_accepts,
        "mismatch": partial(_mismatch, key, kind),
        "no_key": partial(_no_key, key),
        "not_a_mapping": _not_a_mapping,
        "general": _general,
        "copied": _copied,
        "as_text": as_text,
        "mmh3_hash": _hash,
        "BUCKETS": BUCKETS,
        "EMPTY": _EMPTY,
        "Mapping": Mapping,
        "CURRENT_TIME": CURRENT_TIME,
    }
    mode = _Mode(counters)
    if counters is not None:
        values["counters"], values["cE"] = counters, counters[None]
    parts = [_PREAMBLE.format(mismatch=mode.error("mismatch(default)", " " * 12).rstrip("\n"))]
    if rules or not isinstance(fallback, Evaluation):  # a static answer reads no context, not even its type
        parts.append(
            _CONTEXT.format(
                not_a_mapping=mode.error("not_a_mapping(default, context)", " " * 16).rstrip("\n")
            )
        )
    if uses_current_time:
        parts.append(_CURRENT_TIME)
    n = 0

    def serve(outcome: Outcome, indent: str) -> None:
        nonlocal n
        n += 1
        if isinstance(outcome, _Split) and outcome.fixed is not None:
            outcome = outcome.fixed
        if isinstance(outcome, Evaluation):
            parts.append(mode.fixed(f"e{n}", outcome, copy_values, indent, values))
            return
        if len(outcome.bounds) == 1 and outcome.prefix.isascii() and not copy_values and outcome.inline:
            values[f"pick{n}"] = outcome.pick  # what the inline fast path does not take
            values[f"k{n}"], values[f"p{n}"], values[f"b{n}"] = (
                outcome.stickiness,
                outcome.prefix,
                outcome.bounds[0],
            )
            first, second = outcome.evaluations
            parts.append(
                _TWO_WAY.format(
                    i=indent,
                    n=n,
                    first=mode.fixed(f"f{n}", first, False, indent + " " * 8, values).rstrip("\n"),
                    second=mode.fixed(f"g{n}", second, False, indent + " " * 4, values).rstrip("\n"),
                )
            )
        else:
            values[f"pick{n}"] = _picker(outcome)
        parts.append(
            _PICK.format(i=indent, n=n, no_key=mode.error("no_key(default)", indent + " " * 4).rstrip("\n"))
        )
        parts.append(mode.picked(copy_values, indent))

    for conditions, outcome in rules:
        parts.append("        while True:  # a rule: break when a condition does not hold\n")
        for condition in conditions:
            n += 1
            if isinstance(condition, tuple):
                values[f"a{n}"], values[f"s{n}"] = condition
                parts.append(_IN_CHECK.format(n=n))
            else:
                values[f"m{n}"] = condition
                parts.append(_MATCHER.format(n=n))
        serve(outcome, " " * 12)
    serve(fallback, " " * 8)
    parts.append(_POSTAMBLE.format(general=mode.error("general(default, e)", " " * 8).rstrip("\n")))
    namespace: dict[str, Any] = dict(values)
    exec(_compiled("".join(parts)), namespace)  # noqa: S102 -- our own source; the ruleset's data are values
    run: Callable[[Mapping[str, Any] | None, Any, Callable[[], float] | None], Any] = namespace["run"]
    return run


def _mismatch(key: str, kind: str, default: Any) -> Evaluation:
    return _error(
        default,
        ErrorCode.TYPE_MISMATCH,
        f"flag {key!r} is a {kind} flag; the default is a {type(default).__name__}",
    )


def _no_key(key: str, default: Any) -> Evaluation:
    return _error(
        default,
        ErrorCode.TARGETING_KEY_MISSING,
        f"flag {key!r} splits by a stickiness attribute the context does not have, nor a targetingKey",
    )


BooleanRun = Callable[[Mapping[str, Any] | None, Any, Callable[[], float] | None], Any]
"""``FlagClient.is_enabled``'s function for one boolean flag: ``run(context, default, clock)`` returns what
``is_enabled`` returns (the value served, or ``default`` on an error) and counts the evaluation."""


def _boolean_runner(flag: _Flag, counters: Mapping[str | None, Iterator[object]]) -> BooleanRun:
    error = counters[None]
    if flag.broken is not None:

        def run_broken(
            context: Mapping[str, Any] | None, default: Any, clock: Callable[[], float] | None
        ) -> Any:
            next(error)
            return default

        return run_broken
    fallback = flag.static if flag.static is not None else flag.default
    if fallback is None:  # not reached: a flag that compiled has its default rollout
        raise RuntimeError(f"flag {flag.key!r} has no default rollout")
    return _generated(
        flag.rules if flag.static is None else (),
        fallback,
        uses_current_time=flag.uses_current_time,
        copy_values=False,
        kind=flag.kind,
        key=flag.key,
        counters=counters,
    )


_Entry = tuple[Run, Evaluation | None, type, type]
"""A flag as ``CompiledRuleset.evaluate`` finds it: ``(run, static, t1, t2)``. ``static`` is the answer of a
flag that does not depend on the context (and needs no copy), served without calling ``run`` when the
default is None or of type ``t1`` or ``t2``; every other case is ``run(context, default, clock)``."""


def _entry(flag: _Flag) -> _Entry:
    run = _runner(flag)
    if flag.broken is None and flag.static is not None and not flag.copy_values:
        t1, t2 = _KIND_TYPES[flag.kind]
        return (run, flag.static, t1, t2)
    return (run, None, type(None), type(None))


class CompiledRuleset:
    """An environment's flags, compiled; immutable, so any number of threads may evaluate at once."""

    __slots__ = ("_entries", "_flags", "environment", "problems", "project", "revision")

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
        self._entries: dict[str, _Entry] = {key: _entry(flag) for key, flag in flags.items()}
        """Each flag's ``_Entry``; ``FlagClient.is_enabled`` does what ``evaluate`` does with it, inlined."""
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
            entry = self._entries.get(key)
        except Exception as e:  # an unhashable or hostile key: the promise is an Evaluation, whatever happens
            return _general(default, e)
        if entry is None:
            return self._not_found(key, default)
        run, static, t1, t2 = entry
        if static is not None and (default is None or type(default) is t1 or type(default) is t2):
            return static
        return run(context, default, clock)

    def runs(self) -> dict[str, Run]:
        """Each flag's evaluation function (for flags that depend on other flags)."""
        return {key: entry[0] for key, entry in self._entries.items()}

    def variants(self, key: str) -> tuple[str, ...]:
        """The variant names of flag ``key`` (none for a flag that did not compile, or no such flag)."""
        flag = self._flags.get(key)
        return () if flag is None else flag.variants

    def boolean_function(
        self, key: str, counters: Mapping[str | None, Iterator[object]]
    ) -> BooleanRun | None:
        """``FlagClient.is_enabled`` for boolean flag ``key``, as one generated function (None when the
        ruleset has no such boolean flag).

        ``run(context, default, clock)`` returns ``evaluate(key, context, default, clock=clock).value``
        (``default`` on every error) and calls ``next()`` once on ``counters[variant]`` for the variant
        served, or on ``counters[None]`` for an error; ``counters`` has an entry for each of
        ``variants(key)`` and for None. Nothing else: no ``Evaluation`` is looked at or built.
        """
        flag = self._flags.get(key)
        if flag is None or flag.kind != "boolean":
            return None
        return _boolean_runner(flag, counters)

    def _not_found(self, key: object, default: Any) -> Evaluation:
        """The evaluation of a key the ruleset does not have."""
        try:
            return _error(default, ErrorCode.FLAG_NOT_FOUND, f"no flag {key!r} in revision {self.revision}")
        except Exception as e:  # a key whose repr() raises
            return _general(default, e)

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
    {"attribute", "operator", "value", "values", "negate", "caseInsensitive", "salt", "bucketing", "fallback"}
)
_RULE_FIELDS = frozenset({"conditions", "variant", "split"})
_SERVE_FIELDS = frozenset({"variant", "split"})
_SPLIT_FIELDS = frozenset({"weights", "stickiness", "salt", "bucketing", "fallback"})
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

    def __init__(self, segments: dict[str, _Segment], links: _Links | None = None) -> None:
        self.segments = segments
        self.uses_current_time = False
        self.links = links
        self.dependent = False

    def condition(self, raw: object, path: str, *, salt: str | None, in_segment: bool) -> Condition:
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
                bucketing=c.get("bucketing"),
                fallback=c.get("fallback"),
            )
        except ConditionError as e:
            raise _CompileError(f"{path}.{e.field}" if e.field else path, e.message) from None
        if parsed.operator == "inSegment":
            if in_segment:
                raise _CompileError(f"{path}.operator", "a segment cannot refer to other segments")
            return self.in_segment(parsed, path)
        if parsed.operator == "flagVariant":
            if in_segment or self.links is None:
                raise _CompileError(f"{path}.operator", "a segment cannot depend on a flag")
            self.dependent = self.uses_current_time = True  # the parent may read currentTime
            return _flag_variant(self.links, parsed.attribute, frozenset(parsed.operands), parsed.negate)
        if parsed.attribute == CURRENT_TIME and OPERATORS[parsed.operator].operand == "date":
            self.uses_current_time = True
        if parsed.operator == "inRollout" and parsed.salt is None:
            if salt is None:
                raise _CompileError(f"{path}.salt", "is required for inRollout in a segment")
            parsed = replace(parsed, salt=salt)
        if (
            not in_segment
            and parsed.operator in ("in", "equals")
            and not parsed.negate
            and not parsed.case_insensitive
        ):
            return (parsed.attribute, frozenset(parsed.operands))
        return matcher(
            parsed.operator,
            parsed.attribute,
            parsed.operands,
            negate=parsed.negate,
            case_insensitive=parsed.case_insensitive,
            salt=parsed.salt or "",
            bucketing=parsed.bucketing,
            fallback=parsed.fallback,
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

    def conditions(self, raw: object, path: str, *, salt: str | None) -> tuple[Condition, ...]:
        """A rule's conditions, for ``_runner`` (which reads the ``InCheck`` tuples inline)."""
        items = _list(raw, path)
        return tuple(
            self.condition(c, f"{path}[{i}]", salt=salt, in_segment=False) for i, c in enumerate(items)
        )

    def segment_conditions(self, raw: object, path: str) -> Matcher:
        """A segment's conditions, as one matcher (an ``inSegment`` condition calls it)."""
        items = _list(raw, path)
        matchers: list[Matcher] = []
        for i, c in enumerate(items):
            condition = self.condition(c, f"{path}[{i}]", salt=None, in_segment=True)
            assert callable(condition)  # noqa: S101 -- in a segment, condition() gives matchers only
            matchers.append(condition)
        return _all(tuple(matchers))


class _Links:
    """The other flags of a ruleset, for ``flagVariant`` conditions: filled once every flag compiled."""

    __slots__ = ("dependent", "runs")

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.dependent: set[str] = set()
        """Flags that depend on flags themselves: as in Unleash, depending on one never holds."""


def _flag_variant(links: _Links, parent: str, variants: frozenset[str], neg: bool) -> Matcher:
    """``flagVariant``: the flag ``parent`` serves one of ``variants`` to this context (Unleash's
    dependent features). A parent that is missing, broken, or itself dependent never satisfies it."""

    def flag_variant(ctx: Mapping[str, Any]) -> bool:
        run = links.runs.get(parent)
        if run is None or parent in links.dependent:
            return False
        ev = run(ctx, None, None)
        if ev.error_code is not None:
            return False
        return (ev.variant in variants) is not neg

    return flag_variant


def _compile_segment(key: str, raw: object) -> _Segment:
    path = f"segments.{key}"
    compiler = _Compiler({})
    try:
        body = _mapping(raw, path)
        match = compiler.segment_conditions(body.get("conditions", []), f"{path}.conditions")
    except _CompileError as e:
        return _Segment(None, (e.path, e.message), uses_current_time=False)
    return _Segment(match, None, compiler.uses_current_time)


class _FlagCompiler:
    def __init__(
        self, key: str, raw: Mapping[str, Any], segments: dict[str, _Segment], links: _Links
    ) -> None:
        self.key = key
        self.path = f"flags.{key}"
        self.raw = raw
        self.compiler = _Compiler(segments, links)
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
        rules: list[tuple[tuple[Condition, ...], Outcome]] = []
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
        flag.variants = tuple(self.values)
        flag.default = default
        flag.uses_current_time = self.compiler.uses_current_time
        if self.compiler.dependent and self.compiler.links is not None:
            self.compiler.links.dependent.add(self.key)
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
        bucketing = split.get("bucketing", GAPLESS)
        if bucketing not in (GAPLESS, UNLEASH):
            raise _CompileError(f"{spath}.bucketing", f"must be {GAPLESS} or {UNLEASH}")
        try:
            chain = check_fallback(split.get("fallback"), bucketing)
        except ConditionError as e:
            raise _CompileError(f"{spath}.{e.field}", e.message) from None
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
        if bucketing == UNLEASH and not 0 < sum(weights) <= BUCKETS:
            raise _CompileError(f"{spath}.weights", f"must sum to 1 .. {BUCKETS} when bucketing as Unleash")
        if bucketing == GAPLESS and sum(weights) != BUCKETS:
            raise _CompileError(f"{spath}.weights", f"must sum to {BUCKETS} (100%), not {sum(weights)}")
        stickiness = _string(split.get("stickiness", DEFAULT_STICKINESS), f"{spath}.stickiness")
        salt = split.get("salt", self.key)
        if type(salt) is not str:
            raise _CompileError(f"{spath}.salt", "must be a string")
        evaluations = tuple(self.evaluation(n, Reason.SPLIT, rule_index) for n in names)
        if bucketing == UNLEASH:
            return _UnleashSplit(stickiness, salt, weights, evaluations, chain)
        if chain:
            raise _CompileError(f"{spath}.fallback", "applies to splits bucketed as Unleash")
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
    links = _Links()
    for key, raw in flags_raw.items():
        flag = _compile_flag(str(key), raw, segments, links)
        flags[str(key)] = flag
        if flag.problem is not None:
            problems.append(flag.problem)
    if strict and problems:
        raise RulesetError(problems)
    project, environment = data.get("project"), data.get("environment")
    compiled = CompiledRuleset(
        revision,
        flags,
        problems,
        project if isinstance(project, str) else None,
        environment if isinstance(environment, str) else None,
    )
    if links.dependent:
        links.runs.update(compiled.runs())
    return compiled


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


def _compile_flag(key: str, raw: object, segments: dict[str, _Segment], links: _Links) -> _Flag:
    path = f"flags.{key}"
    raw_kind = raw.get("kind") if isinstance(raw, Mapping) else None
    flag = _Flag(key, raw_kind if isinstance(raw_kind, str) and raw_kind in KINDS else "")
    try:
        _FlagCompiler(key, _mapping(raw, path), segments, links).compile(flag)
    except _CompileError as e:
        broken = _Flag(key, flag.kind)
        broken.problem = (e.path, e.message)
        broken.broken = f"{e.path}: {e.message}"
        return broken
    return flag
