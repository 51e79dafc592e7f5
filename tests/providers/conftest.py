"""Fixtures of the provider tests: a scriptable metrics endpoint and a local platform that cleans up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gapless.platform import LocalPlatform
from tests.providers.exporter import Exporter


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    """A running metrics endpoint, closed after the test."""
    e = Exporter()
    e.start()
    yield e
    e.close()


@pytest.fixture
async def platform(state_dir: Path) -> AsyncIterator[LocalPlatform]:
    """A local platform on the test's state dir; every process it marked is killed afterwards."""
    p = LocalPlatform(state_dir)
    yield p
    for proc in p.discover():
        await p.kill_group(proc.pgid)
    assert p.discover() == []
    p.release()
