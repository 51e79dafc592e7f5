"""Durations and points in time as people type them, and times as the CLI prints them.

``--timeout 90s``, ``--since 1h30m`` and ``--since 2026-12-05T07:16:05Z`` follow kubectl's spelling: a
duration is one or more ``<number><unit>`` parts (``h``, ``m``, ``s``, ``ms``), or a plain number of
seconds; a point in time is RFC 3339 with an offset. Times in ``-o json`` and ``-o yaml`` output are
RFC 3339 in UTC with milliseconds, the form ``kubectl`` and most log tools read back.

Standard library only: ``gapless status`` and ``version`` use it and must start fast.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

__all__ = ["format_duration", "parse_duration", "parse_since", "rfc3339", "with_rfc3339_times"]

_UNITS = {"h": "3600", "m": "60", "s": "1", "ms": "0.001"}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
MAX_SECONDS = 366 * 24 * 3600
"""A year: more is surely a typo (``--timeout 90000000``), not a wish."""


def parse_duration(text: str, *, option: str = "duration") -> float:
    """Seconds in ``text`` (``90s``, ``2m``, ``1h30m``, ``500ms``, ``1.5s`` or ``90``).

    Raises ``ValueError`` naming the option and the value for anything else, a negative number, or
    more than a year.
    """
    from decimal import Decimal  # exact sums (1h30m500ms); imported only when a duration is given

    value = text.strip()
    plain = re.fullmatch(r"\d+(?:\.\d+)?", value) is not None
    total = Decimal(value) if plain else Decimal(0)
    if not plain:
        pos, total, seen = 0, Decimal(0), set()
        for m in _PART.finditer(value):
            if m.start() != pos or m.group(2) in seen:
                break
            seen.add(m.group(2))
            total += Decimal(m.group(1)) * Decimal(_UNITS[m.group(2)])
            pos = m.end()
        if not value or pos != len(value):
            raise ValueError(
                f"{option} {text!r} is not a duration: write e.g. 90s, 2m, 1h30m, 500ms "
                "or a number of seconds"
            )
    if total > MAX_SECONDS:
        raise ValueError(f"{option} {text!r} is longer than a year")
    return float(total)


def format_duration(seconds: float) -> str:
    """``seconds`` as a duration ``parse_duration`` reads back: ``1h30m``, ``2m5s``, ``500ms``, ``0s``.

    Whole milliseconds are kept; finer parts are rounded away.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{seconds!r} is not a duration")
    ms = round(seconds * 1000)
    parts = []
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        n, ms = divmod(ms, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"


def parse_since(text: str, now: float, *, option: str = "--since") -> float:
    """The epoch time ``text`` names: a duration before ``now``, or an RFC 3339 time with an offset."""
    try:
        return now - parse_duration(text, option=option)
    except ValueError as e:
        if any(c.isdigit() for c in text) and ("T" in text or "-" in text[1:]):
            try:
                when = datetime.fromisoformat(text.strip())
            except ValueError:
                raise ValueError(
                    f"{option} {text!r} is neither a duration (e.g. 10m) nor an RFC 3339 time "
                    "(e.g. 2026-12-05T07:16:05Z)"
                ) from None
            if when.tzinfo is None:
                raise ValueError(
                    f"{option} {text!r} has no time zone: add Z for UTC or an offset like +01:00"
                ) from None
            return when.timestamp()
        raise e from None


def rfc3339(epoch: float) -> str:
    """``2026-12-05T07:16:05.123Z``: the epoch time in UTC with milliseconds."""
    when = datetime.fromtimestamp(round(epoch, 3), UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _is_time_key(key: str) -> bool:
    return key in ("time", "at") or key.endswith(("At", "Since", "Time"))


def _is_epoch(v: Any) -> bool:
    """A number that can be a time: positive and before the year 5000."""
    return isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 95_617_584_000


def with_rfc3339_times(data: Any) -> Any:
    """A copy of API data with every epoch time (``createdAt``, ``time``, ``at``, ...) as RFC 3339.

    The API keeps epoch seconds (the dashboard computes with them); people and their tools read times.
    Only numbers under a time's key change; a zero or missing time stays as it is.
    """
    if isinstance(data, dict):
        return {
            k: rfc3339(v) if _is_time_key(k) and _is_epoch(v) else with_rfc3339_times(v)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [with_rfc3339_times(v) for v in data]
    return data
