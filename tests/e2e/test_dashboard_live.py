"""Live updates of the dashboard in a real headless Chromium: flag changes and backfill progress, no reload.

- Flags: the view listens to the project's change stream (``/flags/api/v1/projects/shop/changes``); a kill
  switch made through the API, and a release-plan advance made with the CLI, show up in the open page
  within seconds, and the page does not poll while nothing changes. An SDK's evaluation report, which is
  no change, shows up through the view's once-a-minute re-read of the flag list (shortened in the test).
- Migrations: ``gapless migrate start`` on a real PostgreSQL database reports its backfill progress to the
  control plane, which pushes it on ``/api/v1/stream``; the view shows an intermediate value while the
  backfill runs, then the final numbers of ``BackfillDone``.

Screenshots go to the test's tmp dir and to ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from gapless.flags.service.serve import ADMIN_TOKEN_FILE
from gapless.server.auth import read_token
from tests.e2e.harness import Gapless, api, rollout_doc
from tests.e2e.test_dashboard import _browser, _require_chromium, _screenshot, _wait_js
from tests.e2e.test_dashboard_flags import _control_plane, _setup_flags
from tests.migrations.conftest import BASE, db, engine, migration  # noqa: F401 - fixtures
from tests.ports import free_port

pytestmark = pytest.mark.slow

ROW = '#flag-rows tr[data-flag="new-checkout"] td[data-env="production"]'
STAGE = '#flag-rows tr[data-flag="gradual"] td[data-env="production"] .stage'
FLAG_LIST_FETCHES = (
    "performance.getEntriesByType('resource')"
    ".filter(e => e.name.endsWith('/flags/api/v1/projects/shop/flags')).length"
)
ADD = """
name: m1
operations:
  - add_column: {table: users, column: {name: email, type: text, nullable: false}, up: lower(name) || '@x'}
"""
ROWS = 800


def _login(driver: Any, base: str, token: str, first_row: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + "/")
    _wait_js(driver, "!document.getElementById('login').hidden")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login-button").click()
    _wait_js(driver, f"document.querySelector('#rollouts tr[data-rollout=\"{first_row}\"]')")


async def test_flag_changes_made_elsewhere_appear_without_reload(g: Gapless, tmp_path: Path) -> None:
    """Flags view open; a kill through the API and a release advance through the CLI appear within seconds."""
    _require_chromium()
    base = await _control_plane(g)
    await _setup_flags(g, base)
    admin = (g.state_dir / ADMIN_TOKEN_FILE).read_text().strip()
    driver = await asyncio.to_thread(_browser)
    try:

        def open_flags() -> None:
            from selenium.webdriver.common.by import By

            _login(driver, base, read_token(g.state_dir.resolve()), "web")
            driver.find_element(By.ID, "nav-flags").click()
            _wait_js(driver, "document.querySelector('#flag-projects li[data-project=\"shop\"]')")
            driver.find_element(By.LINK_TEXT, "shop").click()
            _wait_js(driver, f"document.querySelector('{ROW} .flag-state')?.dataset.state === 'on'")
            _wait_js(driver, "document.getElementById('live').textContent === 'live'")
            assert _wait_js(driver, f"document.querySelector('{STAGE}')?.textContent") == "stage 1/2 10%"
            # No polling while nothing changes (it used to read the list every 2 s).
            fetched = driver.execute_script("return " + FLAG_LIST_FETCHES)
            time.sleep(2.5)
            assert driver.execute_script("return " + FLAG_LIST_FETCHES) == fetched
            _screenshot(driver, tmp_path, "live-flags-1-open")

        await asyncio.to_thread(open_flags)
        kill = "/flags/api/v1/projects/shop/flags/new-checkout/environments/production/kill"
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:
            r = await http.post(kill, headers={"Authorization": f"Bearer {admin}"})
            assert r.status_code == 200, r.text
        killed_at = time.monotonic()

        def killed() -> float:
            _wait_js(driver, f"document.querySelector('{ROW} .flag-state')?.dataset.state === 'off'", 5)
            seconds = time.monotonic() - killed_at
            _wait_js(driver, "document.querySelector('#flag-events li[data-type=\"FlagKilled\"]')", 5)
            _screenshot(driver, tmp_path, "live-flags-2-killed-by-api")
            return seconds

        seconds = await asyncio.to_thread(killed)
        print(f"the kill was shown {seconds:.2f} s after the API answered")
        assert seconds < 5  # typically well under a second; the fallback poll would take 30 s

        code, _, err = await g.acli(
            "flags", "advance", "shop", "gradual", "production", "--url", base + "/flags"
        )
        assert code == 0, err

        def advanced() -> None:
            assert _wait_js(driver, f"document.querySelector('{STAGE}')?.textContent === 'stage 2/2 100%'", 5)
            _screenshot(driver, tmp_path, "live-flags-3-advanced-by-cli")

        await asyncio.to_thread(advanced)
        # The page never reloaded: the state it keeps in memory survived.
        assert await asyncio.to_thread(driver.execute_script, "return typeof state.flagsSeen") == "string"
    finally:
        await asyncio.to_thread(driver.quit)


async def test_sdk_usage_reaches_the_open_flags_view_without_a_flag_change(
    g: Gapless, tmp_path: Path
) -> None:
    """An SDK's evaluation report changes no flag, so no change event comes; the view's periodic re-read
    (every 60 s, shortened here by wrapping the page's setInterval) shows "last evaluated" anyway."""
    _require_chromium()
    base = await _control_plane(g)
    sdk = await _setup_flags(g, base)
    last_cell = (
        "document.querySelector('#flag-rows tr[data-flag=\"new-checkout\"] td:last-child')?.textContent"
    )
    driver = await asyncio.to_thread(_browser)
    try:

        def open_flags() -> None:
            from selenium.webdriver.common.by import By

            _login(driver, base, read_token(g.state_dir.resolve()), "web")
            driver.execute_script(
                "const set = window.setInterval;"
                "window.setInterval = (f, ms, ...a) => set(f, ms === 60000 ? 300 : ms, ...a);"
            )
            driver.find_element(By.ID, "nav-flags").click()
            _wait_js(driver, "document.querySelector('#flag-projects li[data-project=\"shop\"]')")
            driver.find_element(By.LINK_TEXT, "shop").click()
            _wait_js(driver, "document.getElementById('live').textContent === 'live'")
            assert _wait_js(driver, last_cell) == "never"

        await asyncio.to_thread(open_flags)
        async with httpx.AsyncClient(base_url=base + "/flags", timeout=5) as http:
            r = await http.post(
                "/sdk/v1/evaluations",
                headers={"Authorization": f"Bearer {sdk}"},
                json={"counts": [{"flag": "new-checkout", "variant": "on", "count": 3}]},
            )
            assert r.status_code == 200, r.text

        def shown() -> None:
            _wait_js(driver, f"({last_cell} || 'never') !== 'never'", 5)
            _screenshot(driver, tmp_path, "live-flags-usage")

        await asyncio.to_thread(shown)
    finally:
        await asyncio.to_thread(driver.quit)


def test_migrations_view_shows_backfill_progress_while_it_runs(g: Gapless, db: str, tmp_path: Path) -> None:  # noqa: F811
    """A slow backfill (small batches with a pause): the bar shows rows done below the total, then the end."""
    from selenium.webdriver.common.by import By

    _require_chromium()
    with engine(db) as e:
        e.start(migration(BASE))
        e.complete()
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("INSERT INTO users (name) SELECT 'User' || g FROM generate_series(1, %s) g", (ROWS,))
    listen = f"127.0.0.1:{free_port()}"
    spec = g.write(rollout_doc("shop", free_port(), "v1", replicas=1))
    up = g.cli("up", "-f", str(spec), "--dashboard-listen", listen)
    assert up.returncode == 0, up.stdout + up.stderr
    add = tmp_path / "m1.yaml"
    add.write_text(ADD)
    database = conninfo_to_dict(db)["dbname"]
    row = f'#migration-rows tr[data-migration="{database}/m1"]'
    bar = f'{row} .backfill[data-table="users"]'
    driver = _browser()
    started: dict[str, Any] = {}
    migrate: threading.Thread | None = None
    try:
        _login(driver, f"http://{listen}", read_token(g.state_dir.resolve()), "shop")
        driver.find_element(By.ID, "nav-migrations").click()
        _wait_js(driver, "document.getElementById('live').textContent === 'live'")

        def run() -> None:  # 40 batches of 20 rows with 0.1 s between them: several seconds
            started["result"] = g.cli(
                "migrate",
                "start",
                str(add),
                "--database-url",
                db,
                "--batch-size",
                "20",
                "--batch-delay",
                "0.1",
            )

        migrate = threading.Thread(target=run)
        migrate.start()
        intermediate = (
            f"(b => b && b.dataset.final === 'false' && Number(b.dataset.done) > 0 && "
            f"Number(b.dataset.done) < Number(b.dataset.total) && b.dataset.done)(document.querySelector('{bar}'))"
        )
        done = int(_wait_js(driver, intermediate, 20))
        assert 0 < done < ROWS
        step = f"document.querySelector('{row} .migration-status').textContent"
        first = _wait_js(driver, step)
        assert re.fullmatch(r"backfill \d{1,2}% \([\d,]+ / [\d,]+ rows\)", first), first
        assert first.endswith(f" / {ROWS:,} rows)"), first
        # The step text follows the backfill: a later reading shows more rows and a higher share.
        moved = _wait_js(
            driver, f"({step}) !== {first!r} && ({step}).startsWith('backfill ') && ({step})", 10
        )
        shown = [int(x.replace(",", "")) for x in re.findall(r"\(([\d,]+) /", first + moved)]
        assert shown[0] < shown[1] <= ROWS, (first, moved)
        # It moves: a later push shows more rows, and the rate measured over the last seconds.
        later = (
            f"(b => b && b.dataset.final === 'false' && Number(b.dataset.done) > {done} && "
            f"b.textContent.includes('rows/s'))(document.querySelector('{bar}'))"
        )
        _wait_js(driver, later, 10)
        _screenshot(driver, tmp_path, "live-migrations-1-backfilling")

        migrate.join(60)
        assert not migrate.is_alive()
        result = started["result"]
        assert result.returncode == 0, result.stderr
        _wait_js(driver, f"document.querySelector('{row}')?.dataset.status === 'BackfillDone'", 10)
        assert _wait_js(driver, f"document.querySelector('{bar}')?.dataset.final === 'true'", 10)
        assert driver.execute_script(f"return document.querySelector('{bar}').dataset.done") == str(ROWS)
        assert (
            _wait_js(driver, f"({step}).startsWith('both') && ({step})")
            == f"both versions served (backfill done: {ROWS:,} rows); next: complete"
        )
        _screenshot(driver, tmp_path, "live-migrations-2-done")
    finally:
        driver.quit()
        if migrate is not None:
            migrate.join(60)

    # The control plane kept the last reading; progress never became a stored event.
    items = asyncio.run(api(g, "GET", f"/api/v1/migrations/{database}/progress"))["items"]
    assert [(i["migration"], i["table"], i["rowsDone"], i["done"]) for i in items] == [
        ("m1", "users", ROWS, True)
    ]
    events = asyncio.run(api(g, "GET", f"/api/v1/events?rollout=migrations:{database}"))["items"]
    assert [e["type"] for e in events] == ["MigrationStarted", "BackfillDone"]
