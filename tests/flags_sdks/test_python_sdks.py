"""Official Python SDKs against a real ``gapless flags serve``: Unleash's UnleashClient and the OFREP provider.

The same flags (tests/flags_sdks/test_unleash_export.SHOP: rollouts, segments, semver, variants with
payloads, a rule serving off before a split, a dependent flag) are evaluated for the same contexts by
gapless's own Python SDK (streaming from the service), by UnleashClient (polling, which evaluates
locally with Unleash's engine on what ``/api/client/features`` serves) and by OpenFeature's OFREP
provider (each evaluation a request to ``/ofrep/v1``). Every answer must be the same. Then a kill switch
thrown with the gapless CLI must reach gapless's SDK, a streaming UnleashClient and OFREP.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gapless.flags.sdk import FlagClient
from gapless.flags.transport import HttpTransport
from tests.flags_sdks.test_unleash_export import SHOP, contexts, gapless_context
from tests.flags_service.test_delivery import ServiceProcess, admin
from tests.ports import free_port

UnleashClient = pytest.importorskip("UnleashClient", reason="UnleashClient (dev extra)").UnleashClient
ofrep = pytest.importorskip(
    "openfeature.contrib.provider.ofrep", reason="openfeature-provider-ofrep (dev extra)"
)

pytestmark = [
    pytest.mark.slow,
    # UnleashClient's scheduler and SSE client warn about their own dependencies
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]

FLAGS = [f["key"] for f in SHOP["flags"] if f["key"] != "gapless-bucketed"]
CONTEXTS = 2_000


def wait_until(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[ServiceProcess, str, str]]:
    """A running service with project shop (SHOP's segments and flags) and an SDK token for production."""
    svc = ServiceProcess(tmp_path / "state", free_port())
    svc.start()
    try:
        with admin(svc) as c:
            assert c.put("/api/v1/projects/shop", json={"environments": ["production"]}).status_code == 200
            for segment in SHOP["segments"]:
                assert (
                    c.put(f"/api/v1/projects/shop/segments/{segment['key']}", json=segment).status_code == 200
                )
            for flag in SHOP["flags"]:
                r = c.post("/api/v1/projects/shop/flags", json=flag)
                assert r.status_code == 201, r.text
            token = c.post(
                "/api/v1/tokens",
                json={"kind": "sdk", "name": "sdks", "project": "shop", "environment": "production"},
            ).json()["token"]
            admin_token = c.headers["Authorization"].removeprefix("Bearer ")
        yield svc, token, admin_token
    finally:
        svc.stop()
        svc.log.close()


def unleash(svc: ServiceProcess, token: str, tmp_path: Path, name: str, **extra: Any) -> Any:
    client = UnleashClient(
        url=f"{svc.url}/api",
        app_name=name,
        instance_id=name,
        custom_headers={"Authorization": token},
        metrics_interval=1,
        cache_directory=str(tmp_path / name),
        **{"refresh_interval": 1} | extra,
    )
    client.initialize_client()
    return client


def unleash_answer(client: Any, flag: str, ctx: dict[str, Any]) -> tuple[bool, str]:
    variant = client.get_variant(flag, ctx)
    return bool(client.is_enabled(flag, ctx)), variant["name"] if variant["enabled"] else "disabled"


def gapless_unleash_view(flags: FlagClient, flag: str, ctx: dict[str, Any]) -> tuple[bool, str]:
    ev = flags.evaluate(flag, gapless_context(ctx), False)
    on = ev.value is True
    return on, ev.variant if on and ev.variant not in (None, "on") else "disabled"


def test_unleash_and_ofrep_sdks_answer_as_gapless(
    shop: tuple[ServiceProcess, str, str], tmp_path: Path
) -> None:
    """UnleashClient and the OFREP provider give gapless's answers for 2,000 contexts x 6 flags; usage is counted."""
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext

    svc, token, _ = shop
    flags = FlagClient(transport=HttpTransport(svc.url, token=token)).start()
    client = unleash(svc, token, tmp_path, "conformance")
    api.set_provider(
        ofrep.OFREPProvider(base_url=svc.url, headers_factory=lambda: {"Authorization": f"Bearer {token}"})
    )
    of = api.get_client()
    try:
        wait_until(
            lambda: flags.revision is not None and client.is_initialized, 20, "both SDKs to have the flags"
        )
        differences = []
        for i, ctx in enumerate(contexts(CONTEXTS, seed=99)):
            gctx = gapless_context(ctx)
            for flag in FLAGS:
                ours = gapless_unleash_view(flags, flag, ctx)
                theirs = unleash_answer(client, flag, ctx)
                if ours != theirs:
                    differences.append(("unleash", flag, ctx, ours, theirs))
                if i % 4 == 0:  # a request per evaluation: a quarter of the contexts over OFREP
                    ev = flags.evaluate(flag, gctx, False)
                    attrs = {k: v for k, v in gctx.items() if k != "targetingKey"}
                    details = of.get_boolean_details(
                        flag, False, EvaluationContext(gctx.get("targetingKey"), attrs)
                    )
                    if (details.value, details.variant, str(details.reason)) != (
                        ev.value,
                        ev.variant,
                        ev.reason.value,
                    ):
                        differences.append(("ofrep", flag, ctx, ev, details))
        assert not differences, differences[:5]
        # what UnleashClient reported reaches the usage report (metrics every second)
        with admin(svc) as c:
            wait_until(
                lambda: (
                    "production/enabled"
                    in c.get("/api/v1/projects/shop/flags").json()["items"][0]["evaluations"]
                ),
                20,
                "Unleash metrics in the usage report",
            )
    finally:
        client.destroy()
        flags.close()
        api.clear_providers()


def test_kill_switch_from_the_cli_reaches_every_sdk(
    shop: tuple[ServiceProcess, str, str], tmp_path: Path
) -> None:
    """``gapless flags kill`` turns the flag off in gapless's SDK, a streaming UnleashClient and over OFREP."""
    svc, token, admin_token = shop
    flags = FlagClient(transport=HttpTransport(svc.url, token=token)).start()
    # a 60 s poll interval: only the stream can bring the kill within the 5 s allowed
    streaming = unleash(
        svc, token, tmp_path, "streaming", experimental_mode={"type": "streaming"}, refresh_interval=60
    )
    ctx = {"userId": "u1"}
    try:
        wait_until(
            lambda: flags.is_enabled("kill-me", ctx) and streaming.is_enabled("kill-me", ctx), 20, "flag on"
        )
        ofrep_on = httpx.post(
            f"{svc.url}/ofrep/v1/evaluate/flags/kill-me",
            json={"context": {"targetingKey": "u1"}},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert ofrep_on["value"] is True
        subprocess.run(
            [
                sys.executable,
                "-m",
                "gapless",
                "flags",
                "kill",
                "shop",
                "kill-me",
                "production",
                "--url",
                svc.url,
                "--token",
                admin_token,
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        killed = time.monotonic()  # from the CLI's return: its own start-up is not the stream's time
        wait_until(lambda: not flags.is_enabled("kill-me", ctx), 5, "gapless's SDK to see the kill")
        wait_until(
            lambda: not streaming.is_enabled("kill-me", ctx), 5, "streaming UnleashClient to see the kill"
        )
        seen = time.monotonic() - killed
        r = httpx.post(
            f"{svc.url}/ofrep/v1/evaluate/flags/kill-me",
            json={"context": {"targetingKey": "u1"}},
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert (r["value"], r["reason"]) == (False, "DISABLED")
        assert seen < 5  # no 15 s poll: the stream carried it
    finally:
        streaming.destroy()
        flags.close()


def test_a_request_asking_for_http2_keeps_its_body(shop: tuple[ServiceProcess, str, str]) -> None:
    """An h2c upgrade request (what Java's HTTP client sends) is answered over HTTP/1.1 with its body read."""
    svc, token, _ = shop
    upgrade = {
        "Connection": "Upgrade, HTTP2-Settings",
        "Upgrade": "h2c",
        "HTTP2-Settings": "AAMAAABkAAQAAP__",
    }
    r = httpx.post(
        f"{svc.url}/ofrep/v1/evaluate/flags/theme",
        json={"context": {"targetingKey": "t", "userId": "u1", "plan": "free"}},
        headers={"Authorization": f"Bearer {token}", **upgrade},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["variant"], r.json()["reason"]) == (
        "off",
        "TARGETING_MATCH",
    )  # plan free: the body was read
