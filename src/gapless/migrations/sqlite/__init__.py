"""Zero-downtime migrations on SQLite: the same migration files and lifecycle as on PostgreSQL.

SQLite has no schemas, no views an application can be pointed at, no ``CONCURRENTLY`` and one write
lock for the whole database, so the engine works differently (see ``engine.py`` and the SQLite section
of docs/migrations.md). This module only recognises the database URL, so the CLI can pick the engine
without importing either of them.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SQLITE_SCHEME", "is_sqlite_url", "sqlite_path"]

SQLITE_SCHEME = "sqlite:///"


def is_sqlite_url(url: str) -> bool:
    """Whether ``url`` names a SQLite database (``sqlite:///relative.db``, ``sqlite:////abs/path.db``)."""
    return url.startswith("sqlite:")


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///PATH`` URL: three slashes then the path, relative or (a fourth slash) absolute.

    Raise ``ValueError`` for anything else, including ``:memory:``: a private in-memory database has
    no second application version to migrate for.
    """
    if not url.startswith(SQLITE_SCHEME):
        raise ValueError(
            f"{url!r} is not a SQLite URL: write sqlite:///relative/path.db or sqlite:////abs/path.db"
        )
    rest = url[len(SQLITE_SCHEME) :].split("?", 1)[0]
    if not rest or rest == ":memory:":
        raise ValueError("the SQLite URL needs a database file: sqlite:///PATH")
    return Path(rest)
