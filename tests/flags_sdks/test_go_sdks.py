"""Official Go SDKs against a real ``gapless flags serve``: unleash-go-sdk v5 and OpenFeature's OFREP provider.

``go/main.go`` (modules pinned by ``go/go.mod`` and ``go.sum``) is built once per session into a
temporary directory (the module cache is Go's own, outside the repository). Its answers must be gapless's
Python SDK's for the same flags and contexts; a kill switch thrown with the gapless CLI must reach its
Unleash client (polling every second) and its OFREP provider.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.flags_sdks.conftest import missing
from tests.flags_sdks.harness import assert_same_answers, seconds_to_see_kill
from tests.flags_sdks.test_python_sdks import shop
from tests.flags_service.test_delivery import ServiceProcess

pytestmark = pytest.mark.slow
__all__ = ["shop"]  # the fixture, shared with the Python SDKs' test

GO_DIR = Path(__file__).resolve().parent / "go"


@pytest.fixture(scope="session")
def go_driver(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The built driver (``go build``; modules come from the Go module proxy into Go's cache)."""
    go = shutil.which("go")
    if go is None:
        missing("go is not installed: the Go SDKs need Go 1.22 or later")
    binary = tmp_path_factory.mktemp("go") / "sdks"
    result = subprocess.run(
        [str(go), "build", "-mod=readonly", "-o", str(binary), "."],
        cwd=GO_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        missing(f"go build of tests/flags_sdks/go failed: {result.stderr.strip()[-500:]}")
    return [str(binary)]


def test_go_sdks_answer_as_gapless(go_driver: list[str], shop: tuple[ServiceProcess, str, str]) -> None:
    """unleash-go-sdk and the OFREP provider (Go) give gapless's answers for 2,000 contexts x 6 flags."""
    svc, token, _ = shop
    # unleash-go-sdk 5.1 knows no REGEX or IN_CIDR: the flag that needs them is not served to it
    assert_same_answers(
        go_driver, GO_DIR, svc, token, seed=31, sdk="unleash-go-sdk:5.1.0", omitted={"operators"}
    )


def test_kill_switch_reaches_go_sdk(go_driver: list[str], shop: tuple[ServiceProcess, str, str]) -> None:
    """unleash-go-sdk, polling every second, sees ``gapless flags kill`` within its interval and a bit."""
    svc, token, admin_token = shop
    assert seconds_to_see_kill(go_driver, GO_DIR, svc, token, admin_token) < 5


def test_kill_switch_reaches_go_ofrep_provider(
    go_driver: list[str], shop: tuple[ServiceProcess, str, str]
) -> None:
    """OpenFeature's OFREP provider (Go, one evaluation request per call) sees ``gapless flags kill`` at
    its next evaluation."""
    svc, token, admin_token = shop
    assert seconds_to_see_kill(go_driver, GO_DIR, svc, token, admin_token, sdk="ofrep") < 5
