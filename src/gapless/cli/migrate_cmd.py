"""``gapless migrate``: zero-downtime schema migrations on PostgreSQL and SQLite (plan, lint, start, complete, rollback, status).

The commands only translate: options in, one engine call, a report out. Exit codes follow the rest of
the CLI: 0 ok, 1 the migration could not proceed (a lock not taken after every retry, old clients still
connected, a database error), 2 a usage or file error (nothing was changed). Progress goes to stderr,
results (tables, ``-o json``) to stdout. A ``sqlite:///PATH`` database URL selects the SQLite engine.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gapless.core.errors import GaplessError, Problem, SpecError
from gapless.migrations.files import MIGRATION_SUFFIXES, load_migration
from gapless.migrations.lint import Finding, lint_sql
from gapless.migrations.plan import plan
from gapless.migrations.policy import LockPolicy
from gapless.migrations.sqlite import is_sqlite_url
from gapless.migrations.steps import Plan, Step

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from gapless.migrations.engine import EngineEvent, MigrationEngine
    from gapless.migrations.gate import RevisionSchema
    from gapless.migrations.sqlite.actions import SqlitePlan, SqliteStep
    from gapless.migrations.sqlite.engine import SqliteEvent, SqliteMigrationEngine

__all__ = ["migrate_app"]

LIFECYCLE = (
    "Zero-downtime schema migrations on PostgreSQL and SQLite: expand/contract, old and new code served at once."
    "\n\n"
    "1. [bold]plan FILE[/]: the steps, the lock each takes, and which application versions each state "
    "serves. Nothing is changed.\n\n"
    "2. [bold]start FILE[/]: expand. Adds only what the old version tolerates (new columns and tables, "
    "indexes built CONCURRENTLY, constraints NOT VALID), installs triggers that keep old and new columns "
    "in step, backfills existing rows in batches, then creates the schema <schema>_<migration> of views "
    "with the new shape. The old version keeps its schema: both run side by side.\n\n"
    "3. Roll out the application version that uses search_path=<schema>_<migration>.\n\n"
    "4. [bold]complete[/]: contract, once no client of the old version is connected: drops the old schema "
    "version, the triggers and old columns, renames, sets NOT NULL through validated checks. "
    "Or [bold]rollback[/]: undo the expand, keeping the rows the new version wrote.\n\n"
    "Every DDL statement runs with lock_timeout and is retried with backoff, so it never queues behind a "
    "long transaction while blocking the application. Every command resumes where it stopped when run "
    "again. Applications identify themselves with application_name "
    "gapless:<app>:<schema version>:<instance>.\n\n"
    "SQLite (--database-url sqlite:///PATH): both versions use the real tables (old columns and new "
    "columns kept in step by triggers), every step is one short write transaction, plan estimates how long "
    "each step holds the database write lock, and steps over --max-write-lock need --force. SQLite cannot "
    "list connections, so complete and rollback need --force as your confirmation that the other version "
    "is gone.\n\n"
    "Exit codes: 0 ok, 1 could not proceed (lock not taken, old clients connected, database error), "
    "2 usage or file error (nothing changed)."
)

migrate_app = typer.Typer(
    name="migrate",
    help=LIFECYCLE,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)

out = Console()
err = Console(stderr=True)

T = TypeVar("T")


class OutputFormat(StrEnum):
    """How results are printed."""

    text = "text"
    json = "json"


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="GAPLESS_DATABASE_URL",
        help="PostgreSQL URL (postgresql://user@host:5432/db) or SQLite file (sqlite:///PATH); "
        "default: $GAPLESS_DATABASE_URL.",
        show_default=False,
    ),
]
Schema = Annotated[str, typer.Option("--schema", help="The schema whose tables are migrated.")]
Prefix = Annotated[
    str | None,
    typer.Option(
        "--prefix",
        help="Version schemas are named <prefix>_<migration name> (default: the schema's name).",
        show_default=False,
    ),
]
LockTimeout = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        min=0.001,
        help="Seconds a statement may wait for its lock before it retries; application queries on the "
        "table wait at most this long behind it.",
    ),
]
LockAttempts = Annotated[
    int, typer.Option("--lock-attempts", min=1, help="Attempts per statement before giving up (exit 1).")
]
Output = Annotated[OutputFormat, typer.Option("-o", "--output", help="text or json.")]
MaxWriteLock = Annotated[
    float,
    typer.Option(
        "--max-write-lock",
        min=0.0,
        help="SQLite: seconds a step may hold the database write lock (estimated) before it needs --force.",
    ),
]
StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="The gapless state directory whose control plane (if one runs) records the migration's events "
        "and, for complete, says which schema versions its running revisions need "
        "(default: $GAPLESS_HOME, else .gapless in the working directory).",
        show_default=False,
    ),
]
MigrationFile = Annotated[
    Path, typer.Argument(help="Migration file (YAML).", show_default=False, metavar="FILE")
]


def _fail(code: int, message: str) -> typer.Exit:
    err.print(f"[red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def _run(fn: Callable[[], T]) -> T:
    """Run a command body, turning errors into messages and exit codes (2: nothing changed, 1: could not proceed)."""
    import sqlite3

    import psycopg

    from gapless.migrations.engine import ClientsConnectedError
    from gapless.migrations.locks import LockNotAcquiredError

    try:
        return fn()
    except SpecError as e:
        err.print(f"[red]error:[/] {escape(e.source)}: {len(e.problems)} problem(s)", highlight=False)
        for p in e.problems:
            err.print(f"  {p}", markup=False, highlight=False)
        err.print("nothing was changed", highlight=False)
        raise typer.Exit(2) from e
    except LockNotAcquiredError as e:
        raise _fail(1, str(e)) from e
    except ClientsConnectedError as e:
        raise _fail(1, str(e)) from e
    except GaplessError as e:
        raise _fail(1, str(e)) from e
    except (psycopg.Error, sqlite3.Error) as e:
        raise _fail(1, f"database error: {str(e).strip()}") from e
    except KeyboardInterrupt as e:
        err.print("interrupted: run the same command again to resume")
        raise typer.Exit(130) from e


def _url(database_url: str | None) -> str:
    if not database_url:
        raise _fail(2, "no database: pass --database-url or set GAPLESS_DATABASE_URL")
    return database_url


class _Reporter:
    """Shows engine events on stderr: one line per step, a progress bar per backfill, lock waits."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, event: EngineEvent | SqliteEvent) -> None:
        from gapless.migrations.backfill import BackfillProgress
        from gapless.migrations.engine import Notice, StepEvent
        from gapless.migrations.locks import LockRetry
        from gapless.migrations.sqlite.engine import SqliteStepEvent

        c = self.console
        if isinstance(event, StepEvent | SqliteStepEvent):
            s = event.step
            if event.done:
                c.print(
                    f"[green]✓[/] {event.phase} {event.index + 1}/{event.total} {escape(s.describe())} "
                    f"[dim]({s.lock}, {s.duration})[/]",
                    highlight=False,
                )
        elif isinstance(event, LockRetry):
            who = "; ".join(b.describe() for b in event.blockers[:3]) or "the blocker is gone"
            c.print(
                f"[yellow]lock not free[/] for {escape(event.what)} (attempt {event.attempt}/{event.attempts}); "
                f"retrying in {event.delay:.1f}s. Blocked by {escape(who)}",
                highlight=False,
            )
        elif isinstance(event, BackfillProgress):
            self._backfill(event)
        elif isinstance(event, Notice):
            style = "bold red" if event.loud else "cyan"
            c.print(f"[{style}]{escape(event.text)}[/]", highlight=False)

    def _backfill(self, event: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        if self.progress is None:
            self.progress = Progress(
                TextColumn("backfill {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.progress.start()
        if event.table not in self.tasks:
            self.tasks[event.table] = self.progress.add_task(event.table, total=event.rows_estimate, note="")
        note = f"throttled: {event.delay:.2f}s between batches" if event.throttled else ""
        self.progress.update(
            self.tasks[event.table], completed=event.rows_done, total=event.rows_estimate, note=note
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@contextmanager
def _engine(
    database_url: str | None,
    schema: str,
    *,
    prefix: str | None = None,
    lock_timeout: float = LockPolicy.timeout,
    lock_attempts: int = LockPolicy.attempts,
    batch_size: int = 1000,
    batch_delay: float = 0.0,
    max_write_lock: float = 1.0,
    report: bool = True,
    listener: Callable[[Any], None] | None = None,
) -> Iterator[MigrationEngine | SqliteMigrationEngine]:
    from gapless.migrations.engine import EngineSettings, MigrationEngine
    from gapless.migrations.policy import BatchPolicy, LockPolicy
    from gapless.migrations.sqlite.engine import SqliteMigrationEngine, SqliteSettings

    url = _url(database_url)
    sqlite = is_sqlite_url(url)
    if sqlite and (schema != "public" or prefix is not None):
        raise _fail(2, "--schema and --prefix do not apply to SQLite (one schema, no version schemas)")
    try:
        lock = LockPolicy(timeout=lock_timeout, attempts=lock_attempts)
        batch = BatchPolicy(size=batch_size, delay=batch_delay, max_delay=max(5.0, batch_delay * 8))
        settings = EngineSettings(schema=schema, prefix=prefix, lock=lock, batch=batch)
        sqlite_settings = SqliteSettings(lock=lock, batch=batch, max_write_lock=max_write_lock)
    except ValueError as e:
        raise _fail(2, str(e)) from e
    reporter = _Reporter(err) if report else None

    def on_event(event: Any) -> None:
        if reporter is not None:
            reporter(event)
        if listener is not None:
            listener(event)

    try:
        if sqlite:
            with SqliteMigrationEngine(url, sqlite_settings, on_event=on_event) as sqlite_engine:
                yield sqlite_engine
        else:
            with MigrationEngine(url, settings, on_event=on_event) as engine:
                yield engine
    finally:
        if reporter is not None:
            reporter.close()


def _database_name(url: str) -> str:
    """The database's name for its event stream: PostgreSQL's dbname, or the SQLite file's name."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from gapless.migrations.sqlite import sqlite_path

    try:
        if is_sqlite_url(url):
            return sqlite_path(url).name
        info = conninfo_to_dict(url)
    except (ValueError, psycopg.Error):  # a bad URL fails the command itself, with its own message
        return "database"
    return str(info.get("dbname") or info.get("user") or "postgres")


class _ControlPlane:
    """The control plane of ``--state-dir``, if one runs: it records events and knows the running revisions.

    It is never started for a migration, and it failing to answer never fails one (a warning). Backfill
    progress (``progress``) is no event: it goes to ``PUT /api/v1/migrations/<database>/progress`` from a
    thread of its own (``_ProgressPoster``), so a slow or absent control plane never holds up a backfill.
    """

    def __init__(self, state_dir: Path | None, database_url: str | None) -> None:
        from gapless.cli.client import resolve_state_dir

        self.state_dir = resolve_state_dir(state_dir)
        self.database = _database_name(database_url or "")
        self.stream = f"migrations:{self.database}"
        self._absent = False
        self._warned = False
        self._kept = False
        self._progress: _ProgressPoster | None = None

    def progress(self, migration: str, event: Any) -> None:
        """Hand a ``BackfillProgress`` to the poster thread; returns at once."""
        if self._absent:
            return
        if self._progress is None:
            self._progress = _ProgressPoster(self.state_dir, self.database)
        self._progress.offer(migration, event)

    def flush_progress(self, timeout: float = 3.0) -> None:
        """Let the poster send the last readings (``timeout`` seconds at most) and stop it."""
        if self._progress is not None:
            self._progress.close(timeout)
            self._progress = None

    def post(self, migration: str, type_: str, message: str) -> None:
        """Record one event in the stream ``migrations:<database>``; a failure is only a warning."""
        from gapless.cli.client import NotRunningError, request_if_running

        self.flush_progress()  # the final progress goes before the event that ends it (BackfillDone)
        if self._absent:
            self._keep(migration, type_, message)
            return
        body = {"rollout": self.stream, "revision": migration, "type": type_, "message": message}
        try:
            request_if_running(self.state_dir, "POST", "/api/v1/events", body)
        except NotRunningError:
            self._absent = True
            self._keep(migration, type_, message)
        except GaplessError as e:
            if not self._warned:
                self._warned = True
                err.print(
                    f"[yellow]warning:[/] could not record event {type_} with the control plane: "
                    f"{escape(str(e))}",
                    highlight=False,
                )

    def _keep(self, migration: str, type_: str, message: str) -> None:
        """No control plane runs: keep the event in the state directory for the next one."""
        from gapless.store.outbox import append_event

        try:
            path = append_event(self.state_dir, self.stream, migration, type_, message)
        except OSError as e:
            if not self._warned:
                self._warned = True
                err.print(
                    f"[yellow]warning:[/] could not keep event {type_}: {escape(str(e))}", highlight=False
                )
            return
        if not self._kept:
            self._kept = True
            err.print(
                f"[dim]no control plane runs for {escape(str(self.state_dir))}: events kept in "
                f"{escape(str(path))} for the next one[/]",
                highlight=False,
            )

    def schema_versions(self) -> list[dict[str, Any]] | None:
        """Per rollout, the revisions with live instances and their schema versions; None if none runs."""
        from gapless.cli.client import NotRunningError, request_if_running

        try:
            data = request_if_running(self.state_dir, "GET", "/api/v1/schema-versions")
        except NotRunningError:
            self._absent = True
            return None
        except GaplessError as e:
            raise GaplessError(
                f"a control plane runs for {self.state_dir} but could not say which schema versions its "
                f"instances need: {e}. Pass --force to complete without that check"
            ) from e
        return list(data["items"])


class _ProgressPoster:
    """Posts backfill progress to the control plane from a daemon thread.

    Only the newest reading of each table is kept; they are sent at most once per ``interval`` seconds,
    a finished table's at once, each request with a ``timeout`` of its own. Rows per second are measured
    here over the last ``window`` seconds. No control plane, or one that refuses (an older one without
    the endpoint), stops the posting; a timeout is a warning (once) and the next reading is tried.
    """

    def __init__(
        self, state_dir: Path, database: str, interval: float = 1.0, timeout: float = 2.0, window: float = 5.0
    ) -> None:
        import threading
        from collections import deque
        from urllib.parse import quote

        self._state_dir = state_dir
        self._path = f"/api/v1/migrations/{quote(database, safe='')}/progress"
        self._interval = interval
        self._timeout = timeout
        self._window = window
        self._cond = threading.Condition()
        self._pending: dict[tuple[str, str], dict[str, Any]] = {}
        self._samples: dict[str, deque[tuple[float, int]]] = {}
        self._closing = False
        self._stopped = False
        self._warned = False
        self._thread = threading.Thread(target=self._run, name="gapless backfill progress", daemon=True)
        self._thread.start()

    def offer(self, migration: str, event: Any) -> None:
        import time
        from collections import deque

        now = time.monotonic()
        samples = self._samples.setdefault(event.table, deque())
        samples.append((now, int(event.rows_done)))
        while len(samples) > 2 and now - samples[0][0] > self._window:
            samples.popleft()
        (t0, r0), (t1, r1) = samples[0], samples[-1]
        rate = (r1 - r0) / (t1 - t0) if t1 > t0 and r1 >= r0 else None
        body = {
            "migration": migration,
            "table": event.table,
            "rowsDone": int(event.rows_done),
            "rowsEstimate": int(event.rows_estimate),
            "rowsPerSecond": round(rate, 1) if rate is not None else None,
            "throttled": bool(event.throttled),
            "delay": float(event.delay),
            "done": bool(event.done),
        }
        with self._cond:
            if not self._stopped:
                self._pending[migration, event.table] = body
                self._cond.notify()

    def close(self, timeout: float) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    def _next_batch(self, last: float) -> list[dict[str, Any]] | None:
        import time

        with self._cond:
            while not self._stopped:
                if self._pending:
                    wait = last + self._interval - time.monotonic()
                    if wait <= 0 or self._closing or any(b["done"] for b in self._pending.values()):
                        batch = list(self._pending.values())
                        self._pending.clear()
                        return batch
                    self._cond.wait(wait)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()
            return None

    def _run(self) -> None:
        import time

        from gapless.cli.client import ApiError, NotRunningError, request_if_running

        last = float("-inf")
        while (batch := self._next_batch(last)) is not None:
            for body in batch:
                try:
                    request_if_running(self._state_dir, "PUT", self._path, body, timeout=self._timeout)
                except (NotRunningError, ApiError, SpecError):
                    with self._cond:
                        self._stopped = True  # none runs (post says so), or it does not take progress
                    return
                except GaplessError as e:
                    if not self._warned:
                        self._warned = True
                        err.print(
                            f"[yellow]warning:[/] could not report backfill progress to the control plane: "
                            f"{escape(str(e))}",
                            highlight=False,
                        )
                except Exception as e:  # a reporting thread must never take the command down
                    with self._cond:
                        self._stopped = True
                    err.print(f"[yellow]warning:[/] backfill progress reporting stopped: {escape(str(e))}")
                    return
            last = time.monotonic()


def _older(version: str, migration: str) -> bool:
    """Whether code written for ``version`` needs a schema older than ``migration`` (names sort in order)."""
    return version < migration


def _revision_gate(
    items: list[dict[str, Any]], migration: str | None
) -> tuple[list[RevisionSchema], list[RevisionSchema], list[str]]:
    """(revisions that need an older schema, revisions that are fine, notes on revisions not judged)."""
    from gapless.migrations.gate import RevisionSchema

    older: list[RevisionSchema] = []
    fine: list[RevisionSchema] = []
    notes: list[str] = []
    for item in items:
        for rev in item["revisions"]:
            label = f"{rev.get('number') or '?'} ({rev['revision']})"
            version = rev.get("requiresSchema")
            n = int(rev["instances"])
            if not version:
                notes.append(
                    f"rollout {item['rollout']} revision {label}: {n} instance(s) that declare no "
                    "template.requiresSchema"
                )
                continue
            r = RevisionSchema(
                app=f"rollout {item['rollout']}", revision=label, schema_version=version, instances=n
            )
            (older if migration is not None and _older(version, migration) else fine).append(r)
    return older, fine, notes


def _rollback_gate(cp: _ControlPlane, migration: str, *, force: bool) -> None:
    """Refuse (exit 1) to roll back a migration that live revisions of the control plane need."""
    items = cp.schema_versions()
    if items is None:
        err.print(
            f"[dim]not checked: instances of a gapless control plane (none runs for {escape(str(cp.state_dir))})[/]"
        )
        return
    needing = [
        f"{item['rollout']} revision {rev.get('number') or '?'} ({rev['instances']} instance(s))"
        for item in items
        for rev in item["revisions"]
        if rev.get("requiresSchema") == migration and int(rev["instances"]) > 0
    ]
    if not needing:
        return
    if force:
        for line in needing:
            err.print(
                f"[bold red]SKIPPED by --force:[/] rollout {escape(line)} needs schema version {escape(migration)}",
                highlight=False,
            )
        return
    raise _fail(
        1,
        f"refusing to roll back {migration}: "
        + "; ".join(f"rollout {line}" for line in needing)
        + " run code that needs its schema version. Roll those back first (gapless undo), or pass --force",
    )


def _plan_table(p: Plan | SqlitePlan) -> Table:
    table = Table(title=f"migration {p.migration} ({p.schema} -> {p.version_schema})", title_justify="left")
    for col in ("#", "phase", "step", "lock", "holds", "rewrite", "serves"):
        table.add_column(col, overflow="fold")
    steps: Sequence[Step | SqliteStep] = p.steps
    for n, s in enumerate(steps, start=1):
        table.add_row(
            str(n),
            s.phase,
            escape(s.describe()),
            s.lock,
            s.duration,
            "yes" if s.rewrites else "no",
            "+".join(s.serves),
        )
    return table


def _plan_json(p: Plan | SqlitePlan) -> dict[str, Any]:
    steps: Sequence[Step | SqliteStep] = p.steps
    data: dict[str, Any] = {
        "migration": p.migration,
        "schema": p.schema,
        "versionSchema": p.version_schema,
        "previousSchema": p.previous_schema,
        "steps": [s.as_dict() for s in steps],
        "states": [{"state": text, "serves": list(serves)} for text, serves in p.states()],
        "findings": [{"path": f.path, "ignored": f.ignored, **f.finding.as_dict()} for f in p.findings],
    }
    if not isinstance(p, Plan):
        data |= {"engine": "sqlite", "maxWriteLock": p.max_write_lock, "notes": list(p.notes)}
    return data


def _print_finding(f: Finding, where: str) -> None:
    color = "red" if f.severity == "error" else "yellow"
    out.print(
        f"[{color}]{f.severity}[/] [bold]{f.rule}[/] {escape(where)} (statement {f.statement}, line {f.line}): "
        f"{escape(f.message)}",
        highlight=False,
    )
    out.print(f"    fix: {escape(f.fix)}", highlight=False)
    out.print(f"    [dim]{escape(f.snippet)}[/]", highlight=False)


@migrate_app.command("plan")
def plan_command(
    file: MigrationFile,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="Also check the migration against this database's schema (read only). "
            "Without it the plan comes from the file alone.",
            show_default=False,
        ),
    ] = None,
    schema: Schema = "public",
    prefix: Prefix = None,
    output: Output = OutputFormat.text,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="SQLite: rows per backfill batch, for the estimate.")
    ] = 1000,
    max_write_lock: MaxWriteLock = 1.0,
) -> None:
    """Print the steps of FILE with their locks, and which application versions each state serves.

    Exit 1 when a sql operation has lint errors that start would refuse, or (SQLite) when a step's
    estimated write-lock hold is over --max-write-lock; nothing is ever changed. On SQLite, pass
    --database-url sqlite:///PATH: the plan needs the database, and operations SQLite cannot do safely
    exit 2 naming the operation and why.
    """

    def body() -> int:
        migration = load_migration(file)
        p: Plan | SqlitePlan
        if database_url:
            with _engine(
                database_url,
                schema,
                prefix=prefix,
                batch_size=batch_size,
                max_write_lock=max_write_lock,
                report=False,
            ) as engine:
                p = engine.plan(migration)
        else:
            p = plan(migration, schema=schema, prefix=prefix)
        if output is OutputFormat.json:
            out.print_json(json.dumps(_plan_json(p)))
        else:
            out.print(_plan_table(p))
            for text, serves in p.states():
                out.print(f"  {escape(text)} [dim](serves {'+'.join(serves)})[/]", highlight=False)
            for f in p.findings:
                _print_finding(f.finding, f.path + (" [ignored]" if f.ignored else ""))
            if not isinstance(p, Plan):
                for note in p.notes:
                    out.print(f"  [dim]note:[/] {escape(note)}", highlight=False)
        over_limit = not isinstance(p, Plan) and bool(p.over_limit)
        return 1 if p.blocking_findings or over_limit else 0

    raise typer.Exit(_run(body))


@migrate_app.command("lint")
def lint_command(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="SQL scripts (e.g. alembic upgrade --sql, sqlmigrate) or migration files.", metavar="FILE..."
        ),
    ],
    output: Output = OutputFormat.text,
) -> None:
    """Flag statements that block the application or break the running version, each with the safe fix.

    Exit 1 when anything is flagged, 2 when a file cannot be read.
    """

    def body() -> int:
        results: list[tuple[str, str, Finding]] = []
        for path in files:
            if path.suffix in MIGRATION_SUFFIXES:
                migration = load_migration(path)
                for i, op in enumerate(migration.operations):
                    if op.sql is not None:
                        results += [
                            (str(path), f"operations.{i}.sql.up", f)
                            for f in lint_sql(op.sql.up, context=op.sql.phase)
                        ]
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise SpecError(str(path), [Problem("", f"cannot read file: {e}")]) from e
            results += [(str(path), "", f) for f in lint_sql(text)]
        if output is OutputFormat.json:
            out.print_json(json.dumps([{"file": p, "path": where, **f.as_dict()} for p, where, f in results]))
        else:
            for p, where, f in results:
                _print_finding(f, f"{p}{':' + where if where else ''}")
            if not results:
                out.print("no findings")
        return 1 if results else 0

    raise typer.Exit(_run(body))


@migrate_app.command("start")
def start_command(
    file: MigrationFile,
    database_url: DatabaseUrl = None,
    schema: Schema = "public",
    prefix: Prefix = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            help="Most rows per backfill transaction (PostgreSQL: fewer when a batch would take over 50 ms).",
        ),
    ] = 1000,
    batch_delay: Annotated[
        float, typer.Option("--batch-delay", min=0.0, help="Seconds to pause between backfill batches.")
    ] = 0.0,
    lock_timeout: LockTimeout = LockPolicy.timeout,
    lock_attempts: LockAttempts = LockPolicy.attempts,
    max_write_lock: MaxWriteLock = 1.0,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="SQLite: run steps estimated to hold the write lock longer than --max-write-lock."
        ),
    ] = False,
    state_dir: StateDir = None,
) -> None:
    """Expand: apply the parts of FILE the old version tolerates, backfill, and create the new schema version.

    When it returns, both versions can run: the old one with its schema, the new one with
    search_path=<schema>_<migration name> (on SQLite: the new columns of the same tables). Run it again
    after a crash to resume (the backfill continues from its checkpoint).
    """

    def body() -> int:
        from gapless.migrations.backfill import BackfillProgress
        from gapless.migrations.sqlite.engine import SqliteMigrationEngine

        migration = load_migration(file)
        cp = _ControlPlane(state_dir, database_url)
        backfills: dict[str, BackfillProgress] = {}
        announced: list[bool] = []

        def listen(event: Any) -> None:
            from gapless.migrations.engine import StepEvent
            from gapless.migrations.sqlite.engine import SqliteStepEvent

            if isinstance(event, BackfillProgress):
                backfills[event.table] = event
                cp.progress(migration.name, event)  # to the control plane, off this thread
            elif isinstance(event, StepEvent | SqliteStepEvent) and not announced:
                announced.append(True)  # just before the first step that changes anything
                cp.post(
                    migration.name,
                    "MigrationStarted",
                    f"start (expand) of {migration.name} on {cp.database}: step {event.index + 1}/{event.total}",
                )

        def started() -> None:
            done = [b for b in backfills.values() if b.done]
            rows = "; ".join(
                f"backfill {b.table} {b.rows_done}/{max(b.rows_estimate, b.rows_done)}" for b in done
            )
            cp.post(
                migration.name, "BackfillDone", (rows or "nothing to backfill") + "; both versions are served"
            )

        with _engine(
            database_url,
            schema,
            prefix=prefix,
            lock_timeout=lock_timeout,
            lock_attempts=lock_attempts,
            batch_size=batch_size,
            batch_delay=batch_delay,
            max_write_lock=max_write_lock,
            listener=listen,
        ) as engine:
            if not isinstance(engine, SqliteMigrationEngine) and force:
                raise _fail(2, "--force on start applies to SQLite only")
            if isinstance(engine, SqliteMigrationEngine):
                sp = engine.start(migration, force=force)
                started()
                err.print(
                    f"[green]{sp.migration} started[/]: the old version keeps the old columns, the new version "
                    "uses the new ones; triggers keep them in step. Next: roll out the new version, stop the "
                    "old one, then gapless migrate complete --force.",
                    highlight=False,
                )
                return 0
            p = engine.start(migration)
            started()
        old = p.previous_schema or p.schema
        err.print(
            f"[green]{p.migration} started[/]: the old version uses {old}, the new version uses "
            f"search_path={p.version_schema}. Next: roll out the new version, then gapless migrate complete.",
            highlight=False,
        )
        return 0

    raise typer.Exit(_run(body))


@migrate_app.command("complete")
def complete_command(
    database_url: DatabaseUrl = None,
    schema: Schema = "public",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Complete even while clients, or control-plane instances, of an older schema version remain.",
        ),
    ] = False,
    lock_timeout: LockTimeout = LockPolicy.timeout,
    lock_attempts: LockAttempts = LockPolicy.attempts,
    max_write_lock: MaxWriteLock = 1.0,
    state_dir: StateDir = None,
) -> None:
    """Contract the migration in progress: drop the old schema version, triggers and old columns.

    Refuses (exit 1, listing them) while any connection identifies itself with application_name
    gapless:<app>:<another version>:<instance>, while any connection does not identify itself (it may
    read the old shape), and while the control plane of --state-dir (if one runs)
    has live instances of a revision whose template.requiresSchema is older than the migration. --force
    skips those checks and says what it skipped. SQLite cannot list connections: there complete needs
    --force, your confirmation that the old version is gone, unless the control plane runs revisions
    that declare their requiresSchema (it also accepts steps over --max-write-lock).
    """

    def body() -> int:
        from gapless.migrations.sqlite.engine import SqliteMigrationEngine

        cp = _ControlPlane(state_dir, database_url)
        with _engine(
            database_url,
            schema,
            lock_timeout=lock_timeout,
            lock_attempts=lock_attempts,
            max_write_lock=max_write_lock,
        ) as engine:
            active = engine.status().active
            migration = active.name if active is not None else None
            items = cp.schema_versions() if migration is not None else None
            gate: Callable[[], list[RevisionSchema]] | None = None
            notes: list[str] = []
            if items is None and migration is not None:
                notes.append(f"instances of a gapless control plane (none runs for {cp.state_dir})")
            elif items is not None:
                older, fine, notes = _revision_gate(items, migration)
                declared = older + fine
                # On SQLite the control plane's answer replaces --force only when it knows schema versions.
                if declared or not isinstance(engine, SqliteMigrationEngine):
                    gate = lambda: older  # noqa: E731 - the engine asks through this seam
                    if older:
                        for r in older:
                            err.print(
                                f"[yellow]{escape(r.app)} revision {escape(r.revision)}[/] has {r.instances} "
                                f"instance(s) that need schema version {escape(r.schema_version)}",
                                highlight=False,
                            )
            report = engine.complete(force=force, running_revisions=gate)
            name = engine.status().current_version
        for line in report.skipped:
            err.print(f"[bold red]SKIPPED by --force:[/] {escape(line)}", highlight=False)
        engine_says_no_plane = "(none is connected to this command)"
        for line in [*notes, *(u for u in report.unchecked if not (notes and engine_says_no_plane in u))]:
            err.print(f"[dim]not checked: {escape(line)}[/]", highlight=False)
        if name:
            cp.post(name, "MigrationCompleted", f"complete (contract) of {name} on {cp.database}")
        err.print(f"[green]{name} completed[/]: only the new schema version remains", highlight=False)
        return 0

    raise typer.Exit(_run(body))


@migrate_app.command("rollback")
def rollback_command(
    database_url: DatabaseUrl = None,
    schema: Schema = "public",
    force: Annotated[
        bool,
        typer.Option("--force", help="Roll back even while clients of the new schema version are connected."),
    ] = False,
    lock_timeout: LockTimeout = LockPolicy.timeout,
    lock_attempts: LockAttempts = LockPolicy.attempts,
    max_write_lock: MaxWriteLock = 1.0,
    state_dir: StateDir = None,
) -> None:
    """Undo the start of the migration in progress; rows the new version wrote stay, in the old shape.

    Possible until complete has passed its point of no return (dropping the old schema version).
    Refuses while clients of the new schema version are connected, and while the control plane of
    --state-dir (if one runs) has live instances of a revision whose template.requiresSchema is this
    migration, unless --force. SQLite cannot list connections: once the new version may run, rollback
    there needs --force as your confirmation.
    """

    def body() -> int:
        cp = _ControlPlane(state_dir, database_url)
        with _engine(
            database_url,
            schema,
            lock_timeout=lock_timeout,
            lock_attempts=lock_attempts,
            max_write_lock=max_write_lock,
        ) as engine:
            active = engine.status().active
            if active is not None:
                _rollback_gate(cp, active.name, force=force)
            engine.rollback(force=force)
        if active is not None:
            cp.post(active.name, "MigrationRolledBack", f"rollback of {active.name} on {cp.database}")
        err.print("[green]rolled back[/]: the old schema version is the only one", highlight=False)
        return 0

    raise typer.Exit(_run(body))


@migrate_app.command("status")
def status_command(
    database_url: DatabaseUrl = None,
    schema: Schema = "public",
    output: Output = OutputFormat.text,
) -> None:
    """Where each migration is (phase, step, backfill progress) and which clients use which schema version."""

    def body() -> int:
        from gapless.migrations.sqlite.engine import SqliteStatus

        with _engine(database_url, schema, report=False) as engine:
            st = engine.status()
        if output is OutputFormat.json:
            out.print_json(json.dumps(st.as_dict()))
            return 0
        out.print(
            f"schema {st.schema}: current version {st.current_version or '(base schema, no migration)'}"
        )
        table = Table()
        for col in ("migration", "phase", "step", "version schema", "backfill", "error"):
            table.add_column(col, overflow="fold")
        for m in st.migrations:
            backfill = ", ".join(
                f"{b['table']} {b['rowsDone']}/{b['rowsEstimate'] or '?'}{' done' if b['done'] else ''}"
                for b in m.backfills
            )
            table.add_row(
                m.name,
                m.phase,
                f"{m.step}/{m.steps}",
                m.version_schema,
                backfill or "-",
                escape(m.error or ""),
            )
        out.print(table)
        by_version: dict[str, int] = {}
        for c in st.clients:
            by_version[c.version or "(base)"] = by_version.get(c.version or "(base)", 0) + 1
        clients = ", ".join(f"{v}: {n}" for v, n in sorted(by_version.items())) or "none"
        if isinstance(st, SqliteStatus):
            out.print("clients: not visible on SQLite (no pg_stat_activity)", highlight=False)
            return 0
        out.print(f"identified clients by schema version: {escape(str(clients))}", highlight=False)
        if st.unidentified_clients:
            out.print(
                f"[yellow]{len(st.unidentified_clients)} connection(s) do not identify their schema version[/] "
                "(application_name gapless:<app>:<version>:<instance>)",
                highlight=False,
            )
        return 0

    raise typer.Exit(_run(body))
