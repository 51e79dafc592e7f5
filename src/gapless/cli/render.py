"""Rich renderings of rollout status, history and events for the terminal."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

__all__ = [
    "phase_style",
    "render_analysis",
    "render_analysis_summary",
    "render_events",
    "render_history",
    "render_list",
    "render_status",
    "summary_line",
]

_PHASE_STYLE = {
    "Healthy": "bold green",
    "Progressing": "bold cyan",
    "Paused": "bold yellow",
    "Degraded": "bold yellow",
    "Failed": "bold red",
}


def step_text(index: int, steps: int) -> str:
    """The canary step for people: ``step 2/5`` while steps remain, ``steps 5/5 done`` after the last."""
    if index >= steps:
        return f"steps {steps}/{steps} done"
    return f"step {index + 1}/{steps}"


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
        t.append(f"  {step_text(int(strategy['stepIndex']), int(strategy.get('steps', 0)))}")
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
    parts: list[RenderableType] = [head, info]
    schema = _schema_line(status)
    if schema is not None:
        parts.append(schema)
    parts += [Text(""), cond, Text(""), inst]
    runs = (status.get("strategy") or {}).get("analysis") or []
    if runs:
        parts += [Text(""), render_analysis_summary(runs)]
    return Group(*parts)


def _schema_line(status: dict[str, Any]) -> Text | None:
    """What schema gating knows: the schema the current revision needs, and the point of no rollback."""
    schema = status.get("schema")
    if not isinstance(schema, dict):
        return None
    t = Text(f"schema {schema.get('requires') or '-'}")
    if status.get("schemaHold"):
        t.append("  held", style="yellow")
    point = schema.get("pointOfNoRollback")
    if point:
        t.append(f"  no rollback past {point['migration']} ({point['phase']})")
        gone = schema.get("unrunnableRevisions") or []
        if gone:
            t.append(f": revisions {', '.join(map(str, gone))} cannot run again", style="red")
    if schema.get("error"):
        t.append(f"  {schema['source']}: {schema['error']}", style="red")
    return t


_RUN_STYLE = {
    "successful": "green",
    "failed": "bold red",
    "error": "bold red",
    "inconclusive": "yellow",
    "running": "cyan",
}


def _phase_text(phase: str) -> Text:
    return Text(phase, style=_RUN_STYLE.get(phase, ""))


def _number(key: str, x: float) -> str:
    return f"{x:.2%}" if key == "error_rate" else f"{x:.3g}"


def _measured(value: dict[str, Any]) -> str:
    """The numbers behind a verdict, compactly: canary against baseline where both exist."""
    parts = []
    canary, baseline = value.get("canary"), value.get("baseline")
    if isinstance(canary, dict):
        for key, label in (("error_rate", "err"), ("p99", "p99"), ("rss_slope_bytes_per_second", "rss/s")):
            if key in canary:
                c = _number(key, canary[key])
                b = (baseline or {}).get(key)
                parts.append(f"{label} {c}" + (f" vs {_number(key, b)}" if b is not None else ""))
        parts.append(f"req {canary.get('requests', 0)} vs {(baseline or {}).get('requests', 0)}")
        for name, v in (canary.get("counters") or {}).items():
            parts.append(f"{name} {v:g} vs {((baseline or {}).get('counters') or {}).get(name, 0):g}")
    elif "result" in value:
        parts.append(f"result {value['result']}")
    return ", ".join(parts)


def render_analysis_summary(runs: list[dict[str, Any]]) -> RenderableType:
    """The analysis runs of the current revision: one line per run, one per metric."""
    t = Table(box=None, header_style="bold")
    for col in ("ANALYSIS", "METRIC", "PHASE", "MEASURED", "FAILED", "LAST"):
        t.add_column(col)
    for run in runs:
        t.add_row(run["name"], "", _phase_text(run["phase"]), "", "", run.get("message", ""))
        for m in run.get("metrics", []):
            name = m["name"] + (" (dry run)" if m.get("dryRun") else "")
            last = m.get("last") or {}
            t.add_row(
                "",
                name,
                _phase_text(m["phase"]),
                str(m.get("measured", 0)),
                str(m.get("failed", 0)),
                last.get("message", "") if last else "",
            )
    return t


def render_analysis(items: list[dict[str, Any]]) -> RenderableType:
    """Every run with every kept measurement: why a revision was rolled back, or why it passed."""
    if not items:
        return Text("no analysis runs")
    parts: list[RenderableType] = []
    for run in items:
        head = Text()
        head.append(f"{run['name']}", style="bold")
        head.append(f"  revision {run.get('revision') or '-'}  ")
        head.append_text(_phase_text(run["phase"]))
        if not run.get("active", True):
            head.append("  (superseded by a retry)", style="dim")
        head.append(
            f"  started {_age(run.get('startedAt'))} ago  templates {', '.join(run.get('templates', []))}"
        )
        parts.append(head)
        if run.get("message"):
            parts.append(Text(f"  {run['message']}"))
        t = Table(box=None, header_style="bold", padding=(0, 1))
        for col in ("METRIC", "TIME", "PHASE", "CANARY VS BASELINE", "MESSAGE"):
            t.add_column(col)
        for metric, measurements in (run.get("measurements") or {}).items():
            for m in measurements:
                t.add_row(
                    metric,
                    time.strftime("%H:%M:%S", time.localtime(m["at"])),
                    _phase_text(m["phase"]),
                    _measured(m.get("value") or {}),
                    m.get("message", ""),
                )
        parts += [t, Text("")]
    return Group(*parts)


def render_history(items: list[dict[str, Any]]) -> RenderableType:
    t = Table(box=None, header_style="bold")
    for col in ("REVISION", "HASH", "PHASE", "AGE", "COMMAND", "CHANGE-CAUSE", "MESSAGE"):
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
            r.get("changeCause") or "<none>",
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
            str(e.get("revisionNumber") or e["revision"][:10] or "-"),
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
