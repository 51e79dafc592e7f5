"""The control plane's listen addresses as the CLI checks and prints them.

Kept apart from ``gapless.server.process`` because ``gapless up`` and ``gapless apply`` need only these
few functions: importing the control plane's process module for them loaded the controller, uvicorn,
Starlette and psycopg too, about 0.8 s of CPU on every ``apply``.
"""

from __future__ import annotations

import ipaddress

from gapless.spec.base import check_listen

__all__ = ["dashboard_url", "is_loopback", "metrics_url", "parse_metrics_listen"]


def parse_metrics_listen(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:9100`` for IPv6); raises ``ValueError`` saying what is wrong."""
    try:
        check_listen(value)
    except ValueError as e:
        raise ValueError(f"--metrics-listen {value!r}: {e}") from e
    host, _, port = value.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (a loopback address or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to anything


def metrics_url(host: str, port: int) -> str:
    """The URL Prometheus scrapes for this metrics address."""
    return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"


def dashboard_url(host: str, port: int) -> str:
    """The URL of the dashboard served on this address."""
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
