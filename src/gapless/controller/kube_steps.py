"""The step transitions of a pass on a cluster, as the local control plane reports them (pure).

``decide`` keeps each revision's step state in the Rollout's status; what changed between the status a
pass read and the one it writes is the step events the local control plane writes at the same moment
(``Controller._step_events``): ``StepReached`` with the step's description, ``StepsCompleted``, and
``Promoted`` when all traffic moved to the revision. Aborts are reported by ``decide`` itself
(``RolloutAborted``). Comparing two statuses keeps this out of the planner and needs no memory: an
operator killed after writing a status and before writing its events loses those events (the status
is the truth), never writes them twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gapless.controller.kubernetes import rollout_model
from gapless.core.errors import SpecError
from gapless.strategies.plan import StepState

__all__ = ["step_events"]


def _state(status: Mapping[str, Any], target: str) -> tuple[StepState, dict[str, Any]] | None:
    rec = (status.get("revisions") or {}).get(target)
    if not isinstance(rec, dict):
        return None
    return StepState.from_json(rec.get("stepState")), rec


def step_events(obj: Mapping[str, Any], status: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """The step events between ``obj``'s status and ``status``, the one the pass writes (same revision)."""
    target = str(status.get("currentPodHash") or "")
    before, after = _state(obj.get("status") or {}, target), _state(status, target)
    if not target or before is None or after is None:
        return []
    (old, _), (new, rec) = before, after
    out: list[tuple[str, str, bool]] = []
    if new.index != old.index:
        try:
            spec = rollout_model(obj).spec
        except SpecError:
            return []
        steps = spec.strategy.canary.steps if spec.strategy.canary else []
        if new.index < len(steps):
            out.append(
                ("StepReached", f"step {new.index + 1}/{len(steps)}: {steps[new.index].describe()}", False)
            )
        elif steps:
            out.append(("StepsCompleted", f"all {len(steps)} steps done", False))
    if new.switched_at is not None and old.switched_at is None:
        out.append(("Promoted", f"revision {rec.get('number', '?')} ({target}) takes all traffic", False))
    return out
