"""Step transitions on a cluster become the local control plane's step events (``kube_steps``, pure)."""

from __future__ import annotations

from typing import Any

import pytest

from gapless.controller.kube_steps import step_events
from tests.k8s.operator import k8s_rollout

STEPS = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}]


def _obj(index: int | None, switched: float | None = None) -> dict[str, Any]:
    doc = k8s_rollout("shop", "v2", strategy={"canary": {"steps": STEPS}})
    doc["metadata"]["namespace"] = "ns"
    if index is not None:
        doc["status"] = _status(index, switched)
    return doc


def _status(index: int, switched: float | None = None) -> dict[str, Any]:
    state = {"index": index, "switched_at": switched}
    return {"currentPodHash": "abc", "revisions": {"abc": {"number": 2, "stepState": state}}}


@pytest.mark.parametrize(
    ("before", "after", "events"),
    [
        (0, 0, []),
        (0, 1, [("StepReached", "step 2/3: pause until promoted", False)]),
        (1, 2, [("StepReached", "step 3/3: set weight 50%", False)]),
        (2, 3, [("StepsCompleted", "all 3 steps done", False)]),
        (None, 0, []),  # a new revision starts at its first step: nothing reached yet, as locally
    ],
)
def test_step_index_changes_are_step_events(before: int | None, after: int, events: list[Any]) -> None:
    """Each step reached is ``StepReached`` with the step as the local events describe it; past the last,
    ``StepsCompleted``."""
    assert step_events(_obj(before), _status(after)) == events


def test_all_traffic_moved_is_promoted_once() -> None:
    """``Promoted`` names the revision when its traffic switch is first recorded, not on later passes."""
    assert step_events(_obj(3), _status(3, switched=5.0)) == [
        ("Promoted", "revision 2 (abc) takes all traffic", False)
    ]
    assert step_events(_obj(3, switched=5.0), _status(3, switched=5.0)) == []
