"""``-o json|yaml`` of the flags verbs, and one flag as ``flags get`` prints it."""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from gapless.cli.flags_render import condition_text, dump, flag_lines, serve_text

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@given(JSON)
def test_yaml_parses_back_to_the_same_data_as_json(data: Any) -> None:
    """Whatever the service answers, -o yaml and -o json hold the same data (strings like 'on', '1.0',
    '2026-01-01' or 'null' stay strings)."""
    assert yaml.safe_load(dump(data, "yaml")) == json.loads(dump(data, "json"))


def test_conditions_and_splits_read_as_people_write_them() -> None:
    """Operators with their operands; weights in percent (100,000 is everyone)."""
    assert (
        condition_text({"attribute": "plan", "operator": "in", "values": ["pro", "team"]})
        == "plan in [pro, team]"
    )
    assert condition_text({"operator": "inSegment", "values": ["beta"]}) == "inSegment [beta]"
    assert condition_text({"attribute": "n", "operator": "lt", "value": 3, "negate": True}) == "not n lt 3"
    assert condition_text({"operator": "inRollout", "value": 2500}) == "inRollout 2.5%"
    split = {"split": {"weights": [{"variant": "on", "weight": 1000}, {"variant": "off", "weight": 99000}]}}
    assert serve_text(split) == "on 1% / off 99%"
    assert serve_text({"variant": "on"}) == "on"
    assert serve_text(None) == "the off variant"


def test_one_flag_with_a_release_plan() -> None:
    """State per environment, rules numbered as evaluations count them, the stage and its rollout."""
    doc = {
        "key": "new-checkout",
        "type": "release",
        "kind": "boolean",
        "owner": "team-a",
        "variants": [{"key": "on", "value": True}, {"key": "off", "value": False}],
        "offVariant": "off",
        "environments": {
            "production": {
                "enabled": True,
                "rules": [
                    {"conditions": [{"operator": "inSegment", "values": ["internal"]}], "variant": "on"}
                ],
                "defaultRollout": {"variant": "off"},
                "releasePlan": {
                    "currentStage": 1,
                    "stages": [
                        {"name": "beta", "rules": []},
                        {
                            "name": "1%",
                            "monitoringWindow": "30m",
                            "rules": [{"conditions": [], "variant": "off"}],
                            "rollout": {
                                "split": {
                                    "weights": [
                                        {"variant": "on", "weight": 1000},
                                        {"variant": "off", "weight": 99000},
                                    ]
                                }
                            },
                        },
                    ],
                },
            },
            "staging": {"enabled": False},
        },
    }
    report = {"environments": {"production": {}, "staging": {}, "dev": {}}, "evaluations": {}, "stale": False}
    lines = flag_lines(doc, report)
    assert lines[0] == "new-checkout: release flag, boolean"
    assert "production: on" in lines
    assert "  rule 1: inSegment [internal] -> on" in lines
    assert any(
        line.startswith("  release plan: stage 2/2 '1%' since") and "after 30m" in line for line in lines
    )
    assert "    rule 2: everyone -> off" in lines
    assert "  rollout: on 1% / off 99%" in lines
    assert "staging: OFF (killed: everyone gets the off variant)" in lines
    assert "dev: OFF (not configured)" in lines
