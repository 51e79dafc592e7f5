"""``gapless flags ...``: run the flag service and manage projects, flags, tokens and the kill switch.

Management verbs find the flag service of the state directory on their own (the control plane's,
``gapless up``, or ``gapless flags serve``'s) and act with the admin token it wrote there; ``--url``
(``$GAPLESS_FLAGS_URL``) and ``--token`` (``$GAPLESS_FLAGS_TOKEN``) name another. See
``gapless.cli.flags_client``. Exit codes: 0 ok, 1 the service failed or none answers, 2 bad input
(nothing changed); ``flags diff`` has its own (0 same, 1 different, 2 trouble).

The module imports typer and the standard library only: rich and yaml are imported by the verbs that
print a table or read YAML. ``flags kill`` and ``flags enable`` usually do not come here at all: the
console script runs them without typer (``gapless.cli.flags_quick``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from gapless.cli.api import resolve_state_dir
from gapless.cli.flags_client import DEFAULT_URL, FlagsClient, FlagsError, api_path, candidates
from gapless.cli.flags_render import OUTPUTS, dump, flag_lines

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["flags_app"]

flags_app = typer.Typer(
    help="Feature flags: the flag service, projects, flags, the kill switch and SDK tokens.",
    no_args_is_help=True,
)

DEFAULT_LISTEN = DEFAULT_URL.removeprefix("http://")

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where gapless keeps its state (default: $GAPLESS_HOME, else .gapless).",
        show_default=False,
    ),
]
Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Flag service URL (default: $GAPLESS_FLAGS_URL, else the control plane of the state dir, "
        "else the URL `flags serve` wrote there, else http://127.0.0.1:8787).",
        show_default=False,
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Admin token (default: $GAPLESS_FLAGS_TOKEN, else the flag service's file in the state dir).",
        show_default=False,
    ),
]
Output = Annotated[str, typer.Option("-o", "--output", help="text, json or yaml.")]


def say(line: str) -> None:
    """A line for people on stderr (results go to stdout)."""
    sys.stderr.write(line + "\n")


def _fail(message: str, code: int, details: list[str] | None = None) -> typer.Exit:
    color = sys.stderr.isatty() and "NO_COLOR" not in os.environ
    say(("\x1b[31merror:\x1b[0m " if color else "error: ") + message)
    for line in details or []:
        say(line)
    return typer.Exit(code)


def _check_output(output: str, allowed: tuple[str, ...] = OUTPUTS) -> None:
    if output not in allowed:
        raise _fail(f"--output must be {', '.join(allowed[:-1])} or {allowed[-1]}, not {output!r}", 2)


def _emit(data: Any, output: str) -> None:
    sys.stdout.write(dump(data, output))


def client(url: str | None, token: str | None, state_dir: Path | None) -> FlagsClient:
    """The client of the flag service these options name (``FlagsError`` 2 on a malformed URL)."""
    sd = resolve_state_dir(state_dir)
    return FlagsClient(candidates(url, sd, os.environ), sd, token or os.environ.get("GAPLESS_FLAGS_TOKEN"))


@contextlib.contextmanager
def service(url: str | None, token: str | None, state_dir: Path | None) -> Iterator[FlagsClient]:
    """A client whose ``FlagsError`` ends the verb with its message and exit code."""
    try:
        with client(url, token, state_dir) as c:
            yield c
    except FlagsError as e:
        raise _fail(str(e), e.code, e.details) from e


def fail_with(e: FlagsError) -> NoReturn:
    raise _fail(str(e), e.code, e.details) from e


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _fail(f"--listen {value!r}: expected HOST:PORT with a port from 1 to 65535", 2)
    return host.strip("[]"), int(port)


def _write_url(path: Path, url: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(url + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


@flags_app.command()
def serve(
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT to serve on.")] = DEFAULT_LISTEN,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="sqlite:///PATH (default: flags.db in the state dir) or postgresql://...",
            show_default=False,
        ),
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Run the flag service (admin API, SDK streaming and polling) until interrupted.

    Its URL is written to flags.url in the state directory while it runs, for the other flags verbs.
    """
    from gapless.core.errors import SpecError
    from gapless.core.files import FLAGS_DB, FLAGS_URL_FILE
    from gapless.flags.service.serve import run_flag_service
    from gapless.flags.service.store import database_url as check_url

    host, port = _parse_listen(listen)
    sd = resolve_state_dir(state_dir)
    url = database_url or os.environ.get("GAPLESS_FLAGS_DATABASE_URL") or f"sqlite:///{sd / FLAGS_DB}"
    try:
        check_url(url)
    except SpecError as e:
        raise _fail(str(e.problems[0].message), 2) from e
    sd.mkdir(parents=True, exist_ok=True)
    url_file = sd / FLAGS_URL_FILE
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):  # noqa: S104 -- a comparison: the verbs reach a wildcard on loopback
        shown = "127.0.0.1" if host == "0.0.0.0" else "[::1]"  # noqa: S104
    mine = f"http://{shown}:{port}"
    _write_url(url_file, mine)

    def stopped(signum: int, _: object) -> None:
        # uvicorn stops on SIGTERM and then raises it again: end with its status, through the finally
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stopped)
    try:
        code = run_flag_service((host, port), url, sd)
    finally:
        with contextlib.suppress(OSError):
            if url_file.read_text().strip() == mine:
                url_file.unlink()
    raise typer.Exit(code)


def read_project_file(file: Path) -> dict[str, Any]:
    """A project document (YAML or JSON) from ``file``; ``FlagsError`` 2 naming what is wrong."""
    import yaml

    try:
        doc = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise FlagsError(2, f"{file}: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("key"), str):
        raise FlagsError(2, f"{file}: expected a project with a key")
    for kind in ("segments", "flags"):
        items = doc.get(kind) or []
        if not isinstance(items, list) or not all(
            isinstance(x, dict) and isinstance(x.get("key"), str) for x in items
        ):
            raise FlagsError(2, f"{file}: {kind}: expected a list of documents, each with a key")
        keys = [x["key"] for x in items]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise FlagsError(2, f"{file}: {kind}: {', '.join(twice)} given more than once")
    return doc


@flags_app.command()
def apply(
    file: Annotated[
        Path, typer.Option("-f", "--file", help="A project (YAML): key, environments, segments, flags.")
    ],
    url: Url = None,
    token: Token = None,
    state_dir: StateDir = None,
) -> None:
    """Create or update a project with its segments and flags from a file (each change is audited).

    Flags and segments the file does not name are left as they are; `flags diff -f` shows what changes.
    """
    try:
        doc = read_project_file(file)
    except FlagsError as e:
        fail_with(e)
    project = doc["key"]
    segments, flags = doc.pop("segments", []) or [], doc.pop("flags", []) or []
    with service(url, token, state_dir) as svc:
        svc.call("PUT", api_path("projects", project), doc)
        for s in segments:
            svc.call("PUT", api_path("projects", project, "segments", s["key"]), s)
        changed = 0
        for f in flags:
            result = svc.call("PUT", api_path("projects", project, "flags", f["key"]), f)
            changed += int(result.get("changed", False))
    say(f"project {project}: {len(segments)} segment(s), {len(flags)} flag(s), {changed} changed")


def flags_table(items: list[dict[str, Any]]) -> Table:
    """``flags list`` as a table; every cell is plain text (a stage ``[beta]`` is not rich markup)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold")
    for col in ("FLAG", "TYPE", "ENVIRONMENTS", "EVALUATIONS", "STALE"):
        table.add_column(col)
    for f in items:
        envs = " ".join(
            f"{name}:{'on' if e['enabled'] else 'OFF'}"
            + (f"[{e['stage']['name']}]" if e.get("stage") else "")
            for name, e in f["environments"].items()
        )
        table.add_row(  # Text, not str: a cell's text is data, never rich markup ("[beta]" stays)
            *map(
                Text,
                (
                    f["key"] + (" (archived)" if f["archived"] else ""),
                    f["type"],
                    envs,
                    str(sum(f["evaluations"].values())),
                    ", ".join(f["staleReasons"]) if f["stale"] else "",
                ),
            )
        )
    return table


@flags_app.command("list")
def list_flags(
    project: str,
    output: Output = "text",
    url: Url = None,
    token: Token = None,
    state_dir: StateDir = None,
) -> None:
    """Flags of a project: state per environment, release stage, evaluations, stale flags."""
    _check_output(output)
    with service(url, token, state_dir) as svc:
        items = svc.call("GET", api_path("projects", project, "flags"))["items"]
    if output != "text":
        _emit(items, output)
        return
    from rich.console import Console

    Console().print(flags_table(items))


@flags_app.command()
def get(
    project: str,
    flag: str,
    output: Output = "text",
    url: Url = None,
    token: Token = None,
    state_dir: StateDir = None,
) -> None:
    """One flag: state per environment, rules, variants, rollout and release stage, evaluations.

    -o json|yaml prints the flag's document as stored, with its report (`status`: state per
    environment, stage, evaluation counts, staleness) beside it.
    """
    _check_output(output)
    with service(url, token, state_dir) as svc:
        doc = svc.call("GET", api_path("projects", project, "flags", flag))
        items = svc.call("GET", api_path("projects", project, "flags"))["items"]
    report = next((i for i in items if i.get("key") == flag), None)
    if output != "text":
        _emit({"flag": doc, "status": report}, output)
        return
    sys.stdout.write("\n".join(flag_lines(doc, report)) + "\n")


def _switch(
    project: str,
    flag: str,
    environment: str,
    action: str,
    url: str | None,
    token: str | None,
    state_dir: Path | None,
) -> None:
    from gapless.cli.flags_quick import switch

    try:
        say(switch(project, flag, environment, action, url, token, resolve_state_dir(state_dir)))
    except FlagsError as e:
        fail_with(e)


@flags_app.command()
def kill(
    project: str,
    flag: str,
    environment: str,
    url: Url = None,
    token: Token = None,
    state_dir: StateDir = None,
) -> None:
    """The kill switch: everyone in ENVIRONMENT gets the flag's off variant, pushed to SDKs at once."""
    _switch(project, flag, environment, "kill", url, token, state_dir)


@flags_app.command()
def enable(
    project: str,
    flag: str,
    environment: str,
    url: Url = None,
    token: Token = None,
    state_dir: StateDir = None,
) -> None:
    """Turn a flag back on in ENVIRONMENT (its rules and rollout apply again)."""
    _switch(project, flag, environment, "enable", url, token, state_dir)


@flags_app.command()
def advance(
    project: str,
    flag: str,
    environment: str,
    stage: Annotated[
        int | None, typer.Option("--stage", help="Go to this stage index (default: the next).")
    ] = None,
    url: Url = None,
    token: Token = None,
    state_dir: StateDir = None,
) -> None:
    """Move a flag's release plan in ENVIRONMENT to its next stage (audited)."""
    body = {} if stage is None else {"stage": stage}
    with service(url, token, state_dir) as svc:
        svc.call(
            "POST",
            api_path("projects", project, "flags", flag, "environments", environment, "release", "advance"),
            body,
        )
    say(f"{flag} in {project}/{environment}: release plan advanced")


@flags_app.command()
def token(
    kind: Annotated[str, typer.Option("--kind", help="admin or sdk.")] = "sdk",
    name: Annotated[
        str, typer.Option("--name", help="Who or what uses it (shown in the audit log).")
    ] = "sdk",
    project: Annotated[str | None, typer.Option("--project", help="For an SDK token: the project.")] = None,
    environment: Annotated[
        str | None, typer.Option("--environment", help="For an SDK token: the environment.")
    ] = None,
    to_file: Annotated[
        Path | None,
        typer.Option(
            "--to-file",
            help="Write the token to this new file (mode 0600) instead of printing it; for "
            "$GAPLESS_FLAGS_SDK_TOKEN_FILE.",
        ),
    ] = None,
    url: Url = None,
    admin_token: Token = None,
    state_dir: StateDir = None,
) -> None:
    """Create a token and print it (the only time it is shown; the service stores its SHA-256)."""
    if kind not in ("admin", "sdk"):
        raise _fail("--kind must be admin or sdk", 2)
    if to_file is not None and (to_file.exists() or not to_file.parent.is_dir()):
        why = "exists" if to_file.exists() else "is in no directory"
        raise _fail(f"--to-file {to_file}: the file {why} (a token file is only ever created)", 2)
    body = {"kind": kind, "name": name, "project": project, "environment": environment}
    with service(url, admin_token, state_dir) as svc:
        result = svc.call("POST", "/api/v1/tokens", body)
    if to_file is None:
        sys.stdout.write(result["token"] + "\n")
        return
    try:  # O_EXCL: never through a link an attacker left, never over another file; 0600 from the start
        fd = os.open(to_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise _fail(
            f"--to-file {to_file}: {e.strerror} (the token made is {result['id']}: revoke it)", 1
        ) from e
    with os.fdopen(fd, "w") as f:
        f.write(result["token"] + "\n")
    sys.stderr.write(f"{kind} token {result['id']} written to {to_file} (mode 0600)\n")


@flags_app.command()
def audit(
    project: Annotated[str | None, typer.Option("--project")] = None,
    flag: Annotated[str | None, typer.Option("--flag")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    output: Output = "text",
    url: Url = None,
    token: Token = None,
    state_dir: StateDir = None,
) -> None:
    """Who changed what, when (newest first)."""
    from urllib.parse import urlencode

    _check_output(output)
    params = urlencode(
        {k: v for k, v in (("project", project), ("target", flag), ("limit", limit)) if v is not None}
    )
    with service(url, token, state_dir) as svc:
        items = svc.call("GET", f"/api/v1/audit?{params}")["items"]
    if output != "text":
        _emit(items, output)
        return
    import time

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold")
    for col in ("ID", "TIME", "TOKEN", "ACTION", "PROJECT", "TARGET"):
        table.add_column(col)
    for e in items:
        table.add_row(
            *map(
                Text,
                (
                    str(e["id"]),
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"])),
                    e["token"]["name"],
                    e["action"],
                    e["project"],
                    e["target"],
                ),
            )
        )
    Console().print(table)
