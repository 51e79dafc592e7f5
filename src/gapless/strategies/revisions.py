"""The life of revisions as pure functions: which one is stable, which one undo goes to, fresh rollouts.

The planners decide what a pass does with instances and traffic; these functions decide what the pass
(and the commands) write about revisions. They were inside the controller and the commands, mixed with
store calls, and were only tested through examples; here they are the one place the rules live, so the
controller, the commands and the model-based tests all run the same code:

- **Stable** is the last revision that completed; completing a revision supersedes every other one.
- **A fresh rollout** (applying a template again that has a revision already, ``gapless undo``, ``apply``
  of a failed template) gets the next revision number, a new progress clock, a first step, and is
  ``progressing`` (``complete`` if it is the stable one, which needs no rollout at all). A stale
  clock from the revision's earlier life would fail it at once.
- **Undo** goes to the last revision that was fully serving (``completed_at``), not merely the previous
  number: a revision that was replaced before it completed never served everyone.
- **History** keeps at most ``revisionHistoryLimit`` old revisions (``superseded`` or ``failed``, with no
  instance left), the newest ones, as Kubernetes keeps old ReplicaSets; the target and the stable revision
  are never old. It is pruned whenever revisions are written, not only when a rollout completes: a
  rollout aborted again and again never completes, and its history (read on every pass) would grow.
- **The progress clock** moves when a step is taken, when instances change or become available, and
  while the rollout is paused (a pause is not a lack of progress; resuming must not fail at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from gapless.store.records import RevisionPhase, RevisionRecord
from gapless.strategies.plan import InstanceView, Plan, StepState

__all__ = [
    "after_pass",
    "fresh_rollout",
    "history_to_prune",
    "next_number",
    "progress_clock",
    "stable_of",
    "target_writes",
    "undo_target",
]


def stable_of(revisions: Sequence[RevisionRecord]) -> RevisionRecord | None:
    """The revision that serves when nothing is in progress: the last one that completed."""
    done = [r for r in revisions if r.phase == "complete"]
    return max(done, key=lambda r: r.number) if done else None


def history_to_prune(revisions: Sequence[RevisionRecord], in_use: set[str], limit: int) -> list[str]:
    """Hashes of the old revisions beyond ``limit``, oldest first: superseded or failed, not running."""
    old = [r for r in revisions if r.phase in ("superseded", "failed") and r.hash not in in_use]
    old.sort(key=lambda r: r.number)
    return [r.hash for r in old[: max(0, len(old) - limit)]]


def target_writes(
    revisions: Sequence[RevisionRecord],
    rollout: str,
    h: str,
    template: dict[str, Any],
    now: float,
    change_cause: str = "",
) -> list[RevisionRecord]:
    """What a pass writes for the template in force (hash ``h``): its revision if new (with the cause of
    the change that made it), and every other revision still ``progressing`` becomes ``superseded`` (a
    revision applied during a rollout replaces it).
    """
    out: list[RevisionRecord] = []
    if not any(r.hash == h for r in revisions):
        number = max((r.number for r in revisions), default=0) + 1
        out.append(
            RevisionRecord(
                rollout=rollout,
                hash=h,
                number=number,
                template=template,
                created_at=now,
                phase="progressing",
                progress_at=now,
                change_cause=change_cause,
            )
        )
    out += [
        replace(r, phase="superseded", message="replaced")
        for r in revisions
        if r.phase == "progressing" and r.hash != h
    ]
    return out


def fresh_rollout(
    rev: RevisionRecord, revisions: Sequence[RevisionRecord], now: float, change_cause: str | None = None
) -> RevisionRecord:
    """``rev`` as the target of a new rollout: next number, fresh clock and steps, no old verdict.

    ``change_cause``: why it is rolled out again (None keeps the cause it was made with).
    """
    number = next_number(rev.number, [r.number for r in revisions])
    phase: RevisionPhase = "complete" if rev.phase == "complete" else "progressing"
    cause = rev.change_cause if change_cause is None else change_cause
    return replace(
        rev, number=number, phase=phase, message="", progress_at=now, step_state={}, change_cause=cause
    )


def next_number(number: int, numbers: Sequence[int]) -> int:
    """The number of a revision rolled out again: its own if it is the highest of ``numbers``, else the next.

    The one rule on both platforms (the Kubernetes operator renumbers a reused ReplicaSet with it), so that
    history and events name revisions alike.
    """
    highest = max([number, *numbers])
    return number if number == highest else highest + 1


def undo_target(
    revisions: Sequence[RevisionRecord], current: str, to_revision: int | None
) -> RevisionRecord | None:
    """Where ``gapless undo`` goes: revision ``to_revision``, else the last one that fully served.

    A revision fully served once it completed (``completed_at``; a record from before that field counts
    while it is ``complete``). Without any, the previous revision by number (Kubernetes' rule).
    """
    if to_revision is not None:
        return next((r for r in revisions if r.number == to_revision), None)
    others = [r for r in revisions if r.hash != current]
    served = [r for r in others if r.completed_at is not None or r.phase == "complete"]
    if served:
        return max(served, key=lambda r: (r.phase == "complete", r.completed_at or 0.0, r.number))
    cur = next((r for r in revisions if r.hash == current), None)
    earlier = sorted((r for r in others if cur is None or r.number < cur.number), key=lambda r: r.number)
    return earlier[-1] if earlier else None


def progress_clock(
    target: RevisionRecord, instances: Sequence[InstanceView], min_ready_seconds: float, now: float
) -> float:
    """When the target last made progress: its recorded clock, or an instance of it becoming available."""
    became_available = [
        i.ready_since + min_ready_seconds
        for i in instances
        if i.revision == target.hash
        and i.ready
        and i.ready_since is not None
        and i.ready_since + min_ready_seconds <= now
    ]
    return max([target.progress_at or target.created_at, *became_available])


def after_pass(
    revisions: Sequence[RevisionRecord],
    target: str,
    plan: Plan,
    now: float,
    *,
    paused: bool = False,
    failure: str = "",
) -> list[RevisionRecord]:
    """The revisions a pass that carries out ``plan`` writes (only those that changed).

    The target's new step state (and a fresh clock when a step was taken), its outcome (``complete``
    supersedes every other complete revision; ``failed`` records ``failure`` or the plan's reason), and
    a fresh clock when instances changed or while paused.
    """
    by_hash = {r.hash: r for r in revisions}
    t = by_hash[target]
    was_progressing = t.phase == "progressing"
    out: dict[str, RevisionRecord] = {}
    if plan.state is not None and plan.state.to_json() != t.step_state:
        old = StepState.from_json(t.step_state)
        new = plan.state
        stepped = (old.index, old.switched_at, old.checks, old.extra) != (
            new.index,
            new.switched_at,
            new.checks,
            new.extra,
        )
        t = replace(t, step_state=new.to_json(), progress_at=now if stepped else t.progress_at)
    if plan.outcome == "complete":
        for r in revisions:
            if r.phase == "complete" and r.hash != target:
                out[r.hash] = replace(r, phase="superseded")
        t = replace(t, phase="complete", message="", completed_at=now)
    elif plan.outcome == "failed":
        t = replace(t, phase="failed", message=failure or plan.reason)
    if was_progressing and (plan.changes_instances or (paused and t.phase == "progressing")):
        t = replace(t, progress_at=now)
    if t != by_hash[target]:
        out[target] = t
    return list(out.values())
