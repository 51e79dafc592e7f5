"""Chart axes on round numbers: the dashboard's tick rule, held here in Python, checked by properties and against app.js.

The charts are drawn in the browser, so the rule lives in ``app.js`` (``niceTicks``: a step of 1, 2 or
5 x 10^n; ``timeTicks``: round clock times). This file ports the same algorithm to Python, checks its
properties with Hypothesis, and runs the page's own functions in Chromium on many inputs to check that
they give the same ticks as the port.
"""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gapless.server.dashboard import STATIC_DIR
from tests.e2e.test_dashboard import _browser, _require_chromium

TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600)


def nice_ticks(maximum: float, count: int) -> list[float]:
    """Port of app.js ``niceTicks``: 0, step, 2 step, ... up to the first tick at or above ``maximum``."""
    if not maximum > 0 or not math.isfinite(maximum):
        maximum = 1
    raw = maximum / count
    mag = math.pow(10, math.floor(math.log10(raw)))
    step = 10 * mag
    for m in (1, 2, 5):
        if m * mag >= raw * (1 - 1e-9):
            step = m * mag
            break
    n = math.ceil(maximum / step - 1e-9)
    return [float(f"{k * step:.12g}") for k in range(n + 1)]


def time_ticks(tmin: float, tmax: float, count: int) -> list[float]:
    """Port of app.js ``timeTicks``: multiples of the smallest round step giving at most ``count`` ticks."""
    step = next((s for s in TIME_STEPS if (tmax - tmin) / s <= count), 600)
    first = math.ceil(tmin / step) * step
    if first < tmin:  # tmin / step rounded down to a multiple below tmin
        first += step
    out = []
    t = first
    while t <= tmax:
        out.append(t)
        t += step
    return out


def _mantissa(step: float) -> float:
    return step / math.pow(10, math.floor(math.log10(step) + 1e-9))


maxima = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False)


@given(maxima, st.integers(2, 8))
def test_ticks_are_round_and_cover_the_data(maximum: float, count: int) -> None:
    """Ticks start at 0, step by 1, 2 or 5 x 10^n, end at or just above the maximum, at most ``count`` steps."""
    ticks = nice_ticks(maximum, count)
    step = ticks[1] - ticks[0]
    assert ticks[0] == 0
    assert 2 <= len(ticks) <= count + 1
    assert min(abs(_mantissa(step) - m) for m in (1, 2, 5, 10)) < 1e-6, step
    for k, t in enumerate(ticks):
        assert math.isclose(t, k * step, rel_tol=1e-9, abs_tol=1e-15)
    assert ticks[-1] >= maximum * (1 - 1e-9)
    assert ticks[-2] < maximum  # no empty band on top


@pytest.mark.parametrize(
    ("maximum", "ticks"),
    [
        (87, [0, 50, 100]),
        (100, [0, 50, 100]),
        (130, [0, 50, 100, 150]),
        (0.37, [0, 0.1, 0.2, 0.3, 0.4]),
        (4.1, [0, 2, 4, 6]),
        (0, [0, 0.5, 1]),
    ],
)
def test_tick_examples(maximum: float, ticks: list[float]) -> None:
    """Axes an SRE reads at a glance (4 steps at most)."""
    assert nice_ticks(maximum, 4) == ticks


@given(st.floats(0, 2e9), st.floats(1, 700), st.integers(3, 8))
def test_time_ticks_are_round_clock_times_inside_the_axis(tmin: float, span: float, count: int) -> None:
    """Time ticks fall inside the axis, on multiples of one round step, at most ``count`` + 1 of them."""
    tmax = tmin + span
    ticks = time_ticks(tmin, tmax, count)
    assert len(ticks) <= count + 1
    assert all(tmin <= t <= tmax for t in ticks)
    if len(ticks) >= 2:
        step = ticks[1] - ticks[0]
        assert step in TIME_STEPS
        assert all(t % step == 0 for t in ticks)


def _js_function(name: str) -> str:
    source = (STATIC_DIR / "app.js").read_text()
    match = re.search(rf"^function {name}\(.*?^\}}$", source, re.S | re.M)
    assert match, f"app.js has no function {name}"
    return match.group(0)


def test_the_page_computes_the_same_ticks_as_the_rule() -> None:
    """app.js's niceTicks and timeTicks, run in Chromium, give the ticks of the Python rule for many inputs."""
    _require_chromium()
    maxima = [
        0,
        1e-5,
        0.0042,
        0.05,
        0.37,
        0.999,
        1,
        1.0001,
        4.1,
        9.99,
        10,
        23.4,
        87,
        99.9,
        100,
        101,
        333,
        4321,
        1e6,
        7.5e8,
    ]
    maxima += [round(1.37**k, 6) for k in range(-20, 40)]
    spans = [(5e-324, 4.0), (0.0, 7.0)]
    spans += [
        (1796455000.0 + k * 7.3, 1796455000.0 + k * 7.3 + d)
        for k in range(10)
        for d in (5, 40, 61, 299, 300, 599)
    ]
    script = (
        "const TIME_STEPS = "
        + json.dumps(list(TIME_STEPS))
        + ";\n"
        + _js_function("niceTicks")
        + "\n"
        + _js_function("timeTicks")
        + "\n"
        + "return [arguments[0].map((m) => niceTicks(m, 4)), arguments[1].map((s) => timeTicks(s[0], s[1], 6))];"
    )
    driver = _browser()
    try:
        driver.get("about:blank")
        js_ticks, js_times = driver.execute_script(script, maxima, spans)
    finally:
        driver.quit()
    for m, got in zip(maxima, js_ticks, strict=True):
        assert got == pytest.approx(nice_ticks(m, 4), rel=1e-9), m
    for (a, b), got in zip(spans, js_times, strict=True):
        assert got == pytest.approx(time_ticks(a, b, 6)), (a, b)
