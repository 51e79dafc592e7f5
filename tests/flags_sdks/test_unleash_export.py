"""gapless flags as Unleash features, evaluated by Unleash's own engine, answer as gapless's evaluator does.

The Unleash engine here is ``yggdrasil-engine``, the Rust core that Unleash's Python SDK (UnleashClient)
evaluates with; the SDK itself against a running service is tests/flags_sdks/test_python_sdks.py. Two
sources of flags: every translatable flag of Unleash's client specification (Unleash -> gapless ->
Unleash), and flags written in gapless's own model. Each is evaluated for thousands of contexts by both.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from gapless.flags.evaluate import compile_ruleset
from gapless.flags.model import parse_project, ruleset_for
from gapless.flags.unleash import ruleset_from_unleash, state_from_delta
from gapless.flags.unleash_export import ALL_OPERATORS, CLASSIC_OPERATORS, features_from_ruleset
from tests.flags_sdks.test_unleash_specification import SPEC_FILES, spec_file

yggdrasil = pytest.importorskip("yggdrasil_engine.engine", reason="UnleashClient's engine (dev extra)")

PLANS = ["free", "pro", "enterprise", None]
COUNTRIES = ["DE", "FR", "US", None]
VERSIONS = ["2.0.9", "2.1.0", "2.1.0-rc.1", "2.2.0", "banana", None]


def contexts(n: int, seed: int = 17) -> list[dict[str, Any]]:
    """``n`` varied Unleash contexts: users, sessions, addresses and properties, some missing."""
    rng = random.Random(seed)  # noqa: S311 -- reproducible test contexts
    out = []
    for i in range(n):
        props = {
            k: v
            for k, v in {
                "plan": rng.choice(PLANS),
                "country": rng.choice(COUNTRIES),
                "appVersion": rng.choice(VERSIONS),
                "customField": str(rng.randrange(1000)),
                "targetingKey": f"tk-{i}",
            }.items()
            if v is not None
        }
        ctx: dict[str, Any] = {"properties": props}
        # Never neither: Unleash's default stickiness would then be random (tested by the spec's 0/100% cases).
        if rng.random() < 0.8:
            ctx["userId"] = f"user-{rng.randrange(100_000)}"
        if "userId" not in ctx or rng.random() < 0.5:
            ctx["sessionId"] = f"s-{rng.randrange(100_000)}"
        ctx["remoteAddress"] = f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(256)}"
        ctx["environment"] = rng.choice(["production", "dev", "prod"])
        out.append(ctx)
    return out


def gapless_context(ctx: dict[str, Any]) -> dict[str, Any]:
    return {**ctx.get("properties", {}), **{k: v for k, v in ctx.items() if k != "properties"}}


def unleash_answer(engine: Any, name: str, ctx: dict[str, Any]) -> tuple[bool, str]:
    enabled = engine.check_enabled(name, ctx).is_enabled
    variant = engine.check_variant(name, ctx)
    return bool(enabled), variant.variant.name if variant.variant.enabled else "disabled"


def gapless_answer(rs: Any, name: str, ctx: dict[str, Any]) -> tuple[bool, str]:
    ev = rs.evaluate(name, gapless_context(ctx), False, clock=time.time)
    enabled = ev.value is True
    return enabled, ev.variant if enabled and ev.variant not in (None, "on") else "disabled"


def deterministic(state: dict[str, Any]) -> bool:
    """Whether Unleash's answer for every context is fixed: no random stickiness in play."""
    return "random" not in json.dumps(state) and "gradualRolloutRandom" not in json.dumps(state)


def compare(ruleset: dict[str, Any], project: str, n: int, known: frozenset[str] = ALL_OPERATORS) -> int:
    """Evaluate every exported flag for ``n`` contexts in both engines; returns how many flags."""
    export = features_from_ruleset(ruleset, project, known=known)
    engine = yggdrasil.UnleashEngine()
    engine.take_state(json.dumps({"version": 2, "features": export.features, "segments": export.segments}))
    rs = compile_ruleset(ruleset, strict=True)
    checked = 0
    for feature in export.features:
        if not deterministic(feature):
            continue
        checked += 1
        for ctx in contexts(n):
            name = feature["name"]
            assert unleash_answer(engine, name, ctx) == gapless_answer(rs, name, ctx), (name, ctx, feature)
    return checked


@pytest.mark.parametrize("prefix", SPEC_FILES)
def test_specification_flags_round_trip(node_modules: Path, prefix: str) -> None:
    """Unleash -> gapless -> Unleash: Unleash's engine answers as gapless for every translated flag."""
    spec = json.loads(spec_file(node_modules, prefix).read_text())
    state = spec["state"]
    if "events" in state:
        state = state_from_delta(state["events"])
    ruleset = ruleset_from_unleash(state).ruleset
    export = features_from_ruleset(ruleset, "spec")
    assert not export.omitted, export.omitted  # what gapless imported from Unleash goes back unchanged
    compare(ruleset, "spec", 300)


SHOP = {
    "key": "shop",
    "environments": ["production"],
    "segments": [
        {"key": "germany", "conditions": [{"attribute": "country", "operator": "in", "values": ["DE"]}]}
    ],
    "flags": [
        {
            "key": "kill-me",
            "environments": {"production": {"enabled": True, "defaultRollout": {"variant": "on"}}},
        },
        {
            "key": "rollout-30",
            "tags": ["team:checkout"],
            "environments": {
                "production": {
                    "enabled": True,
                    "rules": [
                        {
                            "conditions": [
                                {
                                    "attribute": "userId",
                                    "operator": "inRollout",
                                    "value": 30_000,
                                    "bucketing": "unleash",
                                    "fallback": ["sessionId", "random"],
                                }
                            ],
                            "variant": "on",
                        }
                    ],
                }
            },
        },
        {
            "key": "targeted",
            "environments": {
                "production": {
                    "enabled": True,
                    "rules": [
                        {
                            "conditions": [
                                {"attribute": "plan", "operator": "in", "values": ["pro", "enterprise"]},
                                {"operator": "inSegment", "values": ["germany"]},
                                {"attribute": "appVersion", "operator": "semverGte", "value": "2.1.0"},
                                {
                                    "attribute": "userId",
                                    "operator": "inRollout",
                                    "value": 50_000,
                                    "bucketing": "unleash",
                                },
                            ],
                            "variant": "on",
                        }
                    ],
                }
            },
        },
        {
            "key": "theme",
            "variants": [
                {"key": "off", "value": False},
                {"key": "blue", "value": True, "payload": {"type": "string", "value": "#00f"}},
                {"key": "green", "value": True, "payload": {"type": "json", "value": '{"g": 1}'}},
            ],
            "offVariant": "off",
            "environments": {
                "production": {
                    "enabled": True,
                    "rules": [
                        {
                            "conditions": [{"attribute": "plan", "operator": "in", "values": ["free"]}],
                            "variant": "off",
                        },
                    ],
                    "defaultRollout": {
                        "split": {
                            "weights": [
                                {"variant": "blue", "weight": 400},
                                {"variant": "green", "weight": 600},
                            ],
                            "bucketing": "unleash",
                            "stickiness": "userId",
                            "fallback": ["sessionId", "random"],
                        }
                    },
                }
            },
        },
        {
            "key": "operators",
            "environments": {
                "production": {
                    "enabled": True,
                    "rules": [
                        {
                            "conditions": [
                                {"attribute": "customField", "operator": "lt", "value": 500},
                                {
                                    "attribute": "plan",
                                    "operator": "startsWith",
                                    "values": ["PR"],
                                    "caseInsensitive": True,
                                },
                                {
                                    "attribute": "remoteAddress",
                                    "operator": "inCidr",
                                    "values": ["10.1.0.0/16"],
                                    "negate": True,
                                },
                            ],
                            "variant": "on",
                        },
                        {
                            "conditions": [
                                {"attribute": "customField", "operator": "regex", "value": "^9[0-9]$"}
                            ],
                            "variant": "on",
                        },
                    ],
                }
            },
        },
        {
            "key": "child",
            "environments": {
                "production": {
                    "enabled": True,
                    "rules": [
                        {
                            "conditions": [
                                {
                                    "attribute": "rollout-30",
                                    "operator": "flagVariant",
                                    "values": ["off"],
                                    "negate": True,
                                },
                                {"attribute": "country", "operator": "notIn", "values": ["US"]},
                            ],
                            "variant": "on",
                        }
                    ],
                }
            },
        },
        {
            "key": "gapless-bucketed",
            "environments": {
                "production": {
                    "enabled": True,
                    "defaultRollout": {
                        "split": {
                            "weights": [
                                {"variant": "on", "weight": 25_000},
                                {"variant": "off", "weight": 75_000},
                            ]
                        }
                    },
                }
            },
        },
    ],
}


def test_gapless_flags_served_to_unleash_answer_the_same() -> None:
    """Flags written in gapless's model, exported, give the same answers in Unleash's engine for 3,000 contexts."""
    ruleset = ruleset_for(parse_project(SHOP), "production", 1)
    export = features_from_ruleset(ruleset, "shop")
    assert set(export.omitted) == {"gapless-bucketed"}
    assert "mixes true and false" in export.omitted["gapless-bucketed"]
    assert compare(ruleset, "shop", 3_000) == 6  # every flag but gapless-bucketed


def test_classic_operators_for_older_sdks() -> None:
    """For an SDK without the newer operators, semverGte is GT or EQ, and regex / CIDR flags are omitted."""
    ruleset = ruleset_for(parse_project(SHOP), "production", 1)
    export = features_from_ruleset(ruleset, "shop", known=CLASSIC_OPERATORS)
    assert set(export.omitted) == {"gapless-bucketed", "operators"}
    assert "not an operator this SDK evaluates" in export.omitted["operators"]
    targeted = next(f for f in export.features if f["name"] == "targeted")
    assert [c["operator"] for s in targeted["strategies"] for c in s["constraints"]] == [
        "IN", "SEMVER_GT", "IN", "SEMVER_EQ"
    ]  # fmt: skip
    assert compare(ruleset, "shop", 3_000, known=CLASSIC_OPERATORS) == 5
