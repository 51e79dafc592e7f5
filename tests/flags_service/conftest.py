"""Fixtures of the flag service tests: a store on SQLite, and on a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gapless.flags.service.app import build_flag_app
from gapless.flags.service.hub import Hub
from gapless.flags.service.store import FlagStore


def flag_doc(key: str = "new-checkout", **production: Any) -> dict[str, Any]:
    env = {
        "enabled": True,
        "rules": [
            {"conditions": [{"attribute": "plan", "operator": "in", "values": ["pro"]}], "variant": "on"}
        ],
        "defaultRollout": {
            "split": {"weights": [{"variant": "on", "weight": 10_000}, {"variant": "off", "weight": 90_000}]}
        },
    } | production
    return {
        "key": key,
        "owner": "checkout-team",
        "kind": "boolean",
        "variants": [{"key": "on", "value": True}, {"key": "off", "value": False}],
        "offVariant": "off",
        "environments": {"production": env},
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FlagStore]:
    """The same tests on both databases the service supports."""
    url = (
        f"sqlite:///{tmp_path / 'flags.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    s = FlagStore(url).open()
    try:
        yield s
    finally:
        s.close()


class Service:
    """The app over a store, with an admin token, talked to over ASGI."""

    def __init__(self, store: FlagStore) -> None:
        self.store = store
        self.hub = Hub()
        self.app = build_flag_app(store, self.hub)
        _, self.admin_token = store.create_token("admin", "test admin")

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://flags", headers=headers
        )


@pytest.fixture
def service(store: FlagStore) -> Service:
    return Service(store)
