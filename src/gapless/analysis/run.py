"""Bookkeeping of an analysis run, with Argo Rollouts' rules, as pure functions of verdicts.

A run measures each of its metrics every ``interval``, ``count`` times (or until it is stopped). Each
measurement is judged into a :class:`Verdict`; this module turns the stream of verdicts into a phase per
metric and one phase for the run:

- a metric **fails** once its failed measurements exceed ``failureLimit``;
- it **errors** once more than ``consecutiveErrorLimit`` measurements in a row could not be taken or
  judged (a provider down, a condition that does not evaluate);
- it is **inconclusive** once its inconclusive measurements exceed ``inconclusiveLimit``;
- a judge that *concludes* (the sequential test) ends its metric on its first ``successful`` verdict;
  its ``running`` verdicts ("not yet") count as measurements that decide nothing, and a sequential
  metric that reaches ``count`` without a conclusion is inconclusive;
- otherwise the metric is **successful** once it has ``count`` measurements.

The run fails as soon as any metric that is not ``dryRun`` fails, errors as soon as one errors, and
otherwise ends when every deciding metric has ended: inconclusive if any was, else successful. A run
that is stopped from outside (a background analysis when the rollout completes) ends its running
metrics as successful if they have their measurements (nothing went wrong while they watched), else
inconclusive (an abort before the first measurement judged nothing). ``dryRun`` metrics are measured, judged and
shown exactly the same, but never decide the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from gapless.analysis.verdict import Phase, Verdict

__all__ = ["MAX_KEPT_MEASUREMENTS", "MetricProgress", "record", "run_phase", "stop"]

MAX_KEPT_MEASUREMENTS = 30
"""Measurements kept per metric for ``gapless analysis`` (counts cover all of them)."""

_DONE: frozenset[str] = frozenset({"successful", "failed", "inconclusive", "error"})


@dataclass(frozen=True)
class MetricProgress:
    """Where one metric of a run stands; plain data, persisted with the run as JSON."""

    name: str
    count: int | None = None
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = 4
    dry_run: bool = False
    concludes: bool = False
    measured: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    phase: Phase = "running"
    message: str = ""
    measurements: tuple[dict[str, Any], ...] = ()
    state: dict[str, Any] | None = None
    """What the judge carries between windows (the sequential test's state), so a restart continues it."""

    @property
    def done(self) -> bool:
        return self.phase in _DONE

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["measurements"] = list(self.measurements)
        return d

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricProgress:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["measurements"] = tuple(known.get("measurements") or ())
        return cls(**known)


def record(progress: MetricProgress, verdict: Verdict, at: float) -> MetricProgress:
    """Count one judged measurement taken at ``at`` and decide the metric's phase."""
    if progress.done:
        return progress
    p = verdict.phase
    entry = {"at": at, "phase": p, "message": verdict.message, "value": dict(verdict.value)}
    kept = (*progress.measurements, entry)[-MAX_KEPT_MEASUREMENTS:]
    new = replace(
        progress,
        measured=progress.measured + 1,
        successful=progress.successful + (p == "successful"),
        failed=progress.failed + (p == "failed"),
        inconclusive=progress.inconclusive + (p == "inconclusive"),
        errors=progress.errors + (p == "error"),
        consecutive_errors=progress.consecutive_errors + 1 if p == "error" else 0,
        measurements=kept,
        message=verdict.message,
    )
    if new.failed > new.failure_limit:
        return replace(new, phase="failed", message=_why(new, "failed", verdict))
    if new.consecutive_errors > new.consecutive_error_limit:
        return replace(new, phase="error", message=_why(new, "error", verdict))
    if new.inconclusive > new.inconclusive_limit:
        return replace(new, phase="inconclusive", message=_why(new, "inconclusive", verdict))
    if new.concludes and p == "successful":
        return replace(new, phase="successful")
    if new.count is not None and new.measured >= new.count:
        if new.concludes:
            message = f"no conclusion after {new.measured} measurements: {verdict.message}"
            return replace(new, phase="inconclusive", message=message)
        return replace(new, phase="successful", message=f"{new.measured} measurements: {verdict.message}")
    return new


def _why(p: MetricProgress, phase: str, verdict: Verdict) -> str:
    counts = {
        "failed": (p.failed, p.failure_limit, "failed measurement(s)"),
        "error": (p.consecutive_errors, p.consecutive_error_limit, "consecutive error(s)"),
        "inconclusive": (p.inconclusive, p.inconclusive_limit, "inconclusive measurement(s)"),
    }
    n, limit, what = counts[phase]
    return f"{n} {what} (limit {limit}): {verdict.message}"


def stop(progress: MetricProgress, reason: str) -> MetricProgress:
    """End a metric from outside: successful if it has its measurements, else inconclusive.

    A metric stopped after ``count`` measurements (at least one, without a count) saw nothing go wrong
    while it watched; one stopped before it measured enough (an abort, a promote past its step) has
    judged nothing, and ``successful`` would be a verdict nobody earned.
    """
    if progress.done:
        return progress
    required = progress.count if progress.count is not None else 1
    if progress.measured < required:
        message = f"{reason} after {progress.measured} of {required} measurements: no verdict"
        return replace(progress, phase="inconclusive", message=message)
    return replace(progress, phase="successful", message=f"{reason} after {progress.measured} measurements")


def run_phase(metrics: Sequence[MetricProgress]) -> tuple[Phase, str]:
    """The phase of a run and a one-line reason, from its metrics (``dryRun`` ones never decide)."""
    deciding = [m for m in metrics if not m.dry_run]
    failed = [m for m in deciding if m.phase == "failed"]
    if failed:
        return "failed", _join(failed)
    errored = [m for m in deciding if m.phase == "error"]
    if errored:
        return "error", _join(errored)
    if any(not m.done for m in deciding):
        return "running", ""
    hit = [m for m in deciding if m.phase == "inconclusive"]
    if hit:
        return "inconclusive", _join(hit)
    names = ", ".join(m.name for m in deciding) or "no deciding metric"
    return "successful", f"all metrics passed ({names})"


def _join(metrics: list[MetricProgress]) -> str:
    return "; ".join(f"{m.name}: {m.message}" for m in metrics)
