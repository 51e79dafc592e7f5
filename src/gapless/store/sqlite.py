"""SQLite store of the control plane.

Every mutation is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), so a crash at any line leaves
either the old or the new state. WAL mode keeps readers (the CLI's ``status``) from blocking the writer.
Calls are synchronous and short (a local file, a handful of rows); the control plane makes them from
its event loop deliberately: they take well under a millisecond and ordering stays obvious.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

from gapless.core.errors import NotFoundError, StateWriteError
from gapless.store.records import (
    AnalysisRunRecord,
    AnalysisTemplateRecord,
    EventRecord,
    InstanceRecord,
    ReleaseRecord,
    RevisionRecord,
    RolloutRecord,
)
from gapless.store.write_errors import WriteFailure, write_error

__all__ = ["AUDIT_KEPT", "EVENTS_KEPT", "MIGRATION_STREAM_PREFIX", "Store", "WriteFailure"]

SCHEMA_VERSION = 8

#: Events kept per stream (a rollout's, a release's) and audit entries kept in all; older ones are
#: pruned now and then (``Store.prune_history``). The migrations' streams are never pruned: the schema
#: gate is derived from them.
EVENTS_KEPT = 10_000
AUDIT_KEPT = 100_000
MIGRATION_STREAM_PREFIX = "migrations:"
"""6 -> 7 and 7 -> 8 are steps of ``_UPGRADES`` (keyed by the version they upgrade from) or of ``_migrate``."""
_STATE_ID = "state_id"
_ADOPTED_IDS = "adopted_state_ids"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rollouts (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    generation INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT '{}',
    deleting INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS revisions (
    rollout TEXT NOT NULL,
    hash TEXT NOT NULL,
    number INTEGER NOT NULL,
    template TEXT NOT NULL,
    created_at REAL NOT NULL,
    phase TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    progress_at REAL,
    step_state TEXT NOT NULL DEFAULT '{}',
    completed_at REAL,
    change_cause TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (rollout, hash)
);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    rollout TEXT NOT NULL,
    revision TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    log_path TEXT NOT NULL,
    pid INTEGER,
    pgid INTEGER,
    port INTEGER,
    started_at REAL,
    ready INTEGER NOT NULL DEFAULT 0,
    ready_since REAL,
    restarts INTEGER NOT NULL DEFAULT 0,
    next_start_at REAL,
    message TEXT NOT NULL DEFAULT '',
    restart_pending INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS instances_by_rollout ON instances (rollout);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    rollout TEXT NOT NULL,
    revision TEXT NOT NULL,
    type TEXT NOT NULL,
    message TEXT NOT NULL,
    revision_number INTEGER
);
CREATE INDEX IF NOT EXISTS events_by_rollout ON events (rollout, id);
CREATE TABLE IF NOT EXISTS analysis_templates (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    generation INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS analysis_runs (
    id TEXT PRIMARY KEY,
    rollout TEXT NOT NULL,
    revision TEXT NOT NULL,
    key TEXT NOT NULL,
    phase TEXT NOT NULL,
    created_at REAL NOT NULL,
    spec TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '[]',
    message TEXT NOT NULL DEFAULT '',
    finished_at REAL,
    active INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS analysis_runs_by_rollout ON analysis_runs (rollout, created_at);
CREATE TABLE IF NOT EXISTS series_points (
    rollout TEXT NOT NULL,
    revision TEXT NOT NULL,
    t REAL NOT NULL,
    point TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS series_points_by_rollout ON series_points (rollout, t);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    via TEXT NOT NULL,
    status INTEGER NOT NULL
);
"""


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")


_INSTANCE_COLS = [f.name for f in fields(InstanceRecord)]
_REVISION_COLS = [f.name for f in fields(RevisionRecord)]
_RUN_COLS = [f.name for f in fields(AnalysisRunRecord)]


class Store:
    """The state database in ``<state_dir>/state.db``. Inert until ``open()``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._failure: WriteFailure | None = None
        self._recovered: WriteFailure | None = None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0, check_same_thread=False)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a committed transaction survives a crash of any gapless process (the case that
        # matters: the control plane is killed); only a power cut may lose the last commits, never
        # consistency. FULL would fsync every status write and slow every pass.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def open(self) -> Store:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect()
        self._db = db
        with self.transaction():
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} was written by a newer gapless (schema {row[0]} > {SCHEMA_VERSION})"
                )
            _migrate(db)
            _upgrade(db, 0 if row is None else int(row[0]))
            if row is None or int(row[0]) != SCHEMA_VERSION:
                # Written only when it changes: opening a current database writes nothing, so a control
                # plane can start (and serve reads) while the disk under it is full.
                db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                    (str(SCHEMA_VERSION),),
                )
            db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (_STATE_ID, uuid.uuid4().hex))
        return self

    def restore_if_deleted(self) -> bool:
        """Write the open database back to ``path`` if its file was deleted meanwhile; whether it was.

        The connection keeps a deleted file (and its WAL) readable, so nothing is lost until this process
        ends; a consistent copy (SQLite's online backup) put back in place, atomically, keeps it so for the
        next control plane. A file that is there but another one (replaced) is left alone: the next start
        tells its records from the running processes. Raises ``StateWriteError`` when it cannot write.
        """
        if self.path.exists():
            return False
        tmp = self.path.with_name(f".{self.path.name}.restore")
        try:
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
            copy = sqlite3.connect(tmp)
            try:
                self.db.backup(copy)
                copy.execute("PRAGMA journal_mode=WAL")
            finally:
                copy.close()
            os.replace(tmp, self.path)
        except (sqlite3.OperationalError, OSError) as e:
            tmp.unlink(missing_ok=True)
            error = write_error(e)
            if error is None:
                raise
            raise error from e
        old, self._db = self._db, self._connect()
        if old is not None:
            old.close()
        return True

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; a write that fails for want of space or permission is a ``StateWriteError``.

        Such a failure rolls back everything of the transaction, so the state stays the old one; the
        store remembers it (``write_failure``) until a later transaction commits.
        """
        db = self.db
        if db.in_transaction:
            yield db
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                _rollback(db)
                raise
            try:
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)  # a failed COMMIT (SQLITE_FULL) may leave the transaction open
                raise
        except (sqlite3.OperationalError, OSError) as e:
            error = write_error(e)
            if error is None:
                raise
            self._failed(error)
            raise error from e
        self._committed()

    @property
    def write_failure(self) -> WriteFailure | None:
        """The ongoing failure to write (since when, why, how many attempts), or None when writes work."""
        return self._failure

    def take_recovered(self) -> WriteFailure | None:
        """The last failure to write that has ended since the previous call (to report it once)."""
        recovered, self._recovered = self._recovered, None
        return recovered

    def _failed(self, error: StateWriteError) -> None:
        now = time.time()
        f = self._failure
        self._failure = WriteFailure(
            since=now if f is None else f.since,
            cause=error.cause,
            message=str(error),
            attempts=1 if f is None else f.attempts + 1,
            until=None,
        )

    def _committed(self) -> None:
        if self._failure is not None:
            self._recovered = replace(self._failure, until=time.time())
            self._failure = None

    # -- meta ---------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    @property
    def state_id(self) -> str:
        """This database's identity, made when it was created; processes it starts carry it."""
        value = self.get_meta(_STATE_ID)
        if value is None:
            raise RuntimeError("store is not open")
        return value

    def known_state_ids(self) -> set[str]:
        """This database's identity and those of lost databases whose processes it adopted."""
        adopted = json.loads(self.get_meta(_ADOPTED_IDS) or "[]")
        return {self.state_id, *adopted}

    def add_known_state_ids(self, ids: Iterable[str]) -> None:
        """Count processes marked with these identities as this database's own (after an adoption)."""
        with self.transaction():
            known = set(json.loads(self.get_meta(_ADOPTED_IDS) or "[]")) | set(ids)
            known.discard(self.state_id)
            self.set_meta(_ADOPTED_IDS, json.dumps(sorted(known)))

    # -- rollouts -----------------------------------------------------------------------------------

    def rollouts(self) -> list[RolloutRecord]:
        rows = self.db.execute("SELECT * FROM rollouts ORDER BY name").fetchall()
        return [_rollout(r) for r in rows]

    def rollout(self, name: str) -> RolloutRecord:
        row = self.db.execute("SELECT * FROM rollouts WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"rollout {name!r} not found")
        return _rollout(row)

    def find_rollout(self, name: str) -> RolloutRecord | None:
        row = self.db.execute("SELECT * FROM rollouts WHERE name=?", (name,)).fetchone()
        return None if row is None else _rollout(row)

    def put_rollout(self, rec: RolloutRecord) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO rollouts (name, spec, generation, created_at, updated_at, status, deleting) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET spec=excluded.spec, "
                "generation=excluded.generation, updated_at=excluded.updated_at, status=excluded.status, "
                "deleting=excluded.deleting",
                (
                    rec.name,
                    json.dumps(rec.spec),
                    rec.generation,
                    rec.created_at,
                    rec.updated_at,
                    json.dumps(rec.status),
                    int(rec.deleting),
                ),
            )

    def set_status(self, name: str, status: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("UPDATE rollouts SET status=? WHERE name=?", (json.dumps(status), name))

    def delete_rollout(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM instances WHERE rollout=?", (name,))
            db.execute("DELETE FROM revisions WHERE rollout=?", (name,))
            db.execute("DELETE FROM analysis_runs WHERE rollout=?", (name,))
            db.execute("DELETE FROM rollouts WHERE name=?", (name,))

    # -- revisions ----------------------------------------------------------------------------------

    def revisions(self, rollout: str) -> list[RevisionRecord]:
        rows = self.db.execute(
            "SELECT * FROM revisions WHERE rollout=? ORDER BY number", (rollout,)
        ).fetchall()
        return [_revision(r) for r in rows]

    def put_revision(self, rec: RevisionRecord) -> None:
        with self.transaction() as db:
            row = asdict(rec) | {
                "template": json.dumps(rec.template),
                "step_state": json.dumps(rec.step_state),
            }
            _upsert(db, "revisions", row, ("rollout", "hash"))

    def delete_revision(self, rollout: str, hash_: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM revisions WHERE rollout=? AND hash=?", (rollout, hash_))

    # -- instances ----------------------------------------------------------------------------------

    def instances(self, rollout: str | None = None) -> list[InstanceRecord]:
        if rollout is None:
            rows = self.db.execute("SELECT * FROM instances ORDER BY created_at, id").fetchall()
        else:
            rows = self.db.execute(
                "SELECT * FROM instances WHERE rollout=? ORDER BY created_at, id", (rollout,)
            ).fetchall()
        return [_instance(r) for r in rows]

    def find_instance(self, id_: str) -> InstanceRecord | None:
        row = self.db.execute("SELECT * FROM instances WHERE id=?", (id_,)).fetchone()
        return None if row is None else _instance(row)

    def put_instance(self, rec: InstanceRecord) -> None:
        with self.transaction() as db:
            _upsert(db, "instances", asdict(rec), ("id",))

    def update_instance(self, id_: str, **changes: Any) -> InstanceRecord:
        with self.transaction() as db:
            row = db.execute("SELECT * FROM instances WHERE id=?", (id_,)).fetchone()
            if row is None:
                raise NotFoundError(f"instance {id_!r} not found")
            rec = replace(_instance(row), **changes)
            _upsert(db, "instances", asdict(rec), ("id",))
            return rec

    def delete_instance(self, id_: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM instances WHERE id=?", (id_,))

    # -- events -------------------------------------------------------------------------------------

    def add_event(self, time: float, rollout: str, revision: str, type_: str, message: str) -> int:
        with self.transaction() as db:
            # The revision's number when the event happened (numbers move on when a revision is rolled
            # out again); NULL for events of no revision or of one not created yet.
            cur = db.execute(
                "INSERT INTO events (time, rollout, revision, type, message, revision_number) "
                "VALUES (?, ?, ?, ?, ?, (SELECT number FROM revisions WHERE rollout=? AND hash=?))",
                (time, rollout, revision, type_, message, rollout, revision),
            )
            return int(cur.lastrowid or 0)

    def events(self, rollout: str | None = None, since_id: int = 0, limit: int = 1000) -> list[EventRecord]:
        if rollout is None:
            rows = self.db.execute(
                "SELECT * FROM events WHERE id>? ORDER BY id LIMIT ?", (since_id, limit)
            ).fetchall()
        else:
            rows = self.db.execute(
                "SELECT * FROM events WHERE rollout=? AND id>? ORDER BY id LIMIT ?",
                (rollout, since_id, limit),
            ).fetchall()
        return [EventRecord(**dict(r)) for r in rows]

    def prune_events(self, keep: int, *, spare_prefix: str = "") -> int:
        """Keep only the newest ``keep`` events of each stream; how many older ones were deleted.

        Streams whose name starts with ``spare_prefix`` (when given) are not touched: the migrations'
        streams are the record the schema gate is derived from, and they stay small. Readers page by
        event id, so a reader that was behind simply continues from the oldest event kept.
        """
        if keep < 1:
            raise ValueError("keep must be at least 1")
        with self.transaction() as db:
            crowded = db.execute(
                "SELECT rollout FROM events GROUP BY rollout HAVING COUNT(*) > ?", (keep,)
            ).fetchall()
            deleted = 0
            for (stream,) in crowded:
                if spare_prefix and stream.startswith(spare_prefix):
                    continue
                cur = db.execute(
                    "DELETE FROM events WHERE rollout=? AND id < (SELECT id FROM events WHERE rollout=? "
                    "ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (stream, stream, keep - 1),
                )
                deleted += cur.rowcount
            return deleted

    def events_of_streams(self, prefix: str, types: Iterable[str]) -> list[EventRecord]:
        """Events of every stream (rollout name) starting with ``prefix``, of the given types, oldest first."""
        kinds = sorted(set(types))
        marks = ", ".join("?" for _ in kinds)
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self.db.execute(
            f"SELECT * FROM events WHERE rollout LIKE ? ESCAPE '\\' AND type IN ({marks}) ORDER BY id",  # noqa: S608 - placeholders only
            (escaped + "%", *kinds),
        ).fetchall()
        return [EventRecord(**dict(r)) for r in rows]

    # -- dashboard series ------------------------------------------------------------------------------

    def add_series_points(self, rollout: str, points: Iterable[tuple[str, float, dict[str, Any]]]) -> None:
        """Keep chart points (revision, time, values) of one rollout, in one transaction."""
        rows = [(rollout, rev, t, json.dumps(point)) for rev, t, point in points]
        if rows:
            with self.transaction() as db:
                db.executemany("INSERT INTO series_points VALUES (?, ?, ?, ?)", rows)

    def series_points(self, since: float) -> list[tuple[str, str, float, dict[str, Any]]]:
        """Every kept point newer than ``since``: (rollout, revision, time, values), oldest first."""
        rows = self.db.execute(
            "SELECT rollout, revision, t, point FROM series_points WHERE t > ? ORDER BY t", (since,)
        ).fetchall()
        return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    def prune_series(self, before: float, keep: Iterable[str] | None = None) -> None:
        """Forget points older than ``before``, and those of rollouts not in ``keep`` (if given)."""
        with self.transaction() as db:
            db.execute("DELETE FROM series_points WHERE t < ?", (before,))
            if keep is not None:
                names = sorted(set(keep))
                marks = ", ".join("?" for _ in names)
                db.execute(f"DELETE FROM series_points WHERE rollout NOT IN ({marks})", names)  # noqa: S608 - placeholders

    # -- audit ----------------------------------------------------------------------------------------

    def add_audit(self, time: float, method: str, path: str, via: str, status: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO audit (time, method, path, via, status) VALUES (?, ?, ?, ?, ?)",
                (time, method, path, via, status),
            )

    def prune_history(self) -> tuple[int, int]:
        """Bound the two append-only tables (``EVENTS_KEPT`` per stream, ``AUDIT_KEPT`` in all), sparing
        the migrations' streams; the events and audit entries deleted. Run now and then by the control
        plane, so a long-lived state directory does not grow without end."""
        return self.prune_events(EVENTS_KEPT, spare_prefix=MIGRATION_STREAM_PREFIX), self.prune_audit(
            AUDIT_KEPT
        )

    def prune_audit(self, keep: int) -> int:
        """Keep only the newest ``keep`` audit entries; how many older ones were deleted."""
        if keep < 1:
            raise ValueError("keep must be at least 1")
        with self.transaction() as db:
            cur = db.execute(
                "DELETE FROM audit WHERE id < (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (keep - 1,),
            )
            return cur.rowcount

    def audit(self, since_id: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT * FROM audit WHERE id>? ORDER BY id LIMIT ?", (since_id, limit)
        ).fetchall()
        return [dict(r) for r in rows]

    # -- analysis -----------------------------------------------------------------------------------

    def analysis_templates(self) -> list[AnalysisTemplateRecord]:
        rows = self.db.execute("SELECT * FROM analysis_templates ORDER BY name").fetchall()
        return [_template(r) for r in rows]

    def find_analysis_template(self, name: str) -> AnalysisTemplateRecord | None:
        row = self.db.execute("SELECT * FROM analysis_templates WHERE name=?", (name,)).fetchone()
        return None if row is None else _template(row)

    def put_analysis_template(self, rec: AnalysisTemplateRecord) -> None:
        with self.transaction() as db:
            _upsert(db, "analysis_templates", asdict(rec) | {"spec": json.dumps(rec.spec)}, ("name",))

    def delete_analysis_template(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM analysis_templates WHERE name=?", (name,))

    def analysis_runs(self, rollout: str, revision: str | None = None) -> list[AnalysisRunRecord]:
        if revision is None:
            rows = self.db.execute(
                "SELECT * FROM analysis_runs WHERE rollout=? ORDER BY created_at, id", (rollout,)
            ).fetchall()
        else:
            rows = self.db.execute(
                "SELECT * FROM analysis_runs WHERE rollout=? AND revision=? ORDER BY created_at, id",
                (rollout, revision),
            ).fetchall()
        return [_run(r) for r in rows]

    def find_analysis_run(self, id_: str) -> AnalysisRunRecord | None:
        row = self.db.execute("SELECT * FROM analysis_runs WHERE id=?", (id_,)).fetchone()
        return None if row is None else _run(row)

    def put_analysis_run(self, rec: AnalysisRunRecord) -> None:
        with self.transaction() as db:
            row = asdict(rec) | {"spec": json.dumps(rec.spec), "metrics": json.dumps(rec.metrics)}
            _upsert(db, "analysis_runs", row, ("id",))

    def deactivate_analysis_runs(self, rollout: str, revision: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE analysis_runs SET active=0 WHERE rollout=? AND revision=?", (rollout, revision)
            )

    def delete_analysis_runs(self, rollout: str, revisions_kept: set[str]) -> None:
        """Forget the runs of revisions that are no longer in the history."""
        with self.transaction() as db:
            for row in db.execute(
                "SELECT DISTINCT revision FROM analysis_runs WHERE rollout=?", (rollout,)
            ).fetchall():
                if row[0] not in revisions_kept:
                    db.execute("DELETE FROM analysis_runs WHERE rollout=? AND revision=?", (rollout, row[0]))

    # -- releases -----------------------------------------------------------------------------------

    def releases(self) -> list[ReleaseRecord]:
        rows = self.db.execute("SELECT * FROM releases ORDER BY created_at, name").fetchall()
        return [_release(r) for r in rows]

    def find_release(self, name: str) -> ReleaseRecord | None:
        row = self.db.execute("SELECT * FROM releases WHERE name=?", (name,)).fetchone()
        return None if row is None else _release(row)

    def put_release(self, rec: ReleaseRecord) -> None:
        """Store a release whole (document and state) in one transaction."""
        with self.transaction() as db:
            _upsert(
                db,
                "releases",
                {
                    "name": rec.name,
                    "doc": json.dumps(rec.doc),
                    "state": json.dumps(rec.state),
                    "created_at": rec.created_at,
                    "updated_at": rec.updated_at,
                },
                ("name",),
            )


def _release(r: sqlite3.Row) -> ReleaseRecord:
    return ReleaseRecord(
        name=r["name"],
        doc=json.loads(r["doc"]),
        state=json.loads(r["state"]),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _template(r: sqlite3.Row) -> AnalysisTemplateRecord:
    return AnalysisTemplateRecord(
        name=r["name"], spec=json.loads(r["spec"]), generation=r["generation"], updated_at=r["updated_at"]
    )


def _run(r: sqlite3.Row) -> AnalysisRunRecord:
    d = {c: r[c] for c in _RUN_COLS}
    d["spec"] = json.loads(d["spec"])
    d["metrics"] = json.loads(d["metrics"])
    d["active"] = bool(d["active"])
    return AnalysisRunRecord(**d)


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a database written by an older gapless up to date, in the open transaction."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(revisions)")}
    if "step_state" not in columns:  # schema 1 -> 2: canary and blue-green progress
        db.execute("ALTER TABLE revisions ADD COLUMN step_state TEXT NOT NULL DEFAULT '{}'")
    if "completed_at" not in columns:  # schema 5 -> 6: undo goes to the last revision that completed
        db.execute("ALTER TABLE revisions ADD COLUMN completed_at REAL")
    if "change_cause" not in columns:  # schema 6 -> 7: `apply --change-cause`, kept per revision
        db.execute("ALTER TABLE revisions ADD COLUMN change_cause TEXT NOT NULL DEFAULT ''")
    if "revision_number" not in {r[1] for r in db.execute("PRAGMA table_info(events)")}:  # 6 -> 7
        db.execute("ALTER TABLE events ADD COLUMN revision_number INTEGER")


_UPGRADES: dict[int, str] = {
    # 7 -> 8: the state of each release (kind: Release): its document, each step's phase and record.
    7: """
    CREATE TABLE IF NOT EXISTS releases (
        name TEXT PRIMARY KEY,
        doc TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )
    """,
}
"""Schema steps by the version they upgrade from; each only adds (``IF NOT EXISTS``), so it may run again."""


def _upgrade(db: sqlite3.Connection, version: int) -> None:
    """Run every step of ``_UPGRADES`` from ``version`` on (a new database: every step)."""
    for start in sorted(_UPGRADES):
        if start >= version or version == 0:
            db.execute(_UPGRADES[start])


def _upsert(db: sqlite3.Connection, table: str, row: dict[str, Any], key: tuple[str, ...]) -> None:
    cols = list(row)
    placeholders = ", ".join("?" for _ in cols)
    updates = ", ".join(f"{c}=excluded.{c}" for c in cols if c not in key)
    sql = (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({placeholders}) "  # noqa: S608 -- names are ours
        f"ON CONFLICT({', '.join(key)}) DO UPDATE SET {updates}"
    )
    db.execute(sql, [int(v) if isinstance(v, bool) else v for v in row.values()])


def _rollout(r: sqlite3.Row) -> RolloutRecord:
    return RolloutRecord(
        name=r["name"],
        spec=json.loads(r["spec"]),
        generation=r["generation"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        status=json.loads(r["status"]),
        deleting=bool(r["deleting"]),
    )


def _revision(r: sqlite3.Row) -> RevisionRecord:
    d = {c: r[c] for c in _REVISION_COLS}
    d["template"] = json.loads(d["template"])
    d["step_state"] = json.loads(d["step_state"])
    return RevisionRecord(**d)


def _instance(r: sqlite3.Row) -> InstanceRecord:
    d = {c: r[c] for c in _INSTANCE_COLS}
    d["ready"] = bool(d["ready"])
    d["restart_pending"] = bool(d["restart_pending"])
    return InstanceRecord(**d)
