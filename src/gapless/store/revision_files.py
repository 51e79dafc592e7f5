"""Each revision's template in a small file of its own, so running instances outlive a lost ``state.db``.

A running instance carries its rollout, instance id, revision hash and port in its environment (the
platform's markers), and the router keeps its last configuration in ``routers/NAME.json``. What neither
holds is the template (probes, grace period, preStop) an instance was started from. So the controller
writes ``revisions/<rollout>/<hash>.json`` (mode 0600, atomically: temp file, fsync, rename) when a
revision is created, again before any instance of it starts and whenever its step state (a canary's
step and weight, a blue-green switch) changes, and removes it with the revision.
``gapless up --adopt`` reads these files to rebuild the records of the processes it takes over, and
the revision history with them.

A template never changes under its hash, so an existing file is not written again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "REVISIONS_DIR",
    "SavedRevision",
    "forget_revision",
    "forget_rollout",
    "load_revisions",
    "save_revision",
]

REVISIONS_DIR = "revisions"
_HASH_RE = re.compile(r"^[0-9a-f]{6,64}$")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SavedRevision:
    """A revision as kept beside the database: enough to adopt its instances and show it in history."""

    rollout: str
    hash: str
    number: int
    template: dict[str, Any]
    created_at: float
    step_state: dict[str, Any] = field(default_factory=dict)
    """A canary's or blue-green's progress (``gapless.strategies.plan.StepState``), so an adopted rollout
    resumes at its step with its weights instead of starting over."""


def _dir(state_dir: Path, rollout: str) -> Path:
    return state_dir / REVISIONS_DIR / rollout


def save_revision(state_dir: Path, rev: SavedRevision, *, update: bool = False) -> None:
    """Keep ``rev`` in its file unless it is there already (``update``: write it anyway, for a new step
    state); raises ``OSError`` when it cannot be written."""
    d = _dir(state_dir, rev.rollout)
    path = d / f"{rev.hash}.json"
    if path.exists() and not update:
        return
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {
        "rollout": rev.rollout,
        "hash": rev.hash,
        "number": rev.number,
        "template": rev.template,
        "createdAt": rev.created_at,
        "stepState": rev.step_state,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{rev.hash}.", suffix=".tmp", dir=d)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(data, sort_keys=True).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_revisions(state_dir: Path, rollout: str) -> list[SavedRevision]:
    """The kept revisions of ``rollout``, oldest number first; unreadable or malformed files are skipped."""
    out = []
    d = _dir(state_dir, rollout)
    try:
        paths = sorted(d.glob("*.json"))
    except OSError:
        return []
    for path in paths:
        try:
            data = json.loads(path.read_bytes())
            rev = SavedRevision(
                rollout=str(data["rollout"]),
                hash=str(data["hash"]),
                number=int(data["number"]),
                template=dict(data["template"]),
                created_at=float(data["createdAt"]),
                step_state=dict(data.get("stepState") or {}),
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("skipping revision file %s: %s", path, e)
            continue
        if rev.rollout == rollout and rev.hash == path.stem and _HASH_RE.match(rev.hash):
            out.append(rev)
    return sorted(out, key=lambda r: r.number)


def forget_revision(state_dir: Path, rollout: str, hash_: str) -> None:
    (_dir(state_dir, rollout) / f"{hash_}.json").unlink(missing_ok=True)


def forget_rollout(state_dir: Path, rollout: str) -> None:
    d = _dir(state_dir, rollout)
    for path in d.glob("*"):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        d.rmdir()
