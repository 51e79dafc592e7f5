"""The migration work of release steps: ``migrate`` (expand + backfill), ``complete``, and rollback.

The migration engines (``gapless.migrations.engine`` for PostgreSQL, ``gapless.migrations.sqlite.engine``
for a ``sqlite:///PATH`` URL; the same lifecycle and status) are synchronous and its steps are long (a backfill
of millions of rows), so each piece of work runs in a daemon thread of its own, never in a release
pass: passes stay short, an abort is taken at once, and the control plane can stop at any moment
(the thread dies with the process; the engine recorded every finished step and backfill batch).

Nothing here decides. The release controller reads ``seen()`` (the engine's own state table, plus
whether work of the step runs in this process) and the pure ``decide_migration`` /
``decide_migration_undo`` say whether to ``launch`` work. After a SIGKILL no work runs, so the next
pass launches the same call again, and the engine resumes it at the step it recorded: a finished
expand is not repeated, a finished backfill not restarted, a batch not redone.

SQLite cannot list the connections of a database, so its engine asks for a confirmation that the new
version is gone before a rollback (``migrate rollback --force``). A release gives it on the same proof it
has for PostgreSQL: the controller launches a rollback only once no live revision of the control plane
declares ``requiresSchema`` of the migration; ``complete`` is judged by those revisions as on
PostgreSQL (``running_revisions``), which the SQLite engine takes in place of ``--force``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg

from gapless.core.errors import GaplessError, SpecError
from gapless.migrations.engine import EngineSettings, MigrationEngine
from gapless.migrations.files import validate_migration
from gapless.migrations.gate import RevisionSchema
from gapless.migrations.policy import BatchPolicy
from gapless.migrations.reports import ClientsConnectedError, MigrationStateError, Notice, Status
from gapless.migrations.sqlite import is_sqlite_url, sqlite_path
from gapless.migrations.sqlite.engine import SqliteMigrationEngine, SqliteSettings
from gapless.store.sqlite import Store
from gapless.strategies.release import MigrationSeen

__all__ = [
    "MigrationJobs",
    "MigrationStateUnreadableError",
    "MigrationTarget",
    "Work",
    "database_name",
    "describe_revision",
    "revisions_needing",
]

Work = Literal["start", "complete", "rollback"]


@dataclass(frozen=True)
class MigrationTarget:
    """Where a step's migration runs: the database URL, the schema, and how hard the backfill pushes."""

    url: str
    migration: str
    schema: str = "public"
    batch_size: int = 1000
    batch_delay: float = 0.0

    @property
    def sqlite(self) -> bool:
        return is_sqlite_url(self.url)

    def settings(self) -> EngineSettings:
        return EngineSettings(schema=self.schema, batch=self._batch())

    def _batch(self) -> BatchPolicy:
        return BatchPolicy(
            size=self.batch_size, delay=self.batch_delay, max_delay=max(5.0, self.batch_delay * 8)
        )

    @contextmanager
    def engine(
        self, on_event: Callable[[object], None] | None = None
    ) -> Iterator[MigrationEngine | SqliteMigrationEngine]:
        """The engine of this database: PostgreSQL's, or SQLite's for a ``sqlite:///PATH`` URL."""
        if self.sqlite:
            with SqliteMigrationEngine(self.url, SqliteSettings(batch=self._batch()), on_event=on_event) as e:
                yield e
        else:
            with MigrationEngine(self.url, self.settings(), on_event=on_event) as engine:
                yield engine


class MigrationStateUnreadableError(GaplessError):
    """The migration state could not be read now (the database is away): decide nothing, try again."""


@dataclass
class _Job:
    work: Work
    done: bool = False
    error: str | None = None
    retry: str | None = None
    notices: list[str] = field(default_factory=list)


def _temporary(e: BaseException) -> bool:
    """Trouble that passes by itself: clients still connected, the database away, the schema's lock held."""
    if isinstance(e, ClientsConnectedError | psycopg.OperationalError):
        return True
    if isinstance(e, sqlite3.OperationalError):
        return "locked" in str(e) or "busy" in str(e)  # the write lock of an application's transaction
    if isinstance(e, MigrationStateError):
        return "another gapless migrate is working" in str(e)
    return isinstance(e, GaplessError) and str(e).startswith("cannot connect to the database")


class MigrationJobs:
    """Work on migrations for release steps, keyed by (release, step); one piece per step at a time."""

    def __init__(self) -> None:
        self._jobs: dict[tuple[str, int], _Job] = {}
        self._lock = threading.Lock()

    def launch(
        self,
        key: tuple[str, int],
        work: Work,
        target: MigrationTarget,
        document: dict[str, Any] | None,
        revisions: Iterable[RevisionSchema] = (),
        on_done: Callable[[], None] | None = None,
    ) -> None:
        """Start ``work`` in a thread unless work of this step runs already."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and not job.done:
                return
            job = _Job(work)
            self._jobs[key] = job
        loop = asyncio.get_running_loop()

        def on_event(event: object) -> None:
            if isinstance(event, Notice):
                job.notices.append(event.text)

        def run() -> None:
            try:
                with target.engine(on_event) as engine:
                    if work == "start":
                        engine.start(validate_migration(document, source=f"migration {target.migration}"))
                    elif work == "complete":
                        rows = list(revisions)
                        engine.complete(running_revisions=lambda: rows)
                    else:
                        _rollback(engine, target.migration)
            except Exception as e:
                text = " ".join(str(e).split()) or type(e).__name__
                if isinstance(e, SpecError):
                    text = str(e)
                if _temporary(e):
                    job.retry = f"waiting: {text}"
                else:
                    job.error = f"{work} of {target.migration} failed: {text}"
            finally:
                job.done = True
                if on_done is not None:
                    loop.call_soon_threadsafe(on_done)

        threading.Thread(target=run, name=f"release-{key[0]}-{key[1]}-{work}", daemon=True).start()

    def forget(self, key: tuple[str, int]) -> None:
        """Drop what a finished job reported (its outcome was written to the step)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.done:
                del self._jobs[key]

    def take_notices(self, key: tuple[str, int]) -> list[str]:
        """What the engine said to the operator since the last call (``resuming the start ... at step 3``)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                return []
            taken, job.notices = job.notices, []
            return taken

    def seen(
        self, key: tuple[str, int], target: MigrationTarget, work: Work
    ) -> tuple[MigrationSeen, dict[str, Any]]:
        """The step's migration as the engine records it, with this process's work on it (blocking I/O)."""
        job = self._jobs.get(key)
        running = job is not None and not job.done
        error = retry = None
        if job is not None and job.done and job.work == work:
            error, retry = job.error, job.retry
        try:
            with target.engine() as engine:
                status: Status = engine.status()
        except (GaplessError, psycopg.Error, sqlite3.Error) as e:
            why = " ".join(str(e).split())
            raise MigrationStateUnreadableError(
                f"cannot read the state of migration {target.migration}: {why}"
            ) from e
        record = next((m for m in status.migrations if m.name == target.migration), None)
        detail: dict[str, Any] = {}
        if record is not None:
            detail = {
                "phase": record.phase,
                "step": record.step,
                "steps": record.steps,
                "backfills": record.backfills,
                **({"error": record.error} if record.error else {}),
            }
        phase = record.phase if record is not None else None
        return MigrationSeen(phase, "running" if running else "idle", error, retry), detail


def _rollback(engine: MigrationEngine | SqliteMigrationEngine, migration: str) -> None:
    """Roll back ``migration`` if it is the one in progress (``migrate rollback``: new rows are kept).

    On SQLite ``force`` is the controller's proof (see the module doc): it launches a rollback only
    once no live revision needs the migration's schema.
    """
    active = engine.status().active
    if active is None or active.name != migration:
        return  # rolled back already (or never started): nothing to do
    if isinstance(engine, SqliteMigrationEngine):
        engine.rollback(force=True)
    else:
        engine.rollback()


def revisions_needing(store: Store, migration: str, *, older: bool) -> list[RevisionSchema]:
    """Revisions with live instances whose ``requiresSchema`` is older than ``migration`` (``older``),
    or is ``migration`` itself: what a complete, or a rollback, of it must wait for.

    Migration names sort in the order they are applied (``0001_...``), as ``gapless migrate complete``
    assumes. An instance is live unless it is stopped. Revisions that declare no ``requiresSchema``
    are not judged (as ``gapless migrate complete`` does; the engine still checks the database's
    connections).
    """
    found: list[RevisionSchema] = []
    for rec in store.rollouts():
        counts: dict[str, int] = {}
        for inst in store.instances(rec.name):
            if inst.state != "stopped":
                counts[inst.revision] = counts.get(inst.revision, 0) + 1
        by_hash = {r.hash: r for r in store.revisions(rec.name)}
        for hash_, n in counts.items():
            rev = by_hash.get(hash_)
            version = rev.template.get("requiresSchema") if rev is not None else None
            if not isinstance(version, str):
                continue
            if (version < migration) if older else (version == migration):
                number = rev.number if rev is not None else "?"
                found.append(RevisionSchema(f"rollout {rec.name}", f"{number}", version, n))
    return found


def describe_revision(r: RevisionSchema) -> str:
    return f"{r.app} revision {r.revision} has {r.instances} instance(s) that need schema version {r.schema_version}"


def database_name(url: str) -> str:
    """The database's name for its event stream ``migrations:<name>``, as ``gapless migrate`` names it
    (a SQLite database by its file's name)."""
    from psycopg.conninfo import conninfo_to_dict

    if is_sqlite_url(url):
        try:
            return sqlite_path(url).name
        except ValueError:
            return "database"

    try:
        info = conninfo_to_dict(url)
    except (ValueError, psycopg.Error):
        return "database"
    return str(info.get("dbname") or info.get("user") or "postgres")
