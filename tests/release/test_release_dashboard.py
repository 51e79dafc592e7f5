"""The dashboard's Releases view in a real headless Chromium, following a release live.

A control plane with the dashboard runs ``shop`` v1 under load; a release expands and backfills a
migration in a real PostgreSQL, rolls out v2, turns a flag on, holds a monitoring window with analysis,
waits at an approve gate (passed by a click in the page) and contracts. The page must show each step
as it runs (the backfill bar, the rollout's weights, the flag's stage, the analysis verdict, the gate),
mark the point of no rollback, and end Succeeded. Screenshots at 1400 and 800 px wide go to the test's
tmp dir and ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gapless.flags.service.serve import ADMIN_TOKEN_FILE
from gapless.server.auth import read_token
from tests.e2e.harness import Gapless, Load, api, rollout_doc
from tests.e2e.test_dashboard import _browser, _require_chromium, _screenshot, _wait_js
from tests.ports import free_port
from tests.release.test_release_analysis_e2e import TEMPLATE
from tests.release.test_release_migrate_e2e import CONTRACT, MIGRATION, _expand, _fill, _migration_phase

pytestmark = pytest.mark.slow


async def _control_plane(g: Gapless, port: int) -> str:
    """``gapless up`` (template + shop v1) with the dashboard, and flag ``new-ui`` off; the dashboard URL."""
    listen = f"127.0.0.1:{free_port()}"
    path = g.specs / "shop-v1.yaml"
    path.write_text(yaml.safe_dump_all([TEMPLATE, rollout_doc("shop", port, "v1", replicas=2)]))
    code, out, err = await g.acli("up", "-f", str(path), "--dashboard-listen", listen)
    assert code == 0, out + err
    base = f"http://{listen}"
    admin = (g.state_dir / ADMIN_TOKEN_FILE).read_text().strip()
    async with httpx.AsyncClient(base_url=f"{base}/flags", timeout=10) as c:
        deadline = time.monotonic() + 30
        while (r := await c.get("/healthz")).status_code != 200:
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.1)
        headers = {"Authorization": f"Bearer {admin}"}
        r = await c.put("/api/v1/projects/shop", json={"environments": ["production"]}, headers=headers)
        assert r.status_code == 200, r.text
        flag = {
            "key": "new-ui",
            "kind": "boolean",
            "variants": [{"key": "on", "value": True}, {"key": "off", "value": False}],
            "offVariant": "off",
            "environments": {"production": {"enabled": False}},
        }
        r = await c.post("/api/v1/projects/shop/flags", json=flag, headers=headers)
        assert r.status_code == 201, r.text
    return base


def _release(g: Gapless, url: str, port: int) -> Path:
    (g.specs / "0001_qty_bigint.yaml").write_text(MIGRATION)
    slow = ("--ready-delay", "1")  # the rollout step lasts long enough to be seen moving
    g.write(rollout_doc("shop", port, "v2", replicas=2, app_args=slow), "shop-v2.yaml")
    steps: list[dict[str, Any]] = [
        _expand(batchSize=500, batchDelay="100ms"),
        {"name": "ship-v2", "rollout": {"file": "shop-v2.yaml"}},
        {
            "name": "ui-on",
            "flag": {"project": "shop", "flag": "new-ui", "environment": "production", "enabled": True},
        },
        {
            "name": "watch",
            "wait": {"duration": "8s"},
            "analysis": {"templates": [{"templateName": "shop-health"}]},
        },
        {"name": "sign-off", "approve": {"message": "v1 is drained"}},
        CONTRACT,
    ]
    doc = {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "rename"},
        "spec": {"databases": {"shop": {"url": url}}, "steps": steps},
    }
    path = g.specs / "release.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


STEP = 'document.querySelector(\'.release[data-release="rename"] li[data-step="{i}"]\')'


def _follow(driver: Any, base: str, token: str, tmp_path: Path) -> dict[str, Any]:
    """Log in, open Releases, and watch every step pass; what the page showed along the way."""
    from selenium.webdriver.common.by import By

    seen: dict[str, Any] = {}
    driver.get(base + "/")
    _wait_js(driver, "!document.getElementById('login').hidden")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login-button").click()
    _wait_js(driver, "document.querySelector('#rollouts tr[data-rollout=\"shop\"]')")
    driver.find_element(By.ID, "nav-releases").click()
    card = "document.querySelector('.release[data-release=\"rename\"]')"
    _wait_js(driver, card)
    seen["ponr"] = _wait_js(driver, f"{card}.querySelector('li.ponr')?.dataset.step")
    # The backfill, live: the migrate step is current and its bar moves.
    bar = STEP.format(i=0) + "?.querySelector('.backfill')"
    seen["backfill"] = _wait_js(
        driver, f"{STEP.format(i=0)}?.classList.contains('current') && {bar}?.dataset.done", 30
    )
    seen["backfill_total"] = driver.execute_script(f"return {bar}.dataset.total")
    _screenshot(driver, tmp_path, "release-backfill-1400")
    # The rollout step, live: current, with the weights in force.
    rollout = STEP.format(i=1)
    seen["rollout_weights"] = _wait_js(
        driver,
        f"{rollout}?.classList.contains('current') && {rollout}.querySelector('[data-part=\"rollout\"]')?.dataset.weights",
        60,
    )
    # The monitoring window: its analysis verdict while it runs.
    watch = STEP.format(i=3)
    seen["verdict_running"] = _wait_js(
        driver,
        f"{watch}?.classList.contains('current') && "
        f"['running', 'pass'].find(v => v === {watch}.querySelector('[data-part=\"analysis\"]')?.dataset.verdict)",
        60,
    )
    seen["flag_now"] = driver.execute_script(
        f"return {STEP.format(i=2)}.querySelector('[data-part=\"flag\"]')?.dataset.flagNow"
    )
    # The gate: current, and passed by the page's own promote button.
    gate = STEP.format(i=4)
    _wait_js(driver, f"{gate}?.classList.contains('current') && {gate}.dataset.phase === 'running'", 60)
    seen["verdict_after_window"] = _wait_js(
        driver, f"{watch}.querySelector('[data-part=\"analysis\"]')?.dataset.verdict === 'pass' && 'pass'", 10
    )
    seen["gate_text"] = driver.execute_script(
        f"return {gate}.querySelector('[data-part=\"gate\"]').textContent"
    )
    _screenshot(driver, tmp_path, "release-gate-1400")
    driver.set_window_size(800, 2200)
    time.sleep(1.5)
    seen["overflow_800"] = driver.execute_script(
        "return document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )
    _screenshot(driver, tmp_path, "release-gate-800")
    driver.set_window_size(1400, 2200)
    driver.execute_script("window.confirm = () => true")
    driver.find_element(
        By.CSS_SELECTOR, '.release[data-release="rename"] button[data-release-action="promote"]'
    ).click()
    seen["phase"] = _wait_js(driver, f"{card}?.dataset.phase === 'Succeeded' && {card}.dataset.phase", 60)
    seen["phases"] = driver.execute_script(
        f"return Array.from({card}.querySelectorAll('li[data-step]')).map(li => li.dataset.phase)"
    )
    _wait_js(driver, "document.querySelector('#release-events li[data-type=\"ReleaseSucceeded\"]')", 10)
    seen["events"] = driver.execute_script(
        "return Array.from(document.querySelectorAll('#release-events li')).map(li => li.dataset.type)"
    )
    _screenshot(driver, tmp_path, "release-done-1400")
    return seen


async def test_the_releases_view_follows_a_release_live(
    g: Gapless, tmp_path: Path, postgres_url: str
) -> None:
    """Chromium sees the backfill, the weights, the flag, the analysis verdict and the gate; promote there ends it."""
    _require_chromium()
    port = free_port()
    base = await _control_plane(g, port)
    _fill(postgres_url, 20000)
    load = Load(f"http://127.0.0.1:{port}/", rps=50)
    code, out, err = await g.acli("release", "apply", "-f", str(_release(g, postgres_url, port)))
    assert code == 0, out + err
    driver = await asyncio.to_thread(_browser)
    try:
        seen = await asyncio.to_thread(_follow, driver, base, read_token(g.state_dir.resolve()), tmp_path)
    finally:
        await asyncio.to_thread(driver.quit)
    report = await load.stop()
    assert report.failed == 0, report.failures
    assert seen["ponr"] == "5"
    assert 0 < int(seen["backfill"]) <= int(seen["backfill_total"])
    assert "%" in seen["rollout_weights"] or seen["rollout_weights"].startswith("{")
    assert seen["verdict_running"] in ("running", "pass")
    assert seen["verdict_after_window"] == "pass"
    assert seen["flag_now"] == "on"
    assert "waiting for promote" in seen["gate_text"]
    assert seen["overflow_800"] is False
    assert seen["phase"] == "Succeeded"
    assert seen["phases"] == ["succeeded"] * 6
    assert "ReleasePromoted" in seen["events"]
    assert "ReleaseSucceeded" in seen["events"]
    assert _migration_phase(postgres_url) == "completed"
    st = await api(g, "GET", "/api/v1/releases/rename")
    assert st["phase"] == "Succeeded"
