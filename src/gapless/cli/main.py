"""Entry point of the ``gapless`` console script.

Exit codes are a contract for scripts: 0 ok, 1 the rollout failed or was aborted (or the control plane
is unreachable), 2 a usage or spec error (nothing was changed), 3 a wait timed out. ``-o json`` and
``-o yaml`` output is stable, with RFC 3339 times.
"""

from __future__ import annotations

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
        "Exit codes: 0 ok, 1 rollout failed or aborted, 2 usage or spec error, 3 timed out."
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
        metavar="DIR",
        help="Where gapless keeps its state (default: $GAPLESS_HOME, else .gapless in the working directory).",
        show_default=False,
    ),
]
KubeContext = Annotated[
    str | None,
    typer.Option(
        "--context",
        metavar="CONTEXT",
        help="Act on a Kubernetes cluster: this kubeconfig context ($KUBECONFIG or ~/.kube/config).",
        show_default=False,
    ),
]
KubeNamespace = Annotated[
    str | None,
    typer.Option(
        "-n",
        "--namespace",
        metavar="NS",
        help="Act on a Kubernetes cluster: the Rollout's namespace (default: the context's).",
        show_default=False,
    ),
]
Name = Annotated[str, typer.Argument(metavar="NAME", help="Rollout name.", show_default=False)]
SpecFile = Annotated[
    Path,
    typer.Option(
        "-f",
        "--file",
        metavar="FILE",
        help="Rollout spec (YAML); may also hold AnalysisTemplates (--- between documents).",
        show_default=False,
    ),
]
Output = Annotated[
    str,
    typer.Option(
        "-o",
        "--output",
        metavar="FORMAT",
        help="text, json or yaml (RFC 3339 times).",
        autocompletion=lambda: ["text", "json", "yaml"],
    ),
]
Timeout = Annotated[
    str | None,
    typer.Option(
        "--timeout",
        metavar="DURATION",
        help="Give up waiting after this long (90s, 2m, 1h30m, 500ms; a plain number is seconds) and exit 3.",
        show_default=False,
    ),
]
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


def _cluster(context: str | None, namespace: str | None, state_dir: Path | None) -> Any:
    """The cluster ``--context`` / ``-n`` point at (a ``gapless.cli.kube.Kube``), or None to act locally.

    lightkube is imported only here, so the local verbs never pay for it.
    """
    if context is None and namespace is None:
        return None
    if state_dir is not None:
        err.print("[red]error:[/] --state-dir is local; it cannot be used with --context or -n")
        raise typer.Exit(2)
    for option, value in (("--context", context), ("--namespace", namespace)):
        if value is not None and (not value or not value.isprintable()):
            err.print(f"[red]error:[/] {option} must name a context or namespace, not {escape(value)!r}")
            raise typer.Exit(2)
    from gapless.cli.kube import connect

    return _handle(lambda: connect(context, namespace))


def _check_metrics_listen(value: str | None) -> None:
    """Exit 2 for a malformed address; warn when it is reachable from other machines."""
    if value is None:
        return
    from gapless.server.addresses import is_loopback, parse_metrics_listen

    try:
        host, _ = parse_metrics_listen(value)
    except ValueError as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from e
    if not is_loopback(host):
        err.print(
            f"[yellow]warning:[/] metrics on {value} are readable without a token by anyone who can reach it",
            highlight=False,
        )


def _check_dashboard_listen(value: str | None, option: str = "--dashboard-listen") -> None:
    """Exit 2 for a malformed address; warn when it is reachable from other machines."""
    if value is None:
        return
    from gapless.server.addresses import is_loopback, parse_metrics_listen

    try:
        host, _ = parse_metrics_listen(value)
    except ValueError as e:
        err.print(f"[red]error:[/] {str(e).replace('--metrics-listen', option)}", highlight=False)
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
        err.print(f"[red]error:[/] --grafana-url {escape(repr(url))}: must start with http:// or https://")
        raise typer.Exit(2)
    argv = ["--grafana-url", url]
    if token_file is not None:
        try:
            token_file.read_text()
        except OSError as e:
            err.print(
                f"[red]error:[/] --grafana-token-file {escape(str(token_file))}: {escape(str(e.strerror or e))}",
                highlight=False,
            )
            raise typer.Exit(2) from e
        argv += ["--grafana-token-file", str(token_file.resolve())]
    return argv


def _check_output(output: str) -> None:
    from gapless.cli.output import check_format

    problem = check_format(output)
    if problem is not None:
        err.print(f"[red]error:[/] {escape(problem)}", highlight=False)
        raise typer.Exit(2)


def _duration(option: str, value: str | None) -> float | None:
    """Seconds in a duration option's value; exit 2 naming the value when it is not one."""
    if value is None:
        return None
    from gapless.cli.times import parse_duration

    try:
        return parse_duration(value, option=option)
    except ValueError as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from e


def _since(value: str | None) -> float | None:
    """The epoch time a ``--since`` value names; exit 2 naming the value when it is neither form."""
    if value is None:
        return None
    import time

    from gapless.cli.times import parse_since

    try:
        return parse_since(value, time.time())
    except ValueError as e:
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        raise typer.Exit(2) from e


def _emit(data: Any, output: str, *, stream: bool = False) -> None:
    """Write API data as ``-o json`` or ``-o yaml`` output."""
    from gapless.cli.output import write

    write(data, output, stream=stream)


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
    change_cause: str | None = None,
) -> tuple[ApiClient, dict[str, Any] | None]:
    """Send a file's AnalysisTemplates, then its rollout (a file may hold both, or templates only)."""
    from gapless.cli.client import ApiClient, start_control_plane
    from gapless.server.addresses import dashboard_url, metrics_url, parse_metrics_listen
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
        err.print(f"started control plane for {escape(str(state_dir))}")
        if metrics_listen is not None:
            err.print(f"metrics on {metrics_url(*parse_metrics_listen(metrics_listen))}", highlight=False)
        if dashboard_listen is not None:
            url = dashboard_url(*parse_metrics_listen(dashboard_listen))
            err.print(
                f"dashboard on {url} (log in with the token in {escape(str(state_dir / 'token'))})",
                highlight=False,
            )
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
        doc = rollout.to_document(as_written=True)
        if change_cause is not None:
            from gapless.spec.models import CHANGE_CAUSE_ANNOTATION

            meta = doc.setdefault("metadata", {})
            meta["annotations"] = dict(meta.get("annotations") or {}) | {
                CHANGE_CAUSE_ANNOTATION: change_cause
            }
        result = await client.request(
            "PUT",
            f"/api/v1/rollouts/{rollout.name}",
            doc,
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
    timeout: Timeout = None,
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
    seconds = _duration("--timeout", timeout)
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
            code = await wait_for_rollout(client, name, result["generation"], err, seconds)
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
    timeout: Timeout = None,
    change_cause: Annotated[
        str | None,
        typer.Option(
            "--change-cause",
            metavar="TEXT",
            help="Why this change is made; `gapless history` shows it with the revision it creates.",
            show_default=False,
        ),
    ] = None,
    state_dir: StateDir = None,
    context: KubeContext = None,
    namespace: KubeNamespace = None,
) -> None:
    """Submit a new desired spec; a changed template starts a rolling update.

    With --context or -n: server-side apply to the cluster (field manager gapless).
    """
    seconds = _duration("--timeout", timeout)
    if change_cause is not None and (not change_cause.strip() or not change_cause.isprintable()):
        err.print("[red]error:[/] --change-cause must be printable text on one line")
        raise typer.Exit(2)
    kube = _cluster(context, namespace, state_dir)
    if kube is not None:
        from gapless.cli import kube_cmd

        raise typer.Exit(_handle(lambda: kube_cmd.apply(kube, file, change_cause, wait, seconds, err)))
    sd = resolve_state_dir(state_dir)

    async def body() -> int:
        from gapless.cli.wait import wait_for_rollout

        client, result = await _apply(sd, file, start=False, change_cause=change_cause)
        try:
            if result is None:
                return 0
            name = result["name"]
            what = "configured" if result["changed"] else "unchanged"
            err.print(f"{name} {what} (generation {result['generation']}, template {result['revisionHash']})")
            if not wait:
                return 0
            return await wait_for_rollout(client, name, result["generation"], err, seconds)
        finally:
            await client.aclose()

    raise typer.Exit(_run(body))


@app.command()
def status(
    name: Annotated[
        str | None, typer.Argument(metavar="[NAME]", help="Rollout name (default: list every rollout).")
    ] = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Keep refreshing: a live view on a terminal, else one line per change "
            "(one document per change with -o json or yaml).",
        ),
    ] = False,
    output: Output = "text",
    state_dir: StateDir = None,
    context: KubeContext = None,
    namespace: KubeNamespace = None,
) -> None:
    """Show a rollout's phase, conditions and instances (on a cluster: its pods)."""
    _check_output(output)
    kube = _cluster(context, namespace, state_dir)
    if kube is not None:
        from gapless.cli import kube_cmd

        raise typer.Exit(_handle(lambda: kube_cmd.status(kube, name, watch, output, out, err)))
    sd = resolve_state_dir(state_dir)

    def body() -> int:
        from gapless.cli.render import render_list, render_status

        with SyncClient(sd) as client:
            if name is None and watch and (output != "text" or not out.is_terminal):
                return _watch_lines(client, None, output)
            if name is None and watch:
                import time

                from rich.live import Live

                with Live(console=out, refresh_per_second=4) as live:
                    while True:
                        live.update(render_list(client.request("GET", "/api/v1/rollouts")["items"]))
                        time.sleep(0.5)
            if name is None:
                listing = client.request("GET", "/api/v1/rollouts")
                items = listing["items"]
                for u in listing.get("unclaimed", []):
                    err.print(f"[yellow]warning:[/] {escape(str(u['message']))}", highlight=False)
                if output != "text":
                    _emit(items, output)
                else:
                    out.print(render_list(items))
                return 0
            if not watch:
                st = client.status(name)
                if output != "text":
                    _emit(st, output)
                else:
                    out.print(render_status(st))
                return 0
            if output != "text" or not out.is_terminal:
                return _watch_lines(client, name, output)
            import time

            from rich.live import Live

            with Live(console=out, refresh_per_second=4) as live:
                while True:
                    live.update(render_status(client.status(name)))
                    time.sleep(0.5)

    raise typer.Exit(_handle(body))


LIVE_KEYS = frozenset({"updatedAt", "lastUpdateTime"})
"""Status fields every reconcile pass writes anew: a change of them alone is not a change to report."""


def _without_live(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _without_live(v) for k, v in doc.items() if k not in LIVE_KEYS}
    if isinstance(doc, list):
        return [_without_live(v) for v in doc]
    return doc


def _watch_lines(client: SyncClient, name: str | None, output: str) -> int:
    """``status --watch`` into a pipe or file: a line (or document) each time a rollout's status changes.

    ``name`` None: every rollout, each on its own line.
    """
    import time

    from gapless.cli.render import summary_line

    last: dict[str, Any] = {}
    while True:
        if name is None:
            statuses = client.request("GET", "/api/v1/rollouts")["items"]
        else:
            statuses = [client.status(name)]
        for st in statuses:
            key = str(st.get("name"))
            seen: Any = summary_line(st).plain if output == "text" else _without_live(st)
            if last.get(key) == seen:
                continue
            last[key] = seen
            if output == "text":
                sys.stdout.write(seen + "\n")
                sys.stdout.flush()
            else:
                _emit(st, output, stream=True)
        time.sleep(0.5)


@app.command()
def analysis(
    name: Name,
    revision: Annotated[
        int | None, typer.Option("--revision", help="Only this revision number (default: every one kept).")
    ] = None,
    output: Output = "text",
    state_dir: StateDir = None,
    context: KubeContext = None,
    namespace: KubeNamespace = None,
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
    kube = _cluster(context, namespace, state_dir)
    if kube is not None:
        from gapless.cli import kube_cmd

        raise typer.Exit(_handle(lambda: kube_cmd.analysis(kube, name, revision, output, out)))
    sd = resolve_state_dir(state_dir)

    def body() -> int:
        from gapless.cli.render import render_analysis

        with SyncClient(sd) as client:
            params = {"revision": revision} if revision else None
            data = client.request("GET", rollout_path(name, "analysis"), params=params)
        if output != "text":
            _emit(data, output)
        else:
            out.print(render_analysis(data["items"]))
        return 0

    raise typer.Exit(_handle(body))


@app.command()
def history(
    name: Name,
    revision: Annotated[
        int | None,
        typer.Option("--revision", help="Show this revision: its template and change cause."),
    ] = None,
    output: Output = "text",
    state_dir: StateDir = None,
    context: KubeContext = None,
    namespace: KubeNamespace = None,
) -> None:
    """List a rollout's revisions, with the cause of each change (apply --change-cause).

    On a cluster (--context, -n): one revision per ReplicaSet.
    """
    _check_output(output)
    if revision is not None and revision < 1:
        err.print("[red]error:[/] --revision must be a positive revision number")
        raise typer.Exit(2)
    kube = _cluster(context, namespace, state_dir)
    if kube is not None:
        from gapless.cli import kube_cmd

        raise typer.Exit(_handle(lambda: kube_cmd.history(kube, name, revision, output, out, err)))
    sd = resolve_state_dir(state_dir)

    def body() -> int:
        from gapless.cli.history_view import render_revision
        from gapless.cli.render import render_history

        with SyncClient(sd) as client:
            items = client.request("GET", rollout_path(name, "history"))["items"]
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
                _emit(found, output)
            else:
                out.print(render_revision(found), highlight=False)
            return 0
        if output != "text":
            _emit(items, output)
        else:
            out.print(render_history(items))
        return 0

    raise typer.Exit(_handle(body))


def _wait(sd: Path, name: str, generation: int | None, timeout: float | None = None) -> int:
    """Follow the rollout until it completes (0), fails (1) or ``timeout`` passes (3).

    ``generation`` None: the current one.
    """

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
    name: Name,
    to_revision: Annotated[
        int | None, typer.Option("--to-revision", help="Revision number (default: previous).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Block until the rollback completes.")] = False,
    timeout: Timeout = None,
    state_dir: StateDir = None,
    context: KubeContext = None,
    namespace: KubeNamespace = None,
) -> None:
    """Roll back to an earlier revision (a rolling update to its template)."""
    if to_revision is not None and to_revision < 1:
        err.print("[red]error:[/] --to-revision must be a positive integer")
        raise typer.Exit(2)
    seconds = _duration("--timeout", timeout)
    kube = _cluster(context, namespace, state_dir)
    if kube is not None:
        from gapless.cli import kube_cmd

        raise typer.Exit(_handle(lambda: kube_cmd.undo(kube, name, to_revision, wait, seconds, err)))
    sd = resolve_state_dir(state_dir)

    result, line = _handle(lambda: quick.undo(sd, name, to_revision))
    err.print(line, highlight=False)
    if not result.get("changed"):
        raise typer.Exit(0)
    raise typer.Exit(_wait(sd, name, result["generation"], seconds) if wait else 0)


def _set_paused(
    name: str, paused: bool, state_dir: Path | None, context: str | None, namespace: str | None
) -> None:
    kube = _cluster(context, namespace, state_dir)
    if kube is not None:
        from gapless.cli import kube_cmd

        raise typer.Exit(_handle(lambda: kube_cmd.set_paused(kube, name, paused, err)))
    sd = resolve_state_dir(state_dir)
    err.print(_handle(lambda: quick.set_paused(sd, name, paused)), highlight=False)


@app.command()
def promote(
    name: Name,
    full: Annotated[bool, typer.Option("--full", help="Skip every remaining step and promote now.")] = False,
    state_dir: StateDir = None,
    context: KubeContext = None,
    namespace: KubeNamespace = None,
) -> None:
    """End the current pause or step of a canary or blue-green rollout (--full: skip all remaining steps)."""
    kube = _cluster(context, namespace, state_dir)
    if kube is not None:
        from gapless.cli import kube_cmd

        raise typer.Exit(_handle(lambda: kube_cmd.promote(kube, name, full, err)))
    sd = resolve_state_dir(state_dir)
    err.print(_handle(lambda: quick.promote(sd, name, full)), highlight=False)


@app.command()
def abort(
    name: Name, state_dir: StateDir = None, context: KubeContext = None, namespace: KubeNamespace = None
) -> None:
    """Send all traffic back to stable at once; the new revision is scaled down after the abort delay."""
    kube = _cluster(context, namespace, state_dir)
    if kube is not None:
        from gapless.cli import kube_cmd

        raise typer.Exit(_handle(lambda: kube_cmd.abort(kube, name, err)))
    sd = resolve_state_dir(state_dir)
    err.print(_handle(lambda: quick.abort(sd, name)), highlight=False)


@app.command()
def retry(
    name: Name,
    wait: Annotated[bool, typer.Option("--wait", help="Block until the rollout completes or fails.")] = False,
    timeout: Timeout = None,
    state_dir: StateDir = None,
    context: KubeContext = None,
    namespace: KubeNamespace = None,
) -> None:
    """Start an aborted or failed rollout again from its first step."""
    seconds = _duration("--timeout", timeout)
    kube = _cluster(context, namespace, state_dir)
    if kube is not None:
        from gapless.cli import kube_cmd

        raise typer.Exit(_handle(lambda: kube_cmd.retry(kube, name, wait, seconds, err)))
    sd = resolve_state_dir(state_dir)
    result = _handle(lambda: quick.post(sd, name, "retry"))
    err.print(f"{name}: revision {result['revision']} starts again")
    raise typer.Exit(_wait(sd, name, None, seconds) if wait else 0)


@app.command("wait")
def wait_command(
    name: Name,
    for_: Annotated[
        str,
        typer.Option(
            "--for",
            metavar="CONDITION",
            help="complete: the current generation rolled out and Healthy; healthy: Healthy; paused: Paused.",
            autocompletion=lambda: ["complete", "healthy", "paused"],
        ),
    ] = "complete",
    timeout: Timeout = None,
    state_dir: StateDir = None,
    context: KubeContext = None,
    namespace: KubeNamespace = None,
) -> None:
    """Follow a rollout until a condition holds, like `kubectl rollout status`.

    Exit 0 when it holds, 1 when the rollout failed or was aborted, 3 on timeout.
    """
    from gapless.cli.wait import CONDITIONS

    if for_ not in CONDITIONS:
        err.print(f"[red]error:[/] --for must be complete, healthy or paused, not {escape(for_)!r}")
        raise typer.Exit(2)
    seconds = _duration("--timeout", timeout)
    kube = _cluster(context, namespace, state_dir)
    if kube is not None:
        from gapless.cli import kube_cmd

        raise typer.Exit(_handle(lambda: kube_cmd.wait(kube, name, None, err, seconds, for_)))
    sd = resolve_state_dir(state_dir)

    async def body() -> int:
        from gapless.cli.client import ApiClient
        from gapless.cli.wait import wait_for_rollout

        async with ApiClient(sd) as client:
            generation = int((await client.status(name)).get("generation", 0))
            return await wait_for_rollout(client, name, generation, err, seconds, for_)

    raise typer.Exit(_run(body))


@app.command()
def pause(
    name: Name, state_dir: StateDir = None, context: KubeContext = None, namespace: KubeNamespace = None
) -> None:
    """Pause a rollout: no instance is started or stopped for the update until resumed."""
    _set_paused(name, True, state_dir, context, namespace)


@app.command()
def resume(
    name: Name, state_dir: StateDir = None, context: KubeContext = None, namespace: KubeNamespace = None
) -> None:
    """Resume a paused rollout."""
    _set_paused(name, False, state_dir, context, namespace)


@app.command()
def logs(
    name: Name,
    revision: Annotated[
        int | None, typer.Option("--revision", help="Only instances of this revision number.")
    ] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new lines.")] = False,
    tail: Annotated[int, typer.Option(help="Lines per instance to show first (-1: all).")] = -1,
    instance: Annotated[
        str | None,
        typer.Option("--instance", metavar="ID", help="Only this instance.", show_default=False),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="WHEN",
            help="Only lines from this long ago (10m, 1h30m) or since this RFC 3339 time.",
            show_default=False,
        ),
    ] = None,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", help="Show each line's time (RFC 3339, within a second).")
    ] = False,
    state_dir: StateDir = None,
    context: KubeContext = None,
    namespace: KubeNamespace = None,
) -> None:
    """Print the logs of a rollout's instances, each line prefixed with its instance.

    On a cluster (--context, -n): the pods' logs through the API (the instances are the pods).
    """
    after = _since(since)
    kube = _cluster(context, namespace, state_dir)
    if kube is not None:
        from gapless.cli.kube_logs import show_cluster_logs

        raise typer.Exit(
            _handle(
                lambda: show_cluster_logs(
                    kube,
                    name,
                    revision=revision,
                    follow=follow,
                    tail=tail,
                    console=out,
                    err=err,
                    instance=instance,
                    since=after,
                    timestamps=timestamps,
                )
            )
        )
    from gapless.cli.logs import show_logs

    sd = resolve_state_dir(state_dir)
    raise typer.Exit(
        _run(
            lambda: show_logs(
                sd,
                name,
                revision=revision,
                follow=follow,
                tail=tail,
                console=out,
                instance=instance,
                since=after,
                timestamps=timestamps,
            )
        )
    )


EVENTS_PAGE = 1000
"""Events the API returns at most per request."""


@app.command()
def events(
    name: Annotated[str | None, typer.Argument(metavar="[NAME]", help="Only this rollout.")] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new events.")] = False,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="WHEN",
            help="Only events from this long ago (10m, 1h30m) or since this RFC 3339 time.",
            show_default=False,
        ),
    ] = None,
    output: Output = "text",
    state_dir: StateDir = None,
    context: KubeContext = None,
    namespace: KubeNamespace = None,
) -> None:
    """Show deployment events (revision created, scaling, readiness, failures, completion).

    On a cluster (--context, -n): the Kubernetes Events about Rollouts.
    """
    _check_output(output)
    after = _since(since)
    kube = _cluster(context, namespace, state_dir)
    if kube is not None:
        from gapless.cli import kube_cmd

        raise typer.Exit(_handle(lambda: kube_cmd.events(kube, name, follow, after, output, out)))
    sd = resolve_state_dir(state_dir)

    def body() -> int:
        import time

        from gapless.cli.render import render_events

        seen = 0
        printed = False  # the header comes once, with the first events
        with SyncClient(sd) as client:
            while True:
                params: dict[str, Any] = {"since": seen}
                if name:
                    params["rollout"] = name
                page = client.request("GET", "/api/v1/events", params=params)["items"]
                if page:
                    seen = page[-1]["id"]
                    items = [e for e in page if after is None or e["time"] >= after]
                    if output != "text":
                        for e in items:
                            _emit(e, output, stream=True)
                    elif items:
                        out.print(render_events(items, header=not printed))
                        printed = True
                    if len(page) >= EVENTS_PAGE:
                        continue  # more are waiting: fetch the next page at once
                if not follow:
                    return 0
                time.sleep(0.5)

    raise typer.Exit(_handle(body))


@app.command()
def down(
    name: Annotated[
        str | None, typer.Argument(metavar="[NAME]", help="Remove only this rollout (default: everything).")
    ] = None,
    timeout: Annotated[
        str,
        typer.Option(
            "--timeout",
            metavar="DURATION",
            help="How long the graceful stop may take; then what is left is killed (everything) "
            "or waiting ends (one rollout), and down exits 3.",
        ),
    ] = "10m",
    state_dir: StateDir = None,
) -> None:
    """Stop instances (gracefully), routers and the control plane; leave no process behind."""
    from gapless.cli.down import down_all, down_rollout

    seconds = _duration("--timeout", timeout) or 0.0
    sd = resolve_state_dir(state_dir)
    if name is None:
        raise typer.Exit(_run(lambda: down_all(sd, err, seconds)))
    raise typer.Exit(_run(lambda: down_rollout(sd, name, err, seconds)))


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
    context: KubeContext = None,
    namespace: KubeNamespace = None,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            metavar="HOST:PORT",
            help="With --context/-n: where to serve the dashboard of the cluster (default: 127.0.0.1, a free port).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print the URL of the web dashboard (started by `gapless up --dashboard-listen HOST:PORT`).

    On a cluster (--context, -n): serve a dashboard of the namespace's Rollouts from this process, until
    Ctrl-C; its actions do what the CLI verbs do with --context.
    """
    kube = _cluster(context, namespace, state_dir)
    if kube is not None:
        from gapless.cli.kube_dashboard import serve
        from gapless.server.addresses import parse_metrics_listen

        _check_dashboard_listen(listen, "--listen")
        host, port = parse_metrics_listen(listen) if listen is not None else ("127.0.0.1", 0)
        raise typer.Exit(
            _handle(
                lambda: serve(kube, host, port, lambda line: err.print(line, markup=False, highlight=False))
            )
        )
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
    err.print(f"log in with the admin token in {escape(str(sd / 'token'))}", highlight=False)
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
def version(output: Output = "text") -> None:
    """Print the gapless version (also `gapless --version`)."""
    _check_output(output)
    if output == "text":
        out.print(__version__)
    else:
        _emit({"version": __version__}, output)


@app.command()
def completion(
    shell: Annotated[
        str,
        typer.Argument(
            metavar="SHELL", help="bash, zsh or fish.", autocompletion=lambda: list(COMPLETION_SHELLS)
        ),
    ],
) -> None:
    """Print a shell completion script for commands, options and their values.

    bash: add `source <(gapless completion bash)` to ~/.bashrc.

    zsh: add `source <(gapless completion zsh)` to ~/.zshrc, after compinit.

    fish: `gapless completion fish > ~/.config/fish/completions/gapless.fish`.
    """
    from typer._completion_shared import get_completion_script  # typer's own scripts, not public API

    if shell not in COMPLETION_SHELLS:
        err.print(f"[red]error:[/] SHELL must be bash, zsh or fish, not {escape(shell)!r}")
        raise typer.Exit(2)
    sys.stdout.write(
        get_completion_script(prog_name="gapless", complete_var=COMPLETE_VAR, shell=shell) + "\n"
    )


COMPLETION_SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_GAPLESS_COMPLETE"
"""The environment variable a completion script sets when it asks gapless for completions."""


def _version_option(value: bool) -> None:
    if value:
        out.print(__version__)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the gapless version and exit.",
            is_eager=True,
            callback=_version_option,
        ),
    ] = False,
) -> None:
    """Zero-downtime deployments (see the help text above)."""


def main() -> None:
    import os

    if os.environ.get(COMPLETE_VAR):
        from typer._completion_classes import completion_init  # registers typer's shells with click

        completion_init()
    else:
        _only_the_command_that_runs(sys.argv[1:])
    app()


def _only_the_command_that_runs(argv: list[str]) -> None:
    """Build only the command named first on the line (typer builds every command's parameters from
    its signature at each start: ~30 ms for twenty). Anything else (a typo, an option first, no
    command) keeps them all, so errors and help still list every command."""
    if not argv or argv[0].startswith("-"):
        return
    chosen = [
        c
        for c in app.registered_commands
        if (c.name or typer.main.get_command_name(c.callback.__name__ if c.callback else "")) == argv[0]
    ]
    if chosen:
        app.registered_commands = chosen
