"""The dashboard's Flags view in a real headless Chromium: a kill switch click reaches a connected SDK.

A live control plane serves the dashboard on TCP; the flag service is mounted at ``/flags`` there too,
so the browser and a real ``FlagClient`` with ``HttpTransport`` both talk to ``http://HOST:PORT/flags``.
The kill becomes a ``FlagKilled`` control-plane event. Screenshots go to the test's tmp dir and to
``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from gapless.flags.sdk import FlagClient
from gapless.flags.service.serve import ADMIN_TOKEN_FILE
from gapless.flags.transport import HttpTransport
from gapless.server.auth import read_token
from tests.e2e.harness import Gapless, api, rollout_doc
from tests.e2e.test_dashboard import _browser, _require_chromium, _screenshot, _wait_js
from tests.flags_service.conftest import flag_doc
from tests.ports import free_port

pytestmark = pytest.mark.slow

PRO = {"targetingKey": "u1", "plan": "pro"}
STAGES = [
    {
        "name": "10%",
        "rollout": {
            "split": {"weights": [{"variant": "on", "weight": 10_000}, {"variant": "off", "weight": 90_000}]}
        },
    },
    {"name": "100%", "rollout": {"variant": "on"}},
]


async def _control_plane(g: Gapless) -> str:
    """`gapless up` with the dashboard; waits until the mounted flag service answers there. Its base URL."""
    listen = f"127.0.0.1:{free_port()}"
    spec = rollout_doc("web", free_port(), "v1", replicas=1)
    code, _, err = await g.acli("up", "-f", str(g.write(spec)), "--dashboard-listen", listen)
    assert code == 0, err
    base = f"http://{listen}"
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        deadline = time.monotonic() + 20
        while (r := await http.get("/flags/healthz")).status_code != 200:
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.1)
    return base


async def _setup_flags(g: Gapless, base: str) -> str:
    """Project ``shop``, flags ``new-checkout`` and ``gradual`` (a release plan), and a production SDK token."""
    admin = (g.state_dir / ADMIN_TOKEN_FILE).read_text().strip()
    headers = {"Authorization": f"Bearer {admin}"}
    async with httpx.AsyncClient(base_url=f"{base}/flags", headers=headers, timeout=5) as http:
        r = await http.put("/api/v1/projects/shop", json={"environments": ["staging", "production"]})
        assert r.status_code == 200, r.text
        r = await http.post("/api/v1/projects/shop/flags", json=flag_doc("new-checkout"))
        assert r.status_code == 201, r.text
        staged = flag_doc("gradual", rules=[], releasePlan={"stages": STAGES})
        r = await http.post("/api/v1/projects/shop/flags", json=staged)
        assert r.status_code == 201, r.text
        r = await http.post(
            "/api/v1/tokens",
            json={"kind": "sdk", "name": "web-prod", "project": "shop", "environment": "production"},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["token"])


def _until(holds: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not holds():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic() - started


async def test_kill_switch_click_reaches_a_connected_sdk(g: Gapless, tmp_path: Path) -> None:
    """Log in, open Flags, kill new-checkout in production: the SDK turns it off, and a FlagKilled event is stored."""
    _require_chromium()
    base = await _control_plane(g)
    sdk_token = await _setup_flags(g, base)
    client = FlagClient(transport=HttpTransport(f"{base}/flags", sdk_token, flush_interval=0.5)).start()
    driver = await asyncio.to_thread(_browser)
    try:
        await asyncio.to_thread(_until, lambda: client.is_enabled("new-checkout", PRO), 10, "the SDK")
        token = read_token(g.state_dir.resolve())

        def open_flags() -> None:
            from selenium.webdriver.common.by import By

            driver.get(base + "/")
            _wait_js(driver, "!document.getElementById('login').hidden")
            driver.find_element(By.ID, "token").send_keys(token)
            driver.find_element(By.ID, "login-button").click()
            _wait_js(driver, "document.querySelector('#rollouts tr[data-rollout=\"web\"]')")
            driver.find_element(By.ID, "nav-flags").click()
            _wait_js(driver, "document.querySelector('#flag-projects li[data-project=\"shop\"]')")
            driver.find_element(By.LINK_TEXT, "shop").click()
            row = '#flag-rows tr[data-flag="new-checkout"] td[data-env="production"]'
            _wait_js(driver, f"document.querySelector('{row} .flag-state')?.dataset.state === 'on'")
            staging = '#flag-rows tr[data-flag="new-checkout"] td[data-env="staging"] .flag-state'
            assert _wait_js(driver, f"document.querySelector('{staging}')?.dataset.state") == "off"
            stage = '#flag-rows tr[data-flag="gradual"] td[data-env="production"] .stage'
            assert _wait_js(driver, f"document.querySelector('{stage}')?.textContent") == "stage 1/2 10%"
            # Not only on/off: the rules in order, what everyone else gets, and the rollout percentage.
            shown = driver.execute_script(
                "return Array.from(document.querySelectorAll('#flag-rows td[data-env=\"production\"]')).map(td => ["
                "td.closest('tr').dataset.flag, td.querySelector('.rollout').textContent,"
                "Array.from(td.querySelectorAll('ol.rules li')).map(li => li.textContent)])"
            )
            assert sorted(shown) == [
                ["gradual", "rollout 10%", ["everyone else: 10% on, 90% off"]],
                ["new-checkout", "rollout 10%", ["if plan in pro: on", "everyone else: 10% on, 90% off"]],
            ]
            _screenshot(driver, tmp_path, "flags-1-project")
            driver.set_window_size(800, 1200)
            assert driver.execute_script("return document.scrollingElement.scrollWidth") <= 800
            _screenshot(driver, tmp_path, "flags-1-project-800")

        await asyncio.to_thread(open_flags)

        def kill() -> float:
            from selenium.webdriver.common.by import By

            button = '#flag-rows button[data-flag="new-checkout"][data-kill="production"]'
            driver.find_element(By.CSS_SELECTOR, button).click()
            alert = driver.switch_to.alert
            assert "Kill switch" in alert.text
            assert "production" in alert.text
            alert.accept()
            clicked = time.monotonic()
            _until(lambda: not client.is_enabled("new-checkout", PRO), 5, "the SDK to see the kill")
            seen = time.monotonic() - clicked
            _wait_js(driver, "document.getElementById('flag-result').textContent.includes('done')", 5)
            row = '#flag-rows tr[data-flag="new-checkout"] td[data-env="production"]'
            _wait_js(driver, f"document.querySelector('{row} .flag-state')?.dataset.state === 'off'", 5)
            _wait_js(driver, "document.querySelector('#flag-events li[data-type=\"FlagKilled\"]')", 5)
            _screenshot(driver, tmp_path, "flags-2-killed")
            return seen

        seconds = await asyncio.to_thread(kill)
        assert seconds < 5
        events = (await api(g, "GET", "/api/v1/events?rollout=flags:shop"))["items"]
        killed = [e for e in events if e["type"] == "FlagKilled"]
        assert len(killed) == 1, events
        assert killed[0]["revision"].startswith("production:")
        assert "new-checkout" in killed[0]["message"]
        assert "gapless dashboard" in killed[0]["message"]
        assert any(e["type"] == "FlagChanged" and "gradual" in e["message"] for e in events)
        code, out, err = await g.acli("events", "flags:shop")
        assert code == 0, err
        assert "FlagKilled" in out
    finally:
        await asyncio.to_thread(driver.quit)
        await asyncio.to_thread(client.close)


async def test_flag_endpoints_on_the_dashboard_address_need_tokens(g: Gapless) -> None:
    """Without (or with a wrong) token, the flag admin endpoints and the session endpoint answer 401; nothing changes."""
    base = await _control_plane(g)
    await _setup_flags(g, base)
    kill = "/flags/api/v1/projects/shop/flags/new-checkout/environments/production/kill"
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer gfl_000000000000_x"},
        ):
            assert (await http.post(kill, headers=headers)).status_code == 401
            enable = kill.replace("/kill", "/enable")
            assert (await http.post(enable, headers=headers)).status_code == 401
            r = await http.put(
                "/flags/api/v1/projects/shop/flags/new-checkout", json=flag_doc(), headers=headers
            )
            assert r.status_code == 401
            assert (
                await http.delete("/flags/api/v1/projects/shop/flags/new-checkout", headers=headers)
            ).status_code == 401
            assert (
                await http.post("/flags/api/v1/tokens", json={"kind": "admin", "name": "x"}, headers=headers)
            ).status_code == 401
            assert (await http.get("/flags/api/v1/projects/shop/flags", headers=headers)).status_code == 401
            assert (await http.get("/api/v1/dashboard/session", headers=headers)).status_code == 401
        # The control-plane token hands the dashboard its own flag admin token, which works on /flags.
        token = read_token(g.state_dir.resolve())
        r = await http.get("/api/v1/dashboard/session", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        flags_token = r.json()["flagsToken"]
        assert flags_token.startswith("gfl_")
        assert (g.state_dir / "flags-dashboard-token").stat().st_mode & 0o077 == 0
        r = await http.get(
            "/flags/api/v1/projects/shop/flags", headers={"Authorization": f"Bearer {flags_token}"}
        )
        assert r.status_code == 200
        state = {f["key"]: f["environments"]["production"]["enabled"] for f in r.json()["items"]}
    assert state == {"gradual": True, "new-checkout": True}
    events = (await api(g, "GET", "/api/v1/events?rollout=flags:shop"))["items"]
    assert not [e for e in events if e["type"] == "FlagKilled"]


async def test_change_hook_reports_committed_flag_changes(tmp_path: Path) -> None:
    """``on_change`` hears each committed change once (not a no-op), a failing hook fails no request, and
    the control plane turns a kill into one FlagKilled event for the killed environment."""
    from gapless.flags.service.app import FlagChange, build_flag_app
    from gapless.flags.service.hub import Hub
    from gapless.flags.service.store import FlagStore
    from gapless.server.process import flag_events

    heard: list[FlagChange] = []
    store = FlagStore(f"sqlite:///{tmp_path / 'flags.db'}").open()
    try:
        _, admin = store.create_token("admin", "alice")
        app = build_flag_app(store, Hub(), on_change=heard.append)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {admin}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://f", headers=headers) as http:
            r = await http.put("/api/v1/projects/shop", json={"environments": ["staging", "production"]})
            assert r.status_code == 200
            assert (await http.post("/api/v1/projects/shop/flags", json=flag_doc())).status_code == 201
            kill = "/api/v1/projects/shop/flags/new-checkout/environments/production/kill"
            assert (await http.post(kill)).status_code == 200
            assert (await http.post(kill)).status_code == 200  # already off: no change, no report
        assert [(c.action, c.flag, c.environment, c.actor.name) for c in heard] == [
            ("flag.create", "new-checkout", None, "alice"),
            ("flag.kill", "new-checkout", "production", "alice"),
        ]
        assert [c.environment for c in heard[1].changes] == ["production"]

        def broken(_: FlagChange) -> None:
            raise RuntimeError("hook down")

        app = build_flag_app(store, Hub(), on_change=broken)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://f", headers=headers
        ) as http:
            enable = "/api/v1/projects/shop/flags/new-checkout/environments/production/enable"
            assert (await http.post(enable)).status_code == 200
    finally:
        store.close()

    events: list[tuple[str, str, str, str]] = []

    class Recorder:
        def event(self, rollout: str, revision: str, type_: str, message: str) -> None:
            events.append((rollout, revision, type_, message))

    flag_events(Recorder())(heard[1])  # type: ignore[arg-type]
    flag_events(Recorder())(heard[0])  # type: ignore[arg-type]
    rev = heard[1].changes[0].revision
    assert events[0] == (
        "flags:shop",
        f"production:{rev}",
        "FlagKilled",
        "flag 'new-checkout' killed (kill switch) in production by token 'alice'",
    )
    assert [e[2] for e in events[1:]] == ["FlagChanged"] * len(heard[0].changes)
