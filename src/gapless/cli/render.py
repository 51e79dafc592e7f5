"""Rich renderings of rollout status, history and events for the terminal."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

__all__ = ["phase_style", "render_events", "render_history", "render_list", "render_status", "summary_line"]

_PHASE_STYLE = {
    "Healthy": "bold green",
    "Progressing": "bold cyan",
    "Paused": "bold yellow",
    "Degraded": "bold yellow",
    "Failed": "bold red",
}


def phase_style(phase: str) -> str:
    return _PHASE_STYLE.get(phase, "bold")


def _age(ts: float | None) -> str:
    if not ts:
        return "-"
    s = max(0, int(time.time() - ts))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h"


def summary_line(status: dict[str, Any]) -> Text:
    """One line: phase, revision and replica counts, as shown while waiting."""
    phase = status.get("phase", "Pending")
    t = Text()
    t.append(f"{status.get('name', '?')} ", style="bold")
    t.append(phase, style=phase_style(phase))
    t.append(
        f"  revision {status.get('currentRevision', '-')}"
        f"  updated {status.get('updatedReplicas', 0)}/{status.get('replicas', 0)}"
        f"  ready {status.get('readyReplicas', 0)}"
        f"  available {status.get('availableReplicas', 0)}"
        f"  instances {status.get('totalInstances', 0)}"
    )
    if status.get("terminatingReplicas"):
        t.append(f" ({status['terminatingReplicas']} terminating)")
    strategy = status.get("strategy") or {}
    if strategy.get("type") == "Canary" and "stepIndex" in strategy:
        t.append(f"  step {strategy['stepIndex'] + 1}/{strategy.get('steps', 0)}")
    if strategy.get("weights"):
        t.append("  weights " + " ".join(f"r{r}:{w}%" for r, w in strategy["weights"].items()))
    if strategy.get("pauseRemaining") is not None:
        t.append(f"  pause {strategy['pauseRemaining']:.0f}s left")
    if status.get("message"):
        t.append(f"  {status['message']}", style="yellow")
    return t


def render_status(status: dict[str, Any]) -> RenderableType:
    head = summary_line(status)
    router = status.get("router") or {}
    info = Text(
        f"listen {router.get('listen', '-')}  router pid {router.get('pid') or '-'}"
        f"  backends {router.get('backends', 0)}  stable revision {status.get('stableRevision') or '-'}"
    )
    cond = Table(box=None, show_header=True, header_style="bold")
    for col in ("CONDITION", "STATUS", "REASON", "MESSAGE"):
        cond.add_column(col)
    for c in status.get("conditions", []):
        cond.add_row(c["type"], c["status"], c["reason"], c.get("message", ""))
    inst = Table(box=None, show_header=True, header_style="bold")
    for col in ("INSTANCE", "REV", "STATE", "READY", "PID", "PORT", "RESTARTS", "AGE", "MESSAGE"):
        inst.add_column(col)
    for i in status.get("instances", []):
        inst.add_row(
            i["id"],
            str(i.get("revision") or "-"),
            i["state"],
            "yes" if i.get("ready") else "no",
            str(i.get("pid") or "-"),
            str(i.get("port") or "-"),
            str(i.get("restarts", 0)),
            _age(i.get("startedAt")),
            i.get("message", ""),
        )
    return Group(head, info, Text(""), cond, Text(""), inst)


def render_history(items: list[dict[str, Any]]) -> RenderableType:
    t = Table(box=None, header_style="bold")
    for col in ("REVISION", "HASH", "PHASE", "AGE", "COMMAND", "MESSAGE"):
        t.add_column(col)
    for r in items:
        t.add_row(
            str(r["number"]),
            r["hash"],
            Text(
                r["phase"],
                style={"complete": "green", "failed": "red", "progressing": "cyan"}.get(r["phase"], ""),
            ),
            _age(r.get("createdAt")),
            " ".join(r.get("command", [])),
            r.get("message", ""),
        )
    return t


def render_events(items: list[dict[str, Any]]) -> RenderableType:
    t = Table(box=None, header_style="bold")
    for col in ("TIME", "ROLLOUT", "REVISION", "TYPE", "MESSAGE"):
        t.add_column(col)
    for e in items:
        t.add_row(
            time.strftime("%H:%M:%S", time.localtime(e["time"])),
            e["rollout"],
            e["revision"][:10],
            e["type"],
            e["message"],
        )
    return t


def render_list(items: list[dict[str, Any]]) -> RenderableType:
    t = Table(box=None, header_style="bold")
    for col in ("ROLLOUT", "PHASE", "REVISION", "AVAILABLE", "LISTEN", "MESSAGE"):
        t.add_column(col)
    for st in items:
        phase = st.get("phase", "Pending")
        t.add_row(
            st.get("name", "?"),
            Text(phase, style=phase_style(phase)),
            str(st.get("currentRevision") or "-"),
            f"{st.get('availableReplicas', 0)}/{st.get('replicas', 0)}",
            (st.get("router") or {}).get("listen") or "-",
            st.get("message", ""),
        )
    return t
