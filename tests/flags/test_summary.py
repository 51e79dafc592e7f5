"""A flag per environment as the dashboard shows it: rules in evaluation order, the rollout and its percentage."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gapless.flags.model import parse_flag
from gapless.flags.summary import environment_summary

BUCKETS = 100_000


def _flag(env: dict[str, Any]) -> Any:
    return parse_flag({"key": "f", "environments": {"production": env}})


@st.composite
def splits(draw: st.DrawFn) -> dict[str, Any]:
    on = draw(st.integers(0, BUCKETS))
    weights = [{"variant": "on", "weight": on}, {"variant": "off", "weight": BUCKETS - on}]
    return {"weights": draw(st.permutations(weights))}


serves = st.one_of(
    st.sampled_from(["on", "off"]).map(lambda v: {"variant": v}),
    splits().map(lambda s: {"split": s}),
)
conditions = st.lists(
    st.one_of(
        st.builds(
            lambda a, vs, neg: {"attribute": a, "operator": "in", "values": vs, "negate": neg},
            st.sampled_from(["country", "plan", "email"]),
            st.lists(st.text("abcdef{}[]", min_size=1, max_size=6), min_size=1, max_size=5),
            st.booleans(),
        ),
        st.just({"operator": "inSegment", "values": ["beta"]}),
    ),
    max_size=3,
)
rules = st.lists(st.builds(lambda c, s: {"conditions": c} | s, conditions, serves), max_size=4)


@given(rules, st.one_of(st.none(), serves), st.booleans())
def test_rules_and_rollout_are_summarised_in_order(
    rs: list[dict[str, Any]], rollout: Any, enabled: bool
) -> None:
    """Every rule is listed in order, with what it serves; the rollout's percentage is the share not served off."""
    env: dict[str, Any] = {"enabled": enabled, "rules": rs}
    if rollout is not None:
        env["defaultRollout"] = rollout
    summary = environment_summary(_flag(env), "production")
    assert len(summary["rules"]) == len(rs)
    for text, rule in zip(summary["rules"], rs, strict=True):
        assert text.startswith("everyone: " if not rule["conditions"] else "if ")
        assert text.count(" and ") >= max(0, len(rule["conditions"]) - 1)
    r = summary["rollout"]
    assert 0 <= r["percent"] <= 100
    if rollout is None:
        assert (r["variant"], r["percent"]) == ("off", 0)
    elif "variant" in rollout:
        assert r["percent"] == (100 if rollout["variant"] == "on" else 0)
    else:
        on = next(w["weight"] for w in rollout["split"]["weights"] if w["variant"] == "on")
        assert abs(r["percent"] - 100 * on / BUCKETS) < 1e-9
        assert abs(sum(s["percent"] for s in r["split"]) - 100) < 1e-9
    assert r["text"].startswith("everyone else: ")


def test_a_release_stage_adds_its_rules_and_rollout() -> None:
    """With a release plan, the current stage's rules follow the environment's and its rollout is in force."""
    flag = _flag(
        {
            "enabled": True,
            "rules": [
                {
                    "conditions": [
                        {"attribute": "email", "operator": "endsWith", "values": ["@example.com"]}
                    ],
                    "variant": "on",
                }
            ],
            "releasePlan": {
                "currentStage": 1,
                "stages": [
                    {"name": "internal"},
                    {
                        "name": "beta",
                        "rules": [
                            {"conditions": [{"operator": "inSegment", "values": ["beta"]}], "variant": "on"}
                        ],
                        "rollout": {
                            "split": {
                                "weights": [
                                    {"variant": "on", "weight": 25000},
                                    {"variant": "off", "weight": 75000},
                                ]
                            }
                        },
                    },
                ],
            },
        }
    )
    summary = environment_summary(flag, "production")
    assert summary["rules"] == ["if email endsWith @example.com: on", "if in segment beta: on"]
    assert summary["rollout"]["percent"] == 25
    assert summary["rollout"]["text"] == "everyone else: 25% on, 75% off"


def test_an_environment_without_settings_serves_off() -> None:
    """A flag never configured in an environment serves its off variant to everyone there."""
    summary = environment_summary(_flag({}), "staging")
    assert summary == {
        "rules": [],
        "rollout": {"variant": "off", "split": None, "percent": 0.0, "text": "everyone else: off"},
    }
