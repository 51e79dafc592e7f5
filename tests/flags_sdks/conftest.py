"""Fixtures of the SDK conformance tests: the npm packages they run, installed on first use.

``node/package.json`` (with its lock file) pins Unleash's client specification and the official Node
SDKs. ``npm ci`` installs them into ``node/node_modules`` (ignored by git) the first time a test needs
them. Without npm, or with no registry to install from, the tests that need them skip with the reason,
except under CI, where that is a failure.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import in_ci

NODE_DIR = Path(__file__).resolve().parent / "node"


def missing(reason: str) -> None:
    """Skip with ``reason`` outside CI; fail under CI, where every toolchain must be present."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """``tests/flags_sdks/node/node_modules``, installed by ``npm ci`` when absent or stale.

    Test workers (xdist) share the directory: an exclusive lock makes one install while the others wait
    for it (``npm ci`` starts by deleting ``node_modules``), and then find it installed.
    """
    with exclusive("npm"):
        return _installed()


@contextmanager
def exclusive(name: str) -> Iterator[None]:
    """One test process at a time (xdist workers share caches such as node_modules and ~/.m2)."""
    with (Path(tempfile.gettempdir()) / f"gapless-flags-sdks-{name}.lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _installed() -> Path:
    modules = NODE_DIR / "node_modules"
    lock = NODE_DIR / "package-lock.json"
    stamp = modules / ".package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return modules
    npm = shutil.which("npm")
    if npm is None:
        missing("npm is not installed: the client specification and the Node SDKs come from npm")
    result = subprocess.run(
        [str(npm), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        missing(f"npm ci in tests/flags_sdks/node failed: {result.stderr.strip()[-500:]}")
    return modules
