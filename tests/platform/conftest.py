"""Fixtures of the platform tests: a platform per test that leaves no process behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gapless.platform import LocalPlatform


@pytest.fixture
async def platform(state_dir: Path) -> AsyncIterator[LocalPlatform]:
    """A local platform on the test's state dir; every process it marked is killed afterwards."""
    p = LocalPlatform(state_dir)
    yield p
    for proc in p.discover():
        await p.kill_group(proc.pgid)
    assert p.discover() == []
    p.release()  # reaps children that exited on their own while the test looked elsewhere
