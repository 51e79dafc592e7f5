"""``gapless release``: one plan across schema, application and flags.

``plan -f FILE`` reads a Release and every file it names (migrations, Rollouts; paths are relative to
the release file), refuses an order that cannot work (exit 2, naming the step and why), and prints the
steps with their gates and analysis, what each state of the release serves (schema versions per
database, the revision each rollout runs, flags), what a rollback would undo, and where the point of
no rollback is. ``apply``, ``status`` (``--watch``), ``history``, ``list``, ``promote``, ``abort`` and
``undo`` drive releases in the control plane (``gapless.controller.release``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gapless.core.errors import Problem, SpecError
from gapless.spec.load import problems_from_validation
from gapless.spec.release import (
    CompleteStep,
    FlagStep,
    MigrateStep,
    Release,
    RolloutStep,
    VerifyStep,
    WaitStep,
)
from gapless.strategies.release import EFFECTS, StepFacts, order_problems, undo_blockers

__all__ = ["LoadedRelease", "load_release", "release_app"]

release_app = typer.Typer(
    help="Releases: one ordered plan of migrations, rollouts and flag changes, rolled back together.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)
MAX_FILE_BYTES = 1_000_000


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


@dataclass(frozen=True)
class LoadedRelease:
    release: Release
    facts: list[StepFacts]


def _read(path: Path, where: str) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SpecError(str(path), [Problem(where, f"cannot read {path}: {e.strerror or e}")]) from e
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(str(path), [Problem(where, f"{path} is larger than {MAX_FILE_BYTES} bytes")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(str(path), [Problem(where, f"{path} is not UTF-8 text")]) from e


def load_release(path: Path) -> LoadedRelease:
    """The release and what the planner needs of each step; ``SpecError`` naming every problem."""
    from gapless.migrations.files import parse_migration
    from gapless.spec.load import parse_rollout

    source = str(path)
    try:
        data = yaml.safe_load(_read(path, ""))
    except yaml.YAMLError as e:
        raise SpecError(source, [Problem("", f"not valid YAML: {' '.join(str(e).split())}")]) from e
    if not isinstance(data, dict) or data.get("kind") != "Release":
        raise SpecError(source, [Problem("kind", "expected a Release document (kind: Release)")])
    try:
        release = Release.model_validate(data)
    except ValidationError as e:
        raise SpecError(source, problems_from_validation(e)) from e
    problems: list[Problem] = []
    facts: list[StepFacts] = []
    base = path.parent
    for i, step in enumerate(release.spec.steps):
        where = f"steps.{i}.{step.kind}"
        fact = StepFacts(step.kind, step.on_failure)
        try:
            if step.migrate is not None:
                file = base / step.migrate.file
                m = parse_migration(_read(file, f"{where}.file"), source=str(file), default_name=file.stem)
                fact = StepFacts("migrate", step.on_failure, migration=m.name, database=step.migrate.database)
            elif step.rollout is not None:
                file = base / step.rollout.file
                r = parse_rollout(_read(file, f"{where}.file"), source=str(file))
                fact = StepFacts(
                    "rollout", step.on_failure, rollout=r.name, requires=r.spec.template.requires_schema
                )
            elif step.complete is not None:
                fact = StepFacts(
                    "complete",
                    step.on_failure,
                    migration=step.complete.migration,
                    database=step.complete.database,
                )
        except SpecError as e:
            problems += [
                Problem(f"{where}.file", f"{e.source}: {p.path or '(document)'}: {p.message}")
                for p in e.problems
            ]
        facts.append(fact)
    if problems:
        raise SpecError(source, problems)
    order = order_problems(facts)
    if order:
        raise SpecError(
            source,
            [Problem(f"steps.{i} ({release.spec.steps[i].name or facts[i].kind})", m) for i, m in order],
        )
    return LoadedRelease(release, facts)


def _describe(loaded: LoadedRelease, i: int) -> str:
    step, fact = loaded.release.spec.steps[i], loaded.facts[i]
    body = step.body
    if isinstance(body, MigrateStep):
        return f"start migration {fact.migration} on {fact.database} (expand, backfill)"
    if isinstance(body, RolloutStep):
        needs = f", requires schema {fact.requires}" if fact.requires else ""
        return f"roll out {fact.rollout} ({body.file}{needs})"
    if isinstance(body, CompleteStep):
        return f"complete migration {fact.migration} on {fact.database} (contract)"
    if isinstance(body, FlagStep):
        change = (
            "on"
            if body.enabled
            else "off"
            if body.enabled is False
            else f"stage {body.stage}"
            if body.stage
            else "next stage"
        )
        return f"flag {body.project}/{body.flag} in {body.environment}: {change}"
    if isinstance(body, VerifyStep):
        if body.analysis is not None:
            return f"verify: analysis {', '.join(body.analysis.template_names)}"
        if body.exec is not None:
            return "verify: exec " + " ".join(body.exec.command)
        return f"verify: GET {body.url}{body.http_get.path if body.http_get else ''}"
    if isinstance(body, WaitStep):
        return f"monitoring window of {body.duration:g} s"
    return f"manual gate: gapless release promote {loaded.release.name}"


def plan_rows(loaded: LoadedRelease) -> list[dict[str, Any]]:
    """One row per step: what it does, its gates, what is served after it, and what undoing it means."""
    rows: list[dict[str, Any]] = []
    schemas: dict[str, list[str]] = {}
    revisions: dict[str, str] = {}
    ponr = next((i for i, f in enumerate(loaded.facts) if f.kind == "complete"), None)
    # What a rollback could still undo once the release has run through every step.
    finished = [replace(f, phase="succeeded") for f in loaded.facts]
    for i, (step, fact) in enumerate(zip(loaded.release.spec.steps, loaded.facts, strict=True)):
        if fact.kind == "migrate" and fact.database and fact.migration:
            schemas.setdefault(fact.database, ["(current)"]).append(fact.migration)
        elif fact.kind == "complete" and fact.database and fact.migration:
            schemas[fact.database] = [fact.migration]
        elif fact.kind == "rollout" and fact.rollout:
            revisions[fact.rollout] = f"{step.rollout.file if step.rollout else '?'}"
        gates = []
        if fact.kind == "approve":
            gates.append("approve")
        if step.analysis is not None:
            gates.append("analysis " + ", ".join(step.analysis.template_names))
        if fact.on_failure == "pause":
            gates.append("pauses on failure")
        undo = {
            "migrate": "migration rolled back",
            "rollout": "previous revision restored",
            "flag": "flag restored",
            "complete": "cannot be undone",
        }.get(fact.kind, "stopped")
        if fact.kind in EFFECTS and fact.kind != "complete" and undo_blockers(finished, i) is not None:
            undo = f"{undo} until step {ponr} runs; not after"
        serves = [f"database {db}: {' + '.join(s)}" for db, s in schemas.items()]
        serves += [f"rollout {r}: {f}" for r, f in revisions.items()]
        rows.append(
            {
                "step": i,
                "name": step.name or fact.kind,
                "kind": fact.kind,
                "what": _describe(loaded, i),
                "gates": gates,
                "serves": serves,
                "rollback": undo,
            }
        )
    return rows


@release_app.command("plan")
def plan_command(
    file: Annotated[Path, typer.Option("-f", "--file", help="The Release file.", show_default=False)],
    output: Annotated[OutputFormat, typer.Option("-o", "--output", help="text or json.")] = OutputFormat.text,
) -> None:
    """Check a release's order and show its steps, gates, what each state serves, and the point of no rollback.

    Exit 0 when the release can run; 2 naming each step whose place cannot work (a rollout whose
    requiresSchema no earlier migrate provides, a complete while a rollout still runs old-schema code,
    ...) or a file that cannot be read. Nothing is changed either way.
    """
    try:
        loaded = load_release(file)
    except SpecError as e:
        err.print(f"[red]error:[/] {escape(str(e))}")
        raise typer.Exit(2) from e
    rows = plan_rows(loaded)
    ponr = next((r["step"] for r in rows if r["kind"] == "complete"), None)
    if output is OutputFormat.json:
        print(json.dumps({"name": loaded.release.name, "steps": rows, "pointOfNoRollback": ponr}, indent=2))
        return
    table = Table(
        title=f"release {loaded.release.name} (a failed step rolls back every earlier one unless it pauses)",
        title_justify="left",
        expand=False,
    )
    for column in ("#", "step", "gates", "serves after it", "if rolled back"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            str(r["step"]),
            escape(f"{r['name']}: {r['what']}"),
            escape("\n".join(r["gates"]) or "-"),
            escape("\n".join(r["serves"]) or "-"),
            escape(r["rollback"]),
        )
    out.print(table)
    if ponr is None:
        out.print("no point of no rollback: every step can be undone until the release ends")
    else:
        out.print(
            f"point of no rollback: step {ponr} ({escape(rows[ponr]['what'])}); a failure after it undoes "
            "only what can still be undone"
        )


# -- running releases in the control plane -------------------------------------------------------------

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where gapless keeps its state (default: $GAPLESS_HOME, else .gapless in the working directory).",
        show_default=False,
    ),
]


def _call(state_dir: Path | None, method: str, path: str, body: Any = None) -> Any:
    """One request to the control plane; errors become a message and the rollout verbs' exit codes."""
    from gapless.cli.api import SyncClient, report_error, resolve_state_dir

    try:
        with SyncClient(resolve_state_dir(state_dir)) as client:
            return client.request(method, path, body)
    except Exception as e:
        code, lines = report_error(e)
        if code is None:
            raise
        err.print(f"[red]error:[/] {escape(lines[0])}", highlight=False)
        for line in lines[1:]:
            err.print(line, markup=False, highlight=False)
        raise typer.Exit(code) from e


def _release_path(name: str, *rest: str) -> str:
    from urllib.parse import quote

    return "/".join(["/api/v1/releases", quote(name, safe=""), *rest])


def release_body(path: Path) -> tuple[str, dict[str, Any]]:
    """The release's name and what ``PUT /api/v1/releases/{name}`` takes: the document and its Rollouts."""
    from gapless.migrations.files import parse_migration
    from gapless.spec.load import parse_rollout

    loaded = load_release(path)
    rollouts: dict[str, Any] = {}
    migrations: dict[str, Any] = {}
    for i, step in enumerate(loaded.release.spec.steps):
        if step.migrate is not None:
            file = path.parent / step.migrate.file
            m = parse_migration(
                _read(file, f"steps.{i}.migrate.file"), source=str(file), default_name=file.stem
            )
            migrations[str(i)] = m.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        if step.rollout is not None:
            file = path.parent / step.rollout.file
            rollouts[str(i)] = parse_rollout(
                _read(file, f"steps.{i}.rollout.file"), source=str(file)
            ).to_document()
    doc = yaml.safe_load(_read(path, ""))
    return loaded.release.name, {"release": doc, "rollouts": rollouts, "migrations": migrations}


Wait = Annotated[
    bool,
    typer.Option("--wait", help="Wait until the release ends; exit 0 when it ended as asked, else 1."),
]
Timeout = Annotated[
    str | None,
    typer.Option(
        "--timeout",
        metavar="DURATION",
        help="With --wait: give up waiting after this long (90s, 2m, 1h30m; a plain number is seconds) "
        "and exit 3; the release goes on.",
        show_default=False,
    ),
]
TERMINAL_PHASES = ("Succeeded", "RolledBack", "Failed")
EXIT_TIMEOUT = 3


def _seconds(timeout: str | None) -> float | None:
    """``--timeout`` in seconds, checked before anything is sent (exit 2 naming the value)."""
    if timeout is None:
        return None
    from gapless.cli.times import parse_duration

    try:
        return parse_duration(timeout, option="--timeout")
    except ValueError as e:
        err.print(f"[red]error:[/] {escape(str(e))}")
        raise typer.Exit(2) from e


def _wait_until_done(state_dir: Path | None, name: str, wanted: str, timeout: float | None = None) -> None:
    """Poll the release until it ends; print how, and exit 1 unless it ended in ``wanted``.

    With ``timeout``: exit 3 once that many seconds passed without the release ending.
    """
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    last = ""
    while True:
        view = _call(state_dir, "GET", _release_path(name))
        line = f"release {view['name']}: {view['phase']} - {view['message']}"
        if line != last:
            out.print(escape(line))
            last = line
        if view["phase"] in TERMINAL_PHASES:
            _print_failure(view)
            for index, reason in view.get("notUndoable", []):
                out.print(f"step {index} cannot be undone: {escape(reason)}")
            if view["phase"] != wanted:
                raise typer.Exit(1)
            return
        if deadline is not None and time.monotonic() >= deadline:
            err.print(
                f"[red]timed out[/] after {timeout:g}s: release {escape(name)} is {escape(view['phase'])}"
            )
            raise typer.Exit(EXIT_TIMEOUT)
        time.sleep(0.25 if deadline is None else max(0.0, min(0.25, deadline - time.monotonic())))


@release_app.command("apply")
def apply_command(
    file: Annotated[Path, typer.Option("-f", "--file", help="The Release file.", show_default=False)],
    wait: Wait = False,
    timeout: Timeout = None,
    state_dir: StateDir = None,
) -> None:
    """Check a release and hand it to the control plane, which runs its steps in order.

    The checks of `plan` come first, then the control plane's own (the migration files parse, each
    database's URL is known to it, referenced flags and AnalysisTemplates exist, every step with
    analysis has a rollout to measure). Exit 2 naming the step when any fails; nothing is stored then.
    """
    seconds = _seconds(timeout)
    try:
        name, body = release_body(file)
    except SpecError as e:
        err.print(f"[red]error:[/] {escape(str(e))}")
        raise typer.Exit(2) from e
    result = _call(state_dir, "PUT", _release_path(name), body)
    changed = "applied" if result.get("changed") else "unchanged"
    out.print(f"release {escape(name)} {changed} ({escape(str(result.get('phase')))})")
    if wait:
        _wait_until_done(state_dir, name, "Succeeded", seconds)


def _status_table(view: dict[str, Any]) -> Table:
    table = Table(
        title=f"release {escape(view['name'])}: {escape(str(view['phase']))} - {escape(view['message'])}",
        title_justify="left",
        expand=False,
    )
    for column in ("#", "step", "phase", "message"):
        table.add_column(column, overflow="fold")
    for s in view["steps"]:
        table.add_row(str(s["index"]), escape(f"{s['name']}: {s['what']}"), s["phase"], escape(s["message"]))
    failure = view.get("failure")
    if failure:
        table.caption = f"step {failure['step']} failed: {escape(failure['message'])}\n"
    for index, reason in view.get("notUndoable", []):
        table.caption = (table.caption or "") + f"step {index} cannot be undone: {escape(reason)}\n"
    return table


def _print_failure(view: dict[str, Any]) -> None:
    """The step that failed and why (the failing metric, the rollout's reason), kept after its undo."""
    failure = view.get("failure")
    if failure:
        out.print(f"step {failure['step']} failed: {escape(failure['message'])}")


@release_app.command("status")
def status_command(
    name: Annotated[str, typer.Argument(help="The release.")],
    output: Annotated[OutputFormat, typer.Option("-o", "--output", help="text or json.")] = OutputFormat.text,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Follow the release until it ends: a live table on a terminal, else one line per change.",
        ),
    ] = False,
    state_dir: StateDir = None,
) -> None:
    """Show a release: its phase, each step's phase and message, and what could not be undone.

    With --watch, follow it until it ends (Ctrl-C stops watching; the release goes on). Exit 0 when it
    ended Succeeded or RolledBack, 1 when it ended Failed.
    """
    if watch:
        _watch(state_dir, name, output)
        return
    view = _call(state_dir, "GET", _release_path(name))
    if output is OutputFormat.json:
        print(json.dumps(view, indent=2))
        return
    out.print(f"release {escape(view['name'])}: {escape(str(view['phase']))} - {escape(view['message'])}")
    table = Table(expand=False)
    for column in ("#", "step", "phase", "message"):
        table.add_column(column, overflow="fold")
    for s in view["steps"]:
        table.add_row(str(s["index"]), escape(f"{s['name']}: {s['what']}"), s["phase"], escape(s["message"]))
    out.print(table)
    _print_failure(view)
    for index, reason in view.get("notUndoable", []):
        out.print(f"step {index} cannot be undone: {escape(reason)}")


def _watch(state_dir: Path | None, name: str, output: OutputFormat) -> None:
    """Poll the release; print what changed (lines, or JSON lines with -o json) or a live table."""
    import time

    from gapless.cli.release_history import watch_lines

    live = out.is_terminal and output is OutputFormat.text
    before: dict[str, Any] | None = None
    if live:
        from rich.live import Live

        with Live(console=out, auto_refresh=False) as screen:
            while True:
                view = _call(state_dir, "GET", _release_path(name))
                screen.update(_status_table(view), refresh=True)
                if view["phase"] in TERMINAL_PHASES:
                    break
                time.sleep(0.5)
    else:
        while True:
            view = _call(state_dir, "GET", _release_path(name))
            if output is OutputFormat.json:
                if view != before:
                    print(json.dumps(view), flush=True)
            else:
                for line in watch_lines(before, view):
                    out.print(escape(line), highlight=False, soft_wrap=True)
            before = view
            if view["phase"] in TERMINAL_PHASES:
                break
            time.sleep(0.5)
    if view["phase"] == "Failed":
        raise typer.Exit(1)


@release_app.command("history")
def history_command(
    name: Annotated[str | None, typer.Argument(help="One release (default: every release).")] = None,
    output: Annotated[OutputFormat, typer.Option("-o", "--output", help="text or json.")] = OutputFormat.text,
    state_dir: StateDir = None,
) -> None:
    """Every run of a release (each apply, and each undo of a finished one): when, how it ended, why.

    Read from the release's events, so it goes back as far as the control plane keeps events.
    """
    from gapless.cli.release_history import history_runs
    from gapless.cli.times import format_duration, rfc3339

    names = [name] if name else [r["name"] for r in _call(state_dir, "GET", "/api/v1/releases")["items"]]
    rows: list[dict[str, Any]] = []
    for n in names:
        if name:
            _call(state_dir, "GET", _release_path(n))  # 404 (exit 2) for a release that does not exist
        events = _events(state_dir, f"release:{n}")
        rows += [{"release": n} | r for r in history_runs(events)]
    rows.sort(key=lambda r: r["startedAt"])
    if output is OutputFormat.json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(expand=False)
    for column in ("release", "began", "started", "took", "outcome", "steps", "why"):
        table.add_column(column, overflow="fold")
    for r in rows:
        took = format_duration(r["endedAt"] - r["startedAt"]) if r["endedAt"] is not None else "-"
        steps = f"{r['stepsStarted']} started" + (f", {r['stepsUndone']} undone" if r["stepsUndone"] else "")
        why = "; ".join(r["stepsFailed"]) or r["message"]
        table.add_row(
            escape(r["release"]),
            r["began"] + (" (aborted)" if r["aborted"] else ""),
            rfc3339(r["startedAt"]),
            took,
            r["outcome"] or "running",
            steps,
            escape(why),
        )
    out.print(table)


def _events(state_dir: Path | None, stream: str) -> list[dict[str, Any]]:
    """Every event of one stream, page by page."""
    from urllib.parse import quote

    items: list[dict[str, Any]] = []
    seen = 0
    while True:
        page = _call(state_dir, "GET", f"/api/v1/events?rollout={quote(stream, safe='')}&since={seen}")[
            "items"
        ]
        if not page:
            return items
        items += page
        seen = page[-1]["id"]


@release_app.command("list")
def list_command(
    output: Annotated[OutputFormat, typer.Option("-o", "--output", help="text or json.")] = OutputFormat.text,
    state_dir: StateDir = None,
) -> None:
    """List the releases the control plane knows, with their phase and current step."""
    items = _call(state_dir, "GET", "/api/v1/releases")["items"]
    if output is OutputFormat.json:
        print(json.dumps(items, indent=2))
        return
    table = Table(expand=False)
    for column in ("name", "phase", "step", "message"):
        table.add_column(column, overflow="fold")
    for r in items:
        current = next((s for s in r["steps"] if s["phase"] in ("running", "undoing", "failed")), None)
        where = f"{current['index']} {current['name']}" if current else "-"
        table.add_row(escape(r["name"]), str(r["phase"]), escape(where), escape(r["message"]))
    out.print(table)


@release_app.command("promote")
def promote_command(
    name: Annotated[str, typer.Argument(help="The release.")], state_dir: StateDir = None
) -> None:
    """Pass the release's running approve gate, or retry a failed step that paused it."""
    result = _call(state_dir, "POST", _release_path(name, "promote"), {})
    out.print(f"release {escape(name)}: {escape(result['promoted'])} (step {result['step']})")


@release_app.command("abort")
def abort_command(
    name: Annotated[str, typer.Argument(help="The release.")],
    wait: Wait = False,
    timeout: Timeout = None,
    state_dir: StateDir = None,
) -> None:
    """Roll the release back: every step it started is undone, newest first (flags, rollouts, migrations).

    A migration that a complete step finished cannot be rolled back: the release then ends Failed,
    and status names every step that could not be undone and why.
    """
    seconds = _seconds(timeout)
    _call(state_dir, "POST", _release_path(name, "abort"), {})
    out.print(f"release {escape(name)}: rolling back")
    if wait:
        _wait_until_done(state_dir, name, "RolledBack", seconds)


@release_app.command("undo")
def undo_command(
    name: Annotated[str, typer.Argument(help="The release.")],
    wait: Wait = False,
    timeout: Timeout = None,
    state_dir: StateDir = None,
) -> None:
    """Take back a release that succeeded: every step undone, newest first, as an abort does."""
    seconds = _seconds(timeout)
    _call(state_dir, "POST", _release_path(name, "undo"), {})
    out.print(f"release {escape(name)}: undoing")
    if wait:
        _wait_until_done(state_dir, name, "RolledBack", seconds)
