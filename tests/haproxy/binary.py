"""The HAProxy executable for tests: skipped with a reason when missing, a failure under CI."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from tests.conftest import in_ci


def require_haproxy() -> str:
    """The ``haproxy`` on PATH; skips the test when it is missing (fails it instead under CI)."""
    binary = shutil.which("haproxy")
    if binary is None:
        if in_ci():
            pytest.fail("haproxy not installed (Debian package haproxy); CI must run the HAProxy tests")
        pytest.skip("haproxy not installed (Debian package haproxy >= 2.6)")
    return binary


ROUTERS = ("builtin", "haproxy")
"""The data planes end-to-end suites run on (``pytest.mark.parametrize("router", ROUTERS)``)."""


def on_router(router: str, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (a Rollout) served by the built-in router or by HAProxy."""
    if router == "haproxy":
        doc["spec"]["router"] = {"type": "haproxy", "binary": require_haproxy()}
    return doc
