"""Numbers for people: every value the CLI and the dashboard show is formatted here, by what it measures.

Why one module: a latency shown as ``0.00206`` next to one shown as ``2 ms`` invites misreading during an
incident, and each face formatting its own numbers drifts. A metric declares its :data:`Unit` (the router's
signals have fixed units; a Prometheus query or a business counter may say ``unit:`` in its template) and
:func:`format_value` turns a value of that unit into a short string: two significant digits below ten,
no exponent, a unit suffix that scales (``850 µs``, ``2.1 ms``, ``1.3 s``, ``3m20s``; ``512 B``,
``1.2 MiB``; ``0.5%``; ``12.3k``).

Pure: no I/O, no clock; the functions are total over floats (``nan`` and infinities are shown as such).
"""

from __future__ import annotations

import math
from typing import Literal, get_args

__all__ = [
    "UNITS",
    "Unit",
    "format_bytes",
    "format_count",
    "format_duration",
    "format_number",
    "format_percent",
    "format_seconds",
    "format_value",
]

Unit = Literal[
    "seconds",
    "milliseconds",
    "ratio",
    "percent",
    "bytes",
    "bytesPerSecond",
    "count",
    "perSecond",
    "cores",
]
"""What a metric measures: ``ratio`` is a fraction shown as a percentage, ``percent`` is already one."""

UNITS: tuple[str, ...] = get_args(Unit)


def _special(x: float) -> str | None:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return None


def format_number(x: float) -> str:
    """``x`` in at most four significant places, never with an exponent: ``2.1``, ``12.5``, ``125``, ``0.0021``."""
    special = _special(x)
    if special is not None:
        return special
    sign = "-" if x < 0 else ""
    a = abs(x)
    if a < 0.000_000_5:  # below the sixth decimal place: rounds to nothing, as a fixed-point display would
        return "0"
    if a >= 100:
        return f"{sign}{a:.0f}"
    if a >= 10:
        text = f"{a:.1f}"
    else:
        # Two significant digits: enough to compare, short enough for a column.
        digits = max(1, 1 - math.floor(math.log10(a)))
        text = f"{a:.{digits}f}"
        if float(text) >= 10:  # 9.96 rounds up to 10.0
            text = f"{a:.1f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return sign + text


def format_seconds(seconds: float) -> str:
    """A latency or short time: ``850 µs``, ``2.1 ms``, ``1.3 s``; a minute or more as a duration."""
    special = _special(seconds)
    if special is not None:
        return special
    a = abs(seconds)
    if a >= 59.95:
        return format_duration(seconds)
    if a == 0:
        return "0 s"
    if a < 0.000_999_5:
        return f"{format_number(seconds * 1e6)} µs"
    if a < 0.999_5:
        return f"{format_number(seconds * 1e3)} ms"
    return f"{format_number(seconds)} s"


def format_duration(seconds: float) -> str:
    """A span of time the way people say it: ``45s``, ``3m20s``, ``1h05m``, ``2d3h`` (below a second, ms)."""
    special = _special(seconds)
    if special is not None:
        return special
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def format_percent(ratio: float) -> str:
    """A fraction as a percentage: ``0.005`` is ``0.5%``."""
    special = _special(ratio)
    return special if special is not None else f"{format_number(ratio * 100)}%"


_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def format_bytes(n: float) -> str:
    """Bytes in binary multiples: ``512 B``, ``1.2 MiB``."""
    special = _special(n)
    if special is not None:
        return special
    sign = "-" if n < 0 else ""
    a = abs(n)
    for suffix in _BINARY:
        if a < 1023.5 or suffix == _BINARY[-1]:
            return f"{sign}{format_number(a) if suffix != 'B' else f'{a:.0f}'} {suffix}"
        a /= 1024
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns at its last suffix


_DECIMAL = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def format_count(n: float) -> str:
    """A count: exact below 10,000 (``800``, ``9999``), then ``12.3k``, ``1.2M``."""
    special = _special(n)
    if special is not None:
        return special
    a = abs(n)
    if a < 9999.5:
        return f"{n:.0f}" if float(n).is_integer() or a >= 100 else format_number(n)
    sign = "-" if n < 0 else ""
    for scale, suffix in _DECIMAL:
        if a >= scale * 0.99995:
            return f"{sign}{format_number(a / scale)}{suffix}"
    raise AssertionError("unreachable")  # pragma: no cover - a >= 9999.5 passes the "k" test


def format_value(value: float, unit: str | None) -> str:
    """``value`` of ``unit`` (one of :data:`UNITS`, or ``None`` for a bare number) for people."""
    if unit == "seconds":
        return format_seconds(value)
    if unit == "milliseconds":
        return format_seconds(value / 1000)
    if unit == "ratio":
        return format_percent(value)
    if unit == "percent":
        return f"{format_number(value)}%"
    if unit == "bytes":
        return format_bytes(value)
    if unit == "bytesPerSecond":
        return f"{format_bytes(value)}/s"
    if unit == "count":
        return format_count(value)
    if unit == "perSecond":
        return f"{format_number(value)}/s"
    if unit == "cores":
        return f"{format_number(value)} cores"
    return format_number(value)
