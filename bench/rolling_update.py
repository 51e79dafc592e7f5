"""Benchmark: K rolling updates of N replicas under load through the built-in router.

Prints requests sent and failed, P50/P99 latency in steady state vs during the rollouts, and each
rollout's duration against its lower bound: the number of surge waves times the time an instance needs to
become ready (its --ready-delay plus up to one readiness period). Run from a checkout:

    .venv/bin/python bench/rolling_update.py --updates 3 --replicas 4 --rps 300
"""

from __future__ import annotations

import argparse
import asyncio
import math
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from gapless.loadgen import run_load

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "examples" / "app.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spec(port: int, version: str, args: argparse.Namespace) -> dict[str, object]:
    return {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": args.replicas,
            "listen": f"127.0.0.1:{port}",
            "template": {
                "command": [
                    sys.executable,
                    str(APP),
                    "--version",
                    version,
                    "--ready-delay",
                    str(args.ready_delay),
                ],
                "readinessProbe": {
                    "httpGet": {"path": "/healthz"},
                    "periodSeconds": args.period,
                    "failureThreshold": 1,
                },
                "terminationGracePeriodSeconds": 10,
            },
            "strategy": {"rollingUpdate": {"maxSurge": args.surge, "maxUnavailable": args.unavailable}},
        },
    }


def gapless(state: Path, *argv: str) -> float:
    started = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "gapless", *argv, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        raise SystemExit(f"gapless {' '.join(argv)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return time.monotonic() - started


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.2f}"


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--updates", type=int, default=3)
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--rps", type=float, default=300)
    p.add_argument("--surge", type=int, default=1)
    p.add_argument("--unavailable", type=int, default=0)
    p.add_argument("--ready-delay", type=float, default=0.5)
    p.add_argument("--period", type=float, default=0.2)
    p.add_argument("--steady", type=float, default=5.0, help="seconds of steady-state load measured first")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="gapless-bench-"))
    state = tmp / "state"
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    files = []
    for k in range(args.updates + 1):
        f = tmp / f"v{k}.yaml"
        f.write_text(yaml.safe_dump(spec(port, f"v{k}", args)))
        files.append(f)
    try:
        gapless(state, "up", "-f", str(files[0]))
        steady = await run_load(url, rps=args.rps, duration=args.steady)
        stop = asyncio.Event()
        during = asyncio.create_task(run_load(url, rps=args.rps, duration=3600, stop=stop))
        durations = []
        for f in files[1:]:
            durations.append(await asyncio.to_thread(gapless, state, "apply", "-f", str(f), "--wait"))
        stop.set()
        rolling = await during
    finally:
        gapless(state, "down")

    waves = math.ceil(args.replicas / max(1, args.surge + args.unavailable))
    bound = waves * args.ready_delay
    print(
        f"\n{args.updates} rolling update(s) of {args.replicas} replicas, maxSurge {args.surge}, "
        f"maxUnavailable {args.unavailable}, {args.rps:g} req/s offered\n"
    )
    print(f"{'phase':<10}{'sent':>9}{'failed':>9}{'P50 ms':>10}{'P99 ms':>10}")
    for name, r in (("steady", steady), ("rollouts", rolling)):
        print(f"{name:<10}{r.sent:>9}{r.failed:>9}{ms(r.p50):>10}{ms(r.p99):>10}")
    if rolling.failures:
        print("failures:", dict(rolling.failures))
    print(f"\n{'update':<8}{'seconds':>9}{'lower bound':>13}{'ratio':>8}")
    for i, d in enumerate(durations, 1):
        print(f"{i:<8}{d:>9.2f}{bound:>13.2f}{d / bound if bound else float('nan'):>8.2f}")
    print(f"\nversions served during the rollouts: {dict(sorted(rolling.versions.items()))}")


if __name__ == "__main__":
    asyncio.run(main())
