"""``gapless release history`` and ``status --watch``: what a release did, read from its events (pure).

A release's events (stream ``release:NAME``) hold every run of it: ``ReleaseApplied`` starts one, an
``undo`` starts the taking back of a finished one (``ReleaseUndo``), and ``ReleaseSucceeded``,
``ReleaseRolledBack`` or ``ReleaseFailed`` ends either. ``history_runs`` folds the events into those
runs; ``watch_lines`` says what changed between two views of a release, one line per change, for a
watcher that is not a terminal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ENDS", "history_runs", "watch_lines"]

ENDS = {"ReleaseSucceeded": "Succeeded", "ReleaseRolledBack": "RolledBack", "ReleaseFailed": "Failed"}


def history_runs(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The runs of one release, oldest first: how each began, when, how it ended, and its step events."""
    runs: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for e in events:
        kind = e["type"]
        if kind in ("ReleaseApplied", "ReleaseUndo"):
            current = {
                "began": "apply" if kind == "ReleaseApplied" else "undo",
                "startedAt": e["time"],
                "endedAt": None,
                "outcome": None,
                "message": "",
                "stepsStarted": 0,
                "stepsFailed": [],
                "stepsUndone": 0,
                "aborted": False,
            }
            runs.append(current)
            continue
        if current is None:
            continue  # events before the first apply that is still kept
        if kind == "StepStarted":
            current["stepsStarted"] += 1
        elif kind == "StepFailed":
            current["stepsFailed"].append(f"{e['revision']}: {e['message']}")
        elif kind == "StepUndone":
            current["stepsUndone"] += 1
        elif kind == "ReleaseAborted":
            current["aborted"] = True
        elif kind in ENDS and current["outcome"] is None:
            current["outcome"] = ENDS[kind]
            current["endedAt"] = e["time"]
            current["message"] = e["message"]
    return runs


def _step_line(s: Mapping[str, Any]) -> str:
    return f"step {s['index']} {s['name']}: {s['phase']}" + (f" - {s['message']}" if s.get("message") else "")


def watch_lines(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[str]:
    """One line per change from ``before`` to ``after`` (all of ``after`` when there is no before)."""
    lines: list[str] = []
    head = f"release {after['name']}: {after['phase']} - {after['message']}"
    if before is None or (before["phase"], before["message"]) != (after["phase"], after["message"]):
        lines.append(head)
    old = {s["index"]: s for s in (before or {}).get("steps", [])}
    for s in after["steps"]:
        o = old.get(s["index"])
        if o is None:
            if before is None or s["phase"] != "pending":
                lines.append(_step_line(s))
        elif (o["phase"], o["message"]) != (s["phase"], s["message"]):
            lines.append(_step_line(s))
    if before is not None and before.get("notUndoable") == after.get("notUndoable"):
        return lines
    lines += [f"step {i} cannot be undone: {why}" for i, why in after.get("notUndoable") or []]
    return lines
