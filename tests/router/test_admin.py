"""The admin API on its unix socket: auth, config validation, versions and persistence."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import httpx
import pytest

from gapless.router.client import (
    InvalidConfigError,
    RouterAdminError,
    RouterClient,
    RouterUnavailableError,
    StaleConfigError,
    UnauthorizedError,
)
from gapless.router.config import Backend, RouterConfig
from gapless.router.persist import load_config
from tests.router.conftest import RouterHarness


def _raw_client(harness: RouterHarness, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(harness.admin.socket_path)),
        base_url="http://router",
        headers=headers,
    )


async def test_healthz_needs_no_token(harness: RouterHarness) -> None:
    """GET /healthz answers name, pid, config version and the listen address without a token."""
    async with _raw_client(harness, None) as http:
        r = await http.get("/healthz")
    assert r.status_code == 200
    data = r.json()
    assert data["name"] == "test"
    assert data["config_version"] == 0
    assert data["listen"] == harness.router.listen
    assert isinstance(data["pid"], int)


async def test_healthz_says_when_the_config_and_the_weights_changed(harness: RouterHarness) -> None:
    """The monotonic clock readings of the last apply and of the last change of weights: a config that
    changes only backends moves the first, not the second."""
    before = time.monotonic()
    one = RouterConfig(version=1, backends=(Backend(id="b1", port=8001, revision="a"),), weights={"a": 100})
    await harness.admin_client.put_config(one)
    first = await harness.admin_client.healthz()
    assert (
        before <= first["weights_changed_monotonic"] == first["config_applied_monotonic"] <= time.monotonic()
    )
    two = one.model_copy(
        update={"version": 2, "backends": (*one.backends, Backend(id="b2", port=8002, revision="a"))}
    )
    await harness.admin_client.put_config(two)
    second = await harness.admin_client.healthz()
    assert second["config_applied_monotonic"] > first["config_applied_monotonic"]
    assert second["weights_changed_monotonic"] == first["weights_changed_monotonic"]


async def test_socket_is_private(harness: RouterHarness) -> None:
    """The admin socket is created with mode 0600."""
    assert stat.S_IMODE(harness.admin.socket_path.stat().st_mode) == 0o600


@pytest.mark.parametrize("token", [None, "wrong", "Bearer x"])
async def test_token_required(harness: RouterHarness, token: str | None) -> None:
    """Every endpoint but /healthz answers 401 without the right bearer token."""
    async with _raw_client(harness, token) as http:
        for method, path in (("GET", "/config"), ("PUT", "/config"), ("GET", "/stats")):
            r = await http.request(method, path, content=b"{}")
            assert r.status_code == 401, (method, path)
    async with RouterClient(harness.admin.socket_path, "wrong") as client:
        with pytest.raises(UnauthorizedError):
            await client.stats()


async def test_bad_config_names_the_field(harness: RouterHarness) -> None:
    """An invalid config is refused with 400 and a message naming the offending field."""
    bad = {"version": 1, "backends": [{"id": "b1", "port": 70000, "revision": "a"}]}
    async with _raw_client(harness, harness.token) as http:
        r = await http.put("/config", content=json.dumps(bad))
        assert r.status_code == 400
        assert "backends.0.port" in r.json()["error"]
        r = await http.put("/config", content=b"{not json")
        assert r.status_code == 400
        r = await http.put("/config", content=json.dumps({"version": 1, "weights": {"a": -1}}))
        assert "weights.a" in r.json()["error"]
    assert harness.router.config.version == 0


async def test_older_version_is_refused(harness: RouterHarness) -> None:
    """A config older than the current one is refused with 409 and changes nothing."""
    client = harness.admin_client
    await client.put_config(RouterConfig(version=5))
    with pytest.raises(StaleConfigError):
        await client.put_config(RouterConfig(version=4, backends=(Backend(id="x", port=1, revision="a"),)))
    assert (await client.get_config()) == RouterConfig(version=5)
    await client.put_config(RouterConfig(version=5))


async def test_put_config_persists_before_answering(harness: RouterHarness) -> None:
    """A pushed config is in the config file when PUT returns, and GET /config returns it."""
    config = RouterConfig(
        version=3,
        backends=(Backend(id="b1", port=8001, revision="a"), Backend(id="b2", port=8002, revision="b")),
        weights={"a": 9, "b": 1},
    )
    await harness.admin_client.put_config(config)
    assert load_config(harness.config_file) == config
    assert stat.S_IMODE(harness.config_file.stat().st_mode) == 0o600
    assert await harness.admin_client.get_config() == config
    assert (await harness.admin_client.healthz())["config_version"] == 3


async def test_a_config_that_cannot_be_saved_is_in_force_and_answered_500(
    harness: RouterHarness, tmp_path: Path
) -> None:
    """New weights hold before the file is written; a failed write is a 500 that says so, and the same
    config pushed again once the file can be written is saved and answered 200."""
    saved = harness.admin.config_file
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    harness.admin.config_file = blocker / "router.json"
    config = RouterConfig(version=7, backends=(Backend(id="b1", port=8001, revision="a"),), weights={"a": 1})
    try:
        with pytest.raises(RouterAdminError, match="in force but could not be saved"):
            await harness.admin_client.put_config(config)
        assert await harness.admin_client.get_config() == config
    finally:
        harness.admin.config_file = saved
    await harness.admin_client.put_config(config)
    assert load_config(saved) == config


async def test_client_reports_invalid_config(harness: RouterHarness) -> None:
    """The client turns a 400 into InvalidConfigError carrying the router's message."""
    config = RouterConfig.model_construct(version=1, backends=(Backend(id="b1", port=1, revision="a"),) * 2)
    with pytest.raises(InvalidConfigError, match="ids must be unique"):
        await harness.admin_client.put_config(config)


async def test_unknown_path_and_method(harness: RouterHarness) -> None:
    """Unknown paths get 404 and wrong methods 405, both as JSON errors."""
    async with _raw_client(harness, harness.token) as http:
        assert (await http.get("/nope")).status_code == 404
        assert (await http.delete("/config")).status_code == 405
        assert (await http.post("/stats")).status_code == 405


async def test_client_reports_unreachable_router(tmp_path: Path) -> None:
    """A client of a router that is not running raises RouterUnavailableError, which is an OSError."""
    async with RouterClient(tmp_path / "missing.sock", "token") as client:
        with pytest.raises(RouterUnavailableError) as caught:
            await client.healthz()
    assert isinstance(caught.value, OSError)
