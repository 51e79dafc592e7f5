"""Regression tests of issue 14 at the store: writes on a full disk are temporary errors, a deleted state.db is restored.

Before, ``sqlite3.OperationalError: database or disk is full`` escaped from the store as it was, ended the
task that wrote (a probe, a stop) and surfaced in the API as a bare 500.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gapless.core.errors import StateWriteError
from gapless.store.sqlite import Store
from tests.small_disk import fill, small_tmpfs


def _write_until_it_fails(store: Store, ids: list[int]) -> StateWriteError:
    for i in range(100_000):  # until SQLite must grow a file
        try:
            ids.append(store.add_event(float(i), "web", "abc", "Test", "x" * 200))
        except StateWriteError as e:
            return e
    raise AssertionError("100000 writes on a full disk all succeeded")


def test_full_disk_write_is_a_state_write_error_and_recovers(tmp_path: Path) -> None:
    """On a really full disk a write fails as StateWriteError (rolled back, remembered); freed space makes it work again."""
    with small_tmpfs(tmp_path / "disk", 4) as disk:
        store = Store(disk / "state.db").open()
        try:
            filler = fill(disk)
            ids: list[int] = []
            error = _write_until_it_fails(store, ids)
            assert error.cause == "the disk is full"
            failure = store.write_failure
            assert failure is not None
            assert failure.cause == "the disk is full"
            stored = store.events("web", limit=1_000_000)
            assert [ev.id for ev in stored] == ids  # every committed write is there, the failed one is not
            filler.unlink()
            store.add_event(1.0, "web", "abc", "Test", "after")
            assert store.write_failure is None
            recovered = store.take_recovered()
            assert recovered is not None
            assert recovered.until is not None
            assert store.take_recovered() is None
        finally:
            store.close()


def test_an_existing_state_opens_and_reads_on_a_full_disk(tmp_path: Path) -> None:
    """Opening a current state.db writes nothing, so a control plane restarted on a full disk starts and reads."""
    with small_tmpfs(tmp_path / "disk", 4) as disk:
        # A control plane that was SIGKILLed: its WAL and shared-memory files stay (a clean close removes them).
        code = (
            "import os, sys; from pathlib import Path; from gapless.store.sqlite import Store; "
            "s = Store(Path(sys.argv[1])).open(); s.add_event(1.0, 'web', 'abc', 'Test', 'before'); "
            "print(s.state_id, flush=True); os._exit(0)"
        )
        run = subprocess.run(
            [sys.executable, "-c", code, str(disk / "state.db")], capture_output=True, text=True, check=True
        )
        state_id = run.stdout.strip()
        filler = fill(disk)
        try:
            store = Store(disk / "state.db").open()
            assert store.state_id == state_id
            assert [e.message for e in store.events("web")] == ["before"]
            store.close()
        finally:
            filler.unlink()


def test_a_deleted_state_db_is_restored_from_the_open_connection(tmp_path: Path) -> None:
    """Deleting state.db (and its WAL) under an open store loses nothing: the store writes it back, 0600."""
    store = Store(tmp_path / "state.db").open()
    try:
        store.add_event(1.0, "web", "abc", "Test", "before")
        state_id = store.state_id
        assert not store.restore_if_deleted()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{tmp_path / 'state.db'}{suffix}").unlink(missing_ok=True)
        assert store.restore_if_deleted()
        assert (tmp_path / "state.db").stat().st_mode & 0o777 == 0o600
        store.add_event(2.0, "web", "abc", "Test", "after")
    finally:
        store.close()
    again = Store(tmp_path / "state.db").open()
    try:
        assert again.state_id == state_id
        assert [e.message for e in again.events("web")] == ["before", "after"]
    finally:
        again.close()
