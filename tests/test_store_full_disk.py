"""Regression test of issue 14: a state write on a full disk is a temporary ``StateWriteError``, and nothing is lost.

Before, ``sqlite3.OperationalError: database or disk is full`` escaped from the store as it was, ended the
task that wrote (a probe, a stop) and surfaced in the API as a bare 500.
"""

from __future__ import annotations

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
