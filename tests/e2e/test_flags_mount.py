"""The flag service is mounted in the control plane at /flags, with its own admin token."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from gapless.flags.service.serve import ADMIN_TOKEN_FILE
from tests.e2e.harness import Gapless, rollout_doc
from tests.ports import free_port

pytestmark = pytest.mark.slow


async def test_control_plane_serves_the_flag_service(g: Gapless) -> None:
    code, out, err = await g.acli("up", "-f", str(g.write(rollout_doc("f", free_port(), "v1", replicas=1))))
    assert code == 0, out + err
    transport = httpx.AsyncHTTPTransport(uds=str(g.state_dir / "api.sock"))
    async with httpx.AsyncClient(transport=transport, base_url="http://gapless") as c:
        deadline = time.monotonic() + 20
        while (r := await c.get("/flags/healthz")).status_code == 503:
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.1)
        assert r.json() == {"ok": True}
        assert (await c.get("/flags/api/v1/projects")).status_code == 401
        token = (g.state_dir / ADMIN_TOKEN_FILE).read_text().strip()
        assert (g.state_dir / ADMIN_TOKEN_FILE).stat().st_mode & 0o077 == 0
        headers = {"Authorization": f"Bearer {token}"}
        r = await c.put("/flags/api/v1/projects/shop", json={"environments": ["production"]}, headers=headers)
        assert r.status_code == 200, r.text
        items = (await c.get("/flags/api/v1/projects", headers=headers)).json()["items"]
    assert [p["key"] for p in items] == ["shop"]


async def test_an_h2c_upgrade_request_to_the_mounted_service_keeps_its_body(g: Gapless) -> None:
    """On the dashboard address, a request asking to upgrade to h2c (Java's HTTP client) has its body read."""
    listen = f"127.0.0.1:{free_port()}"
    spec = g.write(rollout_doc("h", free_port(), "v1", replicas=1))
    code, out, err = await g.acli("up", "-f", str(spec), "--dashboard-listen", listen)
    assert code == 0, out + err
    token = ""
    async with httpx.AsyncClient(base_url=f"http://{listen}") as c:
        deadline = time.monotonic() + 20
        while (r := await c.get("/flags/healthz")).status_code == 503:
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.1)
        token = (g.state_dir / ADMIN_TOKEN_FILE).read_text().strip()
        upgrade = {
            "Connection": "Upgrade, HTTP2-Settings",
            "Upgrade": "h2c",
            "HTTP2-Settings": "AAMAAABkAAQAAP__",
        }
        r = await c.put(
            "/flags/api/v1/projects/shop",
            json={"environments": ["production"]},
            headers={"Authorization": f"Bearer {token}", **upgrade},
        )
        assert r.status_code == 200, r.text  # the body (the environments) was read
        items = (await c.get("/flags/api/v1/projects", headers={"Authorization": f"Bearer {token}"})).json()[
            "items"
        ]
    assert [(p["key"], p["environments"]) for p in items] == [("shop", ["production"])]
