"""The flag model: every bad document is refused with each problem's path; the export compiles as written."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gapless.core.errors import NotFoundError, SpecError
from gapless.flags.evaluate import Reason, compile_ruleset
from gapless.flags.model import Flag, parse_flag, parse_project, ruleset_for


def project(**overrides: Any) -> dict[str, Any]:
    """A valid project: two environments, an internal segment, one flag with a rule and a 10% rollout."""
    doc: dict[str, Any] = {
        "key": "shop",
        "environments": ["staging", "production"],
        "segments": [
            {
                "key": "internal",
                "conditions": [{"attribute": "email", "operator": "endsWith", "values": ["@acme.com"]}],
            }
        ],
        "flags": [
            {
                "key": "new-checkout",
                "owner": "team-checkout",
                "type": "release",
                "environments": {
                    "production": {
                        "enabled": True,
                        "rules": [
                            {
                                "conditions": [{"operator": "inSegment", "values": ["internal"]}],
                                "variant": "on",
                            }
                        ],
                        "defaultRollout": {
                            "split": {
                                "weights": [
                                    {"variant": "off", "weight": 90_000},
                                    {"variant": "on", "weight": 10_000},
                                ]
                            }
                        },
                    }
                },
            }
        ],
    }
    doc.update(overrides)
    return doc


def problems(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_project(doc)
    return {p.path: p.message for p in info.value.problems}


def flag_doc(**fields: Any) -> dict[str, Any]:
    return {"key": "f", **fields}


def test_valid_project_and_boolean_defaults() -> None:
    """A boolean flag without variants gets on/off with off as its off variant."""
    p = parse_project(project())
    f = p.flag("new-checkout")
    assert [(v.key, v.value) for v in f.variants] == [("on", True), ("off", False)]
    assert f.off_variant == "off"
    assert f.flag_type == "release"
    assert f.expected_lifetime_days == 40
    with pytest.raises(NotFoundError):
        p.flag("nope")


@pytest.mark.parametrize(
    ("rule", "path", "message"),
    [
        (
            {"conditions": [{"attribute": "plan", "operator": "like", "value": "x"}], "variant": "on"},
            "rules[1].conditions[0].operator",
            "unknown operator 'like'",
        ),
        (
            {
                "conditions": [{"attribute": "email", "operator": "regex", "value": "(a+)\\1"}],
                "variant": "on",
            },
            "rules[1].conditions[0].value",
            "invalid regular expression",
        ),
        (
            {"conditions": [{"attribute": "v", "operator": "semverGt", "value": "2"}], "variant": "on"},
            "rules[1].conditions[0].value",
            "SemVer",
        ),
        (
            {"conditions": [{"attribute": "n", "operator": "gt", "values": [1]}], "variant": "on"},
            "rules[1].conditions[0].values",
            "takes one `value`",
        ),
        (
            {"conditions": [{"operator": "in", "values": ["x"]}], "variant": "on"},
            "rules[1].conditions[0].attribute",
            "required",
        ),
        ({"conditions": [], "variant": "maybe"}, "rules[1].variant", "unknown variant 'maybe'"),
        ({"conditions": []}, "rules[1]", "exactly one of"),
        (
            {
                "conditions": [],
                "split": {
                    "weights": [{"variant": "on", "weight": 60_000}, {"variant": "off", "weight": 30_000}]
                },
            },
            "rules[1].split.weights",
            "must sum to 100,000",
        ),
        (
            {
                "conditions": [],
                "split": {
                    "weights": [{"variant": "on", "weight": 50_000}, {"variant": "on", "weight": 50_000}]
                },
            },
            "rules[1].split.weights[1].variant",
            "appears twice",
        ),
        (
            {"conditions": [], "split": {"weights": [{"variant": "blue", "weight": 100_000}]}},
            "rules[1].split.weights[0].variant",
            "unknown variant 'blue'",
        ),
        (
            {"conditions": [{"operator": "inSegment", "values": ["beta"]}], "variant": "on"},
            "rules[1].conditions[0].values[0]",
            "unknown segment 'beta'",
        ),
        ({"conditions": [], "variant": "on", "percent": 5}, "rules[1].percent", "unknown field"),
    ],
)
def test_rule_problems_are_named_by_path(rule: dict[str, Any], path: str, message: str) -> None:
    """Each bad rule is refused with the path of the field at fault, below its flag and environment."""
    doc = project()
    doc["flags"][0]["environments"]["production"]["rules"].append(rule)
    found = problems(doc)
    full = f"flags[0].environments.production.{path}"
    assert full in found, found
    assert message in found[full]


def test_flag_problems_are_all_reported_at_once() -> None:
    """Duplicate variants, values of another kind and an unknown off variant are reported together."""
    doc = flag_doc(
        kind="number",
        variants=[{"key": "low", "value": 1}, {"key": "low", "value": 2}, {"key": "high", "value": "10"}],
        offVariant="zero",
    )
    with pytest.raises(SpecError) as info:
        parse_flag(doc)
    found = {p.path: p.message for p in info.value.problems}
    assert set(found) == {"variants[1].key", "variants[2].value", "offVariant"}
    assert "number" in found["variants[2].value"]


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("boolean", 1),
        ("string", True),
        ("number", True),
        ("number", float("nan")),
        ("json", "{}"),
        ("json", 3),
    ],
)
def test_variant_values_must_be_of_the_flag_kind(kind: str, value: Any) -> None:
    """A variant value of another kind is refused at variants[i].value."""
    with pytest.raises(SpecError) as info:
        parse_flag(flag_doc(kind=kind, variants=[{"key": "a", "value": value}], offVariant="a"))
    assert [p.path for p in info.value.problems] == ["variants[0].value"]


def test_project_duplicates_and_references() -> None:
    """Duplicate flag, segment and environment keys, and unknown environments, are named by path."""
    doc = project()
    doc["environments"].append("staging")
    doc["segments"].append(dict(doc["segments"][0]))
    doc["flags"].append({"key": "new-checkout"})
    doc["flags"].append({"key": "other", "environments": {"qa": {"enabled": True}}})
    found = problems(doc)
    assert "duplicate key 'staging'" in found["environments[2]"]
    assert "duplicate key 'internal'" in found["segments[1].key"]
    assert "duplicate key 'new-checkout'" in found["flags[1].key"]
    assert "unknown environment 'qa'" in found["flags[2].environments.qa"]


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("key", "New_Checkout", "key"),
        ("key", "-x", "key"),
        ("type", "temporary", "type"),
        ("kind", "integer", "kind"),
        ("colour", "red", "colour"),
    ],
)
def test_flag_fields_are_checked(field: str, value: Any, path: str) -> None:
    """Keys follow [a-z0-9][a-z0-9._-]*, types and kinds are closed sets, unknown fields are refused."""
    with pytest.raises(SpecError) as info:
        parse_flag(flag_doc(**{field: value}))
    assert path in {p.path for p in info.value.problems}


def test_segments_cannot_nest_and_need_a_salt_for_rollouts() -> None:
    """A segment may not use inSegment, and its inRollout conditions must name a salt."""
    doc = project()
    doc["segments"].append(
        {
            "key": "nested",
            "conditions": [
                {"operator": "inSegment", "values": ["internal"]},
                {"attribute": "userId", "operator": "inRollout", "value": 10},
            ],
        }
    )
    found = problems(doc)
    assert "segments[1].conditions[0].operator" in found
    assert "segments[1].conditions[1].salt" in found


def test_parse_flag_checks_references_against_a_project() -> None:
    """A flag validated on its own against a project has its environments and segments checked."""
    p = parse_project(project())
    doc = flag_doc(
        environments={
            "production": {
                "rules": [{"conditions": [{"operator": "inSegment", "values": ["vip"]}], "variant": "on"}]
            },
            "dev": {},
        }
    )
    with pytest.raises(SpecError) as info:
        parse_flag(doc, project=p)
    assert {pr.path for pr in info.value.problems} == {
        "environments.dev",
        "environments.production.rules[0].conditions[0].values[0]",
    }
    assert isinstance(parse_flag(flag_doc(), project=p), Flag)


def test_release_plan_is_checked() -> None:
    """Stage indexes, stage names and the variants of stages are checked."""
    plan = {
        "stages": [
            {"name": "internal", "rules": [{"conditions": [], "variant": "up"}]},
            {"name": "internal", "rollout": {"variant": "on"}, "monitoringWindow": "soon"},
        ],
        "currentStage": 2,
    }
    doc = project()
    doc["flags"][0]["environments"]["production"]["releasePlan"] = plan
    found = problems(doc)
    base = "flags[0].environments.production.releasePlan"
    assert f"{base}.stages[1].monitoringWindow" in found
    plan["stages"][1]["monitoringWindow"] = "30m"  # type: ignore[index]
    found = problems(doc)
    assert f"{base}.currentStage" in found
    plan["currentStage"] = 1
    found = problems(doc)
    assert f"{base}.stages[1].name" in found
    plan["stages"][1]["name"] = "everyone"  # type: ignore[index]
    found = problems(doc)
    assert set(found) == {"flags[0].environments.production.releasePlan.stages[0].rules[0].variant"}


def test_ruleset_export_compiles_and_evaluates_as_the_model_says() -> None:
    """The exported ruleset is JSON, compiles without problems, and serves the model's targeting."""
    p = parse_project(project())
    data = ruleset_for(p, "production", 7)
    assert json.loads(json.dumps(data)) == data
    rs = compile_ruleset(data, strict=True)
    assert (rs.revision, rs.project, rs.environment) == (7, "shop", "production")
    assert rs.evaluate("new-checkout", {"email": "a@acme.com"}).reason == Reason.TARGETING_MATCH
    split = data["flags"]["new-checkout"]["defaultRollout"]["split"]
    # Ranges follow the flag's variant order (on, off) whatever order the split was written in.
    assert split == {
        "weights": [{"variant": "on", "weight": 10_000}, {"variant": "off", "weight": 90_000}],
        "stickiness": "targetingKey",
        "salt": "new-checkout",
    }
    staging = compile_ruleset(ruleset_for(p, "staging", 1), strict=True)
    assert staging.evaluate("new-checkout", {"email": "a@acme.com"}).reason == Reason.DISABLED
    with pytest.raises(NotFoundError):
        ruleset_for(p, "qa", 1)


def test_release_plan_stage_is_exported() -> None:
    """The current stage's rules follow the environment's, and its rollout replaces the default."""
    doc = project()
    env = doc["flags"][0]["environments"]["production"]
    env["rules"] = [
        {"conditions": [{"attribute": "country", "operator": "equals", "value": "KP"}], "variant": "off"}
    ]
    env["releasePlan"] = {
        "stages": [
            {
                "name": "internal",
                "rules": [
                    {"conditions": [{"operator": "inSegment", "values": ["internal"]}], "variant": "on"}
                ],
            },
            {
                "name": "1%",
                "rules": [
                    {"conditions": [{"operator": "inSegment", "values": ["internal"]}], "variant": "on"}
                ],
                "rollout": {
                    "split": {
                        "weights": [{"variant": "on", "weight": 1_000}, {"variant": "off", "weight": 99_000}]
                    }
                },
                "monitoringWindow": "1h",
            },
            {"name": "100%", "rollout": {"variant": "on"}},
        ],
        "currentStage": 1,
    }
    p = parse_project(doc)
    plan = p.flags[0].environments["production"].release_plan
    assert plan is not None
    assert plan.stages[1].monitoring_window == 3600
    data = ruleset_for(p, "production", 1)
    exported = data["flags"]["new-checkout"]
    assert exported["stage"] == {"index": 1, "name": "1%"}
    assert len(exported["rules"]) == 2
    assert exported["defaultRollout"]["split"]["weights"][0] == {"variant": "on", "weight": 1_000}
    rs = compile_ruleset(data, strict=True)
    assert rs.evaluate("new-checkout", {"country": "KP", "email": "x@acme.com"}).rule_index == 0
    assert rs.evaluate("new-checkout", {"email": "x@acme.com"}).rule_index == 1


def test_archived_flags_are_not_exported_and_in_rollout_gets_the_flag_salt() -> None:
    """Archived flags are left out of rulesets; inRollout without a salt is salted with the flag key."""
    doc = project()
    doc["flags"].append({"key": "old", "archived": True})
    doc["flags"][0]["environments"]["production"]["rules"].append(
        {"conditions": [{"attribute": "userId", "operator": "inRollout", "value": 5_000}], "variant": "on"}
    )
    data = ruleset_for(parse_project(doc), "production", 2)
    assert "old" not in data["flags"]
    assert data["flags"]["new-checkout"]["rules"][1]["conditions"][0]["salt"] == "new-checkout"
