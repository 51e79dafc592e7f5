"""When ``gapless wait`` (and ``apply --wait``) stop, decided from one status.

Rules: (1) a failed or aborted rollout ends every wait with 1, once the generation waited for is
observed (``complete``, ``settled``) or at once (``healthy``, ``paused``), unless the condition itself
holds; (2) ``complete`` needs the generation observed and the phase Healthy; (3) ``healthy`` needs only
Healthy; (4) ``paused`` needs only Paused; (5) ``settled`` is complete or paused; (6) otherwise the wait
goes on (None).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gapless.cli.wait import CONDITIONS, Condition, outcome

PHASES = st.sampled_from(["Healthy", "Progressing", "Paused", "Degraded", "Failed", "Pending"])
STATUS = st.fixed_dictionaries(
    {"phase": PHASES, "observedGeneration": st.integers(0, 5)},
    optional={"aborted": st.booleans(), "generation": st.integers(0, 5)},
)
ALL: list[Condition] = [*CONDITIONS, "settled"]


@given(STATUS, st.integers(0, 5), st.sampled_from(ALL))
def test_wait_rules(status: dict[str, Any], generation: int, condition: Condition) -> None:
    """The exit code (or None: keep waiting) follows the rules in the module docstring."""
    phase, aborted = status["phase"], bool(status.get("aborted"))
    observed = status["observedGeneration"] >= generation
    holds = {
        "complete": observed and phase == "Healthy",
        "healthy": phase == "Healthy",
        "paused": phase == "Paused",
        "settled": observed and phase in ("Healthy", "Paused"),
    }[condition]
    bad = aborted or phase == "Failed"
    looks_at_failure = observed or condition in ("healthy", "paused")
    got = outcome(status, generation, condition)
    if condition in ("healthy", "paused") and holds:
        assert got == 0
    elif bad and looks_at_failure:
        assert got == 1
    elif holds:
        assert got == 0
    else:
        assert got is None


def test_examples() -> None:
    """A canary paused for promotion is settled but not complete; an abort fails a wait for completion."""
    paused = {"phase": "Paused", "observedGeneration": 2, "strategy": {"waitingForPromote": True}}
    assert outcome(paused, 2) == 0
    assert outcome(paused, 2, "complete") is None
    assert outcome(paused, 2, "paused") == 0
    aborted = {"phase": "Degraded", "aborted": True, "observedGeneration": 2}
    assert outcome(aborted, 2, "complete") == 1
    assert outcome(aborted, 3, "complete") is None  # that generation is not observed yet
    assert outcome({"phase": "Healthy", "observedGeneration": 1}, 2, "healthy") == 0
    assert outcome({"phase": "Healthy", "observedGeneration": 1}, 2, "complete") is None
