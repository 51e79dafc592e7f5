"""PostgreSQL for the migration tests: a fresh database per test (``db``), dropped afterwards.

The server is the suite's (``postgres_server`` in tests/conftest.py: an embedded one, or
``$GAPLESS_TEST_DATABASE_URL``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from gapless.migrations.engine import EngineSettings, MigrationEngine
from gapless.migrations.files import parse_migration
from gapless.migrations.gate import connect_kwargs
from gapless.migrations.model import Migration
from gapless.migrations.policy import BatchPolicy, LockPolicy

FAST_LOCKS = LockPolicy(timeout=0.5, attempts=5, base_delay=0.05, max_delay=0.2)


@pytest.fixture
def db(postgres_url: str) -> str:
    """A new, empty database for one test; its URL (the suite's ``postgres_url``, by its short name here)."""
    return postgres_url


def connect(
    url: str, version: str | None = None, *, app: str = "shop", instance: str = "i1"
) -> psycopg.Connection[Any]:
    """An application connection on ``version``'s schema, identified for rollout gating."""
    return psycopg.connect(url, autocommit=True, **connect_kwargs(app, version, instance))


def engine(url: str, **batch: Any) -> MigrationEngine:
    """An engine with short lock timeouts, so a test that hits a lock finds out quickly."""
    return MigrationEngine(url, EngineSettings(lock=FAST_LOCKS, batch=BatchPolicy(**batch)))


def migration(text: str) -> Migration:
    return parse_migration(text)


@dataclass
class Versions:
    """A database where migration ``m0`` created ``users`` and completed, so the old version has its own schema."""

    url: str

    def old(self, *, app: str = "shop", instance: str = "i1") -> psycopg.Connection[Any]:
        return connect(self.url, "m0", app=app, instance=instance)

    def new(self, version: str = "m1", *, app: str = "shop", instance: str = "i2") -> psycopg.Connection[Any]:
        return connect(self.url, version, app=app, instance=instance)

    def admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True)

    def start(self, text: str, **batch: Any) -> None:
        with engine(self.url, **batch) as e:
            e.start(migration(text))

    def complete(self, **kw: Any) -> None:
        with engine(self.url) as e:
            e.complete(**kw)

    def rollback(self) -> None:
        with engine(self.url) as e:
            e.rollback()


BASE = """
name: m0
operations:
  - create_table:
      table: users
      columns:
        - {name: id, type: bigserial, primary_key: true}
        - {name: name, type: text, nullable: false}
        - {name: age, type: integer}
        - {name: legacy, type: text, nullable: false, default: "'x'"}
"""


@pytest.fixture
def versions(db: str) -> Versions:
    """``users`` created by migration m0 (completed) with 300 rows written through m0's schema."""
    with engine(db) as e:
        e.start(migration(BASE))
        e.complete()
    with connect(db, "m0") as c:
        c.execute("INSERT INTO users (name, age) SELECT 'User' || g, g FROM generate_series(1, 300) g")
    return Versions(db)
