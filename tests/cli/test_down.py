"""``gapless down`` with nothing to stop: it answers at once, without starting a control plane."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gapless.cli.down import _has_rollouts
from gapless.store.records import RolloutRecord
from gapless.store.sqlite import Store


def test_has_rollouts_reads_the_state_database(tmp_path: Path) -> None:
    db = tmp_path / "state dir?#" / "state.db"  # characters a file: URI must escape
    assert not _has_rollouts(db)  # no database at all
    db.parent.mkdir()
    store = Store(db).open()
    assert not _has_rollouts(db)
    store.put_rollout(RolloutRecord("shop", {"a": 1}, 1, 1.0, 1.0))
    assert _has_rollouts(db)
    store.close()
    db.write_bytes(b"not a database" * 100)
    assert _has_rollouts(db)  # unreadable: the control plane must look


def test_down_with_no_rollout_and_no_process_starts_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    Store(state / "state.db").open().close()
    r = subprocess.run(
        [sys.executable, "-m", "gapless", "down", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "nothing runs" in r.stdout + r.stderr
    assert not (state / "control-plane.log").exists()  # no control plane was started to stop
