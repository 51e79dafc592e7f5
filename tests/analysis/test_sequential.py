"""The sequential judge: incremental state, sticky decisions, and its error bounds checked by simulation."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from gapless.analysis.errors import AnalysisError
from gapless.analysis.measurements import LatencyHistogram, Measurement
from gapless.analysis.sequential import SequentialConfig, SequentialState, sequential, update, verdict
from gapless.analysis.simulate import Traffic, simulate_batch

ERRORS_ONLY = SequentialConfig(latency=False)
BOUNDS = (0.1, 0.2, 0.5)


def batch(
    requests: int, errors: int, revision: str = "canary", latency: tuple[int, ...] | None = None
) -> Measurement:
    """One 10 s window of one revision."""
    return Measurement(
        revision,
        0,
        10,
        requests,
        errors,
        latency=LatencyHistogram(BOUNDS, latency) if latency is not None else None,
    )


@pytest.mark.parametrize(
    ("config", "canary", "baseline", "phase"),
    [
        (ERRORS_ONLY, batch(100, 1), batch(1900, 19, "stable"), "running"),
        (ERRORS_ONLY, batch(100, 0), batch(1900, 0, "stable"), "running"),
        (ERRORS_ONLY, batch(1000, 100), batch(19000, 190, "stable"), "failed"),
        (ERRORS_ONLY, batch(0, 0), batch(1900, 19, "stable"), "running"),
        (ERRORS_ONLY, batch(20000, 200), batch(380000, 3800, "stable"), "successful"),
        (
            replace(ERRORS_ONLY, max_canary_requests=100),
            batch(100, 1),
            batch(1900, 19, "stable"),
            "inconclusive",
        ),
    ],
)
def test_single_batch(
    config: SequentialConfig, canary: Measurement, baseline: Measurement, phase: str
) -> None:
    """One batch decides only when its evidence alone crosses a bound."""
    assert sequential(config, canary, baseline).phase == phase


def test_fresh_state_is_running_with_unit_e_values() -> None:
    """Before any data every likelihood ratio is 1 and the verdict is running."""
    v = verdict(SequentialState.start(SequentialConfig()))
    assert v.phase == "running"
    assert v.value["errors_e_failed"] == 1.0
    assert v.value["slow_e_healthy"] == 1.0
    assert v.value["slow_seconds"] is None


def test_decision_is_sticky() -> None:
    """Once failed, later healthy batches change nothing."""
    state = update(SequentialState.start(ERRORS_ONLY), batch(1000, 100), batch(19000, 190, "stable"))
    assert state.decision == "failed"
    assert update(state, batch(100_000, 0), batch(1_900_000, 19_000, "stable")) is state


def test_looking_more_often_changes_nothing_at_a_constant_split() -> None:
    """With the same traffic split, two batches give the same evidence as their sum in one."""
    start = SequentialState.start(ERRORS_ONLY)
    twice = update(
        update(start, batch(100, 3), batch(1900, 20, "s")), batch(200, 1, "c"), batch(3800, 41, "s")
    )
    once = update(start, batch(300, 4), batch(5700, 61, "s"))
    assert twice.errors_failed == pytest.approx(once.errors_failed)
    assert twice.errors_healthy == pytest.approx(once.errors_healthy)
    assert (twice.canary_requests, twice.baseline_errors, twice.batches) == (300, 61, 2)


def test_errors_in_both_revisions_cancel_out() -> None:
    """An outage that multiplies both revisions' error rates is not evidence against the canary."""
    state = SequentialState.start(ERRORS_ONLY)
    for _ in range(20):
        state = update(state, batch(100, 30), batch(1900, 570, "stable"))
    assert state.decision != "failed"


def test_error_free_service_passes_through_the_floor() -> None:
    """With no errors anywhere, the canary is healthy once its own rate is shown below the floor."""
    state = SequentialState.start(ERRORS_ONLY)
    decided_at = None
    for _ in range(20):
        state = update(state, batch(1000, 0), batch(19000, 0, "stable"))
        if state.decision and decided_at is None:
            decided_at = state.canary_requests
    assert state.decision == "successful"
    assert decided_at is not None
    assert 3000 <= decided_at <= 8000  # log(2/beta) + log(6) nats at 0.09% per request


def test_without_a_floor_no_errors_never_decide() -> None:
    """Without events and without a floor there is no evidence either way, until the maximum."""
    config = replace(ERRORS_ONLY, error_rate_floor=None, max_canary_requests=50_000)
    state = SequentialState.start(config)
    phases = []
    for _ in range(60):
        state = update(state, batch(1000, 0), batch(19000, 0, "stable"))
        phases.append(verdict(state).phase)
    assert phases[:49] == ["running"] * 49
    assert phases[-1] == "inconclusive"


def test_slow_bound_is_fixed_from_the_first_baseline_batch_and_that_batch_left_out() -> None:
    """The first baseline batch with enough latency fixes "slow" at a bucket bound and is not judged."""
    config = SequentialConfig(errors=False)
    canary = batch(100, 0, latency=(0, 0, 0, 100))  # every canary request very slow
    baseline = batch(1000, 0, "stable", latency=(900, 90, 10, 0))
    state = update(SequentialState.start(config), canary, baseline)
    assert state.slow_seconds == 0.1  # 10% above 0.1 s is closest (log scale) to the 5% target
    assert (state.canary_slow, state.decision) == (0, None)
    assert update(state, canary, baseline).decision == "failed"


@pytest.mark.parametrize(
    ("canary", "message"),
    [
        (batch(100, 0), "needs a latency histogram"),
        (Measurement("canary", 0, 10, 1, 0, latency=LatencyHistogram((0.3,), (1, 0))), "not a bucket bound"),
    ],
)
def test_latency_test_needs_matching_latency_data(canary: Measurement, message: str) -> None:
    """Latency missing from a revision, or in other buckets, is an analysis error."""
    config = SequentialConfig(errors=False, slow_seconds=0.2)
    with pytest.raises(AnalysisError, match=message):
        update(SequentialState.start(config), canary, batch(1000, 0, "stable", latency=(900, 90, 10, 0)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0}, "probabilities"),
        ({"beta": 1}, "probabilities"),
        ({"tolerance": 0.6, "margin": 0.5}, "tolerance <= margin"),
        ({"tolerance": -0.1}, "tolerance <= margin"),
        ({"errors": False, "latency": False}, "errors, latency or both"),
        ({"slow_quantile": 1.0}, "slow_quantile"),
        ({"error_rate_floor": 0.0}, "error_rate_floor"),
    ],
)
def test_config_validation(kwargs: dict[str, object], message: str) -> None:
    """Impossible configurations are refused when built."""
    with pytest.raises(AnalysisError, match=message):
        SequentialConfig(**kwargs)  # type: ignore[arg-type]


def test_verdict_reports_estimates_and_evidence() -> None:
    """The verdict carries counts, the observed ratio and the e-value of each test."""
    v = sequential(ERRORS_ONLY, batch(1000, 100), batch(19000, 190, "stable"))
    assert v.phase == "failed"
    assert v.value["error_ratio"] == pytest.approx(10.0)
    assert v.value["errors_e_failed"] >= 2 / ERRORS_ONLY.alpha
    assert "slow_seconds" not in v.value
    assert "error rate is higher" in v.message


def run_canaries(
    traffic: Traffic, config: SequentialConfig, runs: int, batches: int, seed: int
) -> Counter[str]:
    """Simulate ``runs`` canaries of 10 s batches and count each one's final phase."""
    rng = random.Random(seed)  # noqa: S311 - a seeded simulation
    outcomes: Counter[str] = Counter()
    for _ in range(runs):
        state = SequentialState.start(config)
        for i in range(batches):
            canary, baseline = simulate_batch(rng, traffic, start=10.0 * i, seconds=10.0)
            state = update(state, canary, baseline)
            if state.decision is not None:
                break
        outcomes[state.decision or "running"] += 1
    return outcomes


def slack(p: float, runs: int) -> float:
    """Three binomial standard deviations of an observed rate ``p`` over ``runs``."""
    return 3 * math.sqrt(p * (1 - p) / runs)


# Five buckets around the log-normal's body keep the simulation quick; the judge only needs one bound.
HEALTHY = Traffic(
    canary_rps=10,
    baseline_rps=190,
    canary_error_rate=0.01,
    baseline_error_rate=0.01,
    bounds=(0.025, 0.05, 0.1, 0.25, 0.5),
)


@pytest.mark.timeout(60)
def test_false_alarm_rate_is_at_most_alpha_however_often_it_looks() -> None:
    """Over 1,000 healthy canaries looked at every 10 s for 15 min, at most alpha (plus slack) ever fail."""
    # tolerance 0 puts the null exactly at the truth; a beta of 1e-300 keeps every run looking to the end.
    config = SequentialConfig(alpha=0.05, tolerance=0.0, beta=1e-300)
    runs = 1000
    outcomes = run_canaries(HEALTHY, config, runs=runs, batches=90, seed=1)
    assert outcomes["successful"] == 0
    assert outcomes["failed"] / runs <= config.alpha + slack(config.alpha, runs)


@pytest.mark.timeout(60)
def test_false_pass_rate_at_the_margin_is_at_most_beta() -> None:
    """Canaries exactly 1 + margin times worse are called healthy in at most beta of runs."""
    config = SequentialConfig(latency=False, alpha=1e-300, beta=0.05, margin=0.5, error_rate_floor=None)
    runs = 500
    outcomes = run_canaries(replace(HEALTHY, canary_error_rate=0.015), config, runs=runs, batches=120, seed=2)
    assert outcomes["successful"] / runs <= config.beta + slack(config.beta, runs)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("change", "minimum_power"),
    [({"canary_error_rate": 0.02}, 0.95), ({"canary_latency_factor": 1.5}, 0.99)],
    ids=["errors 1% -> 2%", "latency x1.5"],
)
def test_regressions_are_detected_with_high_power(change: dict[str, Any], minimum_power: float) -> None:
    """A doubled error rate or 50% slower latency fails in nearly every run within 30 minutes."""
    runs = 300
    outcomes = run_canaries(replace(HEALTHY, **change), SequentialConfig(), runs=runs, batches=180, seed=3)
    assert outcomes["failed"] / runs >= minimum_power
    assert outcomes["successful"] == 0


@pytest.mark.timeout(60)
def test_healthy_canaries_pass_early_with_defaults() -> None:
    """With the default margin, nearly every healthy canary is called successful within 30 minutes."""
    runs = 200
    outcomes = run_canaries(HEALTHY, SequentialConfig(), runs=runs, batches=180, seed=4)
    assert outcomes["successful"] / runs >= 0.95


def test_state_survives_json_and_a_restart_continues_it() -> None:
    """Persisted after each batch, the state continues exactly where it was after a control-plane restart."""
    import json

    from gapless.analysis.sequential import state_from_json, state_to_json

    config = ERRORS_ONLY
    state = update(SequentialState.start(config), batch(1000, 15), batch(19000, 190, "stable"))
    restored = state_from_json(config, json.loads(json.dumps(state_to_json(state))))
    assert restored == state
    later = (batch(1000, 30), batch(19000, 190, "stable"))
    assert update(restored, *later) == update(state, *later)
    assert state_from_json(config, {"errors_failed": [1.0]}) == SequentialState.start(config)
