"""gapless events on a cluster: the operator's Kubernetes Events, carrying the local event's fields.

The cluster is the store. Every transition the operator makes is written once, as a Kubernetes Event
about the Rollout (``kubectl describe rollout`` shows it with its Kubernetes reason), and that Event
also carries what a local event holds, in annotations: the gapless type (``gapless.dev/type``: the
local control plane's name for the same transition, e.g. ``RevisionCreated`` where Kubernetes reads
``NewRevision``), the revision hash and its number. ``gapless events --context``, the dashboard and
Grafana read these fields, so nothing else needs to be stored, backed up or garbage-collected: the
apiserver keeps Events for its ``--event-ttl`` (one hour by default), which bounds how far back
``gapless events`` reaches on a cluster. Events written before these annotations existed are read by
their message (``revision N (HASH)``) and reason.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "EVENT_REVISION",
    "EVENT_REVISION_NUMBER",
    "EVENT_TIME",
    "EVENT_TYPE",
    "GAPLESS_TYPES",
    "event_fields",
    "event_view",
]

EVENT_TYPE = "gapless.dev/type"
EVENT_REVISION = "gapless.dev/revision"
EVENT_REVISION_NUMBER = "gapless.dev/revision-number"
EVENT_TIME = "gapless.dev/time"
"""When the operator wrote the event, in seconds since the epoch to the microsecond: an Event's own
timestamps have whole seconds, too coarse to order the several transitions of one pass."""

GAPLESS_TYPES = {
    "NewRevision": "RevisionCreated",
    "RevisionReused": "RevisionCreated",
    "RolloutCompleted": "RolloutComplete",
    "RolloutAborted": "Aborted",
}
"""Kubernetes reasons whose transition the local control plane names otherwise; every other reason
(``ProgressDeadlineExceeded``, ``AnalysisRunFailed``, ``InvalidSpec``...) is the local type already or
has no local counterpart, and is its own gapless type."""

_REVISION_RE = re.compile(r"revision (\d+)(?: \((\w+)\))?")


def event_fields(reason: str, message: str, status: dict[str, Any]) -> tuple[str, str, int | None]:
    """The gapless type, revision hash and revision number of an event the operator writes: the revision
    its message names, else the current one of the status written with it."""
    m = _REVISION_RE.search(message)
    number: int | None = int(m.group(1)) if m else None
    revision = (m.group(2) or "") if m else ""
    if not revision:
        wanted = number if number is not None else status.get("currentRevision")
        for h, rec in (status.get("revisions") or {}).items():
            if isinstance(rec, dict) and rec.get("number") == wanted:
                revision = h
                break
        else:
            if number is None:
                revision = str(status.get("currentPodHash") or "")
        if number is None and revision:
            number = _int(status.get("currentRevision"))
    return GAPLESS_TYPES.get(reason, reason), revision, number


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _epoch(value: str | None) -> float | None:
    if not value:
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def event_view(ev: dict[str, Any]) -> dict[str, Any]:
    """A Kubernetes Event about a Rollout as an item of the local ``/api/v1/events`` (plus ``reason``,
    its Kubernetes reason, ``warning`` and ``count``)."""
    meta = ev.get("metadata") or {}
    notes = meta.get("annotations") or {}
    when = (
        _float(notes.get(EVENT_TIME))
        or _epoch(ev.get("lastTimestamp"))
        or _epoch(ev.get("eventTime"))
        or _epoch(ev.get("firstTimestamp"))
        or _epoch(meta.get("creationTimestamp"))
        or 0.0
    )
    message = str(ev.get("message") or "")
    reason = str(ev.get("reason") or "")
    if EVENT_TYPE in notes:
        type_, revision, number = (
            notes[EVENT_TYPE],
            notes.get(EVENT_REVISION, ""),
            _int(notes.get(EVENT_REVISION_NUMBER)),
        )
    else:  # written before the operator annotated its Events
        m = _REVISION_RE.search(message)
        type_ = GAPLESS_TYPES.get(reason, reason)
        revision, number = ((m.group(2) or ""), int(m.group(1))) if m else ("", None)
    return {
        "id": meta.get("name"),
        "time": when,
        "rollout": (ev.get("involvedObject") or {}).get("name", ""),
        "revision": revision,
        "revisionNumber": number,
        "type": type_,
        "message": message,
        "reason": reason,
        "warning": ev.get("type") == "Warning",
        "count": int(ev.get("count") or 1),
    }
