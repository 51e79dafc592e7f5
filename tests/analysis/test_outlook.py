"""The sequential test's outlook: how far from a decision, and about how many more requests it needs."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from gapless.analysis.measurements import LatencyHistogram, Measurement
from gapless.analysis.outlook import outlook, remaining_requests
from gapless.analysis.sequential import SequentialConfig, SequentialState, evidence, update
from gapless.analysis.simulate import Traffic, simulate_batch

ERRORS_ONLY = SequentialConfig(latency=False)
logs = st.floats(min_value=-50, max_value=50)
bounds = st.floats(min_value=0.1, max_value=20)
requests = st.integers(min_value=1, max_value=10**7)


def batch(requests: int, errors: int, revision: str = "canary") -> Measurement:
    return Measurement(revision, 0, 10, requests, errors)


@given(logs, st.floats(min_value=0, max_value=50), bounds, requests)
def test_more_evidence_from_the_same_requests_never_raises_the_estimate(
    llr: float, more: float, bound: float, n: int
) -> None:
    """At a fixed number of requests, a higher log e-value needs no more requests than a lower one."""
    before, after = remaining_requests(llr, bound, n), remaining_requests(llr + more, bound, n)
    if before is not None:
        assert after is not None
        assert after <= before


@given(st.floats(min_value=1e-6, max_value=50), bounds, requests, st.integers(min_value=0, max_value=10**7))
def test_evidence_at_a_steady_rate_never_raises_the_estimate(
    llr: float, bound: float, n: int, extra: int
) -> None:
    """More requests bringing evidence at the rate seen so far never raise the estimate."""
    before = remaining_requests(llr, bound, n)
    after = remaining_requests(llr * (n + extra) / n, bound, n + extra)
    assert before is not None
    assert after is not None
    assert after <= before * (1 + 1e-9)


@given(bounds, st.floats(min_value=0, max_value=10), requests)
def test_at_the_bound_nothing_remains(bound: float, over: float, n: int) -> None:
    """A test at or past its bound needs 0 more requests."""
    assert remaining_requests(bound + over, bound, n) == 0


@given(st.floats(max_value=0, allow_nan=False), bounds, requests)
def test_no_evidence_no_estimate(llr: float, bound: float, n: int) -> None:
    """With no evidence in a direction there is nothing to extrapolate."""
    assert remaining_requests(llr, bound, n) is None


traffic = st.builds(
    Traffic,
    canary_rps=st.floats(5, 200),
    baseline_rps=st.floats(50, 500),
    canary_error_rate=st.floats(0.0005, 0.1),
    baseline_error_rate=st.floats(0.0005, 0.05),
)


@given(traffic, st.integers(0, 2**32), st.integers(1, 40))
def test_decided_exactly_when_nothing_remains(t: Traffic, seed: int, batches: int) -> None:
    """Along any simulated run, the estimate is 0 exactly when the test has decided."""
    rng = random.Random(seed)  # noqa: S311 - reproducible simulated traffic, not secrets
    state = SequentialState.start(ERRORS_ONLY)
    for n in range(batches):
        canary, baseline = simulate_batch(rng, t, start=10.0 * n, seconds=10.0)
        state = update(state, canary, baseline)
        ahead = outlook(state, 10.0)
        assert ahead.decided == (state.decision is not None)
        assert (ahead.remaining_requests == 0) == ahead.decided
        if ahead.remaining_requests is not None:
            assert ahead.remaining_seconds is not None
            assert ahead.remaining_seconds == ahead.remaining_requests / 10.0


@given(traffic, st.integers(0, 2**32), st.integers(1, 20), st.floats(0.01, 5))
def test_more_failing_evidence_never_raises_the_failure_estimate(
    t: Traffic, seed: int, batches: int, more: float
) -> None:
    """Adding evidence toward "failed" at the same requests never raises the requests still needed."""
    rng = random.Random(seed)  # noqa: S311 - reproducible simulated traffic, not secrets
    state = SequentialState.start(ERRORS_ONLY)
    for n in range(batches):
        state = update(state, *simulate_batch(rng, t, start=10.0 * n, seconds=10.0))
    if state.decision is not None:
        return
    before = outlook(state)
    stronger = replace(state, errors_failed=tuple(v + more for v in state.errors_failed))
    after = outlook(stronger)
    if before.toward == "failed" and before.remaining_requests is not None:
        assert after.toward == "failed"
        assert after.remaining_requests is not None
        assert after.remaining_requests <= before.remaining_requests


def test_a_failing_canary_shows_its_leading_test_and_an_estimate() -> None:
    """A canary with twice the errors leads toward failed, with its LLR below the bound and requests left."""
    state = update(SequentialState.start(ERRORS_ONLY), batch(1000, 20), batch(19000, 190, "stable"))
    ahead = outlook(state, canary_requests_per_second=50)
    assert state.decision is None
    assert ahead.toward == "failed"
    assert 0 < ahead.llr < ahead.bound
    fail = next(e for e in evidence(state) if e.toward == "failed")
    assert ahead.llr == fail.log_value
    assert ahead.remaining_requests is not None
    assert 0 < ahead.remaining_requests < 5000
    assert ahead.remaining_seconds == ahead.remaining_requests / 50
    json = ahead.to_json()
    assert json["toward"] == "failed"
    assert json["remainingRequests"] == ahead.remaining_requests


def test_the_maximum_caps_the_estimate() -> None:
    """With maxCanaryRequests the test ends by then at the latest, and the outlook says so."""
    config = replace(ERRORS_ONLY, error_rate_floor=None, max_canary_requests=5000)
    state = update(SequentialState.start(config), batch(1000, 0), batch(19000, 0, "stable"))
    ahead = outlook(state)
    assert ahead.remaining_requests == 4000
    assert ahead.capped


def test_healthy_waits_for_the_slowest_group() -> None:
    """With errors and latency both on, "successful" needs both; latency not started means no estimate."""
    config = SequentialConfig()
    canary = Measurement("c", 0, 10, 1000, 0, latency=LatencyHistogram((0.1,), (1000, 0)))
    baseline = Measurement("s", 0, 10, 19000, 0, latency=LatencyHistogram((0.1,), (19000, 0)))
    state = update(SequentialState.start(config), canary, baseline)
    assert outlook(state).remaining_requests is None
