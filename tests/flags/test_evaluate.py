"""Evaluation: the order of rules and reasons, splits, errors as data, and never raising on any context."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from gapless.flags.bucketing import bucket, split_bounds, variant_index
from gapless.flags.evaluate import ErrorCode, Reason, RulesetError, compile_ruleset

from .conftest import BOOLEAN, boolean_flag, ruleset

PRO = {"attribute": "plan", "operator": "in", "values": ["pro"]}
DE = {"attribute": "country", "operator": "equals", "value": "DE"}
TEN_PERCENT = {
    "split": {"weights": [{"variant": "on", "weight": 10_000}, {"variant": "off", "weight": 90_000}]}
}


def test_reasons_follow_the_evaluation_order() -> None:
    """Disabled, rule match, default and static flags each give their reason, value and rule index."""
    rs = compile_ruleset(
        ruleset(
            {
                "killed": boolean_flag(
                    rules=[{"conditions": [], "variant": "on"}], default={"variant": "on"}, enabled=False
                ),
                "targeted": boolean_flag(
                    rules=[{"conditions": [DE], "variant": "off"}, {"conditions": [PRO], "variant": "on"}]
                ),
                "static": boolean_flag(default={"variant": "on"}),
            }
        ),
        strict=True,
    )
    ev = rs.evaluate("killed", {"plan": "pro"})
    assert (ev.value, ev.variant, ev.reason, ev.rule_index) == (False, "off", Reason.DISABLED, None)
    ev = rs.evaluate("targeted", {"plan": "pro", "country": "FR"})
    assert (ev.value, ev.variant, ev.reason, ev.rule_index) == (True, "on", Reason.TARGETING_MATCH, 1)
    ev = rs.evaluate("targeted", {"plan": "pro", "country": "DE"})
    assert (ev.value, ev.reason, ev.rule_index) == (False, Reason.TARGETING_MATCH, 0)
    ev = rs.evaluate("targeted", {"plan": "free"})
    assert (ev.value, ev.variant, ev.reason, ev.rule_index) == (False, "off", Reason.DEFAULT, None)
    ev = rs.evaluate("static", {})
    assert (ev.value, ev.variant, ev.reason) == (True, "on", Reason.STATIC)
    assert ev.error_code is None
    assert ev.error_message is None


def test_all_conditions_of_a_rule_must_hold() -> None:
    """A rule with two conditions matches only when both hold; a rule without conditions matches all."""
    rs = compile_ruleset(
        ruleset({"f": boolean_flag(rules=[{"conditions": [PRO, DE], "variant": "on"}])}), strict=True
    )
    assert rs.evaluate("f", {"plan": "pro", "country": "DE"}).value is True
    assert rs.evaluate("f", {"plan": "pro", "country": "FR"}).value is False
    assert rs.evaluate("f", {"country": "DE"}).value is False


def test_split_follows_the_bucket() -> None:
    """A 10% split serves on exactly to contexts whose bucket is below 10,000, with reason SPLIT."""
    rs = compile_ruleset(ruleset({"f": boolean_flag(default=TEN_PERCENT)}), strict=True)
    for i in range(2_000):
        key = f"user-{i}" if i % 3 else f"usér-{i}-\udcff"
        ev = rs.evaluate("f", {"targetingKey": key})
        assert ev.reason == Reason.SPLIT
        assert ev.value is (bucket("f", key) < 10_000)


def test_split_in_a_rule_has_its_rule_index() -> None:
    """A rule that splits gives SPLIT and its rule index."""
    rs = compile_ruleset(
        ruleset(
            {
                "f": boolean_flag(
                    rules=[{"conditions": [DE], "variant": "off"}, {"conditions": [PRO], **TEN_PERCENT}]
                )
            }
        ),
        strict=True,
    )
    ev = rs.evaluate("f", {"plan": "pro", "targetingKey": "user-1"})
    assert (ev.reason, ev.rule_index) == (Reason.SPLIT, 1)


def test_stickiness_salt_and_fallback_to_targeting_key() -> None:
    """A split buckets by its stickiness attribute under its salt, else by targetingKey, else fails."""
    split = {
        "split": {
            "weights": [{"variant": "on", "weight": 50_000}, {"variant": "off", "weight": 50_000}],
            "stickiness": "orgId",
            "salt": "shared",
        }
    }
    rs = compile_ruleset(ruleset({"f": boolean_flag(default=split)}), strict=True)
    for i in range(500):
        org, user = f"org-{i}", f"user-{i}"
        assert rs.evaluate("f", {"orgId": org, "targetingKey": user}).value is (
            bucket("shared", org) < 50_000
        )
        assert rs.evaluate("f", {"targetingKey": user}).value is (bucket("shared", user) < 50_000)
        assert rs.evaluate("f", {"orgId": i + 1}).value is (bucket("shared", str(i + 1)) < 50_000)
    ev = rs.evaluate("f", {"orgId": "", "other": "x"}, default=True)
    assert (ev.value, ev.reason, ev.error_code) == (True, Reason.ERROR, ErrorCode.TARGETING_KEY_MISSING)


def test_a_split_owned_by_one_variant_needs_no_key() -> None:
    """A 100/0 split serves its variant to a context without any key."""
    full = {"split": {"weights": [{"variant": "on", "weight": 100_000}, {"variant": "off", "weight": 0}]}}
    rs = compile_ruleset(ruleset({"f": boolean_flag(default=full)}), strict=True)
    ev = rs.evaluate("f", {})
    assert (ev.value, ev.reason, ev.error_code) == (True, Reason.SPLIT, None)


def test_split_across_three_variants_within_tolerance() -> None:
    """A 20/30/50 split of a string flag gives each variant its share of 100,000 keys within 1 point."""
    flag = {
        "kind": "string",
        "variants": [{"key": k, "value": k.upper()} for k in ("a", "b", "c")],
        "offVariant": "a",
        "enabled": True,
        "defaultRollout": {
            "split": {
                "weights": [
                    {"variant": "a", "weight": 20_000},
                    {"variant": "b", "weight": 30_000},
                    {"variant": "c", "weight": 50_000},
                ]
            }
        },
    }
    rs = compile_ruleset(ruleset({"f": flag}), strict=True)
    counts = {"a": 0, "b": 0, "c": 0}
    for i in range(100_000):
        counts[rs.evaluate("f", {"targetingKey": str(i)}).variant] += 1  # type: ignore[index]
    assert abs(counts["a"] - 20_000) < 1_000
    assert abs(counts["b"] - 30_000) < 1_000
    assert abs(counts["c"] - 50_000) < 1_000


def test_errors_return_the_default_with_a_code() -> None:
    """A missing flag and a default of the wrong type give the default, ERROR and their codes."""
    rs = compile_ruleset(ruleset({"f": boolean_flag(default={"variant": "on"})}), strict=True)
    ev = rs.evaluate("nope", {}, default=True)
    assert (ev.value, ev.variant, ev.reason, ev.error_code) == (
        True,
        None,
        Reason.ERROR,
        ErrorCode.FLAG_NOT_FOUND,
    )
    ev = rs.evaluate("f", {}, default="yes")
    assert (ev.value, ev.reason, ev.error_code) == ("yes", Reason.ERROR, ErrorCode.TYPE_MISMATCH)
    assert "boolean" in (ev.error_message or "")
    assert rs.evaluate("f", {}, default=1).error_code == ErrorCode.TYPE_MISMATCH
    assert rs.evaluate("f", {}, default=None).value is True


@pytest.mark.parametrize(
    ("kind", "values", "good_default", "bad_default"),
    [
        ("string", ["a", "b"], "z", True),
        ("number", [1, 2.5], 0, True),
        ("number", [1, 2.5], 0.5, "1"),
        ("json", [{"a": [1]}, [1, 2]], {}, "{}"),
        ("json", [{"a": [1]}, [1, 2]], [], 0),
    ],
)
def test_kinds_and_defaults(kind: str, values: list[Any], good_default: Any, bad_default: Any) -> None:
    """Each kind serves its values, and rejects a default of another kind (booleans are not numbers)."""
    flag = {
        "kind": kind,
        "variants": [{"key": "x", "value": values[0]}, {"key": "y", "value": values[1]}],
        "offVariant": "x",
        "enabled": True,
        "defaultRollout": {"variant": "y"},
    }
    rs = compile_ruleset(ruleset({"f": flag}), strict=True)
    assert rs.evaluate("f", {}, good_default).value == values[1]
    assert rs.evaluate("f", {}, bad_default).error_code == ErrorCode.TYPE_MISMATCH


def test_json_values_are_copies() -> None:
    """Changing a returned JSON value does not change what the next evaluation returns."""
    flag = {
        "kind": "json",
        "variants": [{"key": "x", "value": {"limits": [1, 2]}}],
        "offVariant": "x",
        "enabled": True,
    }
    rs = compile_ruleset(ruleset({"f": flag}), strict=True)
    rs.evaluate("f").value["limits"].append(3)
    assert rs.evaluate("f").value == {"limits": [1, 2]}


def test_a_broken_flag_is_a_parse_error_and_spares_the_others() -> None:
    """A flag that does not compile evaluates to the default with PARSE_ERROR; other flags still work."""
    bad_operator = boolean_flag(
        rules=[{"conditions": [{"attribute": "a", "operator": "fuzzy", "value": 1}], "variant": "on"}]
    )
    unknown_field = boolean_flag(rules=[{"conditions": [], "variant": "on", "percentage": 5}])
    data = ruleset(
        {"good": boolean_flag(default={"variant": "on"}), "bad": bad_operator, "newer": unknown_field}
    )
    rs = compile_ruleset(data)
    assert rs.evaluate("good").value is True
    ev = rs.evaluate("bad", {}, default=True)
    assert (ev.value, ev.reason, ev.error_code) == (True, Reason.ERROR, ErrorCode.PARSE_ERROR)
    assert "flags.bad.rules[0].conditions[0].operator" in (ev.error_message or "")
    assert [p for p, _ in rs.problems] == [
        "flags.bad.rules[0].conditions[0].operator",
        "flags.newer.rules[0].percentage",
    ]
    with pytest.raises(RulesetError, match="fuzzy"):
        compile_ruleset(data, strict=True)


@pytest.mark.parametrize(
    ("flag", "path"),
    [
        ({"kind": "toggle"}, "flags.f.kind"),
        ({**boolean_flag(), "variants": []}, "flags.f.variants"),
        ({**boolean_flag(), "variants": [*BOOLEAN, {"key": "on", "value": True}]}, "flags.f.variants[2].key"),
        ({**boolean_flag(), "variants": [{"key": "on", "value": "yes"}]}, "flags.f.variants[0].value"),
        ({**boolean_flag(), "offVariant": "nope"}, "flags.f.offVariant"),
        ({**boolean_flag(), "enabled": "yes"}, "flags.f.enabled"),
        (boolean_flag(rules=[{"conditions": [], "variant": "maybe"}]), "flags.f.rules[0].variant"),
        (boolean_flag(rules=[{"conditions": []}]), "flags.f.rules[0]"),
        (
            boolean_flag(rules=[{"conditions": [], "variant": "on", "split": TEN_PERCENT["split"]}]),
            "flags.f.rules[0]",
        ),
        (boolean_flag(rules=[{"conditions": {"a": 1}, "variant": "on"}]), "flags.f.rules[0].conditions"),
        (
            boolean_flag(
                rules=[{"conditions": [{"operator": "inSegment", "values": ["x"]}], "variant": "on"}]
            ),
            "flags.f.rules[0].conditions[0].values[0]",
        ),
        (
            boolean_flag(default={"split": {"weights": [{"variant": "on", "weight": 10}]}}),
            "flags.f.defaultRollout.split.weights",
        ),
        (
            boolean_flag(
                default={
                    "split": {
                        "weights": [{"variant": "on", "weight": 50_000}, {"variant": "on", "weight": 50_000}]
                    }
                }
            ),
            "flags.f.defaultRollout.split.weights[1].variant",
        ),
        (
            boolean_flag(default={"split": {"weights": [{"variant": "on", "weight": 1.5}]}}),
            "flags.f.defaultRollout.split.weights[0].weight",
        ),
        (
            boolean_flag(
                default={"split": {"weights": [{"variant": "on", "weight": 100_000}], "stickiness": ""}}
            ),
            "flags.f.defaultRollout.split.stickiness",
        ),
    ],
)
def test_flag_problems_name_their_path(flag: dict[str, Any], path: str) -> None:
    """Each kind of broken flag is reported with the path of the field at fault."""
    rs = compile_ruleset(ruleset({"f": flag}))
    assert [p for p, _ in rs.problems] == [path]


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ([], ""),
        ({"flags": {}}, "revision"),
        ({"revision": -1, "flags": {}}, "revision"),
        ({"revision": True, "flags": {}}, "revision"),
        ({"revision": 1, "flags": []}, "flags"),
        ({"revision": 1, "flags": {}, "segments": []}, "segments"),
        ({"revision": 1, "flags": {}, "formatVersion": 2}, "formatVersion"),
    ],
)
def test_unusable_rulesets_are_refused(data: Any, path: str) -> None:
    """A document without the ruleset's frame raises RulesetError naming the field."""
    with pytest.raises(RulesetError) as info:
        compile_ruleset(data)
    assert info.value.problems[0][0] == path


def test_broken_segment_breaks_only_the_flags_using_it() -> None:
    """A segment that does not compile is reported, and only flags referring to it are broken."""
    segments = {"bad": {"conditions": [{"attribute": "a", "operator": "inSegment", "values": ["x"]}]}}
    data = ruleset(
        {
            "uses": boolean_flag(
                rules=[{"conditions": [{"operator": "inSegment", "values": ["bad"]}], "variant": "on"}]
            ),
            "free": boolean_flag(default={"variant": "on"}),
        },
        segments=segments,
    )
    rs = compile_ruleset(data)
    assert rs.evaluate("free").value is True
    assert rs.evaluate("uses").error_code == ErrorCode.PARSE_ERROR
    assert [p for p, _ in rs.problems] == [
        "segments.bad.conditions[0].attribute",
        "flags.uses.rules[0].conditions[0].values[0]",
    ]


def test_current_time_comes_from_the_clock() -> None:
    """A date condition on currentTime uses the clock when the context has no currentTime."""
    after = {"attribute": "currentTime", "operator": "dateAfter", "value": "2030-01-01T00:00:00Z"}
    rs = compile_ruleset(
        ruleset({"f": boolean_flag(rules=[{"conditions": [after], "variant": "on"}])}), strict=True
    )
    launch = 1_893_456_000.0  # 2030-01-01T00:00:00Z
    assert rs.evaluate("f", {}, clock=lambda: launch - 1).value is False
    assert rs.evaluate("f", {}, clock=lambda: launch + 1).value is True
    assert rs.evaluate("f", {"currentTime": "2031-01-01"}, clock=lambda: launch - 1).value is True
    assert rs.evaluate("f", {}).value is False  # no clock: a missing attribute


class Hostile(Mapping[str, Any]):
    """A mapping whose every read fails."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("no reading me")

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("no reading me")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("no iterating me")

    def __len__(self) -> int:
        return 1


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str either")


class RaisesUnprintable(Mapping[str, Any]):
    """A mapping whose reads raise an exception that cannot be printed."""

    def __getitem__(self, key: str) -> Any:
        raise UnprintableError

    def get(self, key: str, default: Any = None) -> Any:
        raise UnprintableError

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class Weird:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    __hash__ = None  # type: ignore[assignment]


HUGE = "x" * 5_000_000
HOSTILE_VALUES: list[Any] = [
    None,
    {"nested": {"deeper": [1, 2, {"x": None}]}},
    [1, "two", None],
    HUGE,
    float("nan"),
    float("inf"),
    -0.0,
    10**5000,
    b"bytes",
    Weird(),
    object(),
    "\x00\udcff",
    True,
]


def _everything_ruleset() -> Any:
    conditions = [
        {"attribute": "a", "operator": "in", "values": ["x"]},
        {"attribute": "a", "operator": "contains", "values": ["x"], "caseInsensitive": True},
        {"attribute": "a", "operator": "startsWith", "values": ["x"]},
        {"attribute": "a", "operator": "lt", "value": 5},
        {"attribute": "a", "operator": "semverGt", "value": "1.0.0"},
        {"attribute": "a", "operator": "dateAfter", "value": "2020-01-01"},
        {"attribute": "a", "operator": "regex", "value": "x+y"},
        {"attribute": "a", "operator": "inCidr", "values": ["10.0.0.0/8"]},
        {"attribute": "a", "operator": "inRollout", "value": 50_000},
    ]
    rules = [{"conditions": [c], "variant": "on"} for c in conditions]
    split = {
        "split": {
            "weights": [{"variant": "on", "weight": 50_000}, {"variant": "off", "weight": 50_000}],
            "stickiness": "a",
        }
    }
    return compile_ruleset(ruleset({"f": boolean_flag(rules=rules, default=split)}), strict=True)


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=lambda v: type(v).__name__)
def test_hostile_attribute_values_never_raise(value: Any) -> None:
    """Any value under any attribute evaluates without raising; unreadable values make conditions false."""
    rs = _everything_ruleset()
    for context in ({"a": value}, {"a": value, "targetingKey": value}, {"targetingKey": "u", "a": value}):
        ev = rs.evaluate("f", context, default=False)
        assert isinstance(ev.value, bool)
        assert ev.reason in (Reason.SPLIT, Reason.TARGETING_MATCH, Reason.ERROR)


@pytest.mark.parametrize(
    "context",
    [Hostile(), RaisesUnprintable(), [("a", 1)], "a=1", 42, Weird()],
    ids=["hostile-mapping", "unprintable-error", "list", "str", "int", "weird"],
)
def test_hostile_contexts_give_general_errors(context: Any) -> None:
    """A context that is not a readable mapping gives the default with ERROR / GENERAL."""
    ev = _everything_ruleset().evaluate("f", context, default=True)
    assert (ev.value, ev.reason, ev.error_code) == (True, Reason.ERROR, ErrorCode.GENERAL)
    assert len(ev.error_message or "") <= 300


@pytest.mark.parametrize("key", [None, 42, ["f"], {"f": 1}, "f" * 100_000, "\udcff"])
def test_hostile_keys_never_raise(key: Any) -> None:
    """Keys of any type or size give an error evaluation, never an exception."""
    ev = _everything_ruleset().evaluate(key, {}, default=False)
    assert ev.reason == Reason.ERROR
    assert ev.error_code in (ErrorCode.FLAG_NOT_FOUND, ErrorCode.GENERAL)


def test_nan_is_no_number() -> None:
    """NaN in the context fails numeric conditions, and NaN is not a number variant."""
    rs = compile_ruleset(
        ruleset(
            {
                "f": boolean_flag(
                    rules=[
                        {"conditions": [{"attribute": "n", "operator": "lt", "value": 1}], "variant": "on"}
                    ]
                )
            }
        )
    )
    assert rs.evaluate("f", {"n": math.nan}).value is False
    nan_flag = {"kind": "number", "variants": [{"key": "x", "value": math.nan}], "offVariant": "x"}
    assert compile_ruleset(ruleset({"n": nan_flag})).evaluate("n").error_code == ErrorCode.PARSE_ERROR


class PlainMapping(Mapping[str, Any]):
    """A read-only mapping that is not a dict: evaluation takes its general path for it."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class Tier(str):
    """A str subclass as a stickiness value: bucketed by its characters."""


STICKY_VALUES: list[Any] = [
    "user-1",
    "alice@example.com",
    "Zoë",
    "🚀",
    "usér-\udcff",
    12345,
    Tier("gold"),
    "x" * 500,
]


@pytest.mark.parametrize("salt", ["f", "grüppe", ""])
@pytest.mark.parametrize("shares", [[25_000, 75_000], [0, 100_000], [20_000, 30_000, 50_000]])
@pytest.mark.parametrize("in_rule", [False, True])
def test_every_split_path_buckets_as_documented(salt: str, shares: list[int], in_rule: bool) -> None:
    """Each compiled shape of a split (default rollout alone or in a rule; two-way or more; ASCII salt or
    not; dict or other mapping; ASCII, non-ASCII, surrogate, integer, str-subclass or missing value)
    serves the variant that bucketing.bucket and the split's bounds give."""
    names = ["a", "b", "c"][: len(shares)]
    weights = [{"variant": n, "weight": w} for n, w in zip(names, shares, strict=True)]
    split = {"split": {"weights": weights, "salt": salt}}
    flag: dict[str, Any] = {
        "kind": "string",
        "variants": [{"key": n, "value": n.upper()} for n in ["a", "b", "c", "z"]],
        "offVariant": "z",
        "enabled": True,
    }
    if in_rule:
        flag["rules"] = [{"conditions": [PRO], **split}]
        flag["defaultRollout"] = {"variant": "z"}
    else:
        flag["defaultRollout"] = split
    rs = compile_ruleset(ruleset({"f": flag}), strict=True)
    bounds = split_bounds(shares)
    for value in STICKY_VALUES:
        expected = names[
            variant_index(bounds, bucket(salt, str.__str__(value) if isinstance(value, str) else str(value)))
        ]
        for context in (
            {"targetingKey": value, "plan": "pro"},
            PlainMapping({"targetingKey": value, "plan": "pro"}),
        ):
            ev = rs.evaluate("f", context, "default")
            assert (ev.variant, ev.value, ev.reason, ev.error_code) == (
                expected,
                expected.upper(),
                Reason.SPLIT,
                None,
            )
    owners = [n for n, w in zip(names, shares, strict=True) if w]
    for missing in (
        {"plan": "pro"},
        {"plan": "pro", "targetingKey": ""},
        {"plan": "pro", "targetingKey": 1.5},
    ):
        ev = rs.evaluate("f", missing, "default")
        if len(owners) == 1:
            assert (ev.variant, ev.reason) == (owners[0], Reason.SPLIT)
        else:
            assert (ev.value, ev.error_code) == ("default", ErrorCode.TARGETING_KEY_MISSING)
    if in_rule:
        assert rs.evaluate("f", {"plan": "free", "targetingKey": "u"}).variant == "z"
    assert rs.evaluate("f", {"targetingKey": "u"}, default=1).error_code == ErrorCode.TYPE_MISMATCH
    assert rs.evaluate("f", "not a mapping", "default").error_code == ErrorCode.GENERAL


def test_a_split_reads_the_stickiness_attribute_of_a_mapping_context() -> None:
    """A two-way rollout over a context that is a Mapping but not a dict reads it like a dict."""
    rs = compile_ruleset(ruleset({"f": boolean_flag(default=TEN_PERCENT)}), strict=True)
    for i in range(500):
        key = f"user-{i}"
        assert rs.evaluate("f", PlainMapping({"targetingKey": key})).value is (bucket("f", key) < 10_000)
    assert rs.evaluate("f", None, default=True).error_code == ErrorCode.TARGETING_KEY_MISSING
