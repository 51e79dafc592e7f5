"""A sequential canary judge that may be evaluated after every batch, as often as wanted.

Why: a fixed-window check repeated every minute raises a false alarm with probability that grows
with every look, and a window long enough to be reliable is slow to catch a real regression. This
judge is *anytime-valid*: whenever and however often it is evaluated, the probability that it ever
says ``failed`` for a canary that is no worse than the baseline is at most ``alpha`` (and ``beta``
bounds the probability of ever saying ``successful`` for a canary that is worse by ``margin``).

What is tested. Each batch (a window seen by both revisions: ``n_c`` canary and ``n_b`` baseline
requests) contributes its events: errors, and "slow" requests (slower than a bound fixed from the
baseline before the test starts). Given how many events the batch has in total (``k``), each one
lands in the canary with probability ``pi(rho) = rho n_c / (rho n_c + n_b)`` where ``rho`` is the
canary-to-baseline event-rate ratio. Conditioning on ``k`` removes the unknown baseline rate, so
anything that hits both revisions (a slow database, a traffic spike) cancels out; ``n_c`` and ``n_b``
may change from batch to batch (weights move, traffic varies).

How. For a null ``rho <= rho0`` the product over batches of ``L(rho1) / L(rho0)`` for any fixed
``rho1 > rho0`` is a nonnegative supermartingale under the null with initial value 1 (the per-event
factor has expectation ``<= 1`` for every ``rho <= rho0``); a mixture over a grid of ``rho1`` with
weights summing to one is too. Ville's inequality bounds the probability that it *ever* reaches
``1/alpha`` by ``alpha``. So:

- ``failed``: the mixture against ``rho <= 1 + tolerance`` reaches ``m / alpha`` (``m`` tests share
  ``alpha``: errors and latency);
- ``successful``: a mirror-image mixture against ``rho >= 1 + margin`` (alternatives below it) reaches
  ``1 / beta`` for every enabled metric. For errors there is a second way to be healthy, when the
  canary's own error rate is shown to be below ``error_rate_floor`` (a one-sample Bernoulli mixture),
  which is how a service with almost no errors at all can pass; the two split ``beta``.

The decision is sticky: the first crossing stops the test. ``tolerance`` makes small regressions
acceptable (a 5% worse error rate does not fail with ``tolerance=0.1``); ``margin`` sets what
"healthy" promises and how long it takes to say so (proving "within 1.5x" needs far fewer events
than "within 1.1x"). See docs/analysis.md for the derivation, the numbers and the references
(Ville 1939; Johari et al., "Always valid inference"; Howard et al., confidence sequences).

The conditional split is exact when events are Poisson; with per-request Bernoulli events at equal
rates the split is hypergeometric, which is less spread and keeps the bound. It is an approximation
at ``rho0 != 1`` when events are common (a slow fraction of 5%+), the price of one closed form.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from gapless.analysis.errors import AnalysisError
from gapless.analysis.measurements import Measurement
from gapless.analysis.verdict import Phase, Verdict

__all__ = [
    "Evidence",
    "SequentialConfig",
    "SequentialState",
    "evidence",
    "sequential",
    "state_from_json",
    "state_to_json",
    "update",
    "verdict",
]

# Alternatives of each mixture, as multiples (or fractions) of the null boundary, equally weighted.
_STEPS = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
_CAP = 700.0  # exp(700) still fits a float; e-values are reported capped


@dataclass(frozen=True)
class SequentialConfig:
    """Bounds and margins of the sequential test; see the module docstring for what each promises."""

    alpha: float = 0.05
    beta: float = 0.05
    tolerance: float = 0.1
    margin: float = 0.5
    errors: bool = True
    latency: bool = True
    slow_quantile: float = 0.95
    slow_seconds: float | None = None
    min_baseline_for_slow: int = 200
    error_rate_floor: float | None = 0.001
    max_canary_requests: int | None = None

    def __post_init__(self) -> None:
        if not (0 < self.alpha < 1 and 0 < self.beta < 1):
            raise AnalysisError("alpha and beta are probabilities between 0 and 1")
        if not 0 <= self.tolerance <= self.margin:
            raise AnalysisError("need 0 <= tolerance <= margin")
        if not (self.errors or self.latency):
            raise AnalysisError("the sequential test needs errors, latency or both")
        if not 0 < self.slow_quantile < 1:
            raise AnalysisError("slow_quantile is between 0 and 1")
        if self.error_rate_floor is not None and not 0 < self.error_rate_floor < 1:
            raise AnalysisError("error_rate_floor is between 0 and 1")


def _zeros() -> tuple[float, ...]:
    return (0.0,) * len(_STEPS)


@dataclass(frozen=True)
class SequentialState:
    """Everything the test remembers: totals for the report and one log-likelihood ratio per alternative.

    Frozen and made of numbers, so the controller can persist it and continue after a restart.
    """

    config: SequentialConfig
    batches: int = 0
    canary_requests: int = 0
    baseline_requests: int = 0
    canary_errors: int = 0
    baseline_errors: int = 0
    slow_seconds: float | None = None
    canary_timed: int = 0
    baseline_timed: int = 0
    canary_slow: int = 0
    baseline_slow: int = 0
    errors_failed: tuple[float, ...] = _zeros()
    errors_healthy: tuple[float, ...] = _zeros()
    errors_floor: tuple[float, ...] = _zeros()
    slow_failed: tuple[float, ...] = _zeros()
    slow_healthy: tuple[float, ...] = _zeros()
    decision: Phase | None = None
    reason: str = ""

    @classmethod
    def start(cls, config: SequentialConfig) -> SequentialState:
        """A fresh test: nothing seen, every likelihood ratio 1."""
        return cls(config=config, slow_seconds=config.slow_seconds)


_TUPLES = ("errors_failed", "errors_healthy", "errors_floor", "slow_failed", "slow_healthy")


def state_to_json(state: SequentialState) -> dict[str, Any]:
    """The state without its config, as JSON-able data (the config comes from the template again)."""
    out = {f: getattr(state, f) for f in state.__dataclass_fields__ if f != "config"}
    for name in _TUPLES:
        out[name] = list(out[name])
    return out


def state_from_json(config: SequentialConfig, data: Mapping[str, Any]) -> SequentialState:
    """A state saved by :func:`state_to_json`; a fresh one when the data does not fit this version."""
    try:
        fields = {
            k: v for k, v in data.items() if k in SequentialState.__dataclass_fields__ and k != "config"
        }
        for name in _TUPLES:
            values = tuple(float(x) for x in fields.get(name, ()))
            if len(values) != len(_STEPS):
                return SequentialState.start(config)
            fields[name] = values
        return SequentialState(config=config, **fields)
    except (TypeError, ValueError):
        return SequentialState.start(config)


def _ratio_step(
    logs: tuple[float, ...], alternatives: tuple[float, ...], null: float, n_c: int, n_b: int, x: int, k: int
) -> tuple[float, ...]:
    """Add one batch to each ``log L(alt)/L(null)``: ``x`` of ``k`` events fell in the canary."""
    pi0 = null * n_c / (null * n_c + n_b)
    out = []
    for log_lr, alt in zip(logs, alternatives, strict=True):
        pi1 = alt * n_c / (alt * n_c + n_b)
        out.append(log_lr + x * math.log(pi1 / pi0) + (k - x) * math.log((1 - pi1) / (1 - pi0)))
    return tuple(out)


def _bernoulli_step(
    logs: tuple[float, ...], alternatives: tuple[float, ...], null: float, n: int, x: int
) -> tuple[float, ...]:
    """Add ``x`` events in ``n`` trials to each ``log L(p1)/L(p0)``."""
    return tuple(
        log_lr + x * math.log(p1 / null) + (n - x) * math.log((1 - p1) / (1 - null))
        for log_lr, p1 in zip(logs, alternatives, strict=True)
    )


def _log_mixture(logs: tuple[float, ...]) -> float:
    """``log`` of the equally weighted mixture ``mean(exp(logs))``, computed without overflow."""
    top = max(logs)
    return top + math.log(math.fsum(math.exp(v - top) for v in logs) / len(logs))


@functools.lru_cache(maxsize=32)
def _grids(config: SequentialConfig) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Alternatives for the failure test, the healthy test and the error-floor test."""
    fail_null, ok_null = 1 + config.tolerance, 1 + config.margin
    floor = config.error_rate_floor
    return (
        tuple(fail_null * s for s in _STEPS),
        tuple(ok_null / s for s in _STEPS),
        tuple(floor / s for s in _STEPS) if floor is not None else (),
    )


def update(state: SequentialState, canary_batch: Measurement, baseline_batch: Measurement) -> SequentialState:
    """Add one batch (both revisions over the same new, non-overlapping window) and decide if possible.

    Once a decision is reached it stays; later batches are ignored.
    """
    if state.decision is not None:
        return state
    config = state.config
    fail_alts, ok_alts, floor_alts = _grids(config)
    n_c, n_b = canary_batch.requests, baseline_batch.requests
    changes: dict[str, Any] = {
        "batches": state.batches + 1,
        "canary_requests": state.canary_requests + n_c,
        "baseline_requests": state.baseline_requests + n_b,
        "canary_errors": state.canary_errors + canary_batch.errors,
        "baseline_errors": state.baseline_errors + baseline_batch.errors,
    }
    if config.errors:
        x, k = canary_batch.errors, canary_batch.errors + baseline_batch.errors
        if n_c and n_b and k:
            fail_null, ok_null = 1 + config.tolerance, 1 + config.margin
            changes["errors_failed"] = _ratio_step(state.errors_failed, fail_alts, fail_null, n_c, n_b, x, k)
            changes["errors_healthy"] = _ratio_step(state.errors_healthy, ok_alts, ok_null, n_c, n_b, x, k)
        if config.error_rate_floor is not None and n_c:
            changes["errors_floor"] = _bernoulli_step(
                state.errors_floor, floor_alts, config.error_rate_floor, n_c, canary_batch.errors
            )
    if config.latency:
        changes |= _latency_changes(state, canary_batch, baseline_batch)
    return _decide(replace(state, **changes))


def _latency_changes(state: SequentialState, canary: Measurement, baseline: Measurement) -> dict[str, Any]:
    config = state.config
    for m in (canary, baseline):
        if m.requests and not m.has_latency:
            raise AnalysisError(f"{m.revision}: the latency test needs a latency histogram or samples")
    if state.slow_seconds is None:
        # Fix the bound from this batch's baseline and leave the batch out: a bound chosen before the
        # data it judges keeps the test valid.
        if baseline.timed_requests < config.min_baseline_for_slow:
            return {}
        estimate = baseline.quantile(config.slow_quantile)
        if estimate is None:  # pragma: no cover - enough observations give a quantile
            return {}
        return {"slow_seconds": _slow_bound(baseline, 1 - config.slow_quantile, estimate)}
    slow_c, seen_c = canary.count_slower_than(state.slow_seconds)
    slow_b, seen_b = baseline.count_slower_than(state.slow_seconds)
    changes: dict[str, Any] = {
        "canary_timed": state.canary_timed + seen_c,
        "baseline_timed": state.baseline_timed + seen_b,
        "canary_slow": state.canary_slow + slow_c,
        "baseline_slow": state.baseline_slow + slow_b,
    }
    k = slow_c + slow_b
    if seen_c and seen_b and k:
        fail_alts, ok_alts, _ = _grids(config)
        fail_null, ok_null = 1 + config.tolerance, 1 + config.margin
        changes["slow_failed"] = _ratio_step(
            state.slow_failed, fail_alts, fail_null, seen_c, seen_b, slow_c, k
        )
        changes["slow_healthy"] = _ratio_step(state.slow_healthy, ok_alts, ok_null, seen_c, seen_b, slow_c, k)
    return changes


def _slow_bound(baseline: Measurement, fraction: float, estimate: float) -> float:
    """The bound that makes about ``fraction`` of baseline requests slow.

    With samples it is the quantile itself. With a histogram it must be a bucket bound (counts are
    exact only there); the bound whose share of slower requests is closest to ``fraction`` on a log
    scale wins, so coarse buckets do not turn "slow" into a one-in-a-thousand event.
    """
    histogram = baseline.latency
    if histogram is None:
        return estimate
    total = histogram.total
    best, best_distance = histogram.bound_at_or_above(estimate), math.inf
    for bound in histogram.bounds:
        above = histogram.count_above(bound)
        if above:
            distance = abs(math.log(above / total / fraction))
            if distance < best_distance:
                best, best_distance = bound, distance
    return best


@dataclass(frozen=True)
class Evidence:
    """One test's log e-value and the bound at which it decides.

    ``group`` ties alternatives together: the canary is healthy when *every* group toward ``successful``
    has one test at its bound (errors may be shown healthy by the ratio test or by the error-rate floor),
    and it fails when *any* test toward ``failed`` reaches its bound.
    """

    test: str
    toward: Literal["failed", "successful"]
    group: str
    log_value: float
    bound: float

    @property
    def reached(self) -> bool:
        return self.log_value >= self.bound


def evidence(state: SequentialState) -> tuple[Evidence, ...]:
    """Every enabled test of the state against its bound; failures first, in the order they are checked."""
    config = state.config
    tests = int(config.errors) + int(config.latency)
    fail_bound = math.log(tests / config.alpha)
    out: list[Evidence] = []
    if config.errors:
        out.append(Evidence("errors", "failed", "errors", _log_mixture(state.errors_failed), fail_bound))
    if config.latency:
        out.append(Evidence("latency", "failed", "latency", _log_mixture(state.slow_failed), fail_bound))
    if config.errors:
        floor = config.error_rate_floor is not None
        bound = math.log((2 if floor else 1) / config.beta)
        out.append(Evidence("errors", "successful", "errors", _log_mixture(state.errors_healthy), bound))
        if floor:
            out.append(
                Evidence("error-rate-floor", "successful", "errors", _log_mixture(state.errors_floor), bound)
            )
    if config.latency:
        out.append(
            Evidence(
                "latency",
                "successful",
                "latency",
                _log_mixture(state.slow_healthy),
                math.log(1 / config.beta),
            )
        )
    return tuple(out)


_FAILED_REASON = {
    "errors": "canary error rate is higher than the baseline's",
    "latency": "canary is slower than the baseline",
}


def _decide(state: SequentialState) -> SequentialState:
    config = state.config
    found = evidence(state)
    for e in found:
        if e.toward == "failed" and e.reached:
            return replace(state, decision="failed", reason=_FAILED_REASON[e.test])
    groups = {e.group for e in found if e.toward == "successful"}
    if all(any(e.reached for e in found if e.toward == "successful" and e.group == g) for g in groups):
        return replace(state, decision="successful", reason="canary is no worse than the baseline")
    if config.max_canary_requests is not None and state.canary_requests >= config.max_canary_requests:
        return replace(
            state,
            decision="inconclusive",
            reason=f"no decision after {state.canary_requests} canary requests",
        )
    return state


def _e_value(logs: tuple[float, ...]) -> float:
    return math.exp(min(_log_mixture(logs), _CAP))


def _ratio(canary: int, canary_n: int, baseline: int, baseline_n: int) -> float | None:
    if not (canary_n and baseline_n and baseline):
        return None
    return (canary / canary_n) / (baseline / baseline_n)


def verdict(state: SequentialState) -> Verdict:
    """The state as a verdict: its decision, or ``running`` while the evidence is not yet enough."""
    config = state.config
    value: dict[str, Any] = {
        "batches": state.batches,
        "canary_requests": state.canary_requests,
        "baseline_requests": state.baseline_requests,
    }
    if config.errors:
        value |= {
            "canary_errors": state.canary_errors,
            "baseline_errors": state.baseline_errors,
            "error_ratio": _ratio(
                state.canary_errors, state.canary_requests, state.baseline_errors, state.baseline_requests
            ),
            "errors_e_failed": _e_value(state.errors_failed),
            "errors_e_healthy": _e_value(state.errors_healthy),
            "errors_e_floor": _e_value(state.errors_floor),
        }
    if config.latency:
        value |= {
            "slow_seconds": state.slow_seconds,
            "canary_slow": state.canary_slow,
            "baseline_slow": state.baseline_slow,
            "slow_ratio": _ratio(
                state.canary_slow, state.canary_timed, state.baseline_slow, state.baseline_timed
            ),
            "slow_e_failed": _e_value(state.slow_failed),
            "slow_e_healthy": _e_value(state.slow_healthy),
        }
    if state.decision is None:
        return Verdict("running", value, f"not yet decided after {state.canary_requests} canary requests")
    return Verdict(state.decision, value, state.reason)


def sequential(config: SequentialConfig, canary: Measurement, baseline: Measurement) -> Verdict:
    """The judge-shaped form: the test over a single window (keep a :class:`SequentialState` to continue)."""
    return verdict(update(SequentialState.start(config), canary, baseline))
