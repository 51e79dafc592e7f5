"""Living with an unwritable state: the backoff, and events kept in order until they can be stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from gapless.controller.writes import PendingEvents, write_backoff, write_condition
from gapless.core.errors import StateWriteError
from gapless.store.sqlite import Store
from tests.small_disk import fill, small_tmpfs


@pytest.mark.parametrize(
    ("attempts", "seconds"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 5.0), (50, 5.0)]
)
def test_write_backoff_doubles_to_five_seconds(attempts: int, seconds: float) -> None:
    """Attempts wait 0.5 s, doubling, never more than 5 s."""
    assert write_backoff(attempts) == seconds


def test_events_wait_in_order_until_the_disk_has_space(tmp_path: Path) -> None:
    """Events that a full disk refused are stored later, in their order, and the condition names the cause meanwhile."""
    with small_tmpfs(tmp_path / "disk", 4) as disk:
        store = Store(disk / "state.db").open()
        pending = PendingEvents(store)
        try:
            filler = fill(disk)
            for i in range(100_000):
                try:
                    store.add_event(float(i), "web", "h", "Filler", "x" * 200)
                except StateWriteError:
                    break
            for n in range(3):
                pending.add(float(n), "web", "h", "Kept", f"event {n}")
            with pytest.raises(StateWriteError):
                pending.flush()
            assert len(pending) == 3
            condition = write_condition(store.write_failure)
            assert condition is not None
            assert condition["status"] == "False"
            assert "disk is full" in condition["message"]
            filler.unlink()
            pending.flush()
            assert len(pending) == 0
            kept = [e.message for e in store.events("web", limit=1_000_000) if e.type == "Kept"]
            assert kept == ["event 0", "event 1", "event 2"]
            assert write_condition(store.write_failure) is None
        finally:
            store.close()
