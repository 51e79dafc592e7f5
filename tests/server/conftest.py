"""Shared fixture of the API tests: the control plane's app over a real store, nothing running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gapless.controller.commands import Commands
from gapless.controller.reconcile import Controller
from gapless.controller.traffic import LocalRouters
from gapless.core.clock import FakeClock
from gapless.platform.local import LocalPlatform
from gapless.server.api import build_app
from gapless.server.auth import ensure_token, read_token
from gapless.store.sqlite import Store


@pytest.fixture
async def api(state_dir: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    """An API over a real store; the controller is not running, so nothing is started."""
    store = Store(state_dir / "state.db").open()
    digest = ensure_token(state_dir, store)
    clock = FakeClock()
    platform = LocalPlatform(state_dir)
    controller = Controller(
        store, platform, LocalRouters(state_dir, read_token(state_dir), platform), clock, state_dir
    )
    app = build_app(store, controller, Commands(store, controller, clock), digest)
    headers = {"Authorization": f"Bearer {read_token(state_dir)}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers
    ) as c:
        yield c, store
    store.close()
