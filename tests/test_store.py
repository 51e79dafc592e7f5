"""The SQLite store: transactions are all-or-nothing and state survives reopening."""

from __future__ import annotations

from pathlib import Path

import pytest

from gapless.core.errors import NotFoundError
from gapless.store.records import InstanceRecord, RevisionRecord, RolloutRecord
from gapless.store.sqlite import SCHEMA_VERSION, Store


def test_roundtrip_and_reopen(tmp_path: Path) -> None:
    """Rollouts, revisions, instances and events read back the same after reopening the file."""
    s = Store(tmp_path / "state.db").open()
    s.put_rollout(RolloutRecord("shop", {"a": 1}, 1, 1.0, 1.0))
    s.put_revision(RevisionRecord("shop", "abc", 1, {"command": ["x"]}, 2.0, "progressing", progress_at=2.0))
    s.put_instance(
        InstanceRecord("i1", "shop", "abc", "running", 3.0, "/tmp/x.log", pid=10, port=99, ready=True)
    )
    s.add_event(4.0, "shop", "abc", "Applied", "hello")
    s.close()
    s = Store(tmp_path / "state.db").open()
    assert s.rollout("shop").spec == {"a": 1}
    assert s.revisions("shop")[0].template == {"command": ["x"]}
    inst = s.instances("shop")[0]
    assert (inst.pid, inst.port, inst.ready) == (10, 99, True)
    assert [e.message for e in s.events("shop")] == ["hello"]
    s.close()


def test_failed_transaction_changes_nothing(tmp_path: Path) -> None:
    """An exception inside a transaction rolls every write of it back."""
    s = Store(tmp_path / "state.db").open()
    s.put_rollout(RolloutRecord("shop", {"v": 1}, 1, 1.0, 1.0))
    with pytest.raises(RuntimeError), s.transaction():  # noqa: PT012 -- the whole transaction is under test
        s.put_rollout(RolloutRecord("shop", {"v": 2}, 2, 1.0, 2.0))
        s.add_event(1.0, "shop", "", "X", "y")
        raise RuntimeError("crash in the middle")
    assert s.rollout("shop").spec == {"v": 1}
    assert s.events() == []


def test_missing_rollout_and_instance(tmp_path: Path) -> None:
    """Unknown names raise NotFoundError."""
    s = Store(tmp_path / "state.db").open()
    with pytest.raises(NotFoundError):
        s.rollout("nope")
    with pytest.raises(NotFoundError):
        s.update_instance("nope", ready=True)


def test_schema_1_database_is_migrated(tmp_path: Path) -> None:
    """A database from schema 1 (no step_state column) opens, gains the column and keeps its rows."""
    import sqlite3

    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE revisions (rollout TEXT NOT NULL, hash TEXT NOT NULL, number INTEGER NOT NULL, "
        "template TEXT NOT NULL, created_at REAL NOT NULL, phase TEXT NOT NULL, message TEXT NOT NULL DEFAULT '', "
        "progress_at REAL, PRIMARY KEY (rollout, hash))"
    )
    db.execute("INSERT INTO revisions VALUES ('shop', 'abc', 1, '{}', 1.0, 'complete', '', NULL)")
    db.commit()
    db.close()
    s = Store(path).open()
    [rev] = s.revisions("shop")
    assert (rev.phase, rev.step_state) == ("complete", {})
    assert s.get_meta("schema_version") == str(SCHEMA_VERSION)


def test_schema_6_database_gains_change_causes_and_event_numbers(tmp_path: Path) -> None:
    """A schema 6 database opens, keeps its rows, and then stores change causes and events' revision numbers."""
    import sqlite3

    path = tmp_path / "state.db"
    s = Store(path).open()
    s.put_revision(RevisionRecord("shop", "abc", 1, {"command": ["x"]}, 2.0, "complete"))
    s.add_event(3.0, "shop", "abc", "Applied", "old")
    s.close()
    db = sqlite3.connect(path)  # what gapless with schema 6 wrote: neither column
    db.execute("ALTER TABLE revisions DROP COLUMN change_cause")
    db.execute("ALTER TABLE events DROP COLUMN revision_number")
    db.execute("UPDATE meta SET value='6' WHERE key='schema_version'")
    db.commit()
    db.close()

    s = Store(path).open()
    assert s.get_meta("schema_version") == str(SCHEMA_VERSION)
    [old] = s.revisions("shop")
    assert (old.number, old.change_cause) == (1, "")
    [event] = s.events("shop")
    assert (event.message, event.revision_number) == ("old", None)
    s.put_revision(RevisionRecord("shop", "def", 2, {}, 4.0, "progressing", change_cause="bump to 2.0"))
    s.add_event(5.0, "shop", "def", "RevisionCreated", "new")
    s.close()
    s = Store(path).open()
    assert [r.change_cause for r in s.revisions("shop")] == ["", "bump to 2.0"]
    assert [e.revision_number for e in s.events("shop")] == [None, 2]
    assert s.events("shop")[1].to_json()["revisionNumber"] == 2
    assert s.releases() == []  # schema 7 -> 8 added the release table


def test_analysis_templates_and_runs_round_trip(tmp_path: Path) -> None:
    from gapless.store.records import AnalysisRunRecord, AnalysisTemplateRecord

    s = Store(tmp_path / "state.db").open()
    s.put_analysis_template(AnalysisTemplateRecord("errors", {"spec": {"metrics": []}}, 1, 5.0))
    assert s.find_analysis_template("errors") == AnalysisTemplateRecord(
        "errors", {"spec": {"metrics": []}}, 1, 5.0
    )
    assert s.find_analysis_template("nope") is None
    run = AnalysisRunRecord("r1", "web", "abc", "step-1", "running", 1.0, {"t": 1}, [{"name": "m"}])
    s.put_analysis_run(run)
    s.put_analysis_run(AnalysisRunRecord("r2", "web", "def", "background", "failed", 2.0, finished_at=3.0))
    assert s.analysis_runs("web", "abc") == [run]
    assert [r.id for r in s.analysis_runs("web")] == ["r1", "r2"]
    s.deactivate_analysis_runs("web", "abc")
    assert s.find_analysis_run("r1") is not None
    assert not s.find_analysis_run("r1").active  # type: ignore[union-attr]
    s.delete_analysis_runs("web", {"def"})
    assert [r.id for r in s.analysis_runs("web")] == ["r2"]
    s.delete_analysis_template("errors")
    assert s.analysis_templates() == []
    s.close()
