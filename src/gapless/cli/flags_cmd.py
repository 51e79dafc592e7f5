"""``gapless flags ...``: run the flag service and manage projects, flags, tokens and the kill switch.

Management commands talk to a running service over HTTP (``--url``, default ``$GAPLESS_FLAGS_URL`` or
``http://127.0.0.1:8787``) with an admin token (``--token``, default ``$GAPLESS_FLAGS_TOKEN`` or the
file ``flags serve`` wrote in the state directory). Exit codes: 0 ok, 1 the service failed or could not
be reached, 2 bad input (nothing changed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import yaml
from rich.console import Console
from rich.table import Table

from gapless.cli.client import resolve_state_dir

__all__ = ["flags_app"]

flags_app = typer.Typer(
    help="Feature flags: the flag service, projects, flags, the kill switch and SDK tokens.",
    no_args_is_help=True,
)

out = Console()
err = Console(stderr=True)

DEFAULT_LISTEN = "127.0.0.1:8787"

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
        help="Flag service URL (default: $GAPLESS_FLAGS_URL or http://127.0.0.1:8787).",
        show_default=False,
    ),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Admin token (default: $GAPLESS_FLAGS_TOKEN, else the file `flags serve` wrote).",
        show_default=False,
    ),
]


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _fail(f"--listen {value!r}: expected HOST:PORT with a port from 1 to 65535", 2)
    return host.strip("[]"), int(port)


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
    """Run the flag service (admin API, SDK streaming and polling) until interrupted."""
    from gapless.core.errors import SpecError
    from gapless.flags.service.serve import run_flag_service
    from gapless.flags.service.store import database_url as check_url

    address = _parse_listen(listen)
    sd = resolve_state_dir(state_dir)
    url = database_url or os.environ.get("GAPLESS_FLAGS_DATABASE_URL") or f"sqlite:///{sd / 'flags.db'}"
    try:
        check_url(url)
    except SpecError as e:
        raise _fail(str(e.problems[0].message), 2) from e
    sd.mkdir(parents=True, exist_ok=True)
    raise typer.Exit(run_flag_service(address, url, sd))


class _Service:
    def __init__(self, url: str | None, token: str | None, state_dir: Path | None) -> None:
        from gapless.flags.service.serve import ADMIN_TOKEN_FILE

        self.url = (url or os.environ.get("GAPLESS_FLAGS_URL") or f"http://{DEFAULT_LISTEN}").rstrip("/")
        token = token or os.environ.get("GAPLESS_FLAGS_TOKEN")
        if token is None:
            path = resolve_state_dir(state_dir) / ADMIN_TOKEN_FILE
            try:
                token = path.read_text().strip()
            except OSError as e:
                raise _fail(
                    f"no admin token: give --token, set GAPLESS_FLAGS_TOKEN, or run `gapless flags serve` ({e})",
                    2,
                ) from e
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            r = self.http.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise _fail(f"flag service at {self.url} did not answer: {e}", 1) from e
        if r.status_code >= 400:
            try:
                data = r.json()
                problems = data.get("problems") or [{"path": "", "message": data.get("error", r.text)}]
            except ValueError:
                problems = [{"path": "", "message": r.text}]
            for p in problems:
                err.print(
                    f"  {p['path'] + ': ' if p['path'] else ''}{p['message']}", highlight=False, markup=False
                )
            raise _fail(
                f"{method} {path} answered {r.status_code}",
                2 if 400 <= r.status_code < 500 and r.status_code != 409 else 1,
            )
        return r.json() if r.content else {}


@flags_app.command()
def apply(
    file: Annotated[
        Path, typer.Option("-f", "--file", help="A project (YAML): key, environments, segments, flags.")
    ],
    url: Url = None,
    token: Token = None,
    state_dir: StateDir = None,
) -> None:
    """Create or update a project with its segments and flags from a file (each change is audited)."""
    try:
        doc = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise _fail(f"{file}: {e}", 2) from e
    if not isinstance(doc, dict) or not isinstance(doc.get("key"), str):
        raise _fail(f"{file}: expected a project with a key", 2)
    svc = _Service(url, token, state_dir)
    project = doc["key"]
    segments, flags = doc.pop("segments", []) or [], doc.pop("flags", []) or []
    svc.call("PUT", f"/api/v1/projects/{project}", doc)
    for s in segments:
        svc.call("PUT", f"/api/v1/projects/{project}/segments/{s.get('key')}", s)
    changed = 0
    for f in flags:
        result = svc.call("PUT", f"/api/v1/projects/{project}/flags/{f.get('key')}", f)
        changed += int(result.get("changed", False))
    err.print(f"project {project}: {len(segments)} segment(s), {len(flags)} flag(s), {changed} changed")


@flags_app.command("list")
def list_flags(
    project: str,
    output: Annotated[str, typer.Option("-o", "--output", help="text or json.")] = "text",
    url: Url = None,
    token: Token = None,
    state_dir: StateDir = None,
) -> None:
    """Flags of a project: state per environment, release stage, evaluations, stale flags."""
    if output not in ("text", "json"):
        raise _fail(f"--output must be text or json, not {output!r}", 2)
    items = _Service(url, token, state_dir).call("GET", f"/api/v1/projects/{project}/flags")["items"]
    if output == "json":
        out.print_json(json.dumps(items))
        return
    table = Table(box=None, header_style="bold")
    for col in ("FLAG", "TYPE", "ENVIRONMENTS", "EVALUATIONS", "STALE"):
        table.add_column(col)
    for f in items:
        envs = " ".join(
            f"{name}:{'on' if e['enabled'] else 'OFF'}"
            + (f"[{e['stage']['name']}]" if e.get("stage") else "")
            for name, e in f["environments"].items()
        )
        table.add_row(
            f["key"] + (" (archived)" if f["archived"] else ""),
            f["type"],
            envs,
            str(sum(f["evaluations"].values())),
            ", ".join(f["staleReasons"]) if f["stale"] else "",
        )
    out.print(table)


def _switch(
    project: str,
    flag: str,
    environment: str,
    action: str,
    url: str | None,
    token: str | None,
    state_dir: Path | None,
) -> None:
    result = _Service(url, token, state_dir).call(
        "POST", f"/api/v1/projects/{project}/flags/{flag}/environments/{environment}/{action}"
    )
    revision = result.get("revisions", {}).get(environment)
    what = f"revision {revision}" if revision else "no change"
    err.print(f"{flag} in {project}/{environment}: {'killed' if action == 'kill' else 'enabled'} ({what})")


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
    _Service(url, token, state_dir).call(
        "POST", f"/api/v1/projects/{project}/flags/{flag}/environments/{environment}/release/advance", body
    )
    err.print(f"{flag} in {project}/{environment}: release plan advanced")


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
    url: Url = None,
    admin_token: Token = None,
    state_dir: StateDir = None,
) -> None:
    """Create a token and print it (the only time it is shown; the service stores its SHA-256)."""
    if kind not in ("admin", "sdk"):
        raise _fail("--kind must be admin or sdk", 2)
    body = {"kind": kind, "name": name, "project": project, "environment": environment}
    result = _Service(url, admin_token, state_dir).call("POST", "/api/v1/tokens", body)
    out.print(result["token"], highlight=False)


@flags_app.command()
def audit(
    project: Annotated[str | None, typer.Option("--project")] = None,
    flag: Annotated[str | None, typer.Option("--flag")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    url: Url = None,
    token: Token = None,
    state_dir: StateDir = None,
) -> None:
    """Who changed what, when (newest first)."""
    params = "&".join(
        f"{k}={v}" for k, v in (("project", project), ("target", flag), ("limit", limit)) if v is not None
    )
    items = _Service(url, token, state_dir).call("GET", f"/api/v1/audit?{params}")["items"]
    table = Table(box=None, header_style="bold")
    for col in ("ID", "TIME", "TOKEN", "ACTION", "PROJECT", "TARGET"):
        table.add_column(col)
    import time as _time

    for e in items:
        table.add_row(
            str(e["id"]),
            _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(e["at"])),
            e["token"]["name"],
            e["action"],
            e["project"],
            e["target"],
        )
    out.print(table)
