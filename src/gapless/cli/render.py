"""Rich renderings of rollout status, history, events and analysis for the terminal.

Every table is a :class:`gapless.cli.tables.FitTable`, laid out for the console's width (80 columns when
the output is not a terminal): ids shortened in the middle, messages wrapped on whole words. Every number
goes through :mod:`gapless.core.units`, so a latency reads ``2.1 ms`` and a rate ``0.5%``.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from gapless.cli.tables import NBSP, Cell, Column, FitTable, Notes, Phrase, Phrases
from gapless.core.units import format_count, format_duration, format_value

__all__ = [
    "measured_text",
    "outlook_text",
    "phase_style",
    "render_analysis",
    "render_analysis_summary",
    "render_events",
    "render_history",
    "render_list",
    "render_status",
    "step_text",
    "summary_line",
    "summary_phrases",
]

_PHASE_STYLE = {
    "Healthy": "bold green",
    "Progressing": "bold cyan",
    "Paused": "bold yellow",
    "Degraded": "bold yellow",
    "Failed": "bold red",
}


def step_text(index: int, steps: int, done: bool | None = None) -> str:
    """The canary step for people: ``step 2/5`` while steps remain, ``steps 5/5 done`` after the last."""
    index = max(0, min(index, steps))
    if done or (done is None and index >= steps):
        return f"steps {steps}/{steps} done"
    return f"step {min(index + 1, steps)}/{steps}"


def phase_style(phase: str) -> str:
    return _PHASE_STYLE.get(phase, "bold")


def _age(ts: float | None) -> str:
    if not ts:
        return "-"
    s = max(0, int(time.time() - ts))
    return f"{s}s" if s < 60 else format_duration(s)


def _of(status: dict[str, Any], key: str) -> str:
    """``shown/replicas``, the shown count never above the total (older control planes did not cap)."""
    total = int(status.get("replicas", 0) or 0)
    return f"{max(0, min(int(status.get(key, 0) or 0), total))}/{total}"


def summary_phrases(status: dict[str, Any]) -> list[Phrase]:
    """The summary as phrases: phase, revision and replica counts, step, weights, pause, message."""
    phase = status.get("phase", "Pending")
    out: list[Phrase] = [
        ((f"{status.get('name', '?')}", "bold"), (" ", ""), (phase, phase_style(phase))),
        ((f"revision {status.get('currentRevision', '-')}", ""),),
        ((f"updated {_of(status, 'updatedReplicas')}", ""),),
        ((f"ready {_of(status, 'readyReplicas')}", ""),),
        ((f"available {_of(status, 'availableReplicas')}", ""),),
    ]
    instances = f"instances {status.get('totalInstances', 0)}"
    if status.get("terminatingReplicas"):
        instances += f" ({status['terminatingReplicas']} terminating)"
    out.append(((instances, ""),))
    strategy = status.get("strategy") or {}
    if strategy.get("type") == "Canary" and "stepIndex" in strategy:
        done = strategy.get("stepsDone")
        out.append(((step_text(int(strategy["stepIndex"]), int(strategy.get("steps", 0)), done), ""),))
    if strategy.get("weights"):
        out.append((("weights " + " ".join(f"r{r}:{w}%" for r, w in strategy["weights"].items()), ""),))
    if strategy.get("pauseRemaining") is not None:
        out.append(((f"pause {format_duration(strategy['pauseRemaining'])} left", ""),))
    if status.get("message"):
        out.append(((str(status["message"]), "yellow"),))
    return out


def summary_line(status: dict[str, Any]) -> Text:
    """One line: phase, revision and replica counts, as shown while waiting."""
    t = Text()
    for n, phrase in enumerate(summary_phrases(status)):
        if n:
            t.append("  ")
        for text, style in phrase:
            t.append(text, style=style or None)
    return t


def render_status(status: dict[str, Any]) -> RenderableType:
    head = Phrases(tuple(summary_phrases(status)))
    router = status.get("router") or {}
    kube = status.get("kubernetes")
    if isinstance(kube, dict):  # on a cluster: where it runs, and the weights as the operator states them
        info = Phrases(
            (
                ((f"context {kube.get('context', '-')}", ""),),
                ((f"namespace {kube.get('namespace', '-')}", ""),),
                ((f"weights {status.get('weights') or '-'}", ""),),
                ((f"stable revision {status.get('stableRevision') or '-'}", ""),),
            )
        )
    else:
        info = Phrases(
            (
                ((f"listen {router.get('listen', '-')}", ""),),
                ((f"router pid {router.get('pid') or '-'}", ""),),
                ((f"backends {router.get('backends', 0)}", ""),),
                ((f"stable revision {status.get('stableRevision') or '-'}", ""),),
            )
        )
    cond = FitTable(
        (
            Column("CONDITION", priority=9),
            Column("STATUS", priority=8),
            Column("REASON", priority=6),
            Column("MESSAGE", "wrap", priority=7),  # the sentence for people outlasts the machine's reason
        ),
        tuple(
            (c["type"], c["status"], c["reason"], c.get("message", "")) for c in status.get("conditions", [])
        ),
    )
    inst = FitTable(
        (
            Column("INSTANCE", "middle", priority=9),
            Column("REV", priority=8),
            Column("STATE", priority=8),
            Column("READY", priority=7),
            Column("PID", priority=2, right=True),
            Column("PORT", priority=4, right=True),
            Column("RESTARTS", priority=5, right=True),
            Column("AGE", priority=6, right=True),
        ),
        tuple(
            (
                i["id"],
                str(i.get("revision") or "-"),
                i["state"],
                ("yes", "green") if i.get("ready") else ("no", "yellow"),
                str(i.get("pid") or "-"),
                str(i.get("port") or "-"),
                str(i.get("restarts", 0)),
                _age(i.get("startedAt")),
            )
            for i in status.get("instances", [])
        ),
    )
    # An instance's message gets the whole width below the table: a column beside eight others is too
    # narrow for "exited with code 1: connection refused to ...".
    notes = Notes(tuple((i["id"], i["message"]) for i in status.get("instances", []) if i.get("message")))
    parts: list[RenderableType] = [head, info]
    schema = _schema_line(status)
    if schema is not None:
        parts.append(schema)
    parts += [Text(""), cond, Text(""), inst]
    if notes.notes:
        parts.append(notes)
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


def _phase_cell(phase: str) -> Cell:
    return (phase, _RUN_STYLE.get(phase, ""))


# What the canary and baseline summaries of a measurement hold, with the unit each is in.
_SUMMARY_UNITS: tuple[tuple[str, str, str], ...] = (
    ("error_rate", "err", "ratio"),
    ("p50", "p50", "seconds"),
    ("p95", "p95", "seconds"),
    ("p99", "p99", "seconds"),
    ("cpu_cores", "cpu", "cores"),
    ("rss_bytes", "rss", "bytes"),
    ("rss_slope_bytes_per_second", "rss growth", "bytesPerSecond"),
    ("open_files", "open files", "count"),
)


def _value(value: float, unit: str | None) -> str:
    """A value and its unit, held together on one line when wrapped."""
    return format_value(value, unit).replace(" ", NBSP)


def _pair(label: str, unit: str, canary: Any, baseline: Any) -> str:
    text = f"{label} {_value(float(canary), unit)}"
    if isinstance(baseline, int | float):
        text += f" vs {_value(float(baseline), unit)}"
    return text


def _result(result: Any, unit: str | None) -> str:
    if isinstance(result, list):
        return "[" + ", ".join(_result(r, unit) for r in result) + "]"
    if isinstance(result, int | float) and not isinstance(result, bool):
        return _value(float(result), unit)
    return str(result)


def _about(n: int) -> str:
    """An estimate to two significant digits (``~1700``, not ``~1674``): it is not that precise."""
    if n >= 100:
        digits = len(str(n)) - 2
        n = round(n, -digits)
    return format_count(n)


def outlook_text(ahead: dict[str, Any]) -> str:
    """A sequential test's distance to a decision: ``LLR 1.2 of 3.7 toward failed; ~800 more requests``."""
    llr, bound = float(ahead.get("llr", 0.0)), float(ahead.get("bound", 0.0))
    if ahead.get("decided"):
        return f"LLR {llr:.1f} reached {bound:.1f}" + (f" ({ahead['toward']})" if ahead.get("toward") else "")
    text = f"LLR {llr:.1f} of {bound:.1f} to decide"
    if ahead.get("toward"):
        text += f" ({ahead['toward']})"
    left = ahead.get("remainingRequests")
    if left is None:
        return text + "; no estimate yet"
    text += f"; ~{_about(int(left))} more requests"
    if ahead.get("remainingSeconds") is not None:
        text += f" (~{format_duration(ahead['remainingSeconds'])})"
    if ahead.get("capped"):
        text += " at most (maxCanaryRequests)"
    return text


def measured_text(value: dict[str, Any]) -> str:
    """The numbers behind a verdict with their units: canary against baseline where both exist."""
    parts = []
    canary, baseline = value.get("canary"), value.get("baseline")
    if isinstance(canary, dict):
        base = baseline if isinstance(baseline, dict) else {}
        for key, label, unit in _SUMMARY_UNITS:
            if isinstance(canary.get(key), int | float):
                parts.append(_pair(label, unit, canary[key], base.get(key)))
        parts.append(_pair("req", "count", canary.get("requests", 0), base.get("requests", 0)))
        for name, v in (canary.get("counters") or {}).items():
            parts.append(_pair(name, "count", v, (base.get("counters") or {}).get(name, 0)))
    elif "result" in value:
        parts.append(f"result {_result(value['result'], value.get('unit'))}")
    text = ", ".join(parts)
    if isinstance(value.get("outlook"), dict):
        text += ("; " if text else "") + outlook_text(value["outlook"])
    return text


def _says_less(measurement: dict[str, Any]) -> bool:
    """A running sequential test's message ("not yet decided after N requests") says less than its outlook."""
    return measurement.get("phase") == "running" and "outlook" in (measurement.get("value") or {})


def _counts(m: dict[str, Any]) -> str:
    text = str(m.get("measured", 0))
    if m.get("failed"):
        text += f" ({m['failed']} failed)"
    return text


def render_analysis_summary(runs: list[dict[str, Any]]) -> RenderableType:
    """The analysis runs of the current revision: one line per run, then one per metric below it."""
    rows: list[tuple[Cell, ...]] = []
    for run in runs:
        rows.append((run["name"], _phase_cell(run["phase"]), "", run.get("message", "")))
        for m in run.get("metrics", []):
            name = m["name"] + (" (dry run)" if m.get("dryRun") else "")
            last = m.get("last") or {}
            shown = measured_text(last.get("value") or {})
            message = "" if _says_less(last) else last.get("message", "")
            rows.append(
                (
                    f"· {name}",
                    _phase_cell(m["phase"]),
                    _counts(m),
                    "; ".join(x for x in (shown, message) if x),
                )
            )
    return FitTable(
        (
            Column("ANALYSIS / METRIC", "middle", priority=9),
            Column("PHASE", priority=8),
            Column("MEASURED", priority=5),
            Column("LAST", "wrap", priority=6),
        ),
        tuple(rows),
    )


def render_analysis(items: list[dict[str, Any]]) -> RenderableType:
    """Every run with every kept measurement: why a revision was rolled back, or why it passed."""
    if not items:
        return Text("no analysis runs")
    parts: list[RenderableType] = []
    for run in items:
        head: list[Phrase] = [
            ((str(run["name"]), "bold"),),
            ((f"revision {run.get('revision') or '-'}", ""),),
            ((run["phase"], _RUN_STYLE.get(run["phase"], "")),),
        ]
        if not run.get("active", True):
            head.append((("(superseded by a retry)", "dim"),))
        head += [
            ((f"started {_age(run.get('startedAt'))} ago", ""),),
            ((f"templates {', '.join(run.get('templates', []))}", ""),),
        ]
        parts.append(Phrases(tuple(head)))
        if run.get("message"):
            parts.append(Text(f"  {run['message']}"))
        rows = tuple(
            (
                metric,
                time.strftime("%H:%M:%S", time.localtime(m["at"])),
                _phase_cell(m["phase"]),
                measured_text(m.get("value") or {}),
                "" if _says_less(m) else m.get("message", ""),
            )
            for metric, measurements in (run.get("measurements") or {}).items()
            for m in measurements
        )
        table = FitTable(
            (
                Column("METRIC", "middle", priority=9),
                Column("TIME", priority=4),
                Column("PHASE", priority=7),
                Column("CANARY VS BASELINE", "wrap", priority=6),
                Column("MESSAGE", "wrap", priority=8),
            ),
            rows,
        )
        parts += [table, Text("")]
    return Group(*parts)


_REVISION_STYLE = {"complete": "green", "failed": "red", "progressing": "cyan"}


def render_history(items: list[dict[str, Any]]) -> RenderableType:
    return FitTable(
        (
            Column("REVISION", priority=9, right=True),
            Column("HASH", priority=2),
            Column("PHASE", priority=8),
            Column("AGE", priority=7, right=True),
            Column("COMMAND", "wrap", priority=6),
            Column("CHANGE-CAUSE", "wrap", priority=5),
            Column("MESSAGE", "wrap", priority=4),
        ),
        tuple(
            (
                str(r["number"]),
                str(r["hash"])[:12],  # as git shows a commit: enough to tell revisions apart
                (r["phase"], _REVISION_STYLE.get(r["phase"], "")),
                _age(r.get("createdAt")),
                " ".join(r.get("command", [])),
                r.get("changeCause") or "<none>",
                r.get("message", ""),
            )
            for r in items
        ),
    )


def render_events(items: list[dict[str, Any]], *, header: bool = True) -> RenderableType:
    """``gapless events``; ``header=False`` for the rows that follow the first ones (``events -f``)."""
    return FitTable(
        (
            Column("TIME", priority=9),
            Column("ROLLOUT", "middle", priority=6),
            Column("REVISION", "middle", priority=4),
            Column("TYPE", priority=7),
            Column("MESSAGE", "wrap", priority=8),
        ),
        tuple(
            (
                time.strftime("%H:%M:%S", time.localtime(e["time"])),
                e["rollout"],
                str(e.get("revisionNumber") or str(e["revision"])[:10] or "-"),
                e["type"],
                e["message"],
            )
            for e in items
        ),
        header,
    )


def render_list(items: list[dict[str, Any]]) -> RenderableType:
    rows = []
    for st in items:
        phase = st.get("phase", "Pending")
        rows.append(
            (
                st.get("name", "?"),
                (phase, phase_style(phase)),
                str(st.get("currentRevision") or "-"),
                _of(st, "availableReplicas"),
                (st.get("router") or {}).get("listen") or "-",
                st.get("message", ""),
            )
        )
    return FitTable(
        (
            Column("ROLLOUT", "middle", priority=9),
            Column("PHASE", priority=8),
            Column("REVISION", priority=6, right=True),
            Column("AVAILABLE", priority=7, right=True),
            Column("LISTEN", "middle", priority=5),
            Column("MESSAGE", "wrap", priority=4),
        ),
        tuple(rows),
    )
