"""When each line of an instance's log was written, to the second, without touching the write path.

An instance writes its stdout and stderr straight into its log file (no pipe through gapless, so a
restarted or crashed control plane never blocks or loses a line). To still answer ``gapless logs --since
10m`` and ``--timestamps``, the control plane notes the file's size once a second in a sidecar file
``<instance>.log.times``: one line ``<size> <epoch seconds>`` whenever the size grew. A checkpoint
``(size, t)`` says the first ``size`` bytes existed at ``t``, so a line that ends at byte ``e`` was
written at the latest at the first checkpoint whose size is at least ``e``, and after the checkpoint
before it: its time is known within the sampling interval. Lines after the last checkpoint take the
file's modification time, which is never earlier than their write.

Rules (checked by property tests): a line's time is never before the time of a line that precedes it
in the file; never after the file's modification time; a line that existed at checkpoint ``t`` is
stamped at most ``t``.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["LogClock", "checkpoints", "line_times", "times_path"]

log = logging.getLogger(__name__)

MAX_TIMES_BYTES = 4 << 20
"""A sidecar that grows past this is no longer written (4 MiB: about 50 days of a chatty instance)."""


def times_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + ".times")


class LogClock:
    """Notes each log file's size when it grew; one instance per control plane."""

    def __init__(self) -> None:
        self._noted: dict[Path, int] = {}

    def note(self, paths: Iterable[Path], now: float) -> None:
        seen: set[Path] = set()
        for path in paths:
            seen.add(path)
            try:
                size = path.stat().st_size
            except OSError:
                continue
            last = self._noted.get(path)
            if last is None:
                points = checkpoints(path)
                last = points[-1][0] if points else -1
            if size <= last:
                self._noted[path] = last if size == last else size  # a truncated log starts over
                continue
            sidecar = times_path(path)
            try:
                if sidecar.exists() and sidecar.stat().st_size > MAX_TIMES_BYTES:
                    continue
                fd = os.open(sidecar, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, f"{size} {now:.3f}\n".encode())
                finally:
                    os.close(fd)
            except OSError as e:  # a full disk: the times are a convenience, the log itself matters
                log.debug("cannot note the size of %s: %s", path, e)
                continue
            self._noted[path] = size
        for gone in set(self._noted) - seen:
            del self._noted[gone]


def checkpoints(log_path: Path) -> list[tuple[int, float]]:
    """The sidecar's checkpoints, in file order, skipping a torn or malformed line."""
    points: list[tuple[int, float]] = []
    with contextlib.suppress(OSError):
        data = times_path(log_path).read_bytes()
        for raw in data[: data.rfind(b"\n") + 1].splitlines():  # an unterminated last line is torn
            parts = raw.split()
            if len(parts) != 2:
                continue
            try:
                size, t = int(parts[0]), float(parts[1])
            except ValueError:
                continue
            if points and (size <= points[-1][0] or t < points[-1][1]):
                continue  # out of order (a truncated and regrown log): keep what is monotone
            points.append((size, t))
    return points


def line_times(ends: list[int], points: list[tuple[int, float]], mtime: float) -> list[float]:
    """The time of each line given the byte offset where it ends (ascending), per the module's rule."""
    sizes = [s for s, _ in points]
    out: list[float] = []
    for end in ends:
        i = bisect.bisect_left(sizes, end)
        out.append(min(points[i][1], mtime) if i < len(points) else mtime)
    return out
