"""Window measurements from two snapshots of the router's ``GET /stats`` counters.

The router only counts up; what happened in a window is the difference of two polls. Subtracting
snapshots (rather than asking the router for "the last minute") keeps the router free of timers and
lets the caller choose any window, including one that spans a router restart: a counter that went
backwards means the router started again, so the revision's counters in the later snapshot are exactly
what happened since then, and the window counts from zero.
"""

from __future__ import annotations

from collections.abc import Sequence

from gapless.analysis.errors import AnalysisError
from gapless.analysis.measurements import LatencyHistogram, Measurement
from gapless.providers.errors import ProviderError
from gapless.router.stats import RESPONSE_CLASSES, RevisionStats, RouterStats

__all__ = ["window_measurements"]


def window_measurements(
    before: RouterStats | None,
    after: RouterStats,
    start: float,
    end: float,
    *,
    error_classes: Sequence[str] = ("5xx",),
) -> dict[str, Measurement]:
    """One measurement per revision in ``after``: the counter deltas since ``before``.

    ``requests`` counts responses of every class (requests that got an answer in the window),
    ``errors`` the responses of ``error_classes``. A revision missing from ``before`` (or no ``before``
    at all) counts from zero, and so does one whose counters went backwards (the router restarted).
    Raises ``ValueError`` for an error class the router does not count, so a typo cannot hide errors.
    """
    unknown = sorted(set(error_classes) - set(RESPONSE_CLASSES))
    if unknown:
        raise ValueError(f"unknown response classes {unknown}; the router counts {list(RESPONSE_CLASSES)}")
    measurements: dict[str, Measurement] = {}
    for revision, now in after.revisions.items():
        then = before.revisions.get(revision) if before is not None else None
        if then is not None and _went_backwards(then, now):
            then = None
        measurements[revision] = _delta(revision, then, now, start, end, error_classes)
    return measurements


def _went_backwards(then: RevisionStats, now: RevisionStats) -> bool:
    """Whether any counter of ``now`` is below ``then`` (or the buckets changed): a new router."""
    if then.latency_bounds != now.latency_bounds or len(then.latency_counts) != len(now.latency_counts):
        return True
    if any(n < t for t, n in zip(then.latency_counts, now.latency_counts, strict=True)):
        return True
    if any(now.responses.get(cls, 0) < count for cls, count in then.responses.items()):
        return True
    pairs = (
        (then.requests, now.requests),
        (then.connection_errors, now.connection_errors),
        (then.bytes_in, now.bytes_in),
        (then.bytes_out, now.bytes_out),
        (then.latency_count, now.latency_count),
    )
    return any(n < t for t, n in pairs)


def _delta(
    revision: str,
    then: RevisionStats | None,
    now: RevisionStats,
    start: float,
    end: float,
    error_classes: Sequence[str],
) -> Measurement:
    def responses(cls: str) -> int:
        return now.responses.get(cls, 0) - (then.responses.get(cls, 0) if then is not None else 0)

    counts = list(now.latency_counts)
    if then is not None:
        counts = [n - t for t, n in zip(then.latency_counts, now.latency_counts, strict=True)]
    try:
        return Measurement(
            revision=revision,
            start=start,
            end=end,
            requests=sum(responses(cls) for cls in now.responses),
            errors=sum(responses(cls) for cls in set(error_classes)),
            latency=LatencyHistogram(tuple(now.latency_bounds), tuple(counts)),
            bytes_in=now.bytes_in - (then.bytes_in if then is not None else 0),
            bytes_out=now.bytes_out - (then.bytes_out if then is not None else 0),
        )
    except AnalysisError as exc:
        raise ProviderError(f"router stats of revision {revision!r} are inconsistent: {exc}") from exc
