"""The web dashboard in a real headless Chromium, against a live control plane during a canary under load.

Selenium drives Debian's ``chromium`` through ``chromedriver``. Selenium's calls block, so each browser
step runs in a thread while the load generator keeps running on the event loop. Screenshots go to the
test's tmp dir and to ``test-artifacts/`` in the repository (ignored by git).
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gapless.server.auth import read_token
from tests.conftest import REPO, in_ci
from tests.e2e.harness import Gapless, Load, api, rollout_doc, seconds_until_all
from tests.ports import free_port

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CANARY = {
    "canary": {
        "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}],
        "scaleDownDelaySeconds": 1,
    }
}
ARTIFACTS = REPO / "test-artifacts"


def _require_chromium() -> None:
    """Skip with the reason when Chromium or its driver is missing; under CI that is a failure."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if missing:
        reason = f"needs {', '.join(missing)} (Debian packages chromium and chromium-driver)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)


async def _canary(g: Gapless) -> tuple[int, str]:
    """`gapless up` v1 with the dashboard, apply v2 and wait at the canary's first pause; (router port, URL)."""
    port, listen = free_port(), f"127.0.0.1:{free_port()}"
    spec = rollout_doc("shop", port, "v1", replicas=2, strategy=CANARY)
    code, _, err = await g.acli("up", "-f", str(g.write(spec)), "--dashboard-listen", listen)
    assert code == 0, err
    assert f"dashboard on http://{listen}/" in err
    code, url, err = await g.acli("dashboard")
    assert code == 0, err
    assert url.strip() == f"http://{listen}/"
    spec2 = rollout_doc("shop", port, "v2", replicas=2, strategy=CANARY)
    code, _, err = await g.acli("apply", "-f", str(g.write(spec2)))
    assert code == 0, err
    await _wait_status(g, lambda s: s["strategy"].get("waitingForPromote"))
    return port, url.strip()


async def _wait_status(
    g: Gapless, holds: Callable[[dict[str, Any]], Any], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not holds(status := (await api(g, "GET", "/api/v1/rollouts/shop"))["status"]):
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)
    return status


def _browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,2200"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


def _wait_js(driver: Any, script: str, timeout: float = 20) -> Any:
    """Poll a JavaScript expression in the page until it is truthy; fail with the page's last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script("return " + script)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {script!r} (last: {value!r})")
        time.sleep(0.2)


def _screenshot(driver: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"dashboard-{name}.png"
    driver.save_screenshot(str(path))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(path, ARTIFACTS / path.name)


SERIES_WITH_POINTS = """Array.from(document.querySelectorAll('#chart-rate path.series'))
    .filter(p => Number(p.dataset.points) >= 3).map(p => p.dataset.revision).sort().join(',')"""
SHIFT_MARKERS = (
    "document.querySelectorAll('#chart-rate line.event-marker[data-type=\"TrafficShifted\"]').length"
)


async def test_dashboard_canary_promote_abort_in_chromium(g: Gapless, tmp_path: Path) -> None:
    """Logged in with the token, Chromium sees both revisions charted, a marker after promote, and abort restores v1."""
    _require_chromium()
    port, url = await _canary(g)
    token = read_token(g.state_dir.resolve())
    load = Load(f"http://127.0.0.1:{port}/", rps=50)
    driver = await asyncio.to_thread(_browser)
    try:

        def login() -> None:
            from selenium.webdriver.common.by import By

            driver.get(url)
            _wait_js(driver, "!document.getElementById('login').hidden")
            driver.find_element(By.ID, "token").send_keys(token)
            driver.find_element(By.ID, "login-button").click()
            _wait_js(driver, "document.querySelector('#rollouts tr[data-rollout=\"shop\"]')")
            _screenshot(driver, tmp_path, "1-list")
            driver.find_element(By.LINK_TEXT, "shop").click()
            _wait_js(driver, "document.getElementById('live').textContent === 'live'")
            # Both revisions get their third point within a few seconds of each other: wait for both.
            assert _wait_js(driver, f"({SERIES_WITH_POINTS}) === '1,2'")
            _wait_js(driver, "document.querySelector('#steps li.current')")
            _screenshot(driver, tmp_path, "2-canary")

        await asyncio.to_thread(login)
        before = await asyncio.to_thread(driver.execute_script, "return " + SHIFT_MARKERS)
        code, _, err = await g.acli("promote", "shop")
        assert code == 0, err
        await _wait_status(g, lambda s: s["strategy"].get("weights") == {"1": 50, "2": 50})

        def marker_then_abort() -> None:
            from selenium.webdriver.common.by import By

            _wait_js(driver, f"{SHIFT_MARKERS} > {before}")
            _wait_js(driver, "document.getElementById('weights-bar').textContent.includes('50%')")
            _screenshot(driver, tmp_path, "3-promoted")
            driver.find_element(By.CSS_SELECTOR, "[data-action='abort']").click()
            alert = driver.switch_to.alert
            assert "Abort" in alert.text
            alert.accept()
            _wait_js(driver, "document.getElementById('action-result').textContent === 'abort: done'")

        await asyncio.to_thread(marker_then_abort)
        await _wait_status(g, lambda s: s.get("aborted"))
        assert await seconds_until_all(f"http://127.0.0.1:{port}/", "v1", timeout=10, streak=30) >= 0

        def aborted() -> None:
            _wait_js(driver, "document.getElementById('r-phase').textContent !== ''")
            _wait_js(driver, "document.querySelector('#events li[data-type=\"Aborted\"]')")
            _screenshot(driver, tmp_path, "4-aborted")

        await asyncio.to_thread(aborted)
    finally:
        await asyncio.to_thread(driver.quit)
        report = await load.stop()
    assert report.failed == 0, report.failures


async def test_dashboard_api_without_token_is_refused(g: Gapless) -> None:
    """On the dashboard's TCP address, every endpoint it uses answers 401 without the token and nothing changes."""
    _, url = await _canary(g)
    before = await api(g, "GET", "/api/v1/rollouts/shop")
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert "app.js" in page.text
        assert (await http.get("/static/app.js")).status_code == 200
        for action in ("promote", "abort", "undo", "pause", "resume", "retry"):
            r = await http.post(f"/api/v1/rollouts/shop/{action}", json={})
            assert r.status_code == 401, (action, r.text)
            r = await http.post(
                f"/api/v1/rollouts/shop/{action}", json={}, headers={"Authorization": "Bearer wrong"}
            )
            assert r.status_code == 401, (action, r.text)
        for path in (
            "/api/v1/rollouts",
            "/api/v1/rollouts/shop",
            "/api/v1/rollouts/shop/series",
            "/api/v1/rollouts/shop/analysis",
            "/api/v1/events",
            "/api/v1/stream?rollout=shop",
            "/api/v1/stream?rollout=shop&token=wrong",
            "/metrics",
        ):
            assert (await http.get(path)).status_code == 401, path
        assert (await http.delete("/api/v1/rollouts/shop")).status_code == 401
        assert (await http.post("/api/v1/shutdown")).status_code == 401
        token = read_token(g.state_dir.resolve())
        ok = await http.get("/api/v1/rollouts/shop/series", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        assert set(ok.json()) >= {"revisions", "instances"}
    after = await api(g, "GET", "/api/v1/rollouts/shop")
    for key in ("strategy", "paused", "currentRevision", "stableRevision", "aborted"):
        assert after["status"][key] == before["status"][key], key
    assert after["status"]["generation"] == before["status"]["generation"]


def test_series_point_from_two_snapshots() -> None:
    """A point is the rate, 5xx share and quantiles of just the requests between two snapshots; a reset gives none."""
    from gapless.router.stats import LATENCY_BOUNDS, RevisionStats
    from gapless.server.dashboard import point_between

    def snapshot(ok: int, errors: int, fast: int, slow: int) -> RevisionStats:
        counts = [0] * (len(LATENCY_BOUNDS) + 1)
        counts[LATENCY_BOUNDS.index(0.001)] = fast  # <= 1 ms
        counts[LATENCY_BOUNDS.index(0.128)] = slow  # <= 128 ms
        return RevisionStats(responses={"2xx": ok, "5xx": errors}, latency_counts=counts)

    before = snapshot(ok=100, errors=0, fast=100, slow=0)
    after = snapshot(ok=190, errors=10, fast=190, slow=10)
    point = point_between(before, after, 2.0)
    assert point is not None
    assert point["rps"] == 50.0
    assert point["errorRate"] == 0.1
    assert point["p50"] is not None
    assert point["p50"] <= 0.001
    assert point["p99"] is not None
    assert 0.1 < point["p99"] <= 0.128
    idle = point_between(after, after, 1.0)
    assert idle is not None
    assert (idle["rps"], idle["errorRate"], idle["p50"]) == (0.0, None, None)
    assert point_between(after, before, 1.0) is None
