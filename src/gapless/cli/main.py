"""Entry point of the ``gapless`` console script.

Exit codes are a contract for scripts: 0 ok, 1 the rollout failed or was aborted (or the control plane
is unreachable), 2 a usage or spec error (nothing was changed). ``-o json`` output is stable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from gapless import __version__
from gapless.cli import quick
from gapless.cli.api import SyncClient, report_error, resolve_state_dir, rollout_path
from gapless.cli.lazy import LazyGroup
from gapless.core.errors import Problem, SpecError

if TYPE_CHECKING:
    from gapless.cli.client import ApiClient

app = typer.Typer(
    name="gapless",
    help=(
        "Zero-downtime deployments: run N instances of your HTTP service behind gapless's router and "
        "replace them with a new version while traffic flows.\n\n"
        "Exit codes: 0 ok, 1 rollout failed or aborted, 2 usage or spec error."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    cls=LazyGroup,
)

out = Console()
err = Console(stderr=True)

T = TypeVar("T")

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Where gapless keeps its state (default: $GAPLESS_HOME, else .gapless in the working directory).",
        show_default=False,
    ),
]
SpecFile = Annotated[
    Path,
    typer.Option(
        "-f",
        "--file",
        help="Rollout spec (YAML); may also hold AnalysisTemplates (--- between documents).",
        show_default=False,
    ),
]
Output = Annotated[str, typer.Option("-o", "--output", help="text or json.")]
MetricsListen = Annotated[
    str | None,
    typer.Option(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="Also serve GET /metrics (Prometheus) and /healthz on this TCP address, without a token.",
        show_default=False,
    ),
]
DashboardListen = Annotated[
    str | None,
    typer.Option(
        "--dashboard-listen",
        metavar="HOST:PORT",
        help="Serve the web dashboard on this TCP address (login with the admin token); keep it on loopback.",
        show_default=False,
    ),
]
GrafanaUrl = Annotated[
    str | None,
    typer.Option(
        "--grafana-url",
        envvar="GAPLESS_GRAFANA_URL",
        metavar="URL",
        help="Also post every deployment event to this Grafana as an annotation.",
        show_default=False,
    ),
]
GrafanaTokenFile = Annotated[
    Path | None,
    typer.Option(
        "--grafana-token-file",
        metavar="PATH",
        help="File holding the Grafana API token (else $GAPLESS_GRAFANA_TOKEN).",
        show_default=False,
    ),
]

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="GAPLESS_DATABASE_URL",
        metavar="URL",
        help="The application's database (postgresql://... or sqlite:///PATH): revisions whose template "
        "declares requiresSchema wait until that migration has started there. Without it, the control "
        "plane goes by the migration events `gapless migrate` reports to it.",
        show_default=False,
    ),
]
DatabaseSchema = Annotated[
    str,
    typer.Option(
        "--database-schema",
        metavar="SCHEMA",
        help="PostgreSQL: the base schema the migrations of --database-url change.",
    ),
]


def _database_options(url: str | None, schema: str) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) that give a control plane its database; exit 2 for a malformed URL.

    The URL goes through the environment, not the command line, where ``ps`` would show its password.
    """
    if url is None:
        return [], {}
    from gapless.migrations.sqlite import is_sqlite_url, sqlite_path

    problem = ""
    if is_sqlite_url(url):
        try:
            sqlite_path(url)
        except ValueError as e:
            problem = str(e)
    else:
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(url)
        except Exception as e:  # psycopg.ProgrammingError: say what is wrong, without the password
            problem = str(e).split("\n")[0]
    if not schema or not schema.isprintable():
        err.print("[red]error:[/] --database-schema: must be a non-empty schema name")
        raise typer.Exit(2)
    if problem:
        err.print(f"[red]error:[/] --database-url: {problem}", highlight=False, markup=False)
        raise typer.Exit(2)
    return ["--database-schema", schema], {"GAPLESS_DATABASE_URL": url}


def _run(fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body, turning gapless errors into messages and exit codes."""
    import asyncio

    return _handle(lambda: asyncio.run(fn()))  # type: ignore[arg-type]


def _handle(fn: Callable[[], T]) -> T:
    """Run a command body, turning gapless errors into messages and exit codes (``api.report_error``)."""
    try:
        return fn()
    except KeyboardInterrupt as e:
        raise typer.Exit(130) from e
    except Exception as e:
        code, lines = report_error(e)
        if code is None:
            raise
        err.print(f"[red]error:[/] {escape(lines[0])}", highlight=False)
        for line in lines[1:]:
            err.print(line, markup=False, highlight=False)
        raise typer.Exit(code) from e


def _check_metrics_listen(value: str | None) -> None:
    """Exit 2 for a malformed address; warn when it is reachable from other machines."""
    if value is None:
        return
    from gapless.server.process import is_loopback, parse_metrics_listen

    try:
        host, _ = parse_metrics_listen(value)
    except ValueError as e:
        err.print(f"[red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from e
    if not is_loopback(host):
        err.print(
            f"[yellow]warning:[/] metrics on {value} are readable without a token by anyone who can reach it",
            highlight=False,
        )


def _check_dashboard_listen(value: str | None) -> None:
    """Exit 2 for a malformed address; warn when it is reachable from other machines."""
    if value is None:
        return
    from gapless.server.process import is_loopback, parse_metrics_listen

    try:
        host, _ = parse_metrics_listen(value)
    except ValueError as e:
        err.print(
            f"[red]error:[/] {str(e).replace('--metrics-listen', '--dashboard-listen')}", highlight=False
        )
        raise typer.Exit(2) from e
    if not is_loopback(host):
        err.print(
            f"[yellow]warning:[/] the dashboard on {value} is reachable from other machines; its login "
            "token then crosses the network unencrypted (prefer 127.0.0.1 and an SSH tunnel)",
            highlight=False,
        )


def _grafana_options(url: str | None, token_file: Path | None) -> list[str]:
    """The control plane's Grafana options; exit 2 for a token file that cannot be read."""
    if url is None:
        return []
    if not url.startswith(("http://", "https://")):
        err.print(f"[red]error:[/] --grafana-url {url!r}: must start with http:// or https://")
        raise typer.Exit(2)
    argv = ["--grafana-url", url]
    if token_file is not None:
        try:
            token_file.read_text()
        except OSError as e:
            err.print(f"[red]error:[/] --grafana-token-file {token_file}: {e.strerror or e}", highlight=False)
            raise typer.Exit(2) from e
        argv += ["--grafana-token-file", str(token_file.resolve())]
    return argv


def _check_output(output: str) -> None:
    if output not in ("text", "json"):
        err.print(f"[red]error:[/] --output must be text or json, not {output!r}")
        raise typer.Exit(2)


async def _apply(
    state_dir: Path,
    file: Path,
    *,
    start: bool,
    metrics_listen: str | None = None,
    dashboard_listen: str | None = None,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    adopt: bool = False,
) -> tuple[ApiClient, dict[str, Any] | None]:
    """Send a file's AnalysisTemplates, then its rollout (a file may hold both, or templates only)."""
    from gapless.cli.client import ApiClient, start_control_plane
    from gapless.server.process import dashboard_url, metrics_url, parse_metrics_listen
    from gapless.spec.load import load_documents

    docs = load_documents(file)
    if len(docs.rollouts) > 1:
        names = ", ".join(r.name for r in docs.rollouts)
        raise SpecError(
            str(file), [Problem("", f"one rollout per file, found {len(docs.rollouts)}: {names}")]
        )
    if not docs.rollouts and start:
        raise SpecError(str(file), [Problem("", "no Rollout document to start")])
    if start and await start_control_plane(
        state_dir, metrics_listen=metrics_listen, dashboard_listen=dashboard_listen, extra=extra, env=env
    ):
        err.print(f"started control plane for {state_dir}")
        if metrics_listen is not None:
            err.print(f"metrics on {metrics_url(*parse_metrics_listen(metrics_listen))}", highlight=False)
        if dashboard_listen is not None:
            url = dashboard_url(*parse_metrics_listen(dashboard_listen))
            err.print(f"dashboard on {url} (log in with the token in {state_dir / 'token'})", highlight=False)
    elif start and (metrics_listen is not None or dashboard_listen is not None or extra):
        err.print(
            f"[yellow]warning:[/] a control plane was already running for {state_dir}; --metrics-listen, "
            "--dashboard-listen, --grafana-url and --database-url take effect only when one starts",
            highlight=False,
        )
    client = ApiClient(state_dir)
    try:
        for t in docs.templates:
            doc = t.to_document(as_written=True)
            r = await client.request("PUT", f"/api/v1/analysistemplates/{t.metadata.name}", doc)
            what = "configured" if r["changed"] else "unchanged"
            err.print(f"analysistemplate {t.metadata.name} {what} (generation {r['generation']})")
        if not docs.rollouts:
            return client, None
        rollout = docs.rollouts[0]
        result = await client.request(
            "PUT",
            f"/api/v1/rollouts/{rollout.name}",
            rollout.to_document(as_written=True),
            params={"adopt": "true"} if adopt else None,
        )
        if adopt:
            adopted = result.get("adopted", {})
            err.print(
                f"{rollout.name}: adopted {len(adopted.get('instances', []))} running instance(s), "
                f"{len(adopted.get('ready', []))} of them in traffic"
            )
    except BaseException:
        await client.aclose()
        raise
    return client, result


@app.command()
def up(
    file: SpecFile,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once the spec is accepted.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Give up waiting after this many seconds.")] = None,
    state_dir: StateDir = None,
    metrics_listen: MetricsListen = None,
    dashboard_listen: DashboardListen = None,
    grafana_url: GrafanaUrl = None,
    grafana_token_file: GrafanaTokenFile = None,
    database_url: DatabaseUrl = None,
    database_schema: DatabaseSchema = "public",
    adopt: Annotated[
        bool,
        typer.Option(
            "--adopt",
            help="Take over the router and instances of this rollout that run without a record "
            "(state.db was lost): rebuild its state from them instead of refusing.",
        ),
    ] = False,
) -> None:
    """Start the control plane, the router and the instances of a rollout; wait until it is ready."""
    sd = resolve_state_dir(state_dir)
    _check_metrics_listen(metrics_listen)
    _check_dashboard_listen(dashboard_listen)
    db_argv, db_env = _database_options(database_url, database_schema)
    extra = tuple(_grafana_options(grafana_url, grafana_token_file) + db_argv)

    async def body() -> int:
        from gapless.cli.wait import wait_for_rollout

        client, result = await _apply(
            sd,
            file,
            start=True,
            metrics_listen=metrics_listen,
            dashboard_listen=dashboard_listen,
            extra=extra,
            env=db_env,
            adopt=adopt,
        )
        try:
            if result is None:  # _apply refuses a file without a rollout when starting
                return 2
            name = result["name"]
            if detach:
                out.print(f"{name}: generation {result['generation']} accepted")
                return 0
            code = await wait_for_rollout(client, name, result["generation"], err, timeout)
            if code == 0:
                listen = (await client.status(name)).get("router", {}).get("listen")
                err.print(f"[green]{name} is serving on http://{listen}/[/]")
            return code
        finally:
            await client.aclose()

    raise typer.Exit(_run(body))


@app.command()
def apply(
    file: SpecFile,
    wait: Annotated[
        bool, typer.Option("--wait", help="Block until the rollout completes (0) or fails (1).")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(help="With --wait: give up after this many seconds.")
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Submit a new desired spec; a changed template starts a rolling update."""
    sd = resolve_state_dir(state_dir)

    async def body() -> int:
        from gapless.cli.wait import wait_for_rollout

        client, result = await _apply(sd, file, start=False)
        try:
            if result is None:
                return 0
            name = result["name"]
            what = "configured" if result["changed"] else "unchanged"
            err.print(f"{name} {what} (generation {result['generation']}, template {result['revisionHash']})")
            if not wait:
                return 0
            return await wait_for_rollout(client, name, result["generation"], err, timeout)
        finally:
            await client.aclose()

    raise typer.Exit(_run(body))


@app.command()
def status(
    name: Annotated[str | None, typer.Argument(help="Rollout name (default: list every rollout).")] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep refreshing.")] = False,
    output: Output = "text",
    state_dir: StateDir = None,
) -> None:
    """Show a rollout's phase, conditions and instances."""
    _check_output(output)
    sd = resolve_state_dir(state_dir)

    def body() -> int:
        from gapless.cli.render import render_list, render_status

        with SyncClient(sd) as client:
            if name is None:
                listing = client.request("GET", "/api/v1/rollouts")
                items = listing["items"]
                for u in listing.get("unclaimed", []):
                    err.print(f"[yellow]warning:[/] {u['message']}", highlight=False)
                if output == "json":
                    out.print_json(json.dumps(items))
                else:
                    out.print(render_list(items))
                return 0
            if not watch:
                st = client.status(name)
                if output == "json":
                    out.print_json(json.dumps(st))
                else:
                    out.print(render_status(st))
                return 0
            import time

            from rich.live import Live

            with Live(console=out, refresh_per_second=4) as live:
                while True:
                    st = client.status(name)
                    if output == "json":
                        sys.stdout.write(json.dumps(st) + "\n")
                        sys.stdout.flush()
                    else:
                        live.update(render_status(st))
                    time.sleep(0.5)

    raise typer.Exit(_handle(body))


@app.command()
def analysis(
    name: Annotated[str, typer.Argument(help="Rollout name.")],
    revision: Annotated[
        int | None, typer.Option("--revision", help="Only this revision number (default: every one kept).")
    ] = None,
    output: Output = "text",
    state_dir: StateDir = None,
) -> None:
    """Show every analysis run of a rollout with the measurements behind each verdict.

    Answers "why was it rolled back" and "why did it pass": each metric's measurements, the canary's
    and the baseline's numbers in the same window with their units, and the judge's sentence; a
    sequential test still running shows how far it is from a decision and about how many more
    requests it needs.
    """
    _check_output(output)
    if revision is not None and revision < 1:
        err.print("[red]error:[/] --revision must be a positive revision number")
        raise typer.Exit(2)
    sd = resolve_state_dir(state_dir)

    def body() -> int:
        from gapless.cli.render import render_analysis

        with SyncClient(sd) as client:
            params = {"revision": revision} if revision else None
            data = client.request("GET", rollout_path(name, "analysis"), params=params)
        if output == "json":
            out.print_json(json.dumps(data))
        else:
            out.print(render_analysis(data["items"]))
        return 0

    raise typer.Exit(_handle(body))


@app.command()
def history(name: str, output: Output = "text", state_dir: StateDir = None) -> None:
    """List a rollout's revisions."""
    _check_output(output)
    sd = resolve_state_dir(state_dir)

    def body() -> int:
        from gapless.cli.render import render_history

        with SyncClient(sd) as client:
            items = client.request("GET", rollout_path(name, "history"))["items"]
        if output == "json":
            out.print_json(json.dumps(items))
        else:
            out.print(render_history(items))
        return 0

    raise typer.Exit(_handle(body))


def _wait(sd: Path, name: str, generation: int | None, timeout: float | None = None) -> int:
    """Follow the rollout until it completes (0) or fails (1); ``generation`` None: the current one."""

    async def body() -> int:
        from gapless.cli.client import ApiClient
        from gapless.cli.wait import wait_for_rollout

        async with ApiClient(sd) as client:
            gen = generation
            if gen is None:
                gen = int((await client.status(name)).get("generation", 0))
            return await wait_for_rollout(client, name, gen, err, timeout)

    return _run(body)


@app.command()
def undo(
    name: str,
    to_revision: Annotated[
        int | None, typer.Option("--to-revision", help="Revision number (default: previous).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Block until the rollback completes.")] = False,
    state_dir: StateDir = None,
) -> None:
    """Roll back to an earlier revision (a rolling update to its template)."""
    if to_revision is not None and to_revision < 1:
        err.print("[red]error:[/] --to-revision must be a positive integer")
        raise typer.Exit(2)
    sd = resolve_state_dir(state_dir)

    result, line = _handle(lambda: quick.undo(sd, name, to_revision))
    err.print(line, highlight=False)
    if not result.get("changed"):
        raise typer.Exit(0)
    raise typer.Exit(_wait(sd, name, result["generation"]) if wait else 0)


def _set_paused(name: str, paused: bool, state_dir: Path | None) -> None:
    sd = resolve_state_dir(state_dir)
    err.print(_handle(lambda: quick.set_paused(sd, name, paused)), highlight=False)


@app.command()
def promote(
    name: str,
    full: Annotated[bool, typer.Option("--full", help="Skip every remaining step and promote now.")] = False,
    state_dir: StateDir = None,
) -> None:
    """End the current pause or step of a canary or blue-green rollout (--full: skip all remaining steps)."""
    sd = resolve_state_dir(state_dir)
    err.print(_handle(lambda: quick.promote(sd, name, full)), highlight=False)


@app.command()
def abort(name: str, state_dir: StateDir = None) -> None:
    """Send all traffic back to stable at once; the new revision is scaled down after the abort delay."""
    sd = resolve_state_dir(state_dir)
    err.print(_handle(lambda: quick.abort(sd, name)), highlight=False)


@app.command()
def retry(
    name: str,
    wait: Annotated[bool, typer.Option("--wait", help="Block until the rollout completes or fails.")] = False,
    state_dir: StateDir = None,
) -> None:
    """Start an aborted or failed rollout again from its first step."""
    sd = resolve_state_dir(state_dir)
    result = _handle(lambda: quick.post(sd, name, "retry"))
    err.print(f"{name}: revision {result['revision']} starts again")
    raise typer.Exit(_wait(sd, name, None) if wait else 0)


@app.command()
def pause(name: str, state_dir: StateDir = None) -> None:
    """Pause a rollout: no instance is started or stopped for the update until resumed."""
    _set_paused(name, True, state_dir)


@app.command()
def resume(name: str, state_dir: StateDir = None) -> None:
    """Resume a paused rollout."""
    _set_paused(name, False, state_dir)


@app.command()
def logs(
    name: str,
    revision: Annotated[
        int | None, typer.Option("--revision", help="Only instances of this revision number.")
    ] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new lines.")] = False,
    tail: Annotated[int, typer.Option(help="Lines per instance to show first (-1: all).")] = -1,
    state_dir: StateDir = None,
) -> None:
    """Print the logs of a rollout's instances, each line prefixed with its instance."""
    from gapless.cli.logs import show_logs

    sd = resolve_state_dir(state_dir)
    raise typer.Exit(
        _run(lambda: show_logs(sd, name, revision=revision, follow=follow, tail=tail, console=out))
    )


@app.command()
def events(
    name: Annotated[str | None, typer.Argument(help="Only this rollout.")] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new events.")] = False,
    output: Output = "text",
    state_dir: StateDir = None,
) -> None:
    """Show deployment events (revision created, scaling, readiness, failures, completion)."""
    _check_output(output)
    sd = resolve_state_dir(state_dir)

    def body() -> int:
        import time

        from gapless.cli.render import render_events

        since = 0
        with SyncClient(sd) as client:
            while True:
                params: dict[str, Any] = {"since": since}
                if name:
                    params["rollout"] = name
                items = client.request("GET", "/api/v1/events", params=params)["items"]
                if items:
                    since = items[-1]["id"]
                    if output == "json":
                        for e in items:
                            sys.stdout.write(json.dumps(e) + "\n")
                        sys.stdout.flush()
                    else:
                        out.print(render_events(items))
                if not follow:
                    return 0
                time.sleep(0.5)

    raise typer.Exit(_handle(body))


@app.command()
def down(
    name: Annotated[
        str | None, typer.Argument(help="Remove only this rollout (default: everything).")
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Stop instances (gracefully), routers and the control plane; leave no process behind."""
    from gapless.cli.down import down_all, down_rollout

    sd = resolve_state_dir(state_dir)
    if name is None:
        raise typer.Exit(_run(lambda: down_all(sd, err)))
    raise typer.Exit(_run(lambda: down_rollout(sd, name, err)))


@app.command()
def demo(
    state_dir: StateDir = None,
    rps: Annotated[float, typer.Option(help="Load during the demo (requests/s).")] = 200.0,
) -> None:
    """Self-contained demo: 4 replicas under load, roll v1 -> v2, then a v3 that never becomes ready."""
    from gapless.cli.demo import run_demo

    raise typer.Exit(_run(lambda: run_demo(state_dir, rps=rps, console=err)))


@app.command()
def dashboard(
    open_browser: Annotated[
        bool, typer.Option("--open", help="Also open it in the default web browser.")
    ] = False,
    state_dir: StateDir = None,
) -> None:
    """Print the URL of the web dashboard (started by `gapless up --dashboard-listen HOST:PORT`)."""
    from gapless.core.files import DASHBOARD_URL_FILE

    sd = resolve_state_dir(state_dir)
    try:
        url = (sd / DASHBOARD_URL_FILE).read_text().strip()
    except FileNotFoundError:
        err.print(
            f"[red]error:[/] no dashboard is being served for {sd}; start the control plane with "
            "`gapless up --dashboard-listen 127.0.0.1:PORT`",
            highlight=False,
        )
        raise typer.Exit(1) from None
    out.print(url, highlight=False, soft_wrap=True)
    err.print(f"log in with the admin token in {sd / 'token'}", highlight=False)
    if open_browser:
        import webbrowser

        webbrowser.open(url)


@app.command("control-plane", hidden=True)
def control_plane(
    state_dir: StateDir = None,
    metrics_listen: MetricsListen = None,
    dashboard_listen: DashboardListen = None,
    grafana_url: GrafanaUrl = None,
    grafana_token_file: GrafanaTokenFile = None,
    database_url: DatabaseUrl = None,
    database_schema: DatabaseSchema = "public",
) -> None:
    """Run the control plane in the foreground (started detached by `gapless up`)."""
    import os

    from gapless.server.process import GrafanaTarget, run_control_plane

    _check_metrics_listen(metrics_listen)
    _check_dashboard_listen(dashboard_listen)
    _grafana_options(grafana_url, grafana_token_file)
    _database_options(database_url, database_schema)
    grafana = None
    if grafana_url is not None:
        token = os.environ.get("GAPLESS_GRAFANA_TOKEN", "")
        if grafana_token_file is not None:
            token = grafana_token_file.read_text().strip()
        grafana = GrafanaTarget(grafana_url, token)
    raise typer.Exit(
        run_control_plane(
            resolve_state_dir(state_dir),
            metrics_listen,
            dashboard_listen=dashboard_listen,
            grafana=grafana,
            database=None if database_url is None else (database_url, database_schema),
        )
    )


@app.command()
def version() -> None:
    """Print the gapless version."""
    out.print(__version__)


def main() -> None:
    app()
