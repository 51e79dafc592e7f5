"""The dashboard during an incident, in a real headless Chromium at 1400 and 800 px.

A real control plane runs a canary of the example app under load with a background analysis (four
metrics: baseline comparison, sequential test, thresholds, a condition). The page must show every
metric as people read it (verdict, value with its unit against the limit or the baseline, a
sparkline; never raw JSON), list in the chart legend only the revisions that hold traffic or
instances, give each revision the same colour everywhere and after a reload, start the time axis where
the data does, put axis ticks on round numbers, and fit 800 px without sideways scrolling.

Screenshots are kept: in ``$GAPLESS_TEST_ARTIFACTS`` when set, else in the test's tmp dir (the path is
printed), and in ``test-artifacts/`` of the repository as the other browser tests do.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gapless.server.auth import read_token
from tests.conftest import REPO
from tests.e2e.harness import Gapless, Load, api, rollout_doc
from tests.e2e.test_dashboard import _browser, _require_chromium, _wait_js
from tests.ports import free_port

pytestmark = pytest.mark.slow

LENIENT = 1000  # the analysis watches and reports; the test is about what the page shows, not a verdict
TEMPLATE = {
    "apiVersion": "gapless.dev/v1alpha1",
    "kind": "AnalysisTemplate",
    "metadata": {"name": "watch"},
    "spec": {
        "metrics": [
            {
                "name": "latency",
                "provider": {"builtin": {}},
                "interval": "1s",
                "failureLimit": LENIENT,
                "inconclusiveLimit": LENIENT,
                "judge": {
                    "compareToBaseline": {
                        "minRequests": 5,
                        "maxErrorRateRatio": 20,
                        "maxLatencyIncreaseSeconds": "50ms",
                    }
                },
            },
            {
                "name": "error-rate",
                "provider": {"builtin": {}},
                "interval": "1s",
                "failureLimit": LENIENT,
                "judge": {"sequential": {"latency": False, "alpha": 0.001, "beta": 0.001}},
            },
            {
                "name": "limits",
                "provider": {"builtin": {}},
                "interval": "1s",
                "failureLimit": LENIENT,
                "inconclusiveLimit": LENIENT,
                "judge": {"threshold": {"minRequests": 5, "maxP99Seconds": "200ms", "maxErrorRate": 0.05}},
            },
            {
                "name": "absolute",
                "provider": {"builtin": {}},
                "interval": "1s",
                "failureLimit": LENIENT,
                "successCondition": "result.requests == 0 or result.error_rate < 0.05",
            },
        ]
    },
}
STRATEGY = {
    "canary": {
        "steps": [{"setWeight": 40}, {"pause": {}}],
        "scaleDownDelaySeconds": 1,
        "abortScaleDownDelaySeconds": 1,
        "analysis": {"templates": [{"templateName": "watch"}], "startingStep": 1},
    }
}
UNIT = re.compile(r"\d (ns|µs|ms|s)\b|\d%|\d (B|KiB|MiB)\b")


def _artifacts(tmp_path: Path) -> Path:
    where = Path(os.environ.get("GAPLESS_TEST_ARTIFACTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def _screenshot(driver: Any, where: Path, name: str) -> None:
    """A full-page screenshot at the window's width, kept in ``where`` and in test-artifacts/."""
    width = driver.execute_script("return window.innerWidth")
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(driver.get_window_size()["width"], min(height + 140, 6000))
    path = where / f"dashboard-analysis-{name}.png"
    driver.save_screenshot(str(path))
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    shutil.copy(path, REPO / "test-artifacts" / path.name)
    print(f"\nscreenshot ({width} px wide): {path}")


async def _wait_api(g: Gapless, path: str, holds: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not holds(body := await api(g, "GET", path)):
        assert time.monotonic() < deadline, json.dumps(body)[:3000]
        await asyncio.sleep(0.2)
    return body


def _live(status: dict[str, Any]) -> list[str]:
    """Revisions holding traffic or instances, from the status as the API gives it."""
    live = {r for r, w in (status["strategy"].get("weights") or {}).items() if w > 0}
    live |= {str(i["revision"]) for i in status["instances"] if i["state"] != "stopped"}
    return sorted(live, key=int)


PANEL = "document.getElementById('analysis').innerText"
LEGEND = "Array.from(document.querySelectorAll('#legend span[data-revision]')).map(s => s.dataset.revision).join(',')"
COLOURS = """(() => {
  const out = {};
  const add = (rev, c) => (out[rev] = out[rev] || new Set()).add(c);
  document.querySelectorAll('#legend span[data-revision]').forEach(s => add(s.dataset.revision, s.dataset.color));
  document.querySelectorAll('svg.chart path.series').forEach(p => add(p.dataset.revision, p.getAttribute('stroke')));
  document.querySelectorAll('#weights-bar div[data-revision]').forEach(d => add(d.dataset.revision, getComputedStyle(d).backgroundColor));
  return Object.fromEntries(Object.entries(out).map(([r, s]) => [r, Array.from(s).sort()]));
})()"""
CHARTS = """Array.from(document.querySelectorAll('svg.chart')).map(c => ({
  id: c.id, tmin: c.dataset.tmin, ticks: c.dataset.ticks,
  revisions: Array.from(new Set(Array.from(c.querySelectorAll('path.series')).map(p => p.dataset.revision))).sort(),
}))"""


def _hex_rgb(colour: str) -> str:
    if colour.startswith("#"):
        r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
        return f"rgb({r}, {g}, {b})"
    return colour


def _check_panel(driver: Any) -> str:
    """Every metric shows a verdict and a value with a unit; the panel has no brace anywhere."""
    text = _wait_js(driver, f"document.querySelectorAll('#analysis .reading').length === 4 && {PANEL}")
    assert "{" not in text, text
    assert "}" not in text, text
    readings = driver.execute_script(
        "return Array.from(document.querySelectorAll('#analysis .reading')).map(r => ["
        "r.dataset.metric, r.dataset.verdict, r.querySelector('.checks').innerText,"
        "Math.min(...Array.from(r.querySelectorAll('svg.spark')).map(s => Number(s.dataset.points)))])"
    )
    assert sorted(r[0] for r in readings) == ["absolute", "error-rate", "latency", "limits"], readings
    for metric, verdict, checks, points in readings:
        assert verdict in ("pass", "fail", "inconclusive", "running"), (metric, verdict)
        assert UNIT.search(checks), (metric, checks)
        assert points >= 2, (metric, points)
    latency = next(r[2] for r in readings if r[0] == "latency")
    assert re.search(r"p99 [\d.]+ (µs|ms|s) vs [\d.]+ (µs|ms|s) \(limit \+50 ms\)", latency), latency
    return str(text)


def _check_legend_and_colours(driver: Any, live: list[str]) -> dict[str, str]:
    """The legend lists exactly the live revisions; each revision has one colour in legend, charts and weights bar."""
    legend = _wait_js(driver, f"({LEGEND}) === '{','.join(live)}' && ({LEGEND})")
    assert legend.split(",") == live
    colours = driver.execute_script("return " + COLOURS)
    for rev, seen in colours.items():
        assert len({_hex_rgb(c) for c in seen}) == 1, (rev, seen)
    assert len({_hex_rgb(seen[0]) for seen in colours.values()}) == len(colours), colours
    return {rev: _hex_rgb(seen[0]) for rev, seen in colours.items()}


def _check_axes(driver: Any, series: dict[str, Any], live: list[str]) -> None:
    """Each chart starts where the live revisions' data starts and has ticks on 1-2-5 steps."""
    first = min(p["t"] for rev in live for p in series["revisions"][rev]["points"])
    for chart in driver.execute_script("return " + CHARTS):
        assert chart["revisions"] == sorted(live), chart
        assert chart["tmin"], chart
        assert abs(float(chart["tmin"]) - first) < 1e-3, (chart, first)
        ticks = [float(t) for t in chart["ticks"].split(",")]
        step = ticks[1]
        mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
        assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-6, chart
        assert all(abs(t / step - round(t / step)) < 1e-6 for t in ticks), chart


async def test_analysis_panel_legend_and_width_in_chromium(g: Gapless, tmp_path: Path) -> None:
    """At 1400 and 800 px: readings with units and no braces, a legend of live revisions only, stable colours, no sideways scroll."""
    _require_chromium()
    where = _artifacts(tmp_path)
    port, listen = free_port(), f"127.0.0.1:{free_port()}"
    first = rollout_doc("shop", port, "v1", strategy=STRATEGY, replicas=2, app_args=("--error-rate", "0.001"))
    path = g.specs / "v1.yaml"
    path.write_text(yaml.safe_dump_all([TEMPLATE, first]))
    code, _, err = await g.acli("up", "-f", str(path), "--dashboard-listen", listen)
    assert code == 0, err
    load = Load(f"http://127.0.0.1:{port}/", rps=80)
    await asyncio.sleep(2)
    second = rollout_doc(
        "shop", port, "v2", strategy=STRATEGY, replicas=2, app_args=("--error-rate", "0.001")
    )
    code, _, err = await g.acli("apply", "-f", str(g.write(second)))
    assert code == 0, err
    await _wait_api(
        g,
        "/api/v1/rollouts/shop/analysis",
        lambda b: b["items"] and all(len(r["checks"][0]["series"]) >= 3 for r in b["items"][-1]["readings"]),
    )
    status = (await api(g, "GET", "/api/v1/rollouts/shop"))["status"]
    live = _live(status)
    assert live == ["1", "2"], status
    token = read_token(g.state_dir.resolve())
    url = f"http://{listen}/"
    driver = await asyncio.to_thread(_browser)
    try:

        def wide() -> dict[str, str]:
            from selenium.webdriver.common.by import By

            driver.set_window_size(1400, 1400)
            driver.get(url)
            _wait_js(driver, "!document.getElementById('login').hidden")
            driver.find_element(By.ID, "token").send_keys(token)
            driver.find_element(By.ID, "login-button").click()
            driver.get(url + "#/rollouts/shop")
            _wait_js(driver, "document.getElementById('live').textContent === 'live'")
            _check_panel(driver)
            colours = _check_legend_and_colours(driver, live)
            _screenshot(driver, where, "1400")
            return colours

        colours = await asyncio.to_thread(wide)
        series = await api(g, "GET", "/api/v1/rollouts/shop/series")

        def narrow() -> None:
            driver.set_window_size(800, 1400)
            driver.refresh()  # colours come from the revision: the same after a reload
            _wait_js(driver, "document.getElementById('live').textContent === 'live'")
            text = _check_panel(driver)
            assert _check_legend_and_colours(driver, live) == colours
            _check_axes(driver, series, live)
            assert driver.execute_script("return window.innerWidth") <= 800
            width = driver.execute_script("return document.scrollingElement.scrollWidth")
            assert width <= 800, width
            _screenshot(driver, where, "800")
            print(f"analysis panel at 800 px:\n{text}")

        await asyncio.to_thread(narrow)
        code, _, err = await g.acli("abort", "shop")
        assert code == 0, err
        status = (
            await _wait_api(g, "/api/v1/rollouts/shop", lambda b: _live(b["status"]) == ["1"], timeout=30)
        )["status"]
        series = await api(g, "GET", "/api/v1/rollouts/shop/series")
        assert "2" in series["revisions"], "the aborted canary's points are still kept"

        def after_abort() -> None:
            _check_legend_and_colours(driver, ["1"])
            _wait_js(
                driver,
                "Array.from(document.querySelectorAll('svg.chart path.series[data-revision=\"2\"]')).length === 0",
            )
            assert driver.execute_script("return document.scrollingElement.scrollWidth") <= 800
            _screenshot(driver, where, "800-aborted")

        await asyncio.to_thread(after_abort)
        # A third revision while the page (which saw 1 and 2) stays open, then a reload that sees only 1
        # and 3: every revision keeps its colour, whatever the order or number of revisions seen.
        third = rollout_doc(
            "shop", port, "v3", strategy=STRATEGY, replicas=2, app_args=("--error-rate", "0.001")
        )
        code, _, err = await g.acli("apply", "-f", str(g.write(third)))
        assert code == 0, err
        await _wait_api(g, "/api/v1/rollouts/shop", lambda b: _live(b["status"]) == ["1", "3"], timeout=30)

        def third_revision() -> None:
            seen = _check_legend_and_colours(driver, ["1", "3"])
            _screenshot(driver, where, "800-third-revision")
            driver.refresh()
            _wait_js(driver, "document.getElementById('live').textContent === 'live'")
            assert _check_legend_and_colours(driver, ["1", "3"]) == seen
            assert seen["1"] == colours["1"]

        await asyncio.to_thread(third_revision)
    finally:
        await asyncio.to_thread(driver.quit)
        report = await load.stop()
    assert set(report.failures) <= {"status_500"}, (
        report.failures
    )  # the app answers 0.1% with a 500 on purpose
