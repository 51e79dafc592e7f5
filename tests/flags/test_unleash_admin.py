"""Reading Unleash's admin feature export: the rules it keeps, checked over generated exports.

The rules: an admin export read back gives the client features Unleash would serve for it (strategies in
``sortOrder``, disabled ones left out and named, enabled and variants from the environment row, segments
with their constraints, dependencies); any one field of the wrong type is an ``ExportError`` naming that
field and nothing else; a strategy on a segment the file has no constraints for refuses its feature by
name; an import plan of a well-formed file never raises.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gapless.flags.unleash_admin import ExportError, read_export
from gapless.flags.unleash_import import plan_import

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
OPERATORS = ["IN", "NOT_IN", "STR_CONTAINS", "NUM_GT", "SEMVER_LT", "DATE_AFTER"]


@st.composite
def constraints(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(OPERATORS))
        c: dict[str, Any] = {
            "contextName": draw(st.sampled_from(["plan", "country", "userId"])),
            "operator": op,
        }
        if op in ("IN", "NOT_IN", "STR_CONTAINS"):
            c["values"] = draw(st.lists(NAMES, min_size=1, max_size=3))
        else:
            c["value"] = {"NUM_GT": "5", "SEMVER_LT": "2.0.0", "DATE_AFTER": "2024-01-01T00:00:00Z"}[op]
        c["inverted"] = draw(st.booleans())
        c["caseInsensitive"] = draw(st.booleans())
        out.append(c)
    return out


def variants(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(NAMES, max_size=3, unique=True))
    return [
        {"name": n, "weight": 1000 // len(names), "stickiness": "default", "overrides": []} for n in names
    ]


@st.composite
def exports(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """An admin export and the client features Unleash serves for it (the expected reading)."""
    segment_ids = draw(st.lists(st.integers(1, 50), max_size=3, unique=True))
    segments = [{"id": i, "name": f"seg-{i}", "constraints": draw(constraints())} for i in segment_ids]
    names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    admin: dict[str, Any] = {
        "features": [],
        "featureStrategies": [],
        "featureEnvironments": [],
        "segments": [{"id": s["id"], "name": s["name"], "constraints": s["constraints"]} for s in segments],
        "tagTypes": [{"name": "simple", "description": "d", "icon": "#"}],
        "featureTags": [],
        "contextFields": [{"name": "plan", "legalValues": []}],
        "dependencies": [],
    }
    client: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for n in names:
        admin["features"].append(
            {"name": n, "project": "default", "type": "release", "impressionData": False}
        )
        enabled = draw(st.booleans())
        env_variants = variants(draw)
        admin["featureEnvironments"].append(
            {
                "name": n,
                "featureName": n,
                "environment": "development",
                "enabled": enabled,
                "variants": env_variants,
            }
        )
        strategies = []
        for k in range(draw(st.integers(0, 3))):
            s: dict[str, Any] = {
                "name": draw(st.sampled_from(["default", "flexibleRollout", "userWithId"])),
                "parameters": {"rollout": "50", "stickiness": "default", "groupId": n, "userIds": "a,b"},
                "constraints": draw(constraints()),
                "segments": draw(st.lists(st.sampled_from(segment_ids), max_size=2, unique=True))
                if segment_ids
                else [],
                "variants": variants(draw),
            }
            disabled = draw(st.booleans())
            order = draw(st.integers(0, 5))
            rows.append({**s, "id": f"{n}-{k}", "featureName": n, "sortOrder": order, "disabled": disabled})
            if not disabled:
                strategies.append((order, len(rows), s))
        parent = draw(st.sampled_from([None, *names]))
        feature: dict[str, Any] = {
            "name": n,
            "enabled": enabled,
            "strategies": [s for _, _, s in sorted(strategies, key=lambda t: (t[0], t[1]))],
            "variants": env_variants,
            "project": "default",
            "type": "release",
            "impressionData": False,
        }
        if parent is not None and parent != n:
            admin["dependencies"].append(
                {"feature": n, "dependencies": [{"feature": parent, "enabled": True}]}
            )
            feature["dependencies"] = [{"feature": parent, "enabled": True}]
        client.append(feature)
    admin["featureStrategies"] = draw(st.permutations(rows))
    # rows of equal sortOrder keep the file's order: the expectation follows the shuffled order
    position = {id(r): i for i, r in enumerate(admin["featureStrategies"])}
    for feature in client:
        mine = [
            r for r in admin["featureStrategies"] if r["featureName"] == feature["name"] and not r["disabled"]
        ]
        mine.sort(key=lambda r: (r["sortOrder"], position[id(r)]))
        feature["strategies"] = [
            {k: r[k] for k in ("name", "parameters", "constraints", "segments", "variants")} for r in mine
        ]
    return admin, {"version": 2, "features": client, "segments": segments}


@settings(max_examples=80, deadline=None)
@given(exports())
def test_admin_export_reads_as_the_client_features_unleash_serves(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """An admin export reads as Unleash's client features of its environment: order, enabled, variants, segments."""
    admin, client = pair
    shape = read_export(admin, "production")
    assert shape.admin
    assert not shape.refused
    assert shape.state["segments"] == client["segments"]
    got = {f["name"]: f for f in shape.state["features"]}
    for want in client["features"]:
        f = got[want["name"]]
        assert f["enabled"] == want["enabled"]
        assert f["strategies"] == want["strategies"]
        assert f["variants"] == want["variants"]
        assert f.get("dependencies", []) == want.get("dependencies", [])
    disabled = sum(1 for r in admin["featureStrategies"] if r["disabled"])
    assert sum("disabled strategy" in n for n in shape.notes) == disabled
    assert any("context fields plan" in n for n in shape.notes)
    plan_import(admin, "production", {})  # a well-formed file never raises


def _paths(doc: object, prefix: str = "") -> list[tuple[str, Any]]:
    """Every (field path, value) of a JSON document, as ExportError names fields."""
    out: list[tuple[str, Any]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            p = f"{prefix}.{k}" if prefix else k
            out.append((p, v))
            out.extend(_paths(v, p))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            p = f"{prefix}[{i}]"
            out.append((p, v))
            out.extend(_paths(v, p))
    return out


CHECKED = (
    "features",
    "featureStrategies",
    "featureEnvironments",
    "segments",
    ".name",
    ".featureName",
    ".constraints",
    ".operator",
    ".contextName",
    ".variants",
    ".parameters",
    ".enabled",
    ".disabled",
    ".weight",
    ".inverted",
)


def _set(doc: Any, path: str, value: Any) -> None:
    import re

    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    for part in parts[:-1]:
        doc = doc[int(part[1:-1])] if part.startswith("[") else doc[part]
    last = parts[-1]
    if last.startswith("["):
        doc[int(last[1:-1])] = value
    else:
        doc[last] = value


@settings(max_examples=100, deadline=None)
@given(exports(), st.data())
def test_a_field_of_the_wrong_type_is_named(
    pair: tuple[dict[str, Any], dict[str, Any]], data: st.DataObject
) -> None:
    """Any one checked field given a value of the wrong type is an ExportError naming exactly that field."""
    admin, _ = pair
    candidates = [
        (p, v)
        for p, v in _paths(admin)
        if p.endswith(CHECKED) or p in CHECKED
        if not (p.startswith(("featureEnvironments", "tagTypes", "contextFields")) and p.endswith(".name"))
    ]
    path, value = data.draw(st.sampled_from(candidates))
    wrong = 7 if isinstance(value, (str, list, dict, bool)) else "seven"
    if path.endswith(".weight"):
        wrong = -1
    broken = copy.deepcopy(admin)
    _set(broken, path, wrong)
    with pytest.raises(ExportError) as caught:
        plan_import(broken, "production", {})
    assert caught.value.field == path, (caught.value, path)


def test_bad_files_are_named() -> None:
    """Not an object, an unknown top-level field, a strategy of an unknown feature: the field is named."""
    base = {"features": [{"name": "a"}], "featureStrategies": [], "tagTypes": []}
    cases: list[tuple[object, str]] = [
        ([], "(file)"),
        ({"features": []}, "features"),  # client shape, but a list is fine: no error
        ({**base, "extra": 1}, "extra"),
        (
            {**base, "featureStrategies": [{"featureName": "b", "name": "default"}]},
            "featureStrategies[0].featureName",
        ),
        ({**base, "features": [{"name": "a"}, {"name": "a"}]}, "features[1].name"),
        ({**base, "segments": [{"id": "x", "name": "s"}]}, "segments[0].id"),
        ({"features": "x"}, "features"),
        ({"nothing": 1}, "(file)"),
    ]
    for doc, field in cases:
        if field == "features" and doc == {"features": []}:
            assert read_export(doc, "production").state["features"] == []
            continue
        with pytest.raises(ExportError) as caught:
            read_export(doc, "production")
        assert caught.value.field == field, (doc, caught.value)


def test_segments_without_constraints_and_archived_features_are_refused_by_name() -> None:
    """Unleash exports segments by name only: a feature on one is refused naming the segment; so is an archived one."""
    admin = {
        "features": [{"name": "a"}, {"name": "b", "archived": True}, {"name": "c"}],
        "featureStrategies": [
            {"featureName": "a", "name": "default", "segments": [3]},
            {
                "featureName": "c",
                "name": "default",
                "constraints": [{"contextName": "x", "operator": "NOPE"}],
            },
        ],
        "featureEnvironments": [{"featureName": "a", "enabled": True}],
        "segments": [{"id": 3, "name": "beta users"}],
        "tagTypes": [],
    }
    plan = plan_import(admin, "production", {})
    assert "'beta users' (id 3)" in plan.refused["a"]
    assert "archived" in plan.refused["b"]
    assert "unknown operator 'NOPE'" in plan.refused["c"]
    assert "constraints[0]" in plan.refused["c"]
    assert not plan.flags
    assert not plan.segments


def test_rows_of_several_environments_are_narrowed() -> None:
    """An export whose rows name several environments is read for the one chosen, and names the choice if absent."""
    admin = {
        "features": [{"name": "a"}],
        "featureStrategies": [
            {"featureName": "a", "name": "default", "environment": "dev"},
            {"featureName": "a", "name": "userWithId", "parameters": {"userIds": "u"}, "environment": "prod"},
        ],
        "featureEnvironments": [
            {"featureName": "a", "environment": "dev", "enabled": False},
            {"featureName": "a", "environment": "prod", "enabled": True},
        ],
        "tagTypes": [],
    }
    state = read_export(admin, "prod").state
    assert state["features"][0]["enabled"] is True
    assert [s["name"] for s in state["features"][0]["strategies"]] == ["userWithId"]
    with pytest.raises(ExportError, match="--environment"):
        read_export(admin, "production")


def test_tags_and_titles_are_carried() -> None:
    """Feature tags become flag tags (type:value) and a strategy's title its rule's description."""
    admin = {
        "features": [{"name": "a", "project": "p"}],
        "featureStrategies": [{"featureName": "a", "name": "default", "title": "Everyone"}],
        "featureEnvironments": [{"featureName": "a", "enabled": True}],
        "featureTags": [{"featureName": "a", "tagType": "simple", "tagValue": "ui"}],
        "tagTypes": [{"name": "simple"}],
    }
    plan = plan_import(admin, "production", {})
    doc = plan.flags["a"]
    assert doc["tags"] == ["simple:ui"]
    assert doc["environments"]["production"]["rules"][0]["description"] == "Everyone"
    assert plan.projects == {"p"}
