"""Benchmark: how fast promote, abort and undo reach the router, and failures across repeated rollouts.

For each of ``--tries`` rounds it measures the time from the start of the ``gapless`` CLI process
(``gapless promote`` of a canary pause, ``gapless abort`` of a canary, ``gapless undo`` of a blue-green
switch) to the moment the router applied the new weights (by the router's own monotonic clock, which
``/healthz`` on its admin socket reports), and to the CLI's exit; then prints P50/P99 per command. ``--via api`` sends the API request
from this process instead (the time without the CLI's start). A steady load runs
through the router the whole time and its failures are reported: every round is a full rollout, so
``--tries 10`` gives 10 canary rollouts (promoted and aborted) and 10 blue-green rollouts (undone).

    .venv/bin/python bench/strategies.py --tries 50 [--via api]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from gapless.cli.client import ApiClient
from gapless.core.files import router_socket
from gapless.router.client import RouterClient

REPO = Path(__file__).resolve().parents[1]
GAPLESS = Path(sys.executable).with_name("gapless")
APP = REPO / "examples" / "app.py"


def spec(name: str, port: int, version: str, strategy: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "listen": f"127.0.0.1:{port}",
            "template": {
                "command": [sys.executable, str(APP), "--version", version],
                "readinessProbe": {
                    "httpGet": {"path": "/healthz"},
                    "periodSeconds": 0.1,
                    "failureThreshold": 1,
                },
                "terminationGracePeriodSeconds": 5,
            },
            "strategy": strategy,
        },
    }


CANARY = {
    "canary": {
        "abortScaleDownDelaySeconds": 0,
        "scaleDownDelaySeconds": 0,
        "steps": [
            {"setCanaryScale": {"replicas": 1}},
            {"setWeight": 20},
            {"pause": {}},
            {"setWeight": 40},
            {"pause": {}},
        ],
    }
}
BLUE_GREEN = {"blueGreen": {"scaleDownDelaySeconds": 600}}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bench:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.api = ApiClient(state)
        self.token = (state / "token").read_text().strip() if (state / "token").exists() else ""

    async def put(self, doc: dict[str, Any]) -> None:
        await self.api.request("PUT", f"/api/v1/rollouts/{doc['metadata']['name']}", doc)

    async def status(self, name: str) -> dict[str, Any]:
        return await self.api.status(name)

    async def until(self, name: str, predicate: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(await self.status(name)):
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: timed out waiting; status {await self.status(name)}")
            await asyncio.sleep(0.02)

    async def weights_change(self, name: str, before: dict[str, int] | None, started: float) -> float:
        """Seconds from ``started`` to the moment the router's weights changed, by the router's own clock.

        The router notes CLOCK_MONOTONIC when it applies new weights (``/healthz``), so nothing here
        polls while the command runs: polling took CPU from the command and, on a busy machine, saw
        the change up to 200 ms after the router made it.
        """
        async with RouterClient(router_socket(self.state, name), self.token) as router:
            while (await router.get_config()).weights == before:  # noqa: ASYNC110 -- another process
                await asyncio.sleep(0.01)  # the command ended before its pass did (it waits 2 s at most)
            health = await router.healthz()
            return float(health["weights_changed_monotonic"]) - started

    async def command(self, via: str, name: str, verb: str, body: dict[str, Any]) -> tuple[float, float]:
        """(seconds to the router's new weights, seconds to the command's end), both from its start."""
        before = await self.router_weights(name)
        t0 = time.monotonic()
        if via == "api":
            sent = asyncio.create_task(self.api.request("POST", f"/api/v1/rollouts/{name}/{verb}", body))
        else:
            argv = [str(GAPLESS), verb, name, "--state-dir", str(self.state)]
            if body.get("full"):
                argv.append("--full")
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            sent = asyncio.create_task(proc.communicate())
        result = await sent
        ended = time.monotonic() - t0
        changed = await self.weights_change(name, before, t0)
        if via == "cli" and proc.returncode != 0:
            raise SystemExit(f"gapless {verb} {name} exited {proc.returncode}: {result[1].decode()}")
        return changed, ended

    async def router_weights(self, name: str) -> dict[str, int] | None:
        async with RouterClient(router_socket(self.state, name), self.token) as router:
            return (await router.get_config()).weights


def at(index: int) -> Any:
    """A status predicate: the canary waits for promote at step ``index``."""

    def check(st: dict[str, Any]) -> bool:
        strategy = st.get("strategy") or {}
        return strategy.get("stepIndex") == index and bool(strategy.get("waitingForPromote"))

    return check


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tries", type=int, default=50)
    p.add_argument("--rps", type=float, default=200)
    p.add_argument(
        "--via", choices=("cli", "api"), default="cli", help="start each command as (default: cli)"
    )
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gapless-bench-strategies-"))
    state = tmp / "state"
    cport, bport = free_port(), free_port()
    first = tmp / "c0.yaml"
    first.write_text(yaml.safe_dump(spec("canary", cport, "v0", CANARY)))
    subprocess.run(
        [sys.executable, "-m", "gapless", "up", "-f", str(first), "--state-dir", str(state)],
        check=True,
        capture_output=True,
    )
    second = tmp / "b0.yaml"
    second.write_text(yaml.safe_dump(spec("bluegreen", bport, "v0", BLUE_GREEN)))
    subprocess.run(
        [sys.executable, "-m", "gapless", "up", "-f", str(second), "--state-dir", str(state)],
        check=True,
        capture_output=True,
    )
    b = Bench(state)
    # The load runs in processes of its own: in this one it would delay the polling that times the
    # commands (the event loop busy sending requests) and add its own lag to every measurement.
    loads = [
        await asyncio.create_subprocess_exec(
            str(GAPLESS),
            "load",
            f"http://127.0.0.1:{port}/",
            "--rps",
            str(args.rps),
            "-d",
            "3600",
            "-o",
            "json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for port in (cport, bport)
    ]
    timings: dict[str, list[float]] = {"promote": [], "abort": [], "undo": []}
    ends: dict[str, list[float]] = {"promote": [], "abort": [], "undo": []}

    async def measure(name: str, verb: str, body: dict[str, Any]) -> None:
        changed, ended = await b.command(args.via, name, verb, body)
        timings[verb].append(changed)
        ends[verb].append(ended)

    try:
        for k in range(1, args.tries + 1):
            # Canary: reach the first pause, promote (weight 20 -> 40), then abort at the second pause.
            await b.put(spec("canary", cport, f"v{k}", CANARY))
            await b.until("canary", at(2))
            await measure("canary", "promote", {})
            await b.until("canary", at(4))
            await measure("canary", "abort", {})
            # Blue-green: switch automatically, then undo inside the scale-down window.
            await b.put(spec("bluegreen", bport, f"v{k}", BLUE_GREEN))
            await b.until("bluegreen", lambda st: (st.get("strategy") or {}).get("promoted"))
            await measure("bluegreen", "undo", {})
            await b.until("bluegreen", lambda st: st.get("phase") == "Healthy")
            print(
                f"round {k}: " + "  ".join(f"{c} {v[-1] * 1000:.1f} ms" for c, v in timings.items()),
                flush=True,
            )
    finally:
        reports = []
        for proc in loads:
            proc.send_signal(signal.SIGINT)  # `gapless load` stops and prints what it sent
            out, _ = await proc.communicate()
            reports.append(json.loads(out))
        await b.api.aclose()
        subprocess.run(
            [sys.executable, "-m", "gapless", "down", "--state-dir", str(state)],
            check=False,
            capture_output=True,
        )
    print(
        f"\n{args.tries} rounds: {args.tries} canary rollouts promoted then aborted, {args.tries} blue-green rollouts undone"
    )
    start = "the CLI process's start" if args.via == "cli" else "the API call"
    print(f"times from {start}: to the router holding the new weights, and to the command's end\n")
    print(f"{'command':<10}{'P50 ms':>9}{'P99 ms':>9}{'max ms':>9}{'end P50':>9}{'end P99':>9}")
    for command, values in timings.items():
        e = ends[command]
        print(
            f"{command:<10}{statistics.median(values) * 1000:>9.1f}{pct(values, 99) * 1000:>9.1f}"
            f"{max(values) * 1000:>9.1f}{statistics.median(e) * 1000:>9.1f}{pct(e, 99) * 1000:>9.1f}"
        )
    for name, r in zip(("canary", "blue-green"), reports, strict=True):
        lat = r["latency"]
        print(
            f"\nload on {name}: sent {r['sent']}, failed {r['failed']} {r['failures'] or ''}, "
            f"P50 {(lat['p50'] or 0) * 1000:.2f} ms, P99 {(lat['p99'] or 0) * 1000:.2f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
