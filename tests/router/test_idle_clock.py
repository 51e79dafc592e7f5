"""The idle timeout's clock: the request path reads no clock, yet no idle connection is closed early.

A connection going idle is stamped with the ``now`` of the housekeeping's last sweep. Rules, for any
schedule of sweeps (a busy loop makes them late) and any moments at which connections go idle:
1. a connection is never closed before ``idle_timeout`` has passed since it really went idle;
2. it is closed by the first sweep more than ``idle_timeout`` past the end of the interval in which it
   went idle (so a late sweep delays a close by at most that interval).
The connections are stand-ins with only ``since``, ``waiting`` and ``shed``: the rule under test is the
router's bookkeeping, not the sockets (tests/router/test_defences.py covers those).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gapless.router.config import Limits
from gapless.router.proxy import Router

IDLE = 1.0


class _Conn:
    def __init__(self, router: Router, went_idle: float, interval_end: float) -> None:
        self.router = router
        self.went_idle = went_idle
        self.interval_end = interval_end
        self.since = 0.0
        self.closed_at: float | None = None

    def shed(self, *, timed_out: bool) -> None:
        assert not timed_out  # an idle close is not a header timeout
        self.closed_at = self.router.now
        del self.router.idle[self]  # type: ignore[arg-type]


@given(
    gaps=st.lists(st.floats(min_value=0.01, max_value=2.0), min_size=1, max_size=30),
    arrivals=st.lists(st.tuples(st.integers(0, 29), st.floats(0.0, 1.0)), max_size=20),
)
def test_no_idle_connection_is_closed_early_however_late_the_sweeps(
    gaps: list[float], arrivals: list[tuple[int, float]]
) -> None:
    router = Router("idle-clock")
    router.limits = Limits(idle_timeout=IDLE)
    start = router.now
    sweeps = [start]
    for gap in gaps:
        sweeps.append(sweeps[-1] + gap)
    sweeps.append(
        sweeps[-1] + IDLE + 0.01
    )  # a last sweep, idle_timeout after every interval in which one went idle
    conns: list[_Conn] = []
    # Walk the intervals: connections go idle inside interval i (stamped with router.now, as the
    # request path does), then the sweep at its end runs.
    by_interval: dict[int, list[float]] = {}
    for at, frac in arrivals:
        i = at % len(gaps)
        by_interval.setdefault(i, []).append(frac)
    for i in range(len(sweeps) - 1):
        begin, end = sweeps[i], sweeps[i + 1]
        for frac in sorted(by_interval.get(i, [])):
            conn = _Conn(router, begin + frac * (end - begin), end)
            conn.since = router.now
            router.idle[conn] = None  # type: ignore[index]
            conns.append(conn)
        stamped, router.now = router.now, end
        router._restamp_idle(stamped, end)
        router._expire(end)
    for conn in conns:
        assert conn.closed_at is not None, "open after a sweep far past every timeout"
        assert conn.closed_at - conn.went_idle >= IDLE, (conn.went_idle, conn.closed_at)
        first_due = min(s for s in sweeps if s > conn.interval_end + IDLE)
        assert conn.closed_at <= first_due, (conn.interval_end, conn.closed_at, first_due)
