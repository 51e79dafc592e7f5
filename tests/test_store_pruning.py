"""Rules of the bounded history: events per stream and the audit log.

- After ``prune_events(keep)``, every stream holds exactly its newest ``min(count, keep)`` events, with
  their ids, order and content unchanged; nothing newer than a kept event is gone.
- A spared stream (the migrations', from which the schema gate is derived) keeps every event.
- ``prune_audit(keep)`` keeps the newest ``keep`` entries; pruning twice changes nothing more.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gapless.store.sqlite import MIGRATION_STREAM_PREFIX, Store

STREAMS = ["shop", "api", "release:rename", f"{MIGRATION_STREAM_PREFIX}db"]


@given(
    writes=st.lists(st.sampled_from(STREAMS), max_size=60),
    keep=st.integers(min_value=1, max_value=8),
    spare=st.booleans(),
)
def test_prune_events_keeps_the_newest_of_each_stream(writes: list[str], keep: int, spare: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "state.db").open()
        try:
            for i, stream in enumerate(writes):
                store.add_event(float(i), stream, "", "Note", f"event {i}")
            before = store.events(limit=10_000)
            deleted = store.prune_events(keep, spare_prefix=MIGRATION_STREAM_PREFIX if spare else "")
            after = store.events(limit=10_000)
            again = store.prune_events(keep, spare_prefix=MIGRATION_STREAM_PREFIX if spare else "")
        finally:
            store.close()
    by_stream: dict[str, list[int]] = defaultdict(list)
    for e in before:
        by_stream[e.rollout].append(e.id)
    expected: set[int] = set()
    for stream, ids in by_stream.items():
        spared = spare and stream.startswith(MIGRATION_STREAM_PREFIX)
        expected.update(ids if spared else ids[-keep:])
    assert [e.id for e in after] == sorted(expected)
    assert after == [e for e in before if e.id in expected]
    assert deleted == len(before) - len(after)
    assert again == 0


@given(entries=st.integers(min_value=0, max_value=40), keep=st.integers(min_value=1, max_value=50))
def test_prune_audit_keeps_the_newest(entries: int, keep: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d) / "state.db").open()
        try:
            for i in range(entries):
                store.add_audit(float(i), "POST", f"/p/{i}", "cli", 200)
            deleted = store.prune_audit(keep)
            kept = store.audit(limit=1_000)
            again = store.prune_audit(keep)
        finally:
            store.close()
    assert [e["path"] for e in kept] == [f"/p/{i}" for i in range(max(0, entries - keep), entries)]
    assert deleted == max(0, entries - keep)
    assert again == 0


def test_prune_history_spares_the_migration_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control plane's periodic pruning uses the module's bounds and never touches migrations."""
    from gapless.store import sqlite

    monkeypatch.setattr(sqlite, "EVENTS_KEPT", 2)
    monkeypatch.setattr(sqlite, "AUDIT_KEPT", 1)
    store = Store(tmp_path / "state.db").open()
    try:
        for i in range(5):
            store.add_event(float(i), "shop", "", "Note", str(i))
            store.add_event(float(i), f"{MIGRATION_STREAM_PREFIX}db", "", "MigrationStarted", str(i))
            store.add_audit(float(i), "POST", "/x", "cli", 200)
        assert store.prune_history() == (3, 4)
        assert [e.message for e in store.events("shop")] == ["3", "4"]
        assert len(store.events(f"{MIGRATION_STREAM_PREFIX}db")) == 5
    finally:
        store.close()


def test_keep_must_be_positive(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db").open()
    try:
        with pytest.raises(ValueError, match="keep"):
            store.prune_events(0)
        with pytest.raises(ValueError, match="keep"):
            store.prune_audit(0)
    finally:
        store.close()
