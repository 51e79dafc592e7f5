"""Times of log lines from the control plane's size checkpoints (``gapless.platform.logtimes``).

Rules: a line's time is never before an earlier line's; never after the file's modification time; a
line that existed at a checkpoint is stamped no later than that checkpoint; the writer notes a size only
when the file grew, and a torn sidecar line is skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gapless.platform.logtimes import LogClock, checkpoints, line_times, times_path

# (bytes appended, seconds elapsed before the next note) in order
growth = st.lists(st.tuples(st.integers(0, 50), st.floats(0.1, 5.0)), min_size=1, max_size=30)


@given(growth, st.data())
def test_line_times_follow_the_rules(steps: list[tuple[int, float]], data: st.DataObject) -> None:
    points: list[tuple[int, float]] = []
    size, now = 0, 1_000.0
    for added, elapsed in steps:
        size += added
        now += elapsed
        if not points or size > points[-1][0]:
            points.append((size, now))
    extra = data.draw(st.integers(0, 40))  # written after the last note
    total = size + extra
    if total == 0:
        return
    ends = sorted(set(data.draw(st.lists(st.integers(1, total), min_size=1, max_size=20))))
    mtime = now + data.draw(st.floats(0.0, 3.0))
    times = line_times(ends, points, mtime)
    assert times == sorted(times)
    assert all(t <= mtime for t in times)
    for end, t in zip(ends, times, strict=True):
        for s, at in points:
            if end <= s:
                assert t <= at
        earlier = [at for s, at in points if s < end]
        if earlier:  # the line did not exist yet at that checkpoint
            assert t >= min(earlier[-1], mtime)


def test_the_clock_notes_growth_only_and_survives_a_torn_line(tmp_path: Path) -> None:
    log = tmp_path / "web-1.log"
    log.write_bytes(b"one\n")
    clock = LogClock()
    clock.note([log], 10.0)
    clock.note([log], 11.0)  # unchanged: nothing noted
    with log.open("ab") as f:
        f.write(b"two\nthree\n")
    clock.note([log], 12.0)
    assert checkpoints(log) == [(4, 10.0), (14, 12.0)]
    assert oct(os.stat(times_path(log)).st_mode & 0o777) == "0o600"
    with times_path(log).open("ab") as f:
        f.write(b"20 13.")  # torn by a crash mid-write
    assert checkpoints(log) == [(4, 10.0), (14, 12.0)]
    # A new control plane continues from the sidecar and does not note the same size again.
    fresh = LogClock()
    fresh.note([log], 14.0)
    assert checkpoints(log) == [(4, 10.0), (14, 12.0)]
    assert line_times([4, 8, 14], checkpoints(log), 12.5) == [10.0, 12.0, 12.0]
