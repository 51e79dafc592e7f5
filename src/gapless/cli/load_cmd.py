"""``gapless load``: the command-line face of :func:`gapless.loadgen.run_load`.

The command only translates: options in, one ``run_load`` call, a report out. Bad input becomes a
click usage error that names the option (exit 2), any failed request makes the exit status 1, so a
script can gate on ``gapless load ... -o json`` without parsing anything. With ``-o json`` nothing but
the JSON goes to stdout; the live progress line goes to stderr and only in text mode.

The event loop is uvloop where available: it roughly doubles the rate one core can hold. Ctrl-C
stops scheduling and still prints the report of what was sent; a second Ctrl-C aborts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from gapless.loadgen import (
    DEFAULT_MAX_IN_FLIGHT,
    LoadInputError,
    LoadReport,
    LoadSnapshot,
    render_progress,
    render_report,
    run_load,
)

__all__ = ["OutputFormat", "load_command"]


class OutputFormat(StrEnum):
    """How the report is printed."""

    text = "text"
    json = "json"


_OPTION_FLAGS = {
    "url": "URL",
    "rps": "--rps",
    "duration": "--duration",
    "timeout": "--timeout",
    "version_header": "--version-header",
    "method": "--method",
    "max_in_flight": "--max-in-flight",
}


def load_command(
    url: Annotated[
        str,
        typer.Argument(
            help="Target URL: http:// on localhost, 127.0.0.0/8 or [::1]; nothing else is accepted.",
            show_default=False,
            metavar="URL",
        ),
    ],
    rps: Annotated[
        float,
        typer.Option("--rps", help="Requests per second, started on a fixed schedule (0 < rps <= 100000)."),
    ] = 100.0,
    duration: Annotated[
        float,
        typer.Option("--duration", "-d", help="Seconds to send for (0 < duration <= 3600)."),
    ] = 10.0,
    timeout: Annotated[
        float,
        typer.Option("--timeout", help="Seconds a request may take from its start to a complete response."),
    ] = 5.0,
    version_header: Annotated[
        str,
        typer.Option("--version-header", help="Response header whose values are counted per version."),
    ] = "X-Version",
    method: Annotated[str, typer.Option("--method", "-X", help="HTTP method, sent without a body.")] = "GET",
    max_in_flight: Annotated[
        int,
        typer.Option(
            "--max-in-flight",
            help="Cap on outstanding requests; requests due beyond it fail as 'overload'.",
        ),
    ] = DEFAULT_MAX_IN_FLIGHT,
    output: Annotated[
        OutputFormat,
        typer.Option(
            "--output", "-o", case_sensitive=False, help="text: table and live progress; json: JSON only."
        ),
    ] = OutputFormat.text,
) -> None:
    """Send HTTP requests to a local URL at a fixed rate and count every outcome.

    Requests start on a fixed schedule (open loop): a slow server cannot
    lower the rate and so hide its own latency.

    Every request ends as ok (2xx/3xx) or as a named failure: status_<code>,
    connect_refused, connection_reset, connection_closed, timeout, overload.
    Ok responses are counted per value of --version-header.

    Only loopback targets are allowed: localhost, 127.0.0.0/8 or ::1.

    Exit status: 0 if no request failed, 1 if any failed, 2 on bad input.

    Example: gapless load http://127.0.0.1:8080/ --rps 200 -d 30 -o json
    """
    text = output is OutputFormat.text
    err = Console(stderr=True)
    try:
        if text:
            with Live(console=err, auto_refresh=False, redirect_stdout=False, redirect_stderr=False) as live:

                def show(snapshot: LoadSnapshot) -> None:
                    live.update(render_progress(snapshot), refresh=True)

                report = _run(url, rps, duration, timeout, version_header, method, max_in_flight, show)
            if not err.is_terminal:
                err.line()  # rich leaves the last live line unterminated when writing to a file
        else:
            report = _run(url, rps, duration, timeout, version_header, method, max_in_flight, None)
    except LoadInputError as exc:
        raise typer.BadParameter(
            exc.message, param_hint=f"'{_OPTION_FLAGS.get(exc.option, exc.option)}'"
        ) from exc

    if text:
        Console().print(render_report(report))
    else:
        typer.echo(json.dumps(report.to_json(), indent=2))
    if report.failed:
        raise typer.Exit(1)


def _run(
    url: str,
    rps: float,
    duration: float,
    timeout: float,
    version_header: str,
    method: str,
    max_in_flight: int,
    on_progress: Callable[[LoadSnapshot], None] | None,
) -> LoadReport:
    async def body() -> LoadReport:
        stop = asyncio.Event()
        with _stop_on_interrupt(stop):
            return await run_load(
                url,
                rps=rps,
                duration=duration,
                timeout=timeout,
                version_header=version_header,
                method=method,
                max_in_flight=max_in_flight,
                on_progress=on_progress,
                stop=stop,
            )

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(body())


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # optional: not built for Windows
    except ImportError:  # pragma: no cover
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


@contextlib.contextmanager
def _stop_on_interrupt(stop: asyncio.Event) -> Iterator[None]:
    """While active, the first SIGINT sets ``stop``; the handler then removes itself so a second aborts.

    Signal handlers can only be installed from the main thread; elsewhere this does nothing.
    """
    loop = asyncio.get_running_loop()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupted() -> None:
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    try:
        loop.add_signal_handler(signal.SIGINT, interrupted)
    except NotImplementedError:  # pragma: no cover - Windows event loops
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
