"""How far a sequential test is from a decision, and about how many more requests it needs.

Why: a sequential judge says ``running`` until it decides, which tells someone watching a canary
nothing about whether to wait five seconds or an hour. Each of its tests is a log e-value climbing
toward a bound (:func:`gapless.analysis.sequential.evidence`); the outlook shows the one that leads,
``LLR 1.2 of 3.7``, and extrapolates the rate at which evidence has come so far:

    remaining = requests * (bound - llr) / llr

(the requests still needed if evidence keeps arriving at its average rate per canary request). It is
an estimate, not a promise: traffic that changes, or a canary that is neither clearly worse nor clearly
as good, moves it. Rules, tested as properties: more evidence from the same requests never raises the
estimate, evidence arriving at a steady rate never raises it, and a decided test needs 0 more.

A healthy verdict needs every group of tests (errors, latency) at its bound, so that direction waits
for its slowest group; a failure needs any one test, so that direction takes the nearest. The
direction shown is the one expected sooner. ``maxCanaryRequests`` caps the estimate: the test ends
there, inconclusive, at the latest.

Pure: the canary's request rate, when known, arrives as an argument (the caller measured it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from gapless.analysis.sequential import Evidence, SequentialState, evidence

__all__ = ["Outlook", "outlook", "remaining_requests"]

Toward = Literal["failed", "successful"]


def remaining_requests(log_value: float, bound: float, requests: int) -> float | None:
    """Canary requests still needed for ``log_value`` to reach ``bound`` at its average rate so far.

    0 once the bound is reached; ``None`` when no evidence has come yet in that direction (nothing to
    extrapolate).
    """
    if log_value >= bound:
        return 0.0
    if log_value <= 0 or requests <= 0:
        return None
    return requests * (bound - log_value) / log_value


@dataclass(frozen=True)
class Outlook:
    """Where a sequential test stands: the leading test's evidence and what is left to a decision."""

    decided: bool
    toward: Toward | None
    """The direction expected first (or the decision made); ``None`` when nothing points anywhere yet."""
    llr: float
    bound: float
    remaining_requests: int | None
    remaining_seconds: float | None
    capped: bool = False
    """The estimate is the requests left before ``maxCanaryRequests`` ends the test undecided."""

    def to_json(self) -> dict[str, Any]:
        return {
            "decided": self.decided,
            "toward": self.toward,
            "llr": round(self.llr, 3),
            "bound": round(self.bound, 3),
            "remainingRequests": self.remaining_requests,
            "remainingSeconds": None if self.remaining_seconds is None else round(self.remaining_seconds, 1),
            "capped": self.capped,
        }


def _need(e: Evidence, requests: int) -> float | None:
    return remaining_requests(e.log_value, e.bound, requests)


def _failed(found: list[Evidence], requests: int) -> tuple[Evidence, float | None]:
    """The failure test nearest its bound: any one decides."""
    known = [(need, e) for e in found if (need := _need(e, requests)) is not None]
    if known:
        need, e = min(known, key=lambda pair: pair[0])
        return e, need
    return max(found, key=lambda e: e.log_value / e.bound), None


def _successful(found: list[Evidence], requests: int) -> tuple[Evidence, float | None]:
    """The healthy group farthest from its bound (all must get there), by its best test."""
    best: list[tuple[float | None, Evidence]] = []
    for group in dict.fromkeys(e.group for e in found):
        members = [e for e in found if e.group == group]
        known = [(need, e) for e in members if (need := _need(e, requests)) is not None]
        if known:
            best.append(min(known, key=lambda pair: pair[0]))
        else:
            best.append((None, max(members, key=lambda e: e.log_value / e.bound)))
    unknown = [e for need, e in best if need is None]
    if unknown:
        return min(unknown, key=lambda e: e.log_value / e.bound), None
    need, e = max(best, key=lambda pair: pair[0] or 0.0)
    return e, need


def outlook(state: SequentialState, canary_requests_per_second: float | None = None) -> Outlook:
    """The outlook of ``state``; ``canary_requests_per_second`` turns requests into time when given."""
    found = list(evidence(state))
    requests = state.canary_requests
    fail, fail_need = _failed([e for e in found if e.toward == "failed"], requests)
    ok, ok_need = _successful([e for e in found if e.toward == "successful"], requests)
    if state.decision is not None:
        shown = ok if state.decision == "successful" else fail
        toward: Toward | None = state.decision if state.decision in ("failed", "successful") else None
        return Outlook(True, toward, shown.log_value, shown.bound, 0, 0.0)
    if fail_need is not None and (ok_need is None or fail_need <= ok_need):
        e, need, toward = fail, fail_need, "failed"
    elif ok_need is not None:
        e, need, toward = ok, ok_need, "successful"
    else:
        # Nothing to extrapolate: show whichever is relatively closer, without an estimate.
        e = max((fail, ok), key=lambda x: x.log_value / x.bound)
        need, toward = None, (e.toward if e.log_value > 0 else None)
    capped = False
    limit = state.config.max_canary_requests
    if limit is not None:
        left = max(0, limit - requests)
        if need is None or left < need:
            need, capped = float(left), True
    count = None if need is None else math.ceil(need)
    seconds = None
    if count is not None and canary_requests_per_second and canary_requests_per_second > 0:
        seconds = count / canary_requests_per_second
    return Outlook(False, toward, e.log_value, e.bound, count, seconds, capped)
