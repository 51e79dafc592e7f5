"""Durations, --since values and RFC 3339 times: what people type reads back as what was meant.

Rules: (1) every duration ``format_duration`` writes parses back to the same milliseconds; (2) the parts
of a duration add up, whatever units are used; (3) anything that is not a duration is refused with a
message naming the option and the value; (4) RFC 3339 times name the same instant to the millisecond;
(5) only numbers under a time's key become RFC 3339, nothing else in the data changes.
"""

from __future__ import annotations

import math
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gapless.cli.times import (
    MAX_SECONDS,
    format_duration,
    parse_duration,
    parse_since,
    rfc3339,
    with_rfc3339_times,
)

MILLIS = st.integers(min_value=0, max_value=MAX_SECONDS * 1000)


@given(MILLIS)
def test_format_parses_back(ms: int) -> None:
    """A formatted duration parses back to the same number of milliseconds."""
    text = format_duration(ms / 1000)
    assert parse_duration(text) == ms / 1000
    assert text == format_duration(parse_duration(text))


@given(st.integers(0, 99), st.integers(0, 999), st.integers(0, 999), st.integers(0, 999), st.booleans())
def test_parts_add_up(h: int, m: int, s: int, ms: int, decimal: bool) -> None:
    """``1h30m``-style parts add up; a plain number is seconds; a decimal part counts."""
    parts = {"h": h, "m": m, "s": s, "ms": ms}
    text = "".join(f"{n}{u}" for u, n in parts.items() if n) or "0s"
    expected = h * 3600 + m * 60 + s + ms / 1000
    assert math.isclose(parse_duration(text), expected, abs_tol=1e-9)
    assert parse_duration(str(s)) == s
    if decimal:
        assert parse_duration(f"{s}.5s") == s + 0.5


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("2m", 120), ("1h30m", 5400), ("500ms", 0.5), ("90", 90), ("1.5", 1.5), (" 3s ", 3)],
)
def test_examples(text: str, seconds: float) -> None:
    """The forms the help text promises."""
    assert parse_duration(text) == seconds


BAD = st.sampled_from(
    ["", "s", "-1s", "-5", "1x", "1d", "1h1h", "5 s", "1e3", "nan", "inf", "1m-", "ms", "1.s", ".5s", "1,5s"]
)


@given(BAD)
def test_bad_durations_name_the_value(text: str) -> None:
    """What is not a duration is refused, naming the option and the value as typed."""
    with pytest.raises(ValueError, match="--timeout") as e:
        parse_duration(text, option="--timeout")
    assert repr(text) in str(e.value)


def test_more_than_a_year_is_refused() -> None:
    """A duration past a year is a typo."""
    with pytest.raises(ValueError, match="longer than a year"):
        parse_duration("9000h")


EPOCHS = st.floats(min_value=0.001, max_value=4_102_444_800, allow_nan=False)


@given(EPOCHS)
def test_rfc3339_names_the_same_instant(t: float) -> None:
    """An RFC 3339 time reads back as the same instant, to the millisecond, in UTC with a Z."""
    text = rfc3339(t)
    assert text.endswith("Z")
    assert len(text) == len("2026-12-05T07:16:05.123Z")
    assert abs(datetime.fromisoformat(text).timestamp() - t) <= 0.0005 + 1e-6
    assert parse_since(text, now=0.0) == datetime.fromisoformat(text).timestamp()


@given(MILLIS, EPOCHS)
def test_since_a_duration_counts_back_from_now(ms: int, now: float) -> None:
    """``--since 10m`` is ten minutes before now."""
    assert parse_since(format_duration(ms / 1000), now) == now - ms / 1000


@pytest.mark.parametrize("text", ["2026-12-05T07:16:05", "2026-13-05T07:16:05Z", "yesterday", "10 minutes"])
def test_bad_since_names_the_value(text: str) -> None:
    """A time without a zone, an impossible date or words are refused, naming the value."""
    with pytest.raises(ValueError, match="--since") as e:
        parse_since(text, now=1e9)
    assert repr(text) in str(e.value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["time", "at", "createdAt", "readySince", "name", "phase", "weight", "lastTime"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


def _is_time_key(k: str) -> bool:
    return k in ("time", "at") or k.endswith(("At", "Since", "Time"))


def _check(before: object, after: object) -> None:
    if isinstance(before, dict):
        assert isinstance(after, dict)
        assert list(after) == list(before)
        for k, v in before.items():
            number = isinstance(v, int | float) and not isinstance(v, bool)
            if _is_time_key(k) and number and 0 < v < 95_617_584_000:
                assert after[k] == rfc3339(v)
            else:
                _check(v, after[k])
    elif isinstance(before, list):
        assert isinstance(after, list)
        assert len(after) == len(before)
        for a, b in zip(before, after, strict=True):
            _check(a, b)
    else:
        assert after == before or (isinstance(before, float) and math.isnan(before))


@given(JSON)
def test_only_times_change(data: object) -> None:
    """Numbers under a time's key become RFC 3339; every other value and every key stays."""
    _check(data, with_rfc3339_times(data))
