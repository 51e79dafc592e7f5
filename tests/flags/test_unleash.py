"""Unleash's standard strategies and constraint operators, each expressed by hand in gapless's own terms.

These rules use gapless's own bucketing (the same users need not be in a percentage as in Unleash); the
exact translation, with Unleash's bucketing, is ``gapless.flags.unleash``, checked against Unleash's
client specification and SDKs in tests/flags_sdks. Here ``constraint`` maps one Unleash
constraint to a condition, ``strategy`` one strategy to a rule. Unleash enables a flag when any strategy
is on; here each strategy is a rule serving ``on`` (in order, first match wins, which for rules that all
serve ``on`` is the same "any"), the percentage being an ``inRollout`` condition so that a context outside
one strategy's percentage falls through to the next rule, as in Unleash.
"""

from __future__ import annotations

from typing import Any

import pytest

from gapless.flags.bucketing import bucket
from gapless.flags.evaluate import CompiledRuleset, compile_ruleset
from gapless.flags.model import parse_project, ruleset_for

OPERATORS = {
    "IN": "in",
    "NOT_IN": "notIn",
    "STR_CONTAINS": "contains",
    "STR_STARTS_WITH": "startsWith",
    "STR_ENDS_WITH": "endsWith",
    "NUM_EQ": "eq",
    "NUM_GT": "gt",
    "NUM_GTE": "gte",
    "NUM_LT": "lt",
    "NUM_LTE": "lte",
    "DATE_AFTER": "dateAfter",
    "DATE_BEFORE": "dateBefore",
    "SEMVER_EQ": "semverEq",
    "SEMVER_GT": "semverGt",
    "SEMVER_LT": "semverLt",
}
STICKINESS = {"default": "targetingKey", "userId": "userId", "sessionId": "sessionId"}


def constraint(c: dict[str, Any]) -> dict[str, Any]:
    """An Unleash constraint as a gapless condition."""
    op = OPERATORS[c["operator"]]
    out: dict[str, Any] = {"attribute": c["contextName"], "operator": op}
    if op in ("in", "notIn", "contains", "startsWith", "endsWith"):
        out["values"] = c["values"]
    else:
        value = c["value"]
        out["value"] = float(value) if op in ("eq", "gt", "gte", "lt", "lte") else value
    if c.get("inverted"):
        out["negate"] = True
    if c.get("caseInsensitive"):
        out["caseInsensitive"] = True
    return out


def strategy(
    flag: str, name: str, parameters: dict[str, str], constraints: list[dict[str, Any]]
) -> dict[str, Any]:
    """An Unleash strategy as a gapless rule serving ``on``."""
    conditions = [constraint(c) for c in constraints]
    if name == "userWithId":
        conditions.append(
            {
                "attribute": "userId",
                "operator": "in",
                "values": [u.strip() for u in parameters["userIds"].split(",")],
            }
        )
    elif name in ("flexibleRollout", "gradualRolloutUserId", "gradualRolloutSessionId"):
        stickiness = {"gradualRolloutUserId": "userId", "gradualRolloutSessionId": "sessionId"}.get(
            name, STICKINESS.get(parameters.get("stickiness", "default"), parameters.get("stickiness"))
        )
        share = int(parameters.get("rollout", parameters.get("percentage", "100"))) * 1_000
        salt = parameters.get("groupId") or flag
        conditions.append({"attribute": stickiness, "operator": "inRollout", "value": share, "salt": salt})
    elif name == "remoteAddress":
        conditions.append(
            {
                "attribute": "remoteAddress",
                "operator": "inCidr",
                "values": [ip.strip() for ip in parameters["IPs"].split(",")],
            }
        )
    elif name == "applicationHostname":
        hosts = [h.strip() for h in parameters["hostNames"].split(",")]
        conditions.append(
            {"attribute": "hostname", "operator": "in", "values": hosts, "caseInsensitive": True}
        )
    else:
        assert name == "default", name
    return {"conditions": conditions, "variant": "on"}


def unleash_flag(
    name: str, strategies: list[tuple[str, dict[str, str], list[dict[str, Any]]]]
) -> CompiledRuleset:
    """An Unleash flag with these strategies, through the model and the ruleset export."""
    rules = [strategy(name, s, params, constraints) for s, params, constraints in strategies]
    doc = {
        "key": "unleash",
        "environments": ["production"],
        "flags": [{"key": name, "environments": {"production": {"enabled": True, "rules": rules}}}],
    }
    return compile_ruleset(ruleset_for(parse_project(doc), "production", 1), strict=True)


def on(rs: CompiledRuleset, context: dict[str, Any], flag: str = "f") -> bool:
    return bool(rs.evaluate(flag, context).value)


def test_default_strategy_is_on_for_everyone() -> None:
    """default: a rule without conditions."""
    rs = unleash_flag("f", [("default", {}, [])])
    assert on(rs, {})
    assert on(rs, {"userId": "x"})


def test_user_with_id() -> None:
    """userWithId: userId in the listed ids."""
    rs = unleash_flag("f", [("userWithId", {"userIds": "alice, bob"}, [])])
    assert on(rs, {"userId": "bob"})
    assert not on(rs, {"userId": "carol"})
    assert not on(rs, {})


@pytest.mark.parametrize(
    ("name", "parameters", "attribute"),
    [
        ("flexibleRollout", {"rollout": "30", "stickiness": "userId", "groupId": "g"}, "userId"),
        ("flexibleRollout", {"rollout": "30", "stickiness": "sessionId", "groupId": "g"}, "sessionId"),
        ("flexibleRollout", {"rollout": "30", "stickiness": "default", "groupId": "g"}, "targetingKey"),
        ("flexibleRollout", {"rollout": "30", "stickiness": "tenant", "groupId": "g"}, "tenant"),
        ("gradualRolloutUserId", {"percentage": "30", "groupId": "g"}, "userId"),
        ("gradualRolloutSessionId", {"percentage": "30", "groupId": "g"}, "sessionId"),
    ],
)
def test_gradual_rollouts(name: str, parameters: dict[str, str], attribute: str) -> None:
    """Rollouts: inRollout on the stickiness attribute, salted by groupId; a missing attribute is off."""
    rs = unleash_flag("f", [(name, parameters, [])])
    users = [f"user-{i}" for i in range(5_000)]
    enabled = [u for u in users if on(rs, {attribute: u})]
    assert enabled == [u for u in users if bucket("g", u) < 30_000]
    assert abs(len(enabled) / len(users) - 0.30) < 0.03
    assert not on(rs, {})


def test_group_id_puts_two_flags_on_the_same_users() -> None:
    """Two flags with one groupId enable exactly the same users at the same percentage."""
    a = unleash_flag(
        "a", [("flexibleRollout", {"rollout": "20", "stickiness": "userId", "groupId": "checkout"}, [])]
    )
    b = unleash_flag(
        "b", [("flexibleRollout", {"rollout": "20", "stickiness": "userId", "groupId": "checkout"}, [])]
    )
    for i in range(2_000):
        ctx = {"userId": f"u{i}"}
        assert on(a, ctx, "a") == on(b, ctx, "b")


def test_group_id_defaults_to_the_flag_name() -> None:
    """Without groupId the flag's key salts the rollout, as Unleash's default groupId is the flag name."""
    rs = unleash_flag("f", [("flexibleRollout", {"rollout": "50", "stickiness": "userId"}, [])])
    for i in range(500):
        assert on(rs, {"userId": f"u{i}"}) is (bucket("f", f"u{i}") < 50_000)


def test_remote_address_with_ips_and_ranges() -> None:
    """remoteAddress: inCidr over the listed addresses and CIDR ranges."""
    rs = unleash_flag("f", [("remoteAddress", {"IPs": "10.0.0.1, 192.168.0.0/16"}, [])])
    assert on(rs, {"remoteAddress": "10.0.0.1"})
    assert on(rs, {"remoteAddress": "192.168.44.2"})
    assert not on(rs, {"remoteAddress": "10.0.0.2"})


def test_application_hostname() -> None:
    """applicationHostname: hostname in the list, case-insensitively (the application passes it)."""
    rs = unleash_flag("f", [("applicationHostname", {"hostNames": "web-1,Web-2"}, [])])
    assert on(rs, {"hostname": "WEB-2"})
    assert not on(rs, {"hostname": "web-3"})


def test_strategies_are_any_of_including_partial_rollouts() -> None:
    """A context outside one strategy's percentage still gets the flag from a later strategy."""
    outside = [f"u{i}" for i in range(1_000) if bucket("f", f"u{i}") >= 10_000]
    vip, other = outside[0], outside[1]
    beta = {"contextName": "plan", "operator": "IN", "values": ["beta"]}
    rs = unleash_flag(
        "f",
        [
            ("flexibleRollout", {"rollout": "10", "stickiness": "userId", "groupId": "f"}, [beta]),
            ("userWithId", {"userIds": vip}, []),
        ],
    )
    assert not on(rs, {"userId": other, "plan": "beta"})
    assert on(rs, {"userId": vip, "plan": "beta"})


CONSTRAINTS: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    ({"contextName": "plan", "operator": "IN", "values": ["pro"]}, {"plan": "pro"}, True),
    ({"contextName": "plan", "operator": "IN", "values": ["pro"], "inverted": True}, {"plan": "pro"}, False),
    ({"contextName": "plan", "operator": "NOT_IN", "values": ["pro"]}, {"plan": "free"}, True),
    ({"contextName": "plan", "operator": "NOT_IN", "values": ["pro"]}, {}, True),
    ({"contextName": "plan", "operator": "IN", "values": ["pro"], "inverted": True}, {}, True),
    ({"contextName": "email", "operator": "STR_CONTAINS", "values": ["@acme"]}, {"email": "a@acme.io"}, True),
    (
        {"contextName": "email", "operator": "STR_CONTAINS", "values": ["@ACME"], "caseInsensitive": True},
        {"email": "a@acme.io"},
        True,
    ),
    ({"contextName": "email", "operator": "STR_STARTS_WITH", "values": ["adm"]}, {"email": "admin@x"}, True),
    (
        {"contextName": "email", "operator": "STR_ENDS_WITH", "values": [".io"], "inverted": True},
        {"email": "a@acme.io"},
        False,
    ),
    ({"contextName": "age", "operator": "NUM_EQ", "value": "30"}, {"age": "30"}, True),
    ({"contextName": "age", "operator": "NUM_GT", "value": "30"}, {"age": 31}, True),
    ({"contextName": "age", "operator": "NUM_GTE", "value": "30"}, {"age": "30.0"}, True),
    ({"contextName": "age", "operator": "NUM_LT", "value": "30"}, {"age": 30}, False),
    ({"contextName": "age", "operator": "NUM_LTE", "value": "30"}, {"age": 29.5}, True),
    (
        {"contextName": "currentTime", "operator": "DATE_AFTER", "value": "2024-01-01T00:00:00.000Z"},
        {"currentTime": "2024-06-01T00:00:00Z"},
        True,
    ),
    (
        {"contextName": "currentTime", "operator": "DATE_BEFORE", "value": "2024-01-01T00:00:00.000Z"},
        {"currentTime": "2024-06-01T00:00:00Z"},
        False,
    ),
    ({"contextName": "appVersion", "operator": "SEMVER_EQ", "value": "2.1.0"}, {"appVersion": "2.1.0"}, True),
    (
        {"contextName": "appVersion", "operator": "SEMVER_GT", "value": "2.1.0"},
        {"appVersion": "2.1.0-rc.1"},
        False,
    ),
    ({"contextName": "appVersion", "operator": "SEMVER_LT", "value": "2.1.0"}, {"appVersion": "2.0.0"}, True),
    (
        {"contextName": "appVersion", "operator": "SEMVER_LT", "value": "2.1.0", "inverted": True},
        {"appVersion": "2.0.0"},
        False,
    ),
]


@pytest.mark.parametrize(("unleash", "context", "expected"), CONSTRAINTS)
def test_constraint_operators(unleash: dict[str, Any], context: dict[str, Any], expected: bool) -> None:
    """Each Unleash constraint operator, with inverted and caseInsensitive, answers as in Unleash."""
    rs = unleash_flag("f", [("default", {}, [unleash])])
    assert on(rs, context) is expected


def test_every_unleash_operator_is_mapped() -> None:
    """The table covers all fifteen of Unleash's constraint operators."""
    assert {c["operator"] for c, _, _ in CONSTRAINTS} == set(OPERATORS)
