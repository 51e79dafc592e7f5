"""Unleash's semantics in gapless's evaluator: Unleash bucketing, stickiness chains, dependent flags.

The client specification (tests/flags_sdks) checks whole Unleash documents; these tests pin each piece
on its own, with vectors computed from Unleash's published algorithm (``murmur3("groupId:value") % 100
+ 1 <= percentage``; variants with seed 86028157 modulo the total weight).
"""

from __future__ import annotations

from typing import Any

import mmh3
import pytest

from gapless.flags.bucketing import unleash_percent_bucket, unleash_variant_bucket
from gapless.flags.evaluate import ErrorCode, Reason, compile_ruleset
from tests.flags.conftest import boolean_flag, ruleset


def rollout(share: int, **extra: Any) -> dict[str, Any]:
    """A flag on for ``share`` of contexts by an Unleash-bucketed inRollout on userId, salt ``g``."""
    cond = {
        "attribute": "userId",
        "operator": "inRollout",
        "value": share,
        "salt": "g",
        "bucketing": "unleash",
    }
    return boolean_flag(rules=[{"conditions": [cond | extra], "variant": "on"}])


def test_unleash_rollout_bucket_is_murmur3_modulo_100() -> None:
    """A user is in an Unleash rollout of P% exactly when murmur3("groupId:userId") % 100 is below P."""
    rs = compile_ruleset(ruleset({"f": rollout(30_000)}), strict=True)
    for i in range(3_000):
        uid = f"user-{i}"
        expected = mmh3.hash(f"g:{uid}", 0, False) % 100 + 1 <= 30
        assert rs.evaluate("f", {"userId": uid}).value is expected
        assert (unleash_percent_bucket("g", uid) < 30) is expected


def test_unleash_rollout_needs_whole_percent() -> None:
    """An Unleash-bucketed rollout of 12.5% is refused: Unleash has whole percentages only."""
    rs = compile_ruleset(ruleset({"f": rollout(12_500)}))
    ev = rs.evaluate("f", {"userId": "u"})
    assert ev.error_code == ErrorCode.PARSE_ERROR
    assert "multiple of 1000" in str(ev.error_message)


def test_stickiness_chain_and_random_fallback() -> None:
    """userId, then sessionId; random only at the end: 100% is on for everyone, 0% for no one."""
    chained = rollout(50_000, fallback=["sessionId"])
    everyone = rollout(100_000, fallback=["sessionId", "random"])
    no_one = rollout(0, fallback=["random"])
    rs = compile_ruleset(ruleset({"c": chained, "all": everyone, "none": no_one}), strict=True)
    for i in range(500):
        sid = f"s{i}"
        assert rs.evaluate("c", {"sessionId": sid}).value is (unleash_percent_bucket("g", sid) < 50)
        assert rs.evaluate("all", {}).value is True
        assert rs.evaluate("none", {"userId": sid}).value is False
    assert rs.evaluate("c", {}).value is False


def test_random_stickiness_needs_unleash_bucketing() -> None:
    """random is Unleash's; gapless's own rollouts stay deterministic and refuse it."""
    cond = {"attribute": "userId", "operator": "inRollout", "value": 50_000, "fallback": ["random"]}
    ev = compile_ruleset(
        ruleset({"f": boolean_flag(rules=[{"conditions": [cond], "variant": "on"}])})
    ).evaluate("f", {})
    assert ev.error_code == ErrorCode.PARSE_ERROR


def test_unleash_variant_split() -> None:
    """Variants bucket with seed 86028157 modulo the total weight, ranges in variant order."""
    variants = [{"key": k, "value": k} for k in ("a", "b", "c")]
    split = {
        "weights": [
            {"variant": "a", "weight": 33},
            {"variant": "b", "weight": 33},
            {"variant": "c", "weight": 34},
        ],
        "salt": "feature",
        "stickiness": "userId",
        "bucketing": "unleash",
        "fallback": ["random"],
    }
    flag = {
        "kind": "string",
        "variants": variants,
        "offVariant": "a",
        "enabled": True,
        "defaultRollout": {"split": split},
    }
    rs = compile_ruleset(ruleset({"f": flag}), strict=True)
    for i in range(2_000):
        uid = str(i)
        b = mmh3.hash(f"feature:{uid}", 86028157, False) % 100
        assert unleash_variant_bucket("feature", uid, 100) == b
        expected = "a" if b < 33 else "b" if b < 66 else "c"
        ev = rs.evaluate("f", {"userId": uid})
        assert (ev.variant, ev.reason) == (expected, Reason.SPLIT)
    assert rs.evaluate("f", {}).variant in {"a", "b", "c"}  # random, as Unleash


def test_flag_variant_dependency() -> None:
    """flagVariant holds when the parent serves a listed variant; a missing or dependent parent never."""
    on_for_pro = boolean_flag(
        rules=[{"conditions": [{"attribute": "plan", "operator": "in", "values": ["pro"]}], "variant": "on"}]
    )
    child = boolean_flag(
        rules=[
            {
                "conditions": [{"attribute": "parent", "operator": "flagVariant", "values": ["on"]}],
                "variant": "on",
            }
        ]
    )
    orphan = boolean_flag(
        rules=[
            {
                "conditions": [{"attribute": "nope", "operator": "flagVariant", "values": ["on"]}],
                "variant": "on",
            }
        ]
    )
    grandchild = boolean_flag(
        rules=[
            {
                "conditions": [
                    {"attribute": "child", "operator": "flagVariant", "values": ["off"], "negate": True}
                ],
                "variant": "on",
            }
        ]
    )
    rs = compile_ruleset(
        ruleset({"parent": on_for_pro, "child": child, "orphan": orphan, "grandchild": grandchild}),
        strict=True,
    )
    assert rs.evaluate("child", {"plan": "pro"}).value is True
    assert rs.evaluate("child", {"plan": "free"}).value is False
    assert rs.evaluate("orphan", {"plan": "pro"}).value is False
    assert rs.evaluate("grandchild", {"plan": "pro"}).value is False  # one level only, as in Unleash


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("bucketing", "other", "must be gapless or unleash"),
        ("fallback", "sessionId", "must be a list"),
        ("fallback", [""], "attribute name"),
    ],
)
def test_bad_rollout_options_name_the_field(field: str, value: Any, words: str) -> None:
    """A bad bucketing or fallback breaks the flag with a message naming the field."""
    cond = {"attribute": "userId", "operator": "inRollout", "value": 1000, field: value}
    rs = compile_ruleset(ruleset({"f": boolean_flag(rules=[{"conditions": [cond], "variant": "on"}])}))
    ev = rs.evaluate("f", {"userId": "u"})
    assert ev.error_code == ErrorCode.PARSE_ERROR
    assert field in str(ev.error_message)
    assert words in str(ev.error_message)
