"""A real Prometheus server for tests: started on a free loopback port, scraping the given targets.

Tests that need Prometheus call :func:`require_prometheus` first: without the binary they are skipped
on a developer's machine, but fail under CI, where a silently skipped provider test would hide a
broken integration.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest

from tests.conftest import in_ci
from tests.ports import free_port as _free_port

__all__ = ["PrometheusServer", "prometheus_binary", "require_prometheus", "start_prometheus"]

_READY_TIMEOUT = 20.0
_STOP_TIMEOUT = 10.0


def prometheus_binary() -> str | None:
    """The ``prometheus`` executable on PATH, or None."""
    return shutil.which("prometheus")


def require_prometheus() -> str:
    """The binary; skips the test when it is missing (fails it instead under CI)."""
    binary = prometheus_binary()
    if binary is None:
        if in_ci():
            pytest.fail(
                "prometheus not installed (Debian package prometheus); CI must run the Prometheus tests"
            )
        pytest.skip("prometheus not installed (Debian package prometheus)")
    return binary


@dataclass
class PrometheusServer:
    """A running Prometheus; ``address`` is its base URL (``http://127.0.0.1:<port>``)."""

    address: str
    process: subprocess.Popen[bytes]
    config_file: Path
    log_file: Path

    def log(self) -> str:
        """What the server wrote so far (for failure messages)."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time; waits until it is gone."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def query(self, promql: str) -> dict[str, Any]:
        """The raw ``data`` of an instant query (synchronous, for waiting in tests)."""
        response = httpx.get(f"{self.address}/api/v1/query", params={"query": promql}, timeout=5.0)
        response.raise_for_status()
        data: dict[str, Any] = response.json()["data"]
        return data

    def wait_for_series(self, promql: str, *, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until the instant query returns at least ``count`` series (the targets were scraped)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)["result"]
            if len(result) >= count:
                return
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{promql!r} still has {len(result)} series after {timeout} s\n{self.log()[-2000:]}"
                )
            time.sleep(0.1)


def _config(targets: list[str], scrape_interval: str, metrics_path: str) -> str:
    quoted = ", ".join(f'"{t}"' for t in targets)
    return (
        "global:\n"
        f"  scrape_interval: {scrape_interval}\n"
        f"  scrape_timeout: {scrape_interval}\n"
        f"  evaluation_interval: {scrape_interval}\n"
        "scrape_configs:\n"
        "  - job_name: test\n"
        f"    metrics_path: {metrics_path}\n"
        f"    static_configs:\n      - targets: [{quoted}]\n"
    )


def start_prometheus(
    tmp_path: Path, targets: list[str], *, scrape_interval: str = "1s", metrics_path: str = "/metrics"
) -> PrometheusServer:
    """Start Prometheus scraping ``host:port`` ``targets`` and wait until it is ready.

    Its config, data and log live under ``tmp_path``. Call :func:`require_prometheus` before.
    """
    binary = prometheus_binary()
    if binary is None:
        raise RuntimeError("prometheus is not installed; call require_prometheus() first")
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(_config(targets, scrape_interval, metrics_path))
    log_file = tmp_path / "prometheus.log"
    last_log = ""
    for _attempt in range(3):  # the free port may be taken between the probe and the bind
        port = _free_port()
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = PrometheusServer(f"http://127.0.0.1:{port}", process, config_file, log_file)
        if _wait_ready(server):
            return server
        server.stop()
        last_log = server.log()
    raise RuntimeError(f"prometheus did not become ready:\n{last_log[-3000:]}")


def _wait_ready(server: PrometheusServer) -> bool:
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            if httpx.get(f"{server.address}/-/ready", timeout=1.0).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return False
