"""The RolloutView the planner tests start from; each test file sets the defaults it is about."""

from __future__ import annotations

from dataclasses import replace

from gapless.strategies.plan import RolloutView

T0 = 1000.0


def make_view(**kw: object) -> RolloutView:
    """A progressing rollout from stable ``S`` to target ``C`` at ``T0``, changed by ``kw``."""
    base = RolloutView(
        replicas=4,
        max_surge=1,
        max_unavailable=0,
        min_ready_seconds=0,
        progress_deadline_seconds=600,
        paused=False,
        target="C",
        target_failed=False,
        target_complete=False,
        stable="S",
        progress_at=T0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]
