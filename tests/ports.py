"""Loopback ports for the tests' servers, handed out so that two never get the same one.

Asking the kernel for a free port (bind to port 0, close) has two races: the kernel may give the same
port to the next caller before the first one binds it (seen: a rollout's router and the control plane's
metrics address got the same port in one test), and any outgoing connection may take it as its
ephemeral source port. So ports come from below the ephemeral range, in a slice of their own per
pytest-xdist worker, are checked free by binding them, and are never handed out twice by one process.
"""

from __future__ import annotations

import os
import random
import socket

__all__ = ["free_port"]

_LOW, _HIGH = 15000, 32000  # below Linux's default ephemeral range (32768-60999)
_SLICES = 8
_given: set[int] = set()


def _slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw")) if worker.removeprefix("gw").isdigit() else 0
    width = (_HIGH - _LOW) // _SLICES
    start = _LOW + (index % _SLICES) * width
    return range(start, start + width)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port that nothing listens on now and that this process has not handed out."""
    ports = _slice()
    for _ in range(200):
        port = random.choice(ports)  # noqa: S311 - not security
        if port not in _given and _bindable(port):
            _given.add(port)
            return port
    raise RuntimeError(f"no free loopback port in {ports.start}-{ports.stop - 1} after 200 tries")
