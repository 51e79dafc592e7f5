"""A slowloris of 20,000 connections against the router, while normal clients send steady traffic.

Setup: one upstream (``bench/upstream.py``), the router as a real process with its default limits (the
connection limit is the smaller of ``maxConnections`` and what the open-file limit allows), attacker
processes (``tests/router/slowloris.py``, 10,000 sockets each, each from its own loopback address so
that it has its own ports, as another host would) that hold request heads that never end and reconnect
whenever the router closes one, and the load generator at ``--rps`` for ``--duration`` seconds once the
attack is in full swing. Printed: the normal clients' outcomes and latency, and what the router did
(connections open, evicted, refused, header timeouts). Loopback only, bounded in time.

Run: ``.venv/bin/python bench/slowloris.py [--connections 20000] [--rps 200] [--duration 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SRC = REPO / "src"
sys.path[:0] = [str(SRC), str(REPO)]

from gapless.loadgen import run_load  # noqa: E402
from gapless.router.client import RouterClient, RouterUnavailableError  # noqa: E402
from gapless.router.config import Backend, Limits, RouterConfig  # noqa: E402
from gapless.router.stats import RouterStats  # noqa: E402

PER_ATTACKER = 10_000


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_admin(client: RouterClient) -> None:
    for _ in range(400):
        try:
            await client.healthz()
            return
        except RouterUnavailableError:
            await asyncio.sleep(0.025)
    raise RuntimeError("the router did not start")


async def main(args: argparse.Namespace) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(REPO)])}
    procs: list[subprocess.Popen[bytes]] = []
    attackers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        token = secrets.token_hex(16)
        (tmp / "token").write_text(token)
        (tmp / "token").chmod(0o600)
        up_port, port = free_port(), free_port()
        procs.append(subprocess.Popen([sys.executable, str(HERE / "upstream.py"), "--port", str(up_port)]))
        router = [
            sys.executable, "-m", "gapless.router", "--name", "slowloris", "--listen", f"127.0.0.1:{port}",
            "--admin-socket", str(tmp / "admin.sock"), "--token-file", str(tmp / "token"),
            "--config-file", str(tmp / "router.json"),
        ]  # fmt: skip
        procs.append(subprocess.Popen(router, env=env, stderr=subprocess.DEVNULL))
        client = RouterClient(tmp / "admin.sock", token)
        try:
            await wait_admin(client)
            limits = Limits() if args.limit is None else Limits(max_connections=args.limit)
            backend = Backend(id="u", port=up_port, revision="a")
            await client.put_config(RouterConfig(version=1, backends=(backend,), limits=limits))
            n = args.connections
            seconds = args.ramp + args.duration + 5
            for i in range(0, n, PER_ATTACKER):
                count = min(PER_ATTACKER, n - i)
                source = f"127.0.0.{2 + i // PER_ATTACKER}"
                argv = [
                    sys.executable, "-m", "tests.router.slowloris", str(port), str(count), str(seconds),
                    "--source", source,
                ]  # fmt: skip
                attackers.append(subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE))
            started = time.monotonic()
            stats: RouterStats = await client.stats()
            while time.monotonic() - started < args.ramp:
                stats = await client.stats()
                if stats.connections.evicted > n // 2:
                    break
                await asyncio.sleep(0.2)
            ramp = time.monotonic() - started
            before = stats.connections
            report = await run_load(
                f"http://127.0.0.1:{port}/", rps=args.rps, duration=args.duration, timeout=5
            )
            after = (await client.stats()).connections
            for a in attackers:
                a.wait(seconds + 30)
            counts = [json.loads(a.stdout.read() or b"{}") for a in attackers if a.stdout is not None]
        finally:
            await client.aclose()
            for a in attackers:
                stop(a)
            for p in procs:
                stop(p)
    lat = report.latency
    print(
        f"attack: {n} slowloris sockets from {len(attackers)} processes; {ramp:.1f}s ramp before the clients"
    )
    print(
        "attackers: connects {}, closed by the router {}, failed connects {}".format(
            sum(c.get("connects", 0) for c in counts),
            sum(c.get("closed_by_server", 0) for c in counts),
            sum(c.get("failed_connects", 0) for c in counts),
        )
    )
    print(
        f"router: limit {after.limit}, open {after.open}, evicted {after.evicted} "
        f"({after.evicted - before.evicted} during the clients' run), refused {after.refused}, "
        f"header timeouts {after.header_timeouts}"
    )
    print(
        f"normal clients: {report.sent} sent at {args.rps:g} req/s for {args.duration:g}s, {report.ok} ok, "
        f"{report.failed} failed {report.failures or ''}"
    )
    if lat.p50 is not None and lat.p99 is not None and lat.max is not None:
        print(f"latency: p50 {lat.p50 * 1e3:.1f} ms, p99 {lat.p99 * 1e3:.1f} ms, max {lat.max * 1e3:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=20_000, help="attacker sockets")
    parser.add_argument("--rps", type=float, default=200, help="normal clients' request rate")
    parser.add_argument("--duration", type=float, default=10, help="seconds of normal traffic")
    parser.add_argument("--ramp", type=float, default=15, help="seconds at most for the attack to build up")
    parser.add_argument("--limit", type=int, help="the router's maxConnections (default: its default)")
    asyncio.run(main(parser.parse_args()))
