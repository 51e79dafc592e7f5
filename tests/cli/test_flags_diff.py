"""``flags diff``: the document diff and what apply of a project file would change."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gapless.cli.flags_diff import MISSING, Change, diff, diff_data, patch, plan_diff, same
from gapless.core.errors import SpecError

KEYS = st.text("abcdefgh._-", min_size=1, max_size=4)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=25,
)


@given(JSON)
def test_a_document_has_no_difference_from_itself(a: Any) -> None:
    """diff(a, a) is empty."""
    assert diff(a, a) == []


@given(JSON, JSON)
def test_applying_the_diff_gives_the_other_document(a: Any, b: Any) -> None:
    """patch(a, diff(a, b)) is b, as JSON values, and a itself is left as it was."""
    before = copy.deepcopy(a)
    result = patch(a, diff(a, b))
    assert same(result, b)
    assert json.dumps(a, sort_keys=True) == json.dumps(before, sort_keys=True)


@given(JSON, JSON)
def test_the_diff_is_empty_exactly_when_the_documents_are_the_same(a: Any, b: Any) -> None:
    """No change is reported between equal documents, and some change between different ones."""
    assert (diff(a, b) == []) == same(a, b)


@given(st.dictionaries(KEYS, JSON, max_size=5), st.dictionaries(KEYS, JSON, max_size=5))
def test_each_change_names_a_leaf_that_differs(a: dict[str, Any], b: dict[str, Any]) -> None:
    """A change's before is what a holds at its path (or MISSING), and its after what b holds."""

    def at(doc: Any, path: tuple[str | int, ...]) -> Any:
        for part in path:
            try:
                doc = doc[part]
            except (KeyError, IndexError, TypeError):
                return MISSING
        return doc

    for c in diff(a, b):
        assert at(a, c.path) is c.before or same(at(a, c.path), c.before)
        assert at(b, c.path) is c.after or same(at(b, c.path), c.after)
        assert not (c.before is not MISSING and c.after is not MISSING and same(c.before, c.after))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ({"x": True}, {"x": 1}, [Change(("x",), True, 1)]),  # a boolean is no number
        ({"x": 1}, {"x": 1.0}, []),  # JSON has one number type
        ({"x": [1, 2]}, {"x": [1, 3]}, [Change(("x", 1), 2, 3)]),
        ({"x": [1, 2]}, {"x": [1]}, [Change(("x",), [1, 2], [1])]),  # lengths differ: the whole list
        ({"x": 1}, {}, [Change(("x",), 1, MISSING)]),
        ({}, {"y": {"z": 1}}, [Change(("y",), MISSING, {"z": 1})]),
    ],
)
def test_diff_table(a: Any, b: Any, expected: list[Change]) -> None:
    """Examples of the rules: bool vs number, list items, added and removed keys."""
    assert diff(a, b) == expected


def test_change_paths_read_like_the_document() -> None:
    """A change's path is written with dots and list indexes."""
    assert Change(("environments", "production", "rules", 0, "variant"), "a", "b").dotted() == (
        "environments.production.rules[0].variant"
    )


# -- what apply would change --------------------------------------------------------------------------

FLAG = {
    "key": "new-checkout",
    "owner": "team-a",
    "environments": {"production": {"enabled": True, "defaultRollout": {"variant": "on"}}},
}
PROJECT = {
    "key": "shop",
    "environments": ["staging", "production"],
    "segments": [
        {"key": "beta", "conditions": [{"attribute": "plan", "operator": "in", "values": ["beta"]}]}
    ],
    "flags": [FLAG],
}


def stored(doc: dict[str, Any]) -> dict[str, Any]:
    """The project as the service answers GET /projects/{p}: defaults filled in, times stamped."""
    from gapless.flags.model import parse_project

    held = parse_project(doc).model_dump(mode="json", by_alias=True, exclude_none=True)
    for f in held["flags"]:
        f["createdAt"] = f["updatedAt"] = 1.0
    return held | {"revisions": {"production": 3}}


def test_a_file_the_service_already_holds_has_no_difference() -> None:
    """Applied as it is, the file changes nothing: the service's defaults and times are no difference."""
    result = plan_diff(copy.deepcopy(PROJECT), stored(PROJECT))
    assert result.documents == []


def test_a_killed_environment_shows_as_the_change_apply_would_make() -> None:
    """apply replaces each flag whole, so it would turn a killed flag back on: the diff says so."""
    held = stored(PROJECT)
    held["flags"][0]["environments"]["production"]["enabled"] = False
    result = plan_diff(copy.deepcopy(PROJECT), held)
    [doc] = result.documents
    assert (doc.kind, doc.key, doc.action) == ("flag", "new-checkout", "changed")
    assert [(c.dotted(), c.before, c.after) for c in doc.changes] == [
        ("environments.production.enabled", False, True)
    ]


def test_new_and_missing_flags() -> None:
    """A flag only in the file is added; one only in the service is left alone, not removed."""
    held = stored(PROJECT | {"flags": [FLAG | {"key": "old-banner"}]})
    result = plan_diff(copy.deepcopy(PROJECT), held)
    assert [(d.kind, d.key, d.action) for d in result.documents] == [("flag", "new-checkout", "added")]
    assert result.left_alone == [("flag", "old-banner")]
    data = diff_data(result)
    assert data["changes"][0]["after"]["offVariant"] == "off"  # filled in as the service stores it
    assert data["leftAlone"] == [{"kind": "flag", "key": "old-banner"}]


def test_a_project_the_service_does_not_hold_is_added_whole() -> None:
    """Against no project, the project, its segment and its flag are all added."""
    result = plan_diff(copy.deepcopy(PROJECT), None)
    assert [(d.kind, d.action) for d in result.documents] == [
        ("project", "added"),
        ("segment", "added"),
        ("flag", "added"),
    ]


def test_project_fields_are_compared() -> None:
    """A new environment list is a change of the project's fields."""
    result = plan_diff(PROJECT | {"environments": ["production"]}, stored(PROJECT))
    assert [(d.kind, [c.dotted() for c in d.changes]) for d in result.documents] == [
        ("project", ["environments"])
    ]


def test_a_segment_the_service_holds_may_be_referenced() -> None:
    """As for apply, a rule may name a segment the service holds but the file leaves out."""
    rule = {"conditions": [{"operator": "inSegment", "values": ["beta"]}], "variant": "on"}
    flag = FLAG | {"environments": {"production": {"enabled": True, "rules": [rule]}}}
    result = plan_diff(PROJECT | {"segments": [], "flags": [flag]}, stored(PROJECT))
    assert [d.key for d in result.documents] == ["new-checkout"]
    assert result.left_alone == [("segment", "beta")]


def test_an_invalid_file_is_refused_with_every_problem() -> None:
    """A file apply would be refused for is a SpecError naming each problem's path."""
    bad = PROJECT | {"flags": [FLAG | {"environments": {"qa": {"enabled": True}}, "kind": "colour"}]}
    with pytest.raises(SpecError) as e:
        plan_diff(bad, stored(PROJECT))
    assert any("kind" in p.path for p in e.value.problems)
