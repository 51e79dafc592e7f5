"""Where a flag step moves a flag, decided from the flag's state before the step (Hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gapless.controller.release import flag_state, flag_target
from gapless.spec.release import FlagStep

stage_names = st.lists(st.text("abcdefgh", min_size=1, max_size=4), min_size=0, max_size=5, unique=True)


@given(stage_names, st.integers(0, 10), st.booleans())
def test_advance_goes_one_stage_further_or_refuses(names: list[str], current: int, enabled: bool) -> None:
    """advance targets the stage after the recorded one, and refuses past the last or without a plan."""
    env: dict[str, object] = {"enabled": enabled}
    if names:
        current = min(current, len(names) - 1)
        env["releasePlan"] = {"stages": [{"name": n} for n in names], "currentStage": current}
    before = flag_state({"environments": {"prod": env}}, "prod")
    target, why = flag_target(FlagStep(project="p", flag="f", environment="prod", advance=True), before)
    if names and current + 1 < len(names):
        assert target == {"stage": current + 1}
    else:
        assert target is None
        assert why


@given(stage_names, st.text("abcdefghij", min_size=1, max_size=4))
def test_a_named_stage_is_its_index_or_refused(names: list[str], wanted: str) -> None:
    """stage: NAME targets that stage's index; a name the plan lacks is refused naming it."""
    env = {"releasePlan": {"stages": [{"name": n} for n in names]}} if names else {}
    before = flag_state({"environments": {"prod": env}}, "prod")
    target, why = flag_target(FlagStep(project="p", flag="f", environment="prod", stage=wanted), before)
    if wanted in names:
        assert target == {"stage": names.index(wanted)}
    else:
        assert target is None
        assert "stage" in why or "release plan" in why


@given(st.booleans(), st.booleans())
def test_on_and_off_do_not_depend_on_the_state_before(enabled: bool, before: bool) -> None:
    """enabled: X targets X whatever the flag was."""
    state = flag_state({"environments": {"prod": {"enabled": before}}}, "prod")
    target, _ = flag_target(FlagStep(project="p", flag="f", environment="prod", enabled=enabled), state)
    assert target == {"enabled": enabled}
