"""Migration events kept for the next control plane: appended by the CLI, taken in once each."""

from __future__ import annotations

import json
from pathlib import Path

from gapless.store.outbox import OUTBOX_FILE, append_event, drain_events
from gapless.store.sqlite import Store


def test_kept_events_are_taken_in_once(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = append_event(state, "migrations:shop", "m1", "MigrationStarted", "start of m1")
    append_event(state, "migrations:shop", "m1", "BackfillDone", "backfill users 5/5")
    assert path == state / OUTBOX_FILE
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    saved = path.read_text()
    with path.open("a") as f:  # a torn line, and lines that are not migration events
        f.write(
            '{"id": "x", "time": 1, "rollout": "shop", "revision": "1", "type": "Applied", "message": ""}\n'
        )
        f.write('{"id": "y", "time": 1, "rollout": "migrations:shop", "revision": "m9", "type": "Bogus"')
    store = Store(tmp_path / "state.db").open()
    try:
        assert drain_events(state, store) == 2
        assert not path.exists()
        events = store.events("migrations:shop")
        assert [(e.revision, e.type, e.message) for e in events] == [
            ("m1", "MigrationStarted", "start of m1"),
            ("m1", "BackfillDone", "backfill users 5/5"),
        ]
        first = json.loads(saved.splitlines()[0])
        assert events[0].time == first["time"]  # the time it happened, not the time it was taken in
        # Killed after the commit but before the file was removed: the same lines come again.
        path.write_text(saved)
        assert drain_events(state, store) == 0
        assert len(store.events("migrations:shop")) == 2
        assert drain_events(state, store) == 0  # no file: nothing to do
    finally:
        store.close()
