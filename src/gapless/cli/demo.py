"""``gapless demo``: the whole promise in one command.

Four replicas of the example service run behind the router under steady load; v1 is rolled to v2, then a
v3 whose readiness never passes is tried: its progress deadline fails it and v2 keeps serving. The demo
ends with the load checker's table and exits 0 only if not a single request failed.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import gapless
from gapless.cli.client import ApiClient, start_control_plane
from gapless.cli.down import down_all
from gapless.cli.wait import EXIT_FAILED, EXIT_OK, wait_for_rollout
from gapless.core.errors import GaplessError
from gapless.loadgen import LoadReport, LoadSnapshot, run_load
from gapless.spec.load import validate_rollout

__all__ = ["demo_spec", "example_app", "run_demo"]


def example_app() -> Path:
    """The example service: ``examples/app.py`` of a source checkout, or the copy inside the package."""
    here = Path(gapless.__file__).resolve().parent
    for candidate in (here.parents[1] / "examples" / "app.py", here / "_examples" / "app.py"):
        if candidate.is_file():
            return candidate
    raise GaplessError("the example service (examples/app.py) is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_spec(version: str, port: int, *, never_ready: bool = False, deadline: float = 60) -> dict[str, Any]:
    args = [sys.executable, str(example_app()), "--version", version, "--ready-delay", "0.5"]
    if never_ready:
        args.append("--never-ready")
    return {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "demo"},
        "spec": {
            "replicas": 4,
            "listen": f"127.0.0.1:{port}",
            "progressDeadlineSeconds": deadline,
            "template": {
                "command": args,
                "readinessProbe": {
                    "httpGet": {"path": "/healthz"},
                    "periodSeconds": 0.5,
                    "failureThreshold": 1,
                },
                "livenessProbe": {
                    "httpGet": {"path": "/livez"},
                    "periodSeconds": 2,
                    "initialDelaySeconds": 1,
                },
                "terminationGracePeriodSeconds": 10,
            },
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        },
    }


async def run_demo(state_dir: Path | None, *, rps: float, console: Console) -> int:
    own_dir = state_dir is None
    sd = Path(tempfile.mkdtemp(prefix="gapless-demo-")) if state_dir is None else state_dir.resolve()
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    specs_dir = sd / "demo-specs"
    specs_dir.mkdir(parents=True, exist_ok=True)
    docs = {
        "v1": demo_spec("v1", port),
        "v2": demo_spec("v2", port),
        "v3": demo_spec("v3", port, never_ready=True, deadline=8),
    }
    for v, doc in docs.items():
        (specs_dir / f"{v}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    console.rule("[bold]gapless demo")
    console.print(
        f"state directory {escape(str(sd))}; the service answers on {url}; specs in {escape(str(specs_dir))}"
    )
    client = ApiClient(sd)
    stop = asyncio.Event()
    latest: list[LoadSnapshot] = []
    results: dict[str, int] = {}
    load_task: asyncio.Task[LoadReport] | None = None
    try:
        await start_control_plane(sd)

        async def roll(version: str) -> int:
            rollout = validate_rollout(docs[version], source=f"{version}.yaml")
            r = await client.request("PUT", "/api/v1/rollouts/demo", rollout.to_document(as_written=True))
            return await wait_for_rollout(client, "demo", r["generation"], console, timeout=120)

        console.print("[bold]1.[/] starting 4 replicas of v1")
        results["v1"] = await roll("v1")
        if results["v1"] != EXIT_OK:
            raise GaplessError("v1 did not become ready")
        console.print(f"[bold]2.[/] steady load: {rps:g} requests/s through the router")
        load_task = asyncio.create_task(
            run_load(url, rps=rps, duration=600, stop=stop, on_progress=latest.append)
        )
        await asyncio.sleep(2)
        console.print("[bold]3.[/] rolling update v1 -> v2 (maxSurge 1, maxUnavailable 0)")
        results["v2"] = await roll("v2")
        _print_load(console, latest)
        await asyncio.sleep(1)
        console.print("[bold]4.[/] v3 never becomes ready; its progress deadline is 8 s")
        results["v3"] = await roll("v3")
        _print_load(console, latest)
        console.print("[bold]5.[/] v2 keeps serving")
        await asyncio.sleep(2)
    finally:
        stop.set()
        report = await load_task if load_task is not None else None
        await client.aclose()
        console.print("[bold]6.[/] shutting down")
        await down_all(sd, console)
    if report is None:
        return EXIT_FAILED
    console.print(_table(report))
    ok = report.failed == 0 and results.get("v2") == EXIT_OK and results.get("v3") == EXIT_FAILED
    if results.get("v3") != EXIT_FAILED:
        console.print("[red]v3 should have failed its progress deadline[/]")
    if report.failed:
        console.print(f"[red]{report.failed} request(s) failed[/]")
    if ok:
        console.print("[green]zero failed requests across two rollouts[/]")
        if own_dir:
            console.print(f"(state and logs kept in {escape(str(sd))})")
    return EXIT_OK if ok else EXIT_FAILED


def _print_load(console: Console, latest: list[LoadSnapshot]) -> None:
    if latest:
        s = latest[-1]
        console.print(f"   load so far: sent {s.sent}, ok {s.ok}, failed {s.failed}")


def _table(report: LoadReport) -> Table:
    t = Table(title="requests during the demo", header_style="bold")
    for col in ("VERSION", "REQUESTS", "FAILED", "P50 ms", "P99 ms"):
        t.add_column(col, justify="right")

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x * 1000:.1f}"

    for version, count in sorted(report.versions.items()):
        lat = report.version_latency.get(version)
        t.add_row(version, str(count), "", ms(lat.p50 if lat else None), ms(lat.p99 if lat else None))
    t.add_row("all", str(report.sent), str(report.failed), ms(report.p50), ms(report.p99), style="bold")
    return t
