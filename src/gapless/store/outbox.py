"""Migration events kept for a control plane that is not running yet.

``gapless migrate`` posts its events (``MigrationStarted``, ``BackfillDone``, ...) to the control plane of
its state directory. When none runs, it appends them to ``<state dir>/migration-events.jsonl`` instead
(one JSON object per line, written with a single ``write`` on a file opened for appending, then
fsynced), and the next control plane moves them into its event store before its first pass: schema
gating without ``--database-url`` then knows about migrations run while it was down, and nothing is lost.

Moving is idempotent: every line carries an id, the ids taken are remembered in the store in the same
transaction as the events, and the file is removed only after that commit; a control plane killed in
between finds the file again and skips what it already has.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from gapless.store.sqlite import MIGRATION_STREAM_PREFIX, Store

__all__ = ["EVENT_TYPES", "OUTBOX_FILE", "STREAM_PREFIX", "append_event", "drain_events"]

OUTBOX_FILE = "migration-events.jsonl"
STREAM_PREFIX = MIGRATION_STREAM_PREFIX
EVENT_TYPES = frozenset({"MigrationStarted", "BackfillDone", "MigrationCompleted", "MigrationRolledBack"})
_SEEN_KEY = "migration_outbox_seen"
_SEEN_KEEP = 1000
_MAX_TEXT = 2000


def append_event(state_dir: Path, rollout: str, revision: str, type_: str, message: str) -> Path:
    """Keep one event for the next control plane of ``state_dir``; returns the file."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / OUTBOX_FILE
    line = json.dumps(
        {
            "id": uuid.uuid4().hex,
            "time": time.time(),
            "rollout": rollout,
            "revision": revision,
            "type": type_,
            "message": message,
        }
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _valid(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    texts = [entry.get(k) for k in ("id", "rollout", "revision", "type", "message")]
    return (
        all(isinstance(t, str) and len(t) <= _MAX_TEXT for t in texts)
        and isinstance(entry.get("time"), int | float)
        and entry["type"] in EVENT_TYPES
        and entry["rollout"].startswith(STREAM_PREFIX)
        and bool(entry["revision"])
    )


def drain_events(state_dir: Path, store: Store) -> int:
    """Move the kept events into ``store`` (once each) and remove the file; how many were added.

    Lines that are not valid events (a torn last line, an edited file) are skipped.
    """
    path = state_dir / OUTBOX_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return 0
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if _valid(entry):
            entries.append(entry)
    seen: list[str] = json.loads(store.get_meta(_SEEN_KEY) or "[]")
    fresh = [e for e in entries if e["id"] not in set(seen)]
    with store.transaction():
        for e in fresh:
            store.add_event(float(e["time"]), e["rollout"], e["revision"], e["type"], e["message"])
        store.set_meta(_SEEN_KEY, json.dumps((seen + [e["id"] for e in fresh])[-_SEEN_KEEP:]))
    # Only what was read goes: a line appended since stays for the next drain.
    try:
        now = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return len(fresh)
    if now == text:
        path.unlink(missing_ok=True)
    return len(fresh)
