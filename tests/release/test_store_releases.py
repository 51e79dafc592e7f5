"""The release table: old state databases (schema 6, and 7 from the change-cause column) open and migrate."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gapless.store.records import ReleaseRecord
from gapless.store.sqlite import SCHEMA_VERSION, Store

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _old_database(path: Path, version: int) -> None:
    """A database as an older gapless left it: no releases table, its version in meta."""
    Store(path).open().close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE releases")
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
    db.commit()
    db.close()


@pytest.mark.parametrize("version", [6, 7])
def test_an_older_database_opens_and_gains_the_release_table(tmp_path: Path, version: int) -> None:
    """Schema 6 or 7 migrates to 8: the releases table exists and the version is written."""
    path = tmp_path / "state.db"
    _old_database(path, version)
    store = Store(path).open()
    try:
        assert store.releases() == []
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION) == "8"
        store.put_release(ReleaseRecord("r", {"a": 1}, {"phase": "Progressing"}, 1.0, 2.0))
    finally:
        store.close()
    again = Store(path).open()  # opening a current database again keeps what it holds
    try:
        assert again.find_release("r") == ReleaseRecord("r", {"a": 1}, {"phase": "Progressing"}, 1.0, 2.0)
    finally:
        again.close()


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    """A database from a newer gapless (schema 9) is not opened, so nothing of it is lost."""
    path = tmp_path / "state.db"
    _old_database(path, 9)
    with pytest.raises(RuntimeError, match="newer gapless"):
        Store(path).open()


@given(
    st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    st.dictionaries(st.text(max_size=8), json_values, max_size=5),
)
def test_a_release_is_stored_whole(doc: dict[str, object], state: dict[str, object]) -> None:
    """What put_release writes, find_release reads back unchanged, and a second put replaces it."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "state.db").open()
        try:
            store.put_release(ReleaseRecord("x", {"old": True}, {}, 0.0, 0.0))
            rec = ReleaseRecord("x", doc, state, 1.0, 3.0)
            store.put_release(rec)
            assert store.find_release("x") == rec
            assert store.releases() == [rec]
        finally:
            store.close()
