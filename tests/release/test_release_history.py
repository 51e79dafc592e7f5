"""``history_runs`` and ``watch_lines`` by their rules (Hypothesis).

Rules:
1. Each ``ReleaseApplied`` or ``ReleaseUndo`` begins exactly one run, in order; events before the first
   belong to none.
2. A run's outcome is its first end event after it began; its counts are those of its own events.
3. ``watch_lines`` says nothing when nothing changed, names every step whose phase or message changed,
   and prints the release's line when its phase or message changed.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gapless.cli.release_history import ENDS, history_runs, watch_lines

TYPES = ["ReleaseApplied", "ReleaseUndo", "StepStarted", "StepFailed", "StepUndone", "ReleaseAborted", *ENDS]
event_types = st.lists(st.sampled_from(TYPES), max_size=40)


def _events(types: list[str]) -> list[dict[str, Any]]:
    return [
        {"type": t, "time": float(i), "revision": f"steps.{i}", "message": f"m{i}"}
        for i, t in enumerate(types)
    ]


@given(event_types)
def test_each_apply_or_undo_begins_one_run_with_its_own_counts(types: list[str]) -> None:
    """Runs start at apply/undo; each counts only the events between its start and the next one's."""
    runs = history_runs(_events(types))
    starts = [i for i, t in enumerate(types) if t in ("ReleaseApplied", "ReleaseUndo")]
    assert [r["startedAt"] for r in runs] == [float(i) for i in starts]
    for r, begin, end in zip(runs, starts, [*starts[1:], len(types)][: len(starts)], strict=True):
        own = types[begin + 1 : end]
        assert r["began"] == ("apply" if types[begin] == "ReleaseApplied" else "undo")
        assert r["stepsStarted"] == own.count("StepStarted")
        assert r["stepsUndone"] == own.count("StepUndone")
        assert len(r["stepsFailed"]) == own.count("StepFailed")
        assert r["aborted"] == ("ReleaseAborted" in own)
        first_end = next((begin + 1 + k for k, t in enumerate(own) if t in ENDS), None)
        if first_end is None:
            assert r["outcome"] is None
        else:
            assert r["outcome"] == ENDS[types[first_end]]
            assert r["endedAt"] == float(first_end)


phases = st.sampled_from(["pending", "running", "succeeded", "failed", "undoing", "undone"])
steps = st.lists(st.tuples(phases, st.sampled_from(["", "a", "b"])), min_size=1, max_size=6)


def _view(release: tuple[str, str], s: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "name": "r",
        "phase": release[0],
        "message": release[1],
        "notUndoable": [],
        "steps": [{"index": i, "name": f"s{i}", "phase": p, "message": m} for i, (p, m) in enumerate(s)],
    }


releases = st.tuples(
    st.sampled_from(["Progressing", "RollingBack", "Succeeded"]), st.sampled_from(["x", "y"])
)


@given(releases, releases, steps, steps)
def test_watch_lines_name_exactly_what_changed(r1: Any, r2: Any, s1: Any, s2: Any) -> None:
    """No change: no line; a changed step: its line; a changed release phase or message: the release line."""
    n = min(len(s1), len(s2))
    before, after = _view(r1, s1[:n]), _view(r2, s2[:n])
    assert watch_lines(before, before) == []
    lines = watch_lines(before, after)
    changed = [i for i in range(n) if s1[i] != s2[i]]
    assert [line.split(" ")[1] for line in lines if line.startswith("step ")] == [str(i) for i in changed]
    assert any(line.startswith("release r:") for line in lines) == (r1 != r2)
