"""Where a rollout's requests go, per revision, as the operator's ``TrafficShifted`` events compare it."""

from __future__ import annotations

import pytest

from gapless.controller.kube_operator import traffic_split, weights_message


@pytest.mark.parametrize(
    ("selected", "canary", "split"),
    [
        ({}, None, {}),  # no Service yet: nothing to compare with
        ({"shop-stable": "", "shop-canary": "b"}, 30, {}),
        ({"shop-stable": "a", "shop-canary": "b"}, None, {"a": 100}),  # no route: the Service decides
        ({"shop-stable": "a", "shop-canary": "b"}, 30, {"a": 70, "b": 30}),
        ({"shop-stable": "a", "shop-canary": "b"}, 0, {"a": 100}),
        ({"shop-stable": "a", "shop-canary": "b"}, 100, {"b": 100}),
        ({"shop-stable": "b", "shop-canary": "b"}, 100, {"b": 100}),  # the end of a canary shifts nothing
        ({"shop-stable": "b", "shop-canary": "b"}, 0, {"b": 100}),
        ({"shop-stable": "a", "shop-canary": "b", "shop-preview": "b"}, None, {"a": 100}),
    ],
)
def test_traffic_split_per_revision(
    selected: dict[str, str], canary: int | None, split: dict[str, int]
) -> None:
    """The split sums the Services' weights per revision they select, and drops revisions at 0."""
    assert traffic_split("shop", selected, canary) == split


def test_weights_message_names_revision_numbers_as_locally() -> None:
    """The message is the local control plane's: revision numbers and percents, in the split's order."""
    status = {"revisions": {"a": {"number": 1}, "b": {"number": 2}}}
    assert weights_message(status, {"a": 70, "b": 30}) == "weights revision 1: 70%, revision 2: 30%"
    assert weights_message(status, {"b": 100}) == "weights revision 2: 100%"
    assert weights_message(status, {"c": 100}) == "weights c: 100%"
