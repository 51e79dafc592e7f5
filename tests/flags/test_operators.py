"""Every operator, table-driven: what matches, what does not, negation, case, and missing attributes."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

import pytest

from gapless.flags.operators import OPERATORS, ConditionError, parse_condition, parse_semver

from .conftest import compile_one, holds

# (condition, context, expected)
CASES: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    # in / notIn: text comparison; integers and booleans as their text
    ({"attribute": "plan", "operator": "in", "values": ["pro", "enterprise"]}, {"plan": "pro"}, True),
    ({"attribute": "plan", "operator": "in", "values": ["pro", "enterprise"]}, {"plan": "free"}, False),
    ({"attribute": "plan", "operator": "in", "values": ["pro"]}, {"plan": "PRO"}, False),
    (
        {"attribute": "plan", "operator": "in", "values": ["pro"], "caseInsensitive": True},
        {"plan": "PRO"},
        True,
    ),
    (
        {"attribute": "plan", "operator": "in", "values": ["PRO"], "caseInsensitive": True},
        {"plan": "pro"},
        True,
    ),
    ({"attribute": "org", "operator": "in", "values": [42, "43"]}, {"org": 42}, True),
    ({"attribute": "org", "operator": "in", "values": [42, "43"]}, {"org": "43"}, True),
    ({"attribute": "org", "operator": "in", "values": [42]}, {"org": 42.0}, False),
    ({"attribute": "beta", "operator": "in", "values": [True]}, {"beta": True}, True),
    ({"attribute": "beta", "operator": "in", "values": ["true"]}, {"beta": True}, True),
    ({"attribute": "beta", "operator": "in", "values": [True]}, {"beta": 1}, False),
    ({"attribute": "plan", "operator": "notIn", "values": ["free"]}, {"plan": "pro"}, True),
    ({"attribute": "plan", "operator": "notIn", "values": ["free"]}, {"plan": "free"}, False),
    (
        {"attribute": "plan", "operator": "notIn", "values": ["FREE"], "caseInsensitive": True},
        {"plan": "Free"},
        False,
    ),
    ({"attribute": "plan", "operator": "in", "values": ["pro"], "negate": True}, {"plan": "pro"}, False),
    ({"attribute": "plan", "operator": "notIn", "values": ["pro"], "negate": True}, {"plan": "pro"}, True),
    # equals
    ({"attribute": "country", "operator": "equals", "value": "DE"}, {"country": "DE"}, True),
    ({"attribute": "country", "operator": "equals", "value": "DE"}, {"country": "de"}, False),
    (
        {"attribute": "country", "operator": "equals", "value": "DE", "caseInsensitive": True},
        {"country": "de"},
        True,
    ),
    ({"attribute": "country", "operator": "equals", "value": "DE", "negate": True}, {"country": "FR"}, True),
    # contains / startsWith / endsWith: any of the values
    ({"attribute": "email", "operator": "contains", "values": ["@acme."]}, {"email": "a@acme.com"}, True),
    (
        {"attribute": "email", "operator": "contains", "values": ["x", "@acme."]},
        {"email": "a@ACME.com"},
        False,
    ),
    (
        {"attribute": "email", "operator": "contains", "values": ["@acme."], "caseInsensitive": True},
        {"email": "a@ACME.com"},
        True,
    ),
    (
        {"attribute": "email", "operator": "startsWith", "values": ["admin", "root"]},
        {"email": "root@x"},
        True,
    ),
    ({"attribute": "email", "operator": "startsWith", "values": ["admin"]}, {"email": "x-admin"}, False),
    (
        {"attribute": "email", "operator": "startsWith", "values": ["ADMIN"], "caseInsensitive": True},
        {"email": "admin@x"},
        True,
    ),
    ({"attribute": "email", "operator": "endsWith", "values": ["@acme.com"]}, {"email": "b@acme.com"}, True),
    (
        {"attribute": "email", "operator": "endsWith", "values": ["@acme.com"]},
        {"email": "b@acme.com.evil"},
        False,
    ),
    (
        {"attribute": "email", "operator": "endsWith", "values": ["@ACME.COM"], "caseInsensitive": True},
        {"email": "b@acme.com"},
        True,
    ),
    (
        {"attribute": "email", "operator": "endsWith", "values": ["@acme.com"], "negate": True},
        {"email": "b@x.io"},
        True,
    ),
    ({"attribute": "id", "operator": "startsWith", "values": ["12"]}, {"id": 1234}, True),
    # numbers: ints, floats and numeric strings from the context
    ({"attribute": "age", "operator": "lt", "value": 18}, {"age": 17}, True),
    ({"attribute": "age", "operator": "lt", "value": 18}, {"age": 18}, False),
    ({"attribute": "age", "operator": "lte", "value": 18}, {"age": 18}, True),
    ({"attribute": "age", "operator": "gt", "value": 18}, {"age": 18.5}, True),
    ({"attribute": "age", "operator": "gt", "value": 18}, {"age": "19"}, True),
    ({"attribute": "age", "operator": "gte", "value": 18}, {"age": 18}, True),
    ({"attribute": "age", "operator": "gte", "value": 18}, {"age": 17.999}, False),
    ({"attribute": "age", "operator": "eq", "value": 18}, {"age": 18.0}, True),
    ({"attribute": "age", "operator": "eq", "value": 0.5}, {"age": "0.5"}, True),
    ({"attribute": "age", "operator": "lt", "value": 18, "negate": True}, {"age": 30}, True),
    ({"attribute": "age", "operator": "lt", "value": 18}, {"age": "young"}, False),
    ({"attribute": "age", "operator": "lt", "value": 18}, {"age": True}, False),
    ({"attribute": "age", "operator": "gt", "value": 1e300}, {"age": 10**400}, True),
    # semver (2.0 precedence; build metadata ignored; pre-releases before releases)
    ({"attribute": "v", "operator": "semverLt", "value": "2.1.0"}, {"v": "2.0.9"}, True),
    ({"attribute": "v", "operator": "semverLt", "value": "2.1.0"}, {"v": "2.1.0-rc.1"}, True),
    ({"attribute": "v", "operator": "semverLt", "value": "2.1.0"}, {"v": "2.1.0"}, False),
    ({"attribute": "v", "operator": "semverLt", "value": "2.10.0"}, {"v": "2.9.0"}, True),
    ({"attribute": "v", "operator": "semverEq", "value": "2.1.0"}, {"v": "2.1.0+build.7"}, True),
    ({"attribute": "v", "operator": "semverEq", "value": "2.1.0"}, {"v": "2.1.0-beta"}, False),
    ({"attribute": "v", "operator": "semverGt", "value": "1.0.0-alpha"}, {"v": "1.0.0-alpha.1"}, True),
    ({"attribute": "v", "operator": "semverGt", "value": "1.0.0-alpha.beta"}, {"v": "1.0.0-alpha.1"}, False),
    ({"attribute": "v", "operator": "semverGt", "value": "1.0.0-beta.2"}, {"v": "1.0.0-beta.11"}, True),
    ({"attribute": "v", "operator": "semverGte", "value": "2.1.0"}, {"v": "2.1.0"}, True),
    ({"attribute": "v", "operator": "semverLte", "value": "2.1.0"}, {"v": "2.1.1"}, False),
    ({"attribute": "v", "operator": "semverGte", "value": "2.1.0"}, {"v": "v2.1.0"}, False),
    ({"attribute": "v", "operator": "semverGte", "value": "2.1.0"}, {"v": "2.1"}, False),
    ({"attribute": "v", "operator": "semverLt", "value": "2.1.0", "negate": True}, {"v": "3.0.0"}, True),
    # dates (ISO 8601; no offset means UTC); datetimes, dates and epoch seconds in the context
    (
        {"attribute": "t", "operator": "dateAfter", "value": "2025-01-01T00:00:00Z"},
        {"t": "2025-01-01T00:00:01Z"},
        True,
    ),
    (
        {"attribute": "t", "operator": "dateAfter", "value": "2025-01-01T00:00:00Z"},
        {"t": "2025-01-01T00:00:00Z"},
        False,
    ),
    (
        {"attribute": "t", "operator": "dateAfter", "value": "2025-01-01T00:00:00Z"},
        {"t": "2025-01-01T02:00:00+03:00"},
        False,
    ),
    ({"attribute": "t", "operator": "dateBefore", "value": "2025-01-01"}, {"t": "2024-12-31T23:59:59"}, True),
    (
        {"attribute": "t", "operator": "dateBefore", "value": "2025-01-01"},
        {"t": dt.datetime(2025, 1, 1, tzinfo=dt.UTC)},
        False,
    ),
    ({"attribute": "t", "operator": "dateBefore", "value": "2025-01-01"}, {"t": dt.date(2024, 12, 31)}, True),
    ({"attribute": "t", "operator": "dateAfter", "value": "1970-01-01T00:00:00Z"}, {"t": 1}, True),
    (
        {"attribute": "t", "operator": "dateAfter", "value": "2025-01-01", "negate": True},
        {"t": "2020-01-01"},
        True,
    ),
    ({"attribute": "t", "operator": "dateAfter", "value": "2025-01-01"}, {"t": "yesterday"}, False),
    # regex (search; see test_regex.py for the engine)
    (
        {"attribute": "email", "operator": "regex", "value": r"^[^@]+@acme\.com$"},
        {"email": "jo@acme.com"},
        True,
    ),
    (
        {"attribute": "email", "operator": "regex", "value": r"^[^@]+@acme\.com$"},
        {"email": "jo@acme.co"},
        False,
    ),
    (
        {"attribute": "email", "operator": "regex", "value": "acme", "caseInsensitive": True},
        {"email": "ACME"},
        True,
    ),
    ({"attribute": "email", "operator": "regex", "value": "acme", "negate": True}, {"email": "other"}, True),
    ({"attribute": "id", "operator": "regex", "value": r"^\d+$"}, {"id": 123}, True),
    # inCidr
    ({"attribute": "ip", "operator": "inCidr", "values": ["10.0.0.0/8"]}, {"ip": "10.1.2.3"}, True),
    ({"attribute": "ip", "operator": "inCidr", "values": ["10.0.0.0/8"]}, {"ip": "11.1.2.3"}, False),
    ({"attribute": "ip", "operator": "inCidr", "values": ["192.168.1.7"]}, {"ip": "192.168.1.7"}, True),
    (
        {"attribute": "ip", "operator": "inCidr", "values": ["2001:db8::/32", "10.0.0.0/8"]},
        {"ip": "2001:db8::1"},
        True,
    ),
    ({"attribute": "ip", "operator": "inCidr", "values": ["10.0.0.0/8"]}, {"ip": "::ffff:10.0.0.1"}, False),
    (
        {"attribute": "ip", "operator": "inCidr", "values": ["10.0.0.0/8"], "negate": True},
        {"ip": "8.8.8.8"},
        True,
    ),
    ({"attribute": "ip", "operator": "inCidr", "values": ["10.0.0.0/8"]}, {"ip": "not an ip"}, False),
    # inRollout: the bucket of the attribute under the salt is below the share
    ({"attribute": "targetingKey", "operator": "inRollout", "value": 100_000}, {"targetingKey": "u"}, True),
    ({"attribute": "targetingKey", "operator": "inRollout", "value": 0}, {"targetingKey": "u"}, False),
    # bucket("new-checkout", "user-2") == 10789
    (
        {"attribute": "userId", "operator": "inRollout", "value": 10_790, "salt": "new-checkout"},
        {"userId": "user-2"},
        True,
    ),
    (
        {"attribute": "userId", "operator": "inRollout", "value": 10_789, "salt": "new-checkout"},
        {"userId": "user-2"},
        False,
    ),
    (
        {
            "attribute": "userId",
            "operator": "inRollout",
            "value": 10_789,
            "salt": "new-checkout",
            "negate": True,
        },
        {"userId": "user-2"},
        True,
    ),
]


@pytest.mark.parametrize(("condition", "context", "expected"), CASES)
def test_operator_table(condition: dict[str, Any], context: dict[str, Any], expected: bool) -> None:
    """Each operator answers as its table row says."""
    assert holds(condition, context) is expected


def test_every_operator_has_a_row() -> None:
    """The table covers every operator but inSegment and flagVariant, which have their own tests."""
    assert {c["operator"] for c, _, _ in CASES} == set(OPERATORS) - {"inSegment", "flagVariant"}


@pytest.mark.parametrize("operator", sorted(set(OPERATORS) - {"inSegment", "flagVariant"}))
@pytest.mark.parametrize(
    "context", [{}, {"a": None}, {"a": {"nested": 1}}, {"a": [1, 2]}, {"a": float("nan")}]
)
def test_missing_or_unreadable_attribute_is_false_and_negate_inverts(
    operator: str, context: dict[str, Any]
) -> None:
    """An absent, null or unreadable attribute makes the operator false; negate turns that into true."""
    operand: Any = {
        "in": ["x"], "notIn": ["x"], "contains": ["x"], "startsWith": ["x"], "endsWith": ["x"], "inCidr": ["10.0.0.0/8"],
        "equals": "x", "lt": 1, "lte": 1, "gt": 1, "gte": 1, "eq": 1, "semverLt": "1.0.0", "semverLte": "1.0.0",
        "semverEq": "1.0.0", "semverGte": "1.0.0", "semverGt": "1.0.0", "dateBefore": "2030-01-01",
        "dateAfter": "2000-01-01", "regex": "", "inRollout": 100_000,
    }[operator]  # fmt: skip
    field = "values" if OPERATORS[operator].many else "value"
    condition = {"attribute": "a", "operator": operator, field: operand}
    plain = operator == "notIn"  # notIn is in, negated: true when the attribute is missing
    assert holds(condition, context) is plain
    assert holds({**condition, "negate": True}, context) is not plain


def test_in_segment_any_of_and_negate() -> None:
    """inSegment holds when the context is in any listed segment (all of that segment's conditions)."""
    segments = {
        "internal": {"conditions": [{"attribute": "email", "operator": "endsWith", "values": ["@acme.com"]}]},
        "beta": {
            "conditions": [
                {"attribute": "beta", "operator": "in", "values": [True]},
                {"attribute": "country", "operator": "in", "values": ["DE", "FR"]},
            ]
        },
    }
    cond = {"operator": "inSegment", "values": ["internal", "beta"]}
    assert holds(cond, {"email": "a@acme.com"}, segments)
    assert holds(cond, {"beta": True, "country": "DE"}, segments)
    assert not holds(cond, {"beta": True, "country": "US"}, segments)
    assert holds({**cond, "negate": True}, {"beta": True, "country": "US"}, segments)
    assert not holds({"operator": "inSegment", "values": ["beta"]}, {"email": "a@acme.com"}, segments)


class Plan(StrEnum):
    PRO = "pro"


def test_string_subclasses_compare_by_their_characters() -> None:
    """A StrEnum member in the context compares as its value."""
    assert holds({"attribute": "plan", "operator": "in", "values": ["pro"]}, {"plan": Plan.PRO})


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"operator": "like", "attribute": "a", "value": "x"}, "operator", "unknown operator"),
        ({"operator": "in", "values": ["x"]}, "attribute", "is required"),
        ({"operator": "inSegment", "attribute": "a", "values": ["s"]}, "attribute", "takes no attribute"),
        ({"operator": "in", "attribute": "a", "value": "x"}, "value", "takes `values`"),
        ({"operator": "equals", "attribute": "a", "values": ["x"]}, "values", "takes one `value`"),
        ({"operator": "in", "attribute": "a", "values": []}, "values", "non-empty"),
        ({"operator": "in", "attribute": "a", "values": ["x", 1.5]}, "values[1]", "must be a string"),
        ({"operator": "lt", "attribute": "a", "value": "5"}, "value", "finite number"),
        ({"operator": "lt", "attribute": "a", "value": True}, "value", "finite number"),
        ({"operator": "lt", "attribute": "a", "value": float("inf")}, "value", "finite number"),
        ({"operator": "semverEq", "attribute": "a", "value": "1.0"}, "value", "SemVer"),
        ({"operator": "semverEq", "attribute": "a", "value": "01.0.0"}, "value", "SemVer"),
        ({"operator": "dateAfter", "attribute": "a", "value": "next week"}, "value", "ISO 8601"),
        ({"operator": "regex", "attribute": "a", "value": "(a)\\1"}, "value", "backreferences"),
        ({"operator": "inCidr", "attribute": "a", "values": ["10.0.0.0/33"]}, "values[0]", "CIDR"),
        ({"operator": "inRollout", "attribute": "a", "value": 100_001}, "value", "share"),
        (
            {"operator": "lt", "attribute": "a", "value": 1, "caseInsensitive": True},
            "caseInsensitive",
            "does not apply",
        ),
        ({"operator": "in", "attribute": "a", "values": ["x"], "salt": "s"}, "salt", "only to inRollout"),
        ({"operator": "in", "attribute": "a", "values": ["x"], "negate": "yes"}, "negate", "true or false"),
    ],
)
def test_condition_errors_name_the_field(fields: dict[str, Any], field: str, message: str) -> None:
    """A bad condition raises ConditionError naming the field at fault."""
    with pytest.raises(ConditionError, match=message) as info:
        parse_condition(**{"case_insensitive" if k == "caseInsensitive" else k: v for k, v in fields.items()})
    assert info.value.field == field


def test_semver_keys_follow_the_spec_example_order() -> None:
    """semver.org's example list sorts in its documented order."""
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "2.0.0",
        "2.1.0",
        "2.1.1",
    ]
    keys = [parse_semver(v) for v in ordered]
    assert all(k is not None for k in keys)
    assert sorted(ordered, key=parse_semver) == ordered  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.1.0", (2, 1, 0, 1, ())),
        ("0.0.0", (0, 0, 0, 1, ())),
        ("10.20.30", (10, 20, 30, 1, ())),
        ("2.1.0-rc.1", (2, 1, 0, 0, ((1, "rc"), (0, 1)))),
        ("2.1.0+build.5", (2, 1, 0, 1, ())),
        ("01.2.3", None),
        ("1.02.3", None),
        ("1.2.03", None),
        ("1.2", None),
        ("1.2.3.4", None),
        ("1..3", None),
        ("v1.2.3", None),
        (" 1.2.3", None),
        ("\u0661.\u0662.\u0663", None),  # Arabic-Indic digits: str.isdigit() says yes, SemVer says no
        ("².1.0", None),
        ("-1.2.3", None),
        ("", None),
    ],
)
def test_semver_parse_fast_path_agrees_with_the_grammar(text: str, expected: Any) -> None:
    """Plain releases skip the regex; the result is the grammar's either way (leading zeros, non-ASCII
    digits and other near-misses are no version)."""
    assert parse_semver(text) == expected


@pytest.mark.parametrize("negate", [False, True])
@pytest.mark.parametrize("operator", ["semverLt", "semverLte", "semverEq", "semverGte", "semverGt"])
def test_semver_conditions_stay_right_past_their_cache(operator: str, negate: bool) -> None:
    """More distinct versions than a condition caches (4,096) still compare right, in either order."""
    rs = compile_one([{"attribute": "v", "operator": operator, "value": "2.5.5", "negate": negate}])
    compare = {
        "semverLt": lambda a, b: a < b,
        "semverLte": lambda a, b: a <= b,
        "semverEq": lambda a, b: a == b,
        "semverGte": lambda a, b: a >= b,
        "semverGt": lambda a, b: a > b,
    }[operator]
    versions = [(a, b, c) for a in range(1, 4) for b in range(40) for c in range(40)]  # 4,800
    for _ in range(2):
        for a, b, c in versions:
            expected = compare((a, b, c), (2, 5, 5)) is not negate
            assert rs.evaluate("f", {"v": f"{a}.{b}.{c}"}).value is expected
    for unreadable in ("2.5", "banana", 255, None):
        assert rs.evaluate("f", {"v": unreadable}).value is negate
