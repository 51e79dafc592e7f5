"""Values for people: every unit formats short, without exponents, and reads back to about the same value."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gapless.core.units import (
    UNITS,
    format_bytes,
    format_count,
    format_duration,
    format_number,
    format_percent,
    format_seconds,
    format_value,
)

_SCALE = {
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "B": 1.0,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
    "PiB": 2**50,
}
_DECIMAL = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")

finite = st.floats(min_value=1e-6, max_value=1e12, allow_nan=False, allow_infinity=False)


def read_back(text: str) -> float:
    """The value a person reads in ``text`` (the inverse of the formatting, up to its rounding)."""
    if text.endswith("%"):
        return float(text[:-1]) / 100
    if text.endswith("ms") and " " not in text:
        return float(text[:-2]) / 1000
    if m := _DURATION.match(text):
        d, h, mi, s = (int(g or 0) for g in m.groups())
        return d * 86400 + h * 3600 + mi * 60 + s
    if " " in text:
        number, unit = text.split(" ")
        return float(number) * _SCALE[unit]
    if text[-1] in _DECIMAL:
        return float(text[:-1]) * _DECIMAL[text[-1]]
    return float(text)


def close(shown: float, value: float, relative: float, absolute: float = 0.0) -> bool:
    return abs(shown - value) <= relative * abs(value) + absolute


@given(finite)
def test_numbers_have_two_significant_digits_and_no_exponent(x: float) -> None:
    """A number reads back within 5% and never in scientific notation."""
    text = format_number(x)
    assert "e" not in text.lower()
    assert close(float(text), x, 0.05)


@given(st.floats(min_value=1e-7, max_value=59.9))
def test_latencies_scale_their_unit(seconds: float) -> None:
    """A latency is shown in µs, ms or s with at most 4 digits, and reads back within 5%."""
    text = format_seconds(seconds)
    number, unit = text.split(" ")
    assert unit in ("µs", "ms", "s")
    assert len(number.replace(".", "")) <= 4
    assert close(read_back(text), seconds, 0.05, 5e-7)


@given(st.floats(min_value=0, max_value=10 * 365 * 86400))
def test_durations_read_like_people_say_them(seconds: float) -> None:
    """A duration reads back within its last shown unit (a second, a minute, an hour)."""
    text = format_duration(seconds)
    if seconds < 1:
        assert text.endswith("ms")
        assert close(read_back(text), seconds, 0, 0.0005)
        return
    last = 1 if seconds < 3600 else 60 if seconds < 86400 else 3600
    assert abs(read_back(text) - seconds) <= last
    assert len(text) <= 8 or seconds >= 100 * 86400


@given(st.floats(min_value=0, max_value=1))
def test_ratios_are_percentages(ratio: float) -> None:
    """A ratio is a percentage that reads back within 5% (or below the sixth decimal)."""
    text = format_percent(ratio)
    assert text.endswith("%")
    assert close(read_back(text), ratio, 0.05, 1e-8)


@given(st.integers(min_value=0, max_value=2**50))
def test_bytes_use_binary_multiples(n: int) -> None:
    """Bytes read back within 5%, in B below 1 KiB."""
    text = format_bytes(n)
    assert close(read_back(text), n, 0.05, 0.5)
    if n < 1000:
        assert text == f"{n} B"


@given(st.integers(min_value=0, max_value=10**14))
def test_counts_are_exact_below_ten_thousand(n: int) -> None:
    """A count is exact below 10,000 and within 5% above, at most 5 characters then."""
    text = format_count(n)
    if n < 10_000:
        assert text == str(n)
    else:
        assert close(read_back(text), n, 0.05)
        assert len(text) <= 5


@given(st.sampled_from(UNITS), st.floats(allow_nan=True, allow_infinity=True))
def test_every_unit_formats_every_float(unit: str, x: float) -> None:
    """No value of any unit raises or shows an exponent."""
    text = format_value(x, unit)
    assert text
    assert not re.search(r"e[+-]", text)


@given(st.floats(min_value=1e-6, max_value=1e6), st.floats(min_value=1e-6, max_value=1e6))
def test_latency_order_is_kept(a: float, b: float) -> None:
    """Of two latencies, the larger is never shown as a smaller value."""
    lo, hi = sorted((a, b))
    assert read_back(format_seconds(lo)) <= read_back(format_seconds(hi)) * (1 + 1e-9)


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.00206, "seconds", "2.1 ms"),
        (0.00639, "seconds", "6.4 ms"),
        (1.3, "seconds", "1.3 s"),
        (200, "seconds", "3m20s"),
        (0.000_85, "seconds", "850 µs"),
        (2.1, "milliseconds", "2.1 ms"),
        (0.005, "ratio", "0.5%"),
        (12.5, "percent", "12.5%"),
        (1.2 * 2**20, "bytes", "1.2 MiB"),
        (2048, "bytesPerSecond", "2 KiB/s"),
        (800, "count", "800"),
        (12_345, "count", "12.3k"),
        (3.5, "perSecond", "3.5/s"),
        (0.25, "cores", "0.25 cores"),
        (0.000_123_4, None, "0.00012"),
        (math.nan, "seconds", "nan"),
        (math.inf, "ratio", "∞"),
    ],
)
def test_examples(value: float, unit: str | None, text: str) -> None:
    """The forms the docs show."""
    assert format_value(value, unit) == text
