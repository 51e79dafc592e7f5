"""Applications reach the control plane's flag service over its unix socket, with an SDK token of their own.

A real ``gapless up``: its instances get ``$GAPLESS_FLAGS_URL`` (``unix:<state dir>/api.sock:/flags``);
``gapless flags token --to-file`` writes an SDK token 0600; the SDK (``HttpTransport.from_env``) and its
OpenFeature provider stream the ruleset over the socket, and a kill switch thrown with the CLI reaches
them. The admin token does not serve as an SDK token, and an SDK's open stream does not hold up the
control plane's shutdown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext

from gapless.flags.openfeature import GaplessProvider
from gapless.flags.sdk import FlagClient
from gapless.flags.service.serve import ADMIN_TOKEN_FILE
from gapless.flags.transport import HttpTransport
from tests.e2e.conftest import g
from tests.e2e.harness import Gapless, rollout_doc
from tests.ports import free_port

__all__ = ["g"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

PROJECT = """\
key: shop
environments: [production]
flags:
  - key: new-checkout
    variants: [{key: "on", value: true}, {key: "off", value: false}]
    offVariant: "off"
    environments:
      production: {enabled: true, defaultRollout: {variant: "on"}}
"""


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.02)


async def test_an_instance_reaches_the_mounted_flag_service_over_the_socket(
    g: Gapless, tmp_path: Path
) -> None:
    """The instance's $GAPLESS_FLAGS_URL and its own 0600 SDK token stream the ruleset; a kill reaches it."""
    code, out, err = await g.acli(
        "up", "-f", str(g.write(rollout_doc("shop", free_port(), "v1", replicas=1)))
    )
    assert code == 0, out + err
    (g.specs / "flags.yaml").write_text(PROJECT)
    code, out, err = await g.acli("flags", "apply", "-f", str(g.specs / "flags.yaml"))
    assert code == 0, out + err
    token_file = tmp_path / "sdk-token"
    sdk_token = ("flags", "token", "--kind", "sdk", "--project", "shop", "--environment", "production")
    code, out, err = await g.acli(*sdk_token, "--to-file", str(token_file))
    assert code == 0, out + err
    assert out == ""
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert token_file.read_text().startswith("gfl_")
    code, out, err = await g.acli(*sdk_token, "--to-file", str(token_file))  # never over a file
    assert code == 2, out + err
    assert "--to-file" in err

    [instance] = g.processes("instance")
    url = psutil.Process(instance.pid).environ()["GAPLESS_FLAGS_URL"]
    assert url == f"unix:{g.state_dir.resolve() / 'api.sock'}:/flags"
    env = {"GAPLESS_FLAGS_URL": url, "GAPLESS_FLAGS_SDK_TOKEN_FILE": str(token_file)}
    transport = HttpTransport.from_env(env)
    assert transport is not None
    client = FlagClient(transport=transport).start()
    try:
        _wait(lambda: client.revision is not None)
        assert client.is_enabled("new-checkout", {"targetingKey": "u1"})
        lingering = FlagClient(transport=HttpTransport.from_env(env)).start()  # never closed: see below
        api.set_provider_and_wait(GaplessProvider(lingering))
        of = api.get_client()
        _wait(lambda: of.get_boolean_value("new-checkout", False, EvaluationContext("u1")))
        code, out, err = await g.acli("flags", "kill", "shop", "new-checkout", "production")
        assert code == 0, out + err
        _wait(lambda: not client.is_enabled("new-checkout", {"targetingKey": "u1"}), timeout=5)
        _wait(lambda: not of.get_boolean_value("new-checkout", True, EvaluationContext("u1")), timeout=5)
    finally:
        client.close()
        api.shutdown()

    # The admin token is no SDK token: the service refuses the stream, the client gets nothing.
    admin = {"GAPLESS_FLAGS_URL": url, "GAPLESS_FLAGS_SDK_TOKEN_FILE": str(g.state_dir / ADMIN_TOKEN_FILE)}
    wrong = HttpTransport.from_env(admin, poll_after_failures=1, poll_interval=0.1)
    assert wrong is not None
    refused = FlagClient(transport=wrong).start()
    try:
        time.sleep(1.5)
        assert refused.revision is None
        assert not wrong.connected.is_set()
    finally:
        refused.close()
    # The provider's client still streams (the provider closes only a client it started itself): the
    # control plane stops all the same, giving the stream two seconds.
    assert lingering.revision is not None
    started = time.monotonic()
    code, out, err = await g.acli("down", timeout=60)
    assert code == 0, out + err
    assert time.monotonic() - started < 30
    lingering.close()
