"""The status document: phases, conditions and the strategy section, from records alone."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from gapless.cli.render import summary_line
from gapless.controller.status import build_status, strategy_status
from gapless.spec import parse_rollout
from gapless.store.records import InstanceRecord, RevisionRecord
from gapless.strategies.plan import RolloutView, StepState

NOW = 1000.0

DOC = """
apiVersion: gapless.dev/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  replicas: 2
  listen: 127.0.0.1:8080
  template: {command: [app]}
  strategy:
    canary:
      steps: [{setWeight: 20}, {pause: {duration: 30}}, {pause: {}}]
"""


def view(**kw: object) -> RolloutView:
    base = {
        "replicas": 2,
        "max_surge": 1,
        "max_unavailable": 0,
        "min_ready_seconds": 0,
        "progress_deadline_seconds": 600,
        "paused": False,
        "target": "c",
        "target_failed": False,
        "target_complete": False,
        "stable": "s",
        "progress_at": NOW,
    }
    return RolloutView(**(base | kw))  # type: ignore[arg-type]


def inst(
    i: str, rev: str, *, ready: bool = True, state: str = "running", message: str = ""
) -> InstanceRecord:
    return InstanceRecord(
        i,
        "shop",
        rev,
        state,
        NOW - 10,
        "/tmp/x.log",
        pid=1,
        port=2,
        ready=ready,  # type: ignore[arg-type]
        ready_since=NOW - 5 if ready else None,
        message=message,
        restarts=1,
    )


def rev(h: str, n: int, phase: str, state: StepState | None = None) -> RevisionRecord:
    return RevisionRecord(
        "shop", h, n, {"command": ["app"]}, NOW - 100, phase, step_state=(state or StepState()).to_json()
    )  # type: ignore[arg-type]


def test_timed_pause_shows_time_left_and_is_not_paused() -> None:
    """A timed canary pause reports the seconds left and stays Progressing (scripts keep waiting)."""
    spec = parse_rollout(DOC).spec
    target = rev("c", 2, "progressing", StepState(index=1, weight=20, pause_started_at=NOW - 10))
    strategy = strategy_status(spec, target, rev("s", 1, "complete"), {"c": 20, "s": 80}, NOW)
    assert strategy["pauseRemaining"] == 20
    assert strategy["weights"] == {"2": 20, "1": 80}
    status = build_status(
        name="shop",
        generation=3,
        view=view(),
        revisions=[rev("s", 1, "complete"), target],
        instances=[inst("a", "s"), inst("b", "s"), inst("x", "c")],
        router={},
        previous={},
        now=NOW,
        strategy=strategy,
    )
    assert status["phase"] == "Progressing"
    assert status["strategy"]["stepIndex"] == 1


def test_indefinite_pause_is_paused_and_abort_is_degraded() -> None:
    """pause: {} shows Paused waiting for promote; an abort shows Degraded with its reason."""
    spec = parse_rollout(DOC).spec
    waiting = rev("c", 2, "progressing", StepState(index=2, weight=20, pause_started_at=NOW))
    s = strategy_status(spec, waiting, None, None, NOW)
    st = build_status(
        name="shop",
        generation=1,
        view=view(),
        revisions=[waiting],
        instances=[],
        router={},
        previous={},
        now=NOW,
        strategy=s,
    )
    assert (st["phase"], st["message"]) == ("Paused", "waiting for `gapless promote`")
    aborted = rev("c", 2, "progressing", StepState(index=2, aborted_at=NOW, abort_reason="error rate"))
    s = strategy_status(spec, aborted, None, None, NOW)
    st = build_status(
        name="shop",
        generation=1,
        view=view(),
        revisions=[aborted],
        instances=[],
        router={},
        previous={},
        now=NOW,
        strategy=s,
    )
    assert st["phase"] == "Degraded"
    assert st["aborted"] is True
    assert "error rate" in st["message"]
    progressing = next(c for c in st["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "RolloutAborted"


def test_conditions_keep_transition_time_and_name_instance_errors() -> None:
    """A condition that keeps its value keeps lastTransitionTime; a crashing new instance is named."""
    revisions = [rev("c", 1, "progressing")]
    instances = [inst("bad", "c", ready=False, state="backoff", message="cannot run 'x'")]
    first = build_status(
        name="shop",
        generation=1,
        view=view(stable=None),
        revisions=revisions,
        instances=instances,
        router={},
        previous={},
        now=NOW,
    )
    assert "cannot run 'x'" in first["message"]
    later = build_status(
        name="shop",
        generation=1,
        view=view(stable=None),
        revisions=revisions,
        instances=instances,
        router={},
        previous=first,
        now=NOW + 50,
    )
    a = next(c for c in later["conditions"] if c["type"] == "Available")
    assert a["status"] == "False"
    assert a["lastTransitionTime"] == NOW
    assert a["lastUpdateTime"] == NOW + 50


def test_step_shown_never_beyond_the_steps() -> None:
    """`gapless status` shows `step 2/5` while steps remain and `steps 5/5 done` after the last, never `6/5`."""
    from gapless.cli.render import step_text

    assert step_text(1, 5) == "step 2/5"
    assert step_text(4, 5) == "step 5/5"
    assert step_text(5, 5) == "steps 5/5 done"


instance_states = st.sampled_from(["starting", "running", "backoff", "terminating", "stopped"])


@st.composite
def fleets(draw: st.DrawFn) -> list[InstanceRecord]:
    """Any mix of instances of the target and the stable revision, in any state, ready or not."""
    out = []
    for n in range(draw(st.integers(0, 14))):
        ready = draw(st.booleans())
        out.append(
            InstanceRecord(
                f"i{n}",
                "shop",
                draw(st.sampled_from(["c", "s"])),
                draw(instance_states),
                NOW - 100,
                "x.log",
                ready=ready,
                ready_since=NOW - draw(st.floats(0, 50)) if ready else None,
            )
        )
    return out


@given(
    fleets(),
    st.integers(0, 8),
    st.integers(0, 30),
    st.booleans(),
    st.booleans(),
)
def test_counters_never_exceed_their_totals(
    instances: list[InstanceRecord], replicas: int, min_ready: int, complete: bool, paused: bool
) -> None:
    """Whatever runs (a surge, both revisions at full size), every counter is between 0 and replicas."""
    status = build_status(
        name="shop",
        generation=1,
        view=view(replicas=replicas, min_ready_seconds=min_ready, target_complete=complete, paused=paused),
        revisions=[rev("s", 1, "complete"), rev("c", 2, "progressing")],
        instances=instances,
        router={},
        previous={},
        now=NOW,
    )
    for key in ("updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
        assert 0 <= status[key] <= replicas, key
    assert status["availableReplicas"] + status["unavailableReplicas"] == replicas
    live = sum(1 for i in instances if i.state != "terminating")
    assert status["surge"] == max(0, live - replicas)
    line = summary_line(status).plain
    for label in ("updated", "available"):
        shown, total = (int(x) for x in re.search(rf"{label} (\d+)/(\d+)", line).groups())  # type: ignore[union-attr]
        assert shown <= total == replicas


@given(st.integers(0, 12), st.integers(1, 6), st.booleans())
def test_step_counter_never_passes_the_steps(index: int, steps: int, full: bool) -> None:
    """The step shown is between 1 and the number of steps, also after the last step or a full promotion."""
    doc = DOC.replace(
        "steps: [{setWeight: 20}, {pause: {duration: 30}}, {pause: {}}]",
        "steps: [" + ", ".join(f"{{setWeight: {10 + n}}}" for n in range(steps)) + "]",
    )
    spec = parse_rollout(doc).spec
    target = rev("c", 2, "progressing", StepState(index=index, weight=20, full=full))
    strategy = strategy_status(spec, target, rev("s", 1, "complete"), {"c": 20, "s": 80}, NOW)
    assert 0 <= strategy["stepIndex"] <= steps
    assert 1 <= strategy["step"] <= steps
    assert strategy["stepsDone"] == (index >= steps)
    text = summary_line({"name": "shop", "strategy": strategy}).plain
    shown, total = (int(x) for x in re.search(r"steps? (\d+)/(\d+)", text).groups())  # type: ignore[union-attr]
    assert shown <= total == steps
