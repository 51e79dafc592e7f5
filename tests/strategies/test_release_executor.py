"""The executor's pure decisions (``decide_running``, ``decide_undoing``) by their rules (Hypothesis).

Rules:
1. A step that changes something acts only once its record is written (the record comes first).
2. A running flag or rollout step acts until ``acted`` is written; the action goes *to* the recorded target.
3. A monitoring window succeeds exactly when its duration has passed since it started, and asks to be
   woken then; an approve gate never passes by itself.
4. Resuming after a crash at any point never repeats a finished step and never moves a flag further
   than the release says: the executor below (a model of ``ReleaseController``'s loop over the same pure
   functions) loses every unsaved change at random crashes, and the flag ends exactly where it must.
5. An abort at any point, with crashes, puts the flag back where it was before the release.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from gapless.strategies.release import (
    EFFECTS,
    Progress,
    StepFacts,
    decide_running,
    decide_undoing,
    plan_release,
)

KINDS = st.sampled_from(["flag", "wait", "approve", "rollout"])
PHASES = ["complete", "failed", "aborted", "superseded", "progressing", "missing"]


@given(st.sampled_from(sorted(EFFECTS & {"flag", "rollout"})), st.floats(0, 1e9), st.sampled_from(PHASES))
def test_a_step_that_changes_something_never_runs_without_its_record(
    kind: str, now: float, seen: str
) -> None:
    """decide_running refuses an effect step whose record is not written yet."""
    with pytest.raises(ValueError, match="record"):
        decide_running(kind, Progress("running", record=None), seen, now)


@given(st.sampled_from(["flag", "rollout"]), st.sampled_from(PHASES), st.floats(0, 1e9))
def test_an_effect_step_acts_until_acted_is_written(kind: str, seen: str, now: float) -> None:
    """Until ``acted`` is stored the verdict is act, whatever is observed; after it, never act."""
    p = Progress("running", record={"target": 1})
    assert decide_running(kind, p, seen, now).verdict == "act"
    assert decide_running(kind, replace(p, acted=True), seen, now).verdict != "act"


@given(st.sampled_from(PHASES))
def test_a_rollout_step_ends_with_its_revision(seen: str) -> None:
    """Complete succeeds; failed, aborted, superseded or missing fail; progressing waits."""
    d = decide_running("rollout", Progress("running", record={"target": "h"}, acted=True), seen, 0.0)
    expected = {"complete": "succeeded", "progressing": "wait"}.get(seen, "failed")
    assert d.verdict == expected


@given(st.floats(0, 1e6), st.floats(0, 1e4), st.floats(0, 2e4))
def test_a_monitoring_window_lasts_its_duration(start: float, duration: float, elapsed: float) -> None:
    """A wait step succeeds exactly when ``duration`` has passed, and is woken at its end otherwise."""
    d = decide_running("wait", Progress("running", started_at=start), None, start + elapsed, duration)
    if start + elapsed >= start + duration:
        assert d.verdict == "succeeded"
    else:
        assert d.verdict == "wait"
        assert d.requeue_at == start + duration


@given(st.floats(0, 1e9))
def test_an_approve_gate_never_passes_by_itself(now: float) -> None:
    """Only promote (a command) passes an approve step."""
    assert decide_running("approve", Progress("running", started_at=0.0), None, now).verdict == "wait"


@given(KINDS, st.booleans(), st.sampled_from([*PHASES, "removed"]))
def test_undo_acts_once_then_waits_for_what_it_put_back(kind: str, undo_acted: bool, seen: str) -> None:
    """Undo acts until ``undo_acted``; a rollout is undone when the revision put back completes (or it is gone)."""
    record = {"before": None} if kind in EFFECTS else None
    d = decide_undoing(kind, Progress("undoing", record=record, undo_acted=undo_acted), seen)
    if kind not in EFFECTS:
        assert d.verdict == "undone"
    elif not undo_acted:
        assert d.verdict == "act"
    elif kind == "rollout" and seen not in ("complete", "removed"):
        assert d.verdict == "wait"
    else:
        assert d.verdict == "undone"


# -- a model of the controller's loop, with crashes ------------------------------------------------------


@dataclass
class World:
    """What the steps change: one staged flag (its stage) and the services' counts of changes."""

    stage: int = 0
    changes: int = 0


@dataclass
class Executor:
    """One pass = one action, as ``ReleaseController.reconcile``; only ``saved`` survives a crash."""

    kinds: list[str]
    world: World
    saved: list[Progress] = field(init=False)
    aborted: bool = False
    starts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.saved = [Progress() for _ in self.kinds]

    def facts(self) -> list[StepFacts]:
        return [StepFacts(k, phase=p.phase) for k, p in zip(self.kinds, self.saved, strict=True)]

    def step(self, crash: bool) -> bool:
        """One pass; ``crash``: the process dies after the change but before writing its outcome."""
        plan = plan_release(self.facts(), aborted=self.aborted)
        now = 0.0
        if plan.start is not None:
            i = plan.start
            record: dict[str, Any] | None = None
            if self.kinds[i] == "flag":
                record = {"before": self.world.stage, "target": self.world.stage + 1}
            self.saved[i] = Progress("running", record=record, started_at=now)  # written before acting
            self.starts.append(i)
            return True
        if plan.undo is not None:
            j = plan.undo
            p = self.saved[j]
            if p.phase != "undoing":
                self.saved[j] = replace(p, phase="undoing")
                return True
            d = decide_undoing(self.kinds[j], p, "complete")
            if d.verdict == "act":
                assert p.record is not None
                self.world.stage = int(p.record["before"])  # put back *to* the recorded state
                self.world.changes += 1
                if not crash:
                    self.saved[j] = replace(p, undo_acted=True)
                return True
            self.saved[j] = replace(p, phase="undone")
            return True
        for i, p in enumerate(self.saved):
            if p.phase != "running":
                continue
            d = decide_running(self.kinds[i], p, "complete", now, 0.0)
            if d.verdict == "act":
                assert p.record is not None  # rule 1
                self.world.stage = int(p.record["target"])  # set *to* the target, never "one further"
                self.world.changes += 1
                if not crash:
                    self.saved[i] = replace(p, acted=True)
                return True
            if d.verdict in ("succeeded", "failed"):
                self.saved[i] = replace(p, phase=d.verdict)
                return True
            if self.kinds[i] == "approve":
                self.saved[i] = replace(p, phase="succeeded")  # promote
                return True
            return False
        return False


flag_releases = st.lists(st.sampled_from(["flag", "wait", "approve"]), min_size=1, max_size=8)


@given(flag_releases, st.lists(st.booleans(), max_size=80))
def test_resuming_after_crashes_repeats_no_finished_step_and_advances_each_flag_step_once(
    kinds: list[str], crashes: list[bool]
) -> None:
    """Whatever passes crash, each step starts once and the flag ends one stage further per flag step."""
    ex = Executor(kinds, World())
    it = iter(crashes)
    for _ in range(200):
        if not ex.step(next(it, False)):
            break
    note(f"starts={ex.starts} saved={ex.saved}")
    assert sorted(ex.starts) == list(range(len(kinds)))  # every step started exactly once, in order
    assert ex.starts == sorted(ex.starts)
    assert ex.world.stage == kinds.count("flag")
    assert plan_release(ex.facts()).phase == "Succeeded"


@given(flag_releases, st.lists(st.booleans(), max_size=80), st.integers(0, 40))
def test_an_abort_with_crashes_puts_the_flag_back(kinds: list[str], crashes: list[bool], at: int) -> None:
    """An abort after any number of passes, with crashes, rolls back to the flag's stage before the release."""
    ex = Executor(kinds, World())
    it = iter(crashes)
    for n in range(300):
        if n == at:
            ex.aborted = True
        if not ex.step(next(it, False)) and ex.aborted:
            break
        if not ex.aborted and plan_release(ex.facts()).phase == "Succeeded":
            ex.aborted = True  # an abort after success is refused by the command; the model stops here
            return
    assert plan_release(ex.facts(), aborted=True).phase == "RolledBack"
    assert ex.world.stage == 0
