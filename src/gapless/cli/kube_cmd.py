"""The bodies of the rollout verbs when ``--context`` or ``-n`` points them at a cluster.

Each prints what the local verb prints (the same lines, tables and ``-o json|yaml`` documents, through
``gapless.cli.render``) and returns the same exit code; ``gapless.cli.kube`` does the requests.
Following (``status --watch``, ``events -f``, ``--wait``) uses watches, never polling.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from gapless.cli import quick
from gapless.cli.kube import Kube
from gapless.cli.output import write
from gapless.cli.wait import EXIT_TIMEOUT, Condition, outcome

__all__ = [
    "abort",
    "analysis",
    "apply",
    "events",
    "history",
    "promote",
    "retry",
    "set_paused",
    "status",
    "undo",
    "wait",
]

LIVE_KEYS = frozenset({"updatedAt", "lastUpdateTime", "pauseRemaining", "scaleDownIn", "startedAt"})


def _without_live(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _without_live(v) for k, v in doc.items() if k not in LIVE_KEYS}
    if isinstance(doc, list):
        return [_without_live(v) for v in doc]
    return doc


def wait(
    kube: Kube,
    name: str,
    generation: int | None,
    console: Console,
    timeout: float | None,
    condition: Condition = "settled",
    acted: Callable[[dict[str, Any]], bool] | None = None,
) -> int:
    """Follow the Rollout by watch until ``condition`` holds (0), it fails (1) or ``timeout`` passes (3).

    ``generation`` None: the one current when waiting starts. ``acted``: whether the operator has acted
    on the request just written (a request annotation does not change the generation); until then the
    status is shown but not judged.
    """
    from gapless.cli.render import summary_line
    from gapless.cli.wait import _explain

    last = ""
    st: dict[str, Any] = {}
    for obj in kube.changes(name, timeout):
        if obj is None:
            from gapless.cli.times import format_duration

            console.print(
                f"[red]timed out after {format_duration(timeout or 0)} waiting for {name} "
                f"to be {'complete' if condition == 'settled' else condition}[/] "
                f"(phase {st.get('phase', '-')})",
                highlight=False,
            )
            return EXIT_TIMEOUT
        if generation is None:
            generation = int(obj["metadata"].get("generation") or 0)
        st = kube.status(name, obj)
        line = summary_line(st)
        if line.plain != last:
            console.print(line)
            last = line.plain
        result = outcome(st, generation, condition) if acted is None or acted(obj) else None
        if result is not None:
            _explain(console, name, st, result, condition)
            return result
    return 1  # the watch never ends by itself


def status(kube: Kube, name: str | None, watch: bool, output: str, out: Console, err: Console) -> int:
    from gapless.cli.render import render_list, render_status

    if not watch:
        if name is None:
            items = [kube.status(o["metadata"]["name"], o) for o in kube.rollouts()]
            if output != "text":
                write(items, output)
            else:
                out.print(render_list(items))
            return 0
        st = kube.status(name)
        if output != "text":
            write(st, output)
        else:
            out.print(render_status(st))
        return 0
    from gapless.cli.render import summary_line

    live = None
    if output == "text" and out.is_terminal:
        from rich.live import Live

        live = Live(console=out, refresh_per_second=4)
        live.start()
    seen: dict[str, Any] = {}
    shown: dict[str, dict[str, Any]] = {}
    try:
        for obj in kube.changes(name, None):
            if obj is None:
                return 0
            key = obj["metadata"]["name"]
            st = kube.status(key, obj)
            if live is not None:
                shown[key] = st
                live.update(render_status(st) if name is not None else render_list(list(shown.values())))
                continue
            now: Any = summary_line(st).plain if output == "text" else _without_live(st)
            if seen.get(key) == now:
                continue
            seen[key] = now
            if output == "text":
                sys.stdout.write(now + "\n")
                sys.stdout.flush()
            else:
                write(st, output, stream=True)
    finally:
        if live is not None:
            live.stop()
    return 0


def history(kube: Kube, name: str, revision: int | None, output: str, out: Console, err: Console) -> int:
    from gapless.cli.history_view import render_revision
    from gapless.cli.render import render_history

    items = kube.history(name)
    if revision is not None:
        found = next((r for r in items if r["number"] == revision), None)
        if found is None:
            known = ", ".join(str(r["number"]) for r in items) or "none"
            err.print(
                f"[red]error:[/] revision {revision} of {escape(name)!r} not found (known: {known})",
                highlight=False,
            )
            return 1
        if output != "text":
            write(found, output)
        else:
            out.print(render_revision(found), highlight=False)
        return 0
    if output != "text":
        write(items, output)
    else:
        out.print(render_history(items))
    return 0


def analysis(kube: Kube, name: str, revision: int | None, output: str, out: Console) -> int:
    """The analysis runs the operator recorded in the Rollout's status (``status.analysisRuns``)."""
    from gapless.cli.render import render_analysis

    obj = kube.get(name)
    numbers = {r["hash"]: r["number"] for r in kube.history(name, obj)}
    items = [run_view(name, run, numbers) for run in (obj.get("status") or {}).get("analysisRuns") or []]
    if revision is not None:
        if revision not in numbers.values():
            from gapless.cli.api import ApiError

            raise ApiError(404, f"revision {revision} of {name!r} not found", [])
        items = [r for r in items if r.get("revision") == revision]
    data = {"name": name, "items": items}
    if output != "text":
        write(data, output)
    else:
        out.print(render_analysis(items))
    return 0


def run_view(name: str, run: dict[str, Any], numbers: dict[str, int]) -> dict[str, Any]:
    """A run as the operator keeps it (``status.analysisRuns``) in the document the local API answers."""
    from gapless.controller.analysis import run_summary
    from gapless.store.records import AnalysisRunRecord

    record = AnalysisRunRecord(
        id=str(run.get("id", "")),
        rollout=name,
        revision=str(run.get("revision", "")),
        key=str(run.get("key", "")),
        phase=str(run.get("phase", "")),
        created_at=float(run.get("createdAt") or 0.0),
        spec=dict(run.get("spec") or {}),
        metrics=list(run.get("metrics") or []),
        message=str(run.get("message") or ""),
        finished_at=run.get("finishedAt"),
        active=bool(run.get("active", True)),
    )
    return run_summary(record) | {
        "revision": numbers.get(record.revision),
        "hash": record.revision,
        "active": record.active,
        "args": record.spec.get("args", {}),
        "measurements": {m.get("name", ""): m.get("measurements", []) for m in record.metrics},
    }


def events(kube: Kube, name: str | None, follow: bool, after: float | None, output: str, out: Console) -> int:
    from gapless.cli.render import render_events

    items, version = kube.events(name)
    printed = False

    def show(batch: list[dict[str, Any]]) -> None:
        nonlocal printed
        batch = [e for e in batch if after is None or e["time"] >= after]
        if output != "text":
            for e in batch:
                write(e, output, stream=True)
        elif batch:
            out.print(render_events(batch, header=not printed))
            printed = True

    show(items)
    if not follow:
        return 0
    for e in kube.follow_events(name, version):
        show([e])
    return 0


def set_paused(kube: Kube, name: str, paused: bool, err: Console) -> int:
    err.print(quick.paused_line(name, paused, kube.set_paused(name, paused)), highlight=False)
    return 0


def promote(kube: Kube, name: str, full: bool, err: Console) -> int:
    kube.promote(name, full)
    err.print(quick.promote_line(name, full), highlight=False)
    return 0


def abort(kube: Kube, name: str, err: Console) -> int:
    kube.abort(name)
    err.print(quick.abort_line(name), highlight=False)
    return 0


def retry(kube: Kube, name: str, wait_: bool, timeout: float | None, err: Console) -> int:
    result = kube.retry(name)
    err.print(f"{name}: revision {result['revision']} starts again")

    def acted(obj: dict[str, Any]) -> bool:
        records = (obj.get("status") or {}).get("revisions") or {}
        return bool((records.get(result["hash"]) or {}).get("retryHandled") == result["request"])

    return wait(kube, name, None, err, timeout, acted=acted) if wait_ else 0


def undo(
    kube: Kube, name: str, to_revision: int | None, wait_: bool, timeout: float | None, err: Console
) -> int:
    result = kube.undo(name, to_revision)
    err.print(quick.undo_line(name, result), highlight=False)
    if not result.get("changed") or not wait_:
        return 0
    return wait(kube, name, int(result["generation"]), err, timeout)


def apply(
    kube: Kube, file: Path, change_cause: str | None, wait_: bool, timeout: float | None, err: Console
) -> int:
    lines, result = kube.apply(file, change_cause)
    for line in lines:
        err.print(line, highlight=False)
    if result is None:
        return 0
    name = result["name"]
    what = "configured" if result["changed"] else "unchanged"
    err.print(
        f"{name} {what} (generation {result['generation']}, template {result['revisionHash']})",
        highlight=False,
    )
    if not wait_:
        return 0
    return wait(kube, name, int(result["generation"]), err, timeout)
