"""Rollout gating: who still needs the old schema version, decided from data.

Application connections say who they are in ``application_name``::

    gapless:<app>:<schema version>:<instance>

where the schema version is the name of the migration the code was written for (empty when the code
predates every gapless migration and uses the base schema). ``connect_kwargs`` builds it together with
the matching ``search_path``, so one call gives a connection both its identity and its schema version.

``complete`` of migration M must not run while any client of another version is connected (it would lose
the schema it reads), nor while any connection that does not say its version is (it may be an old
version that was never told to identify itself: a worker, a cron job, a psql session):
``blocking_clients`` decides that from the rows of ``pg_stat_activity``, and
``blocking_revisions`` does the same for instances reported by a control plane through a
``RunningRevisions`` callable (the seam for gapless's own controller; nothing implements it yet).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypedDict

__all__ = [
    "APPLICATION_PREFIX",
    "CONTROL_PLANE_APPLICATION_NAME",
    "ENGINE_APPLICATION_NAME",
    "Client",
    "ConnectKwargs",
    "RevisionSchema",
    "RunningRevisions",
    "application_name",
    "blocking_clients",
    "blocking_revisions",
    "connect_kwargs",
    "is_internal",
    "parse_application_name",
    "search_path_for",
]

APPLICATION_PREFIX = "gapless"
MAX_APPLICATION_NAME = 63
"""PostgreSQL keeps only the first 63 bytes of application_name (NAMEDATALEN - 1)."""

ENGINE_APPLICATION_NAME = "gapless-migrate"
"""The migration engine's own connections (and their prefix)."""
CONTROL_PLANE_APPLICATION_NAME = "gapless control plane"
"""The control plane's reader of the migration state (``gapless up --database-url``)."""


def is_internal(application_name: str) -> bool:
    """Whether a connection is gapless's own (the engine, a control plane), not an application's."""
    return (
        application_name.startswith(ENGINE_APPLICATION_NAME)
        or application_name == CONTROL_PLANE_APPLICATION_NAME
    )


@dataclass(frozen=True)
class Client:
    """A client connection of the database: a gapless application instance, or one that does not say.

    An unidentified connection (``identified=False``) keeps its ``application_name`` in ``app``.
    """

    app: str
    version: str
    instance: str
    pid: int = 0
    address: str | None = None
    state: str | None = None
    backend_start: str | None = None
    identified: bool = True

    def describe(self) -> str:
        where = f" from {self.address}" if self.address else ""
        if not self.identified:
            name = f"application_name {self.app!r}" if self.app else "no application_name"
            return (
                f"unidentified connection ({name}, pid {self.pid}{where}, {self.state}, "
                f"since {self.backend_start}): it does not say which schema version it uses"
            )
        version = self.version or "(base schema)"
        return f"{self.app}/{self.instance} (schema version {version}, pid {self.pid}{where}, {self.state})"


@dataclass(frozen=True)
class RevisionSchema:
    """A running revision of an application and the schema version its code needs."""

    app: str
    revision: str
    schema_version: str
    instances: int = 1


RunningRevisions = Callable[[], Iterable[RevisionSchema]]
"""Returns the revisions that currently have instances, with the schema version each needs."""


def _check_part(name: str, value: str) -> None:
    if ":" in value:
        raise ValueError(f"{name} must not contain ':' (it separates the parts of application_name)")
    if not value.isprintable():
        raise ValueError(f"{name} must be printable text")


def application_name(app: str, version: str | None, instance: str) -> str:
    """``gapless:<app>:<version>:<instance>``; raise ValueError if PostgreSQL would truncate it."""
    if not app:
        raise ValueError("app must not be empty")
    _check_part("app", app)
    _check_part("version", version or "")
    if not instance.isprintable():
        raise ValueError("instance must be printable text")
    name = f"{APPLICATION_PREFIX}:{app}:{version or ''}:{instance}"
    if len(name.encode()) > MAX_APPLICATION_NAME:
        raise ValueError(
            f"application_name {name!r} is {len(name.encode())} bytes; PostgreSQL keeps only "
            f"{MAX_APPLICATION_NAME}: shorten the app or instance name"
        )
    return name


def parse_application_name(value: str) -> tuple[str, str, str] | None:
    """(app, version, instance) of a gapless application_name, or None for any other value."""
    parts = value.split(":", 3)
    if len(parts) != 4 or parts[0] != APPLICATION_PREFIX or not parts[1]:
        return None
    return parts[1], parts[2], parts[3]


def _quote_schema(name: str) -> str:
    if name.islower() and name.replace("_", "").isalnum() and not name[0].isdigit():
        return name
    return '"' + name.replace('"', '""') + '"'


def search_path_for(
    version: str | None, *, schema: str = "public", prefix: str | None = None, also: Sequence[str] = ()
) -> str:
    """The search_path of code written for ``version``: its schema of views (the base schema if None).

    Only that schema, so a table the version must not see (created by a later migration, dropped by
    this one) is not found through the base schema. ``also`` appends schemas the code needs for
    functions or types; putting the base schema there makes its tables visible again.
    """
    first = _quote_schema(f"{prefix or schema}_{version}") if version else _quote_schema(schema)
    return ", ".join([first, *(_quote_schema(s) for s in also)])


class ConnectKwargs(TypedDict):
    """libpq connection parameters that give a connection its identity and schema version."""

    application_name: str
    options: str


def connect_kwargs(
    app: str,
    version: str | None,
    instance: str,
    *,
    schema: str = "public",
    prefix: str | None = None,
    also: Sequence[str] = (),
) -> ConnectKwargs:
    """Keyword arguments for ``psycopg.connect`` (or libpq parameters) of an application instance.

    ``psycopg.connect(url, **connect_kwargs("shop", "0002_add_email", "web-1"))`` identifies the
    connection for rollout gating and puts it on the schema version its code was written for.
    """
    path = search_path_for(version, schema=schema, prefix=prefix, also=also)
    options = "-c search_path=" + path.replace(" ", "\\ ")
    return {"application_name": application_name(app, version, instance), "options": options}


def blocking_clients(migration: str, clients: Sequence[Client]) -> list[Client]:
    """The clients that would lose their schema if ``migration`` completed now, or may: every one that
    is not identified as a client of ``migration``'s version."""
    return [c for c in clients if not c.identified or c.version != migration]


def blocking_revisions(migration: str, revisions: Iterable[RevisionSchema]) -> list[RevisionSchema]:
    """The running revisions whose code needs another schema version than ``migration``'s."""
    return [r for r in revisions if r.instances > 0 and r.schema_version != migration]
