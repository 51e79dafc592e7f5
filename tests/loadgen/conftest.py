"""Fixtures of the load generator tests: real servers on 127.0.0.1 and a port nothing listens on.

Every test runs on both the default asyncio loop and uvloop: the library is driven from the first
(the demo's tests) and the CLI runs on the second.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import uvloop

from tests.loadgen.server import LocalServer


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Run each async test on the default loop and on uvloop."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    """A running test server answering ``X-Version: v1``."""
    async with LocalServer() as s:
        yield s


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port bound on 127.0.0.1 but not listening, so connecting to it is refused without a race."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
