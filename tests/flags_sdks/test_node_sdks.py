"""Official Node SDKs against a real ``gapless flags serve``: ``unleash-client`` and OpenFeature's OFREP provider.

``node/sdks.mjs`` runs the SDKs (versions pinned by ``node/package-lock.json``) and prints their answers;
they must be gapless's Python SDK's for the same flags and contexts (test_python_sdks's flags). A
streaming ``unleash-client`` with a 60 s poll interval, and the OFREP provider, must see a kill switch
thrown with the gapless CLI within seconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.flags_sdks.conftest import NODE_DIR, missing
from tests.flags_sdks.harness import assert_same_answers, seconds_to_see_kill
from tests.flags_sdks.test_python_sdks import shop
from tests.flags_service.test_delivery import ServiceProcess

pytestmark = pytest.mark.slow
__all__ = ["shop"]  # the fixture, shared with the Python SDKs' test


def driver() -> list[str]:
    found = shutil.which("node")
    if found is None:
        missing("node is not installed: the Node SDKs need Node.js 18 or later")
    return [str(found), str(NODE_DIR / "sdks.mjs")]


def test_node_sdks_answer_as_gapless(node_modules: Path, shop: tuple[ServiceProcess, str, str]) -> None:
    """unleash-client and the OFREP provider (Node) give gapless's answers for 2,000 contexts x 6 flags."""
    svc, token, _ = shop
    assert_same_answers(driver(), NODE_DIR, svc, token, seed=23, sdk="unleash-node-sdk:6.12.2", omitted=set())


def test_kill_switch_reaches_streaming_node_sdk(
    node_modules: Path, shop: tuple[ServiceProcess, str, str]
) -> None:
    """A streaming unleash-client (60 s poll interval) sees ``gapless flags kill`` within seconds."""
    svc, token, admin_token = shop
    assert seconds_to_see_kill(driver(), NODE_DIR, svc, token, admin_token) < 5


def test_kill_switch_reaches_node_ofrep_provider(
    node_modules: Path, shop: tuple[ServiceProcess, str, str]
) -> None:
    """OpenFeature's OFREP provider (Node, one evaluation request per call) sees ``gapless flags kill``
    at its next evaluation."""
    svc, token, admin_token = shop
    assert seconds_to_see_kill(driver(), NODE_DIR, svc, token, admin_token, sdk="ofrep") < 5
