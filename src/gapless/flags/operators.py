"""Condition operators: what each one reads from the context, what operand it takes, how it matches.

The model (when a flag is written) and the evaluator (when a ruleset is compiled) both go through
``parse_operand``, so a condition the service accepts is exactly a condition every SDK can compile.
``matcher`` turns a parsed condition into a closure ``context -> bool`` that is called on every
evaluation, so it does the type dispatch with ``type(v) is ...`` checks and does no parsing that can be
done once: regexes, semvers, dates and networks are parsed here, at compile time.

An operator is false when the attribute is missing (absent or ``null``) or holds a value it cannot
read (a nested object, a NaN, a string that is not a version); ``negate`` then inverts that result, as
Unleash's ``inverted`` does. So ``notIn`` and negated conditions are true for a context without the
attribute: "not a beta user" includes users the application knows nothing about. Prefer the positive
operators (``semverGte``, not negated ``semverLt``) when a missing attribute must not match.
"""

from __future__ import annotations

import ipaddress
import math
import operator as operator_module
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import mmh3

from gapless.flags.bucketing import BUCKETS, GAPLESS, RANDOM, UNLEASH, bucket
from gapless.flags.regex import Regex, RegexError

__all__ = [
    "OPERATORS",
    "ConditionError",
    "Matcher",
    "OperatorSpec",
    "ParsedCondition",
    "as_text",
    "check_fallback",
    "matcher",
    "parse_condition",
    "parse_date",
    "parse_operand",
    "parse_semver",
    "stickiness_value",
]

Matcher = Callable[[Mapping[str, Any]], bool]
_mmh3_hash = mmh3.hash
_random = random.Random()  # noqa: S311 -- Unleash's "random" stickiness: a share, not a secret
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class OperatorSpec:
    """How an operator is written: ``values`` (a list) or ``value``, and what its operand is."""

    many: bool
    operand: str  # string | number | semver | date | regex | cidr | segment | bucket
    case_insensitive: bool = False
    """Whether ``caseInsensitive`` applies."""


_STRING_MANY = OperatorSpec(many=True, operand="string", case_insensitive=True)
OPERATORS: dict[str, OperatorSpec] = {
    "in": _STRING_MANY,
    "notIn": _STRING_MANY,
    "equals": OperatorSpec(many=False, operand="string", case_insensitive=True),
    "contains": _STRING_MANY,
    "startsWith": _STRING_MANY,
    "endsWith": _STRING_MANY,
    "lt": OperatorSpec(many=False, operand="number"),
    "lte": OperatorSpec(many=False, operand="number"),
    "gt": OperatorSpec(many=False, operand="number"),
    "gte": OperatorSpec(many=False, operand="number"),
    "eq": OperatorSpec(many=False, operand="number"),
    "semverLt": OperatorSpec(many=False, operand="semver"),
    "semverLte": OperatorSpec(many=False, operand="semver"),
    "semverEq": OperatorSpec(many=False, operand="semver"),
    "semverGte": OperatorSpec(many=False, operand="semver"),
    "semverGt": OperatorSpec(many=False, operand="semver"),
    "dateBefore": OperatorSpec(many=False, operand="date"),
    "dateAfter": OperatorSpec(many=False, operand="date"),
    "regex": OperatorSpec(many=False, operand="regex", case_insensitive=True),
    "inCidr": OperatorSpec(many=True, operand="cidr"),
    "inSegment": OperatorSpec(many=True, operand="segment"),
    "flagVariant": OperatorSpec(many=True, operand="variant"),
    "inRollout": OperatorSpec(many=False, operand="bucket"),
}
"""Every operator, by the name written in a condition."""

MAX_NUMBER_TEXT = 64
MAX_SEMVER_TEXT = 256
MAX_DATE_TEXT = 64

# SemVer 2.0.0 (semver.org), without a leading "v": numeric identifiers have no leading zeros.
_NUM = r"0|[1-9]\d*"
_SEMVER_RE = re.compile(
    rf"^({_NUM})\.({_NUM})\.({_NUM})"
    rf"(?:-((?:{_NUM}|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:{_NUM}|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$",
    re.ASCII,
)

SemverKey = tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]


def parse_semver(text: str) -> SemverKey | None:
    """A sort key with SemVer 2.0 precedence (build metadata ignored), or None if ``text`` is not one."""
    if len(text) > MAX_SEMVER_TEXT:
        return None
    return _semver_key(text)


@lru_cache(maxsize=4096)
def _semver_key(text: str) -> SemverKey | None:
    parts = text.split(".")
    if len(parts) == 3 and text.isascii():  # a plain release, "2.1.0": half the time of the regex
        a, b, c = parts
        if _plain_number(a) and _plain_number(b) and _plain_number(c):
            return (int(a), int(b), int(c), 1, ())
    m = _SEMVER_RE.match(text)
    if m is None:
        return None
    major, minor, patch, pre = int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)
    if pre is None:
        return (major, minor, patch, 1, ())  # a release sorts after all of its pre-releases
    ids = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return (major, minor, patch, 0, ids)


def _plain_number(part: str) -> bool:
    """An ASCII numeric identifier without a leading zero (the caller checked the text is ASCII)."""
    return part.isdigit() and (part[0] != "0" or len(part) == 1)


def parse_date(value: object) -> float | None:
    """Seconds since the epoch from an ISO 8601 string, a datetime, a date or a number; else None.

    A time without an offset is UTC; a date alone is its midnight, UTC.
    """
    if type(value) is str:
        return _date_text(value) if len(value) <= MAX_DATE_TEXT else None
    if type(value) is int or type(value) is float:
        return float(value) if math.isfinite(value) else None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    return None


@lru_cache(maxsize=4096)
def _date_text(text: str) -> float | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


@lru_cache(maxsize=4096)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def as_text(v: object) -> str | None:
    """A context value as text for the string operators: strings, integers and booleans; else None."""
    if type(v) is str:
        return v
    if type(v) is bool:
        return "true" if v else "false"
    if type(v) is int:
        return _int_text(v)
    if isinstance(v, str):  # a StrEnum member or another str subclass: its characters
        return str.__str__(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return _int_text(int(v))
    return None


def _int_text(v: int) -> str | None:
    try:
        return str(v)
    except ValueError:  # more digits than int -> str allows
        return None


def _number(v: object) -> int | float | None:
    """A context value as a number: ints, finite floats and strings that parse as one; else None."""
    if type(v) is int:
        return v
    if type(v) is float:
        return v if math.isfinite(v) else None
    if type(v) is str:
        if len(v) > MAX_NUMBER_TEXT:
            return None
        try:
            x = float(v)
        except ValueError:
            return None
        return x if math.isfinite(x) else None
    if isinstance(v, int) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        return float(v) if math.isfinite(v) else None
    return None


def parse_operand(operator: str, raw: object, *, case_insensitive: bool = False) -> Any:
    """The parsed operand of one ``value`` or one element of ``values``; ``ValueError`` says what is wrong.

    Strings come back case-folded when ``case_insensitive``; semvers as sort keys; dates as epoch
    seconds; regexes compiled; CIDRs as networks; rollout shares as bucket counts.
    """
    spec = OPERATORS.get(operator)
    if spec is None:
        raise ValueError(f"unknown operator {operator!r}; expected one of: {', '.join(OPERATORS)}")
    kind = spec.operand
    if kind == "string":
        if type(raw) is str:
            return raw.casefold() if case_insensitive else raw
        text = as_text(raw)
        if text is None:
            raise ValueError(
                f"must be a string (or an integer or boolean, compared as text), not {_what(raw)}"
            )
        return text
    if kind == "number":
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise ValueError(f"must be a finite number, not {_what(raw)}")
        return raw
    if kind == "semver":
        key = parse_semver(raw) if type(raw) is str else None
        if key is None:
            raise ValueError(f"must be a SemVer 2.0 version such as 2.1.0 or 3.0.0-rc.1, not {_what(raw)}")
        return key
    if kind == "date":
        when = _date_text(raw) if type(raw) is str else None
        if when is None:
            raise ValueError(
                f"must be an ISO 8601 date or time such as 2025-06-01T12:00:00Z, not {_what(raw)}"
            )
        return when
    if kind == "regex":
        if type(raw) is not str:
            raise ValueError(f"must be a regular expression (a string), not {_what(raw)}")
        try:
            return Regex(raw, ignore_case=case_insensitive)
        except RegexError as e:
            raise ValueError(f"invalid regular expression: {e}") from None
    if kind == "cidr":
        cidr_problem = f"must be an IP address or a CIDR range such as 10.0.0.0/8, not {_what(raw)}"
        if not isinstance(raw, str):
            raise ValueError(cidr_problem)
        try:
            return ipaddress.ip_network(raw, strict=False)
        except ValueError:
            raise ValueError(cidr_problem) from None
    if kind == "variant":
        if type(raw) is not str or not raw:
            raise ValueError(f"must be a variant key of the flag named by `attribute`, not {_what(raw)}")
        return raw
    if kind == "segment":
        if type(raw) is not str or not raw:
            raise ValueError(f"must be a segment key, not {_what(raw)}")
        return raw
    # bucket
    if type(raw) is not int or not 0 <= raw <= BUCKETS:
        raise ValueError(f"must be an integer share of {BUCKETS:,} buckets (25000 is 25%), not {_what(raw)}")
    return raw


def _what(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def matcher(
    operator: str,
    attribute: str,
    operands: list[Any],
    *,
    negate: bool = False,
    case_insensitive: bool = False,
    salt: str = "",
    bucketing: str = GAPLESS,
    fallback: tuple[str, ...] = (),
) -> Matcher:
    """The closure that evaluates one condition (every operator but ``inSegment``, which the compiler
    resolves against its segments). ``operands`` come from ``parse_operand``; single-valued operators
    take a list of one."""
    attr = attribute
    neg = negate
    if operator in ("in", "notIn", "equals"):
        values = frozenset(operands)
        if operator == "notIn":
            neg = not neg
        if not case_insensitive:
            return _string_in(attr, values, neg)

        def string_in(ctx: Mapping[str, Any]) -> bool:
            v = ctx.get(attr)
            if type(v) is not str:
                v = as_text(v)
                if v is None:
                    return neg
            if case_insensitive:
                v = v.casefold()
            return (v in values) is not neg

        return string_in
    if operator in ("contains", "startsWith", "endsWith"):
        needles = tuple(operands)

        def test_contains(v: str) -> bool:
            return any(n in v for n in needles)

        test: Callable[[str], bool]
        if operator == "contains":
            test = test_contains
        elif operator == "startsWith":
            test = _bind_startswith(needles)
        else:
            test = _bind_endswith(needles)

        def string_part(ctx: Mapping[str, Any]) -> bool:
            v = ctx.get(attr)
            if type(v) is not str:
                v = as_text(v)
                if v is None:
                    return neg
            if case_insensitive:
                v = v.casefold()
            return test(v) is not neg

        return string_part
    if operator in ("lt", "lte", "gt", "gte", "eq"):
        return _numeric(operator, attr, operands[0], neg)
    if operator.startswith("semver"):
        return _semver(operator, attr, operands[0], neg)
    if operator in ("dateBefore", "dateAfter"):
        when = operands[0]
        after = operator == "dateAfter"

        def date_cmp(ctx: Mapping[str, Any]) -> bool:
            t = parse_date(ctx.get(attr))
            if t is None:
                return neg
            return ((t > when) if after else (t < when)) is not neg

        return date_cmp
    if operator == "regex":
        rx: Regex = operands[0]

        def regex(ctx: Mapping[str, Any]) -> bool:
            v = as_text(ctx.get(attr))
            if v is None:
                return neg
            return rx.search(v) is not neg

        return regex
    if operator == "inCidr":
        nets: tuple[Network, ...] = tuple(operands)

        def in_cidr(ctx: Mapping[str, Any]) -> bool:
            v = ctx.get(attr)
            ip = _ip(v) if type(v) is str and len(v) <= 64 else None
            if ip is None:
                return neg
            return any(ip.version == n.version and ip in n for n in nets) is not neg

        return in_cidr
    if operator == "inRollout" and (bucketing == UNLEASH or fallback):
        return _unleash_rollout(attr, fallback, operands[0], salt, neg, unleash=bucketing == UNLEASH)
    if operator == "inRollout":
        share: int = operands[0]

        def in_rollout(ctx: Mapping[str, Any]) -> bool:
            v = as_text(ctx.get(attr))
            if not v:
                return neg
            return (bucket(salt, v) < share) is not neg

        return in_rollout
    raise ValueError(f"operator {operator!r} has no matcher")


def stickiness_value(ctx: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` the context has as non-empty text; ``RANDOM`` gives a random value."""
    for name in names:
        if name == RANDOM:
            return str(_random.randrange(1, 10_001))
        v = as_text(ctx.get(name))
        if v:
            return v
    return None


def _unleash_rollout(
    attr: str, fallback: tuple[str, ...], share: int, salt: str, neg: bool, *, unleash: bool
) -> Matcher:
    """``inRollout`` with a stickiness chain (``fallback``), bucketed as Unleash does when ``unleash``.

    As Unleash's rollouts: no share is never on, all of it always is (even for a context without a
    stickiness value); in between, a context with no value in the chain is not in the rollout.
    """
    names = (attr, *fallback)
    percent = share // 1000
    prefix = f"{salt}:"
    first = "" if attr == RANDOM else attr  # "random" is never read from the context
    if share <= 0:

        def in_no_rollout(ctx: Mapping[str, Any]) -> bool:
            return neg

        return in_no_rollout

    def in_rollout_chain(ctx: Mapping[str, Any]) -> bool:
        v = ctx.get(first) if first else None
        if type(v) is not str or not v:
            v = stickiness_value(ctx, names)
            if v is None:
                return neg
        key = prefix + v
        h = _mmh3_hash(key if key.isascii() else key.encode("utf-8", "surrogatepass"), 0, False)
        return ((h % 100 < percent) if unleash else (h % BUCKETS < share)) is not neg

    return in_rollout_chain


def _string_in(attr: str, values: frozenset[str], neg: bool) -> Matcher:
    """``in`` / ``notIn`` / ``equals``, case-sensitive: the most common conditions, with no flags to test."""
    if neg:

        def string_not_in(ctx: Mapping[str, Any]) -> bool:
            v = ctx.get(attr)
            if type(v) is str:
                return v not in values
            v = as_text(v)
            return v is None or v not in values

        return string_not_in

    def string_in(ctx: Mapping[str, Any]) -> bool:
        v = ctx.get(attr)
        if type(v) is str:
            return v in values
        v = as_text(v)
        return v is not None and v in values

    return string_in


def _bind_startswith(needles: tuple[str, ...]) -> Callable[[str], bool]:
    def test(v: str) -> bool:
        return v.startswith(needles)

    return test


def _bind_endswith(needles: tuple[str, ...]) -> Callable[[str], bool]:
    def test(v: str) -> bool:
        return v.endswith(needles)

    return test


def _numeric(operator: str, attr: str, x: float, neg: bool) -> Matcher:
    if operator == "lt":

        def lt(ctx: Mapping[str, Any]) -> bool:
            v = _number(ctx.get(attr))
            return neg if v is None else (v < x) is not neg

        return lt
    if operator == "lte":

        def lte(ctx: Mapping[str, Any]) -> bool:
            v = _number(ctx.get(attr))
            return neg if v is None else (v <= x) is not neg

        return lte
    if operator == "gt":

        def gt(ctx: Mapping[str, Any]) -> bool:
            v = _number(ctx.get(attr))
            return neg if v is None else (v > x) is not neg

        return gt
    if operator == "gte":

        def gte(ctx: Mapping[str, Any]) -> bool:
            v = _number(ctx.get(attr))
            return neg if v is None else (v >= x) is not neg

        return gte

    def eq(ctx: Mapping[str, Any]) -> bool:
        v = _number(ctx.get(attr))
        return neg if v is None else (v == x) is not neg

    return eq


def _semver(operator: str, attr: str, key: SemverKey, neg: bool) -> Matcher:
    # One closure per comparison, with the parsed versions of recent values in a small dict of its
    # own (cleared when full, so bounded; a value maps to its parse, the same on every call): one
    # dict lookup instead of a parse, and no call, on every evaluation. The positive closures are
    # written out per operator because a comparison through ``operator.ge`` costs a call too.
    seen: dict[str, SemverKey | None] = {}

    def version(v: str) -> SemverKey | None:
        if len(seen) >= _SEEN_LIMIT:
            seen.clear()
        k = seen[v] = parse_semver(v)
        return k

    if neg:
        compare = _SEMVER_COMPARE[operator]

        def semver_negated(ctx: Mapping[str, Any]) -> bool:
            v = ctx.get(attr)
            if type(v) is not str:
                return True
            k = seen.get(v, _UNSEEN)
            if k is _UNSEEN:
                k = version(v)
            return k is None or not compare(k, key)

        return semver_negated
    if operator == "semverLt":

        def semver_lt(ctx: Mapping[str, Any]) -> bool:
            v = ctx.get(attr)
            if type(v) is not str:
                return False
            k = seen.get(v, _UNSEEN)
            if k is _UNSEEN:
                k = version(v)
            return k is not None and k < key  # type: ignore[operator]

        return semver_lt
    if operator == "semverLte":

        def semver_lte(ctx: Mapping[str, Any]) -> bool:
            v = ctx.get(attr)
            if type(v) is not str:
                return False
            k = seen.get(v, _UNSEEN)
            if k is _UNSEEN:
                k = version(v)
            return k is not None and k <= key  # type: ignore[operator]

        return semver_lte
    if operator == "semverEq":

        def semver_eq(ctx: Mapping[str, Any]) -> bool:
            v = ctx.get(attr)
            if type(v) is not str:
                return False
            k = seen.get(v, _UNSEEN)
            if k is _UNSEEN:
                k = version(v)
            return k is not None and k == key

        return semver_eq
    if operator == "semverGte":

        def semver_gte(ctx: Mapping[str, Any]) -> bool:
            v = ctx.get(attr)
            if type(v) is not str:
                return False
            k = seen.get(v, _UNSEEN)
            if k is _UNSEEN:
                k = version(v)
            return k is not None and k >= key  # type: ignore[operator]

        return semver_gte

    def semver_gt(ctx: Mapping[str, Any]) -> bool:
        v = ctx.get(attr)
        if type(v) is not str:
            return False
        k = seen.get(v, _UNSEEN)
        if k is _UNSEEN:
            k = version(v)
        return k is not None and k > key  # type: ignore[operator]

    return semver_gt


_SEMVER_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "semverLt": operator_module.lt,
    "semverLte": operator_module.le,
    "semverEq": operator_module.eq,
    "semverGte": operator_module.ge,
    "semverGt": operator_module.gt,
}
_UNSEEN = object()
_SEEN_LIMIT = 4096


class ConditionError(ValueError):
    """A condition that cannot be compiled; ``field`` is the condition's field at fault ('' for itself)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ParsedCondition:
    """A condition checked and with its operands parsed, ready for ``matcher`` (or segment lookup)."""

    operator: str
    attribute: str
    operands: list[Any]
    negate: bool
    case_insensitive: bool
    salt: str | None
    bucketing: str = GAPLESS
    fallback: tuple[str, ...] = ()


MAX_VALUES = 10_000


def parse_condition(
    *,
    operator: object,
    attribute: object = None,
    value: object = None,
    values: object = None,
    negate: object = False,
    case_insensitive: object = False,
    salt: object = None,
    bucketing: object = None,
    fallback: object = None,
) -> ParsedCondition:
    """Check one condition's shape and parse its operands; ``None`` means a field is absent.

    Raises ``ConditionError`` naming the field: ``operator`` (unknown), ``attribute`` (missing, or given
    to ``inSegment``), ``values`` / ``value`` (the wrong one of the two, or an operand of the wrong type,
    as ``values[2]``), ``caseInsensitive`` (on an operator it does not apply to), ``salt`` (on an
    operator other than ``inRollout``), ``bucketing`` and ``fallback`` (``inRollout`` only: ``gapless``
    or ``unleash``, and the attributes tried after ``attribute``, ``random`` only when bucketing as
    Unleash; in that mode the share must be whole percent).
    """
    if type(operator) is not str or operator not in OPERATORS:
        raise ConditionError(
            "operator", f"unknown operator {_what(operator)}; expected one of: {', '.join(OPERATORS)}"
        )
    spec = OPERATORS[operator]
    if type(negate) is not bool:
        raise ConditionError("negate", f"must be true or false, not {_what(negate)}")
    if type(case_insensitive) is not bool:
        raise ConditionError("caseInsensitive", f"must be true or false, not {_what(case_insensitive)}")
    if case_insensitive and not spec.case_insensitive:
        raise ConditionError("caseInsensitive", f"does not apply to {operator}")
    if spec.operand == "segment":
        if attribute is not None:
            raise ConditionError("attribute", "inSegment takes no attribute: a segment names its own")
        attr = ""
    elif type(attribute) is not str or not attribute:
        raise ConditionError("attribute", "is required: the name of a context attribute")
    else:
        attr = attribute
    if salt is not None and (spec.operand != "bucket" or type(salt) is not str):
        raise ConditionError("salt", "applies only to inRollout, as a string")
    mode, chain = _rollout_options(spec, bucketing, fallback)
    if spec.many:
        if value is not None:
            raise ConditionError("value", f"{operator} takes `values` (a list), not `value`")
        if not isinstance(values, list) or not values:
            raise ConditionError("values", "is required: a non-empty list")
        if len(values) > MAX_VALUES:
            raise ConditionError("values", f"has more than {MAX_VALUES:,} entries")
        raws = values
    else:
        if values is not None:
            raise ConditionError("values", f"{operator} takes one `value`, not `values`")
        if value is None:
            raise ConditionError("value", "is required")
        raws = [value]
    operands: list[Any] = []
    for i, raw in enumerate(raws):
        try:
            operands.append(parse_operand(operator, raw, case_insensitive=case_insensitive))
        except ValueError as e:
            raise ConditionError(f"values[{i}]" if spec.many else "value", str(e)) from None
    if mode == UNLEASH and operands[0] % 1000:
        raise ConditionError("value", "must be whole percent (a multiple of 1000) when bucketing as Unleash")
    return ParsedCondition(operator, attr, operands, negate, case_insensitive, salt, mode, chain)


def _rollout_options(spec: OperatorSpec, bucketing: object, fallback: object) -> tuple[str, tuple[str, ...]]:
    """``inRollout``'s ``bucketing`` and ``fallback``, checked."""
    if (bucketing is not None or fallback is not None) and spec.operand != "bucket":
        raise ConditionError(
            "bucketing" if bucketing is not None else "fallback", "applies only to inRollout"
        )
    mode = GAPLESS if bucketing is None else bucketing
    if mode not in (GAPLESS, UNLEASH):
        raise ConditionError("bucketing", f"must be {GAPLESS} or {UNLEASH}, not {_what(bucketing)}")
    chain = check_fallback(fallback, str(mode))
    return str(mode), chain


def check_fallback(fallback: object, mode: str) -> tuple[str, ...]:
    """A stickiness chain after the first attribute: attribute names (``random`` only as Unleash)."""
    if fallback is None:
        return ()
    if not isinstance(fallback, list) or len(fallback) > 8:
        raise ConditionError("fallback", "must be a list of at most 8 attribute names")
    for i, name in enumerate(fallback):
        if type(name) is not str or not name:
            raise ConditionError(f"fallback[{i}]", "must be an attribute name")
        if name == RANDOM and mode != UNLEASH:
            raise ConditionError(f"fallback[{i}]", "random stickiness needs bucketing: unleash")
    return tuple(fallback)
