"""Benchmark the router against a direct connection and against HAProxy, on pinned CPUs.

Rows, all against the same two tiny upstreams (``bench/upstream.py``):

  direct   wrk -> one upstream
  gapless  wrk -> gapless router (two backends in two revisions, weights 1:1, a header route and
           stickiness by header configured but not matched by wrk's requests, counters on) -> upstreams
  haproxy  wrk -> HAProxy (round-robin, forwardfor, http-reuse) -> upstreams
  gapless-haproxy  wrk -> HAProxy as gapless runs it (``spec.router.type: haproxy``: generated
           configuration, two revisions weighted 1:1 through the runtime API, the request log read
           for latency, ``show stat`` polled every second) -> upstreams

Each row is one function returning a ``Row`` (see ``BENCHES``); a new row is one more such function.
wrk runs on CPU 0 (``--wrk-cpu``); the proxy and the upstreams share CPU 1 (``--proxy-cpu``), so each
proxy gets the same single core. The rows run side by side ``--runs`` times (3 by default), and every
run's ratio to HAProxy and P99 is printed, not only the best: on a shared machine one run proves little.
``--syscalls`` adds a short extra wrk run per proxy under ``strace -c`` and reports system calls per
request (strace slows the proxy down, so that run's speed is not reported). Needs ``wrk`` and
``taskset``; the HAProxy row is skipped without ``haproxy``.
Run: ``.venv/bin/python bench/router.py [--duration 10] [--connections 64] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from gapless.router.client import RouterClient, RouterUnavailableError
from gapless.router.config import Backend, Route, RouteMatch, RouterConfig, Stickiness, StringMatch
from gapless.spec.router import DEFAULT_LATENCY_SAMPLING

HERE = Path(__file__).resolve().parent

OWN_SESSION = True
"""Every proxy runs in a session of its own, as gapless starts its routers (the built-in one and HAProxy)
and as a proxy runs as a service. It matters: with the kernel's autogroup scheduling
(``/proc/sys/kernel/sched_autogroup_enabled``), a session is a scheduling group, and a proxy in its own
group takes turns with its upstreams (in the benchmark's group) differently from one in theirs. Measured
with HAProxy alone (gapless's generated configuration, dynamic servers, 4 s of wrk, two rounds): 9,523 /
9,654 requests/s in the benchmark's session, 6,881 / 5,808 in its own. Before this, the plain HAProxy and
built-in rows ran in the benchmark's session and the gapless-haproxy row in its own."""
SRC = HERE.parent / "src"


@dataclass
class Row:
    name: str
    rps: float | None
    p50: str
    p99: str
    note: str = ""
    cpu_us: float | None = None  # CPU time of the proxy process per request
    user_share: float | None = None  # share of that CPU time spent in user space
    syscalls: float | None = None  # system calls of the proxy per request (``--syscalls``)
    upstream_us: float | None = None  # CPU time of both upstreams per request (they share the proxy's core)


def millis(latency: str) -> float | None:
    """wrk's latency text (``812.00us``, ``2.52ms``, ``1.02s``) in milliseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", latency)
    if m is None:
        return None
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process so far."""
    t = psutil.Process(pid).cpu_times()
    return float(t.user), float(t.system)


def serving_pid(pid: int) -> int:
    """The process that serves requests: the router's worker, the one child of its supervisor."""
    children = psutil.Process(pid).children()
    return children[0].pid if len(children) == 1 else pid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def pinned(cpu: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv]


def count_syscalls(args: argparse.Namespace, url: str, pid: int) -> float | None:
    """System calls per request of process ``pid`` (all its threads) over a short wrk run under strace."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    with tempfile.NamedTemporaryFile(prefix="gapless-strace-", suffix=".txt") as out:
        tracer = subprocess.Popen(
            [strace, "-c", "-f", "-p", str(pid), "-o", out.name], stderr=subprocess.DEVNULL
        )
        time.sleep(0.5)  # attached
        try:
            text = subprocess.run(
                pinned(args.wrk_cpu, ["wrk", "-t1", f"-c{args.connections}", "-d3s", url]),
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10)
        total = re.search(r"(\d+) requests in", text)
        calls = re.search(r"^100\.00\s+\S+\s+\d+\s+(\d+)", Path(out.name).read_text(), re.M)
    if total is None or calls is None or not int(total.group(1)):
        return None
    return int(calls.group(1)) / int(total.group(1))


def run_wrk(args: argparse.Namespace, port: int, name: str, pid: int | None = None) -> Row:
    url = f"http://127.0.0.1:{port}/"
    # A short warm-up fills connection pools and lets the proxies settle.
    subprocess.run(
        pinned(args.wrk_cpu, ["wrk", "-t1", f"-c{args.connections}", "-d1s", url]),
        capture_output=True,
        check=True,
    )
    cmd = pinned(
        args.wrk_cpu,
        ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency", url],
    )
    ups = list(getattr(args, "upstream_pids", []))
    up0 = sum(sum(cpu_seconds(u)) for u in ups)
    user0, sys0 = cpu_seconds(pid) if pid is not None else (0.0, 0.0)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    user1, sys1 = cpu_seconds(pid) if pid is not None else (0.0, 0.0)
    up1 = sum(sum(cpu_seconds(u)) for u in ups)
    cpu = (user1 - user0) + (sys1 - sys0) if pid is not None else None
    if args.verbose:
        print(out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return Row(
        name,
        float(rps.group(1)) if rps else None,
        p50.group(1) if p50 else "?",
        p99.group(1) if p99 else "?",
        errors.group(0) if errors else "",
        cpu * 1e6 / int(total.group(1)) if cpu is not None and total else None,
        (user1 - user0) / cpu if cpu else None,
        count_syscalls(args, url, pid) if args.syscalls and pid is not None else None,
        (up1 - up0) * 1e6 / int(total.group(1)) if ups and total else None,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench_gapless(args: argparse.Namespace, tmp: Path, upstreams: list[int]) -> Row:
    port = free_port()
    token = secrets.token_hex(16)
    (tmp / "token").write_text(token)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    argv = [
        sys.executable, "-m", "gapless.router", "--name", "bench", "--listen", f"127.0.0.1:{port}",
        "--admin-socket", str(tmp / "admin.sock"), "--token-file", str(tmp / "token"),
        "--config-file", str(tmp / "router.json"),
    ]  # fmt: skip
    proc = subprocess.Popen(
        pinned(args.proxy_cpu, argv), env=env, stderr=subprocess.DEVNULL, start_new_session=OWN_SESSION
    )
    try:
        wait_port(port)
        config = RouterConfig(
            version=1,
            backends=tuple(
                Backend(id=f"u{i}", port=p, revision=rev)
                for i, (p, rev) in enumerate(zip(upstreams, "ab", strict=True))
            ),
            weights={"a": 1, "b": 1},
        )
        if not args.no_routes:
            # Configured as a canary has them, but wrk's requests match neither: they split by weight.
            config = config.model_copy(
                update={
                    "routes": (
                        Route(
                            match=(RouteMatch(header="X-Canary", value=StringMatch(exact="always")),),
                            revision="b",
                        ),
                    ),
                    "stickiness": Stickiness(header="X-User"),
                }
            )

        async def push() -> None:
            async with RouterClient(tmp / "admin.sock", token) as client:
                for _ in range(200):  # the port is bound before the worker serves the admin socket
                    try:
                        await client.healthz()
                        break
                    except RouterUnavailableError:
                        await asyncio.sleep(0.025)
                await client.put_config(config)

        asyncio.run(push())
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
        pid = serving_pid(proc.pid)
        if args.profile:
            prof = subprocess.Popen(
                ["py-spy", "record", "-o", args.profile, "-p", str(pid), "--format",
                 "raw" if args.profile.endswith(".txt") else "flamegraph", "-d", str(args.duration + 1)]
            )  # fmt: skip
        row = run_wrk(args, port, "gapless", pid)
        if args.profile:
            prof.wait()
        return row
    finally:
        stop(proc)


HAPROXY_CFG = """
global
    maxconn 4096
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    option forwardfor
    http-reuse always
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    balance roundrobin
{servers}
"""


def bench_haproxy(args: argparse.Namespace, tmp: Path, upstreams: list[int]) -> Row:
    binary = shutil.which("haproxy")
    if binary is None:
        print("haproxy not found (apt-get install -y haproxy): skipping the haproxy row")
        return Row("haproxy", None, "-", "-", "haproxy not installed")
    port = free_port()
    servers = "\n".join(f"    server u{i} 127.0.0.1:{p}" for i, p in enumerate(upstreams))
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(port=port, servers=servers))
    proc = subprocess.Popen(
        pinned(args.proxy_cpu, [binary, "-f", str(cfg)]),
        stderr=subprocess.DEVNULL,
        start_new_session=OWN_SESSION,
    )
    try:
        wait_port(port)
        return run_wrk(args, port, "haproxy", proc.pid)
    finally:
        stop(proc)


BENCHES: dict[str, Callable[[argparse.Namespace, Path, list[int]], Row]] = {
    "direct": lambda args, tmp, upstreams: run_wrk(args, upstreams[0], "direct", args.upstream_pids[0]),
    "gapless": bench_gapless,
    "haproxy": bench_haproxy,
}
"""The rows in the order they run; each starts its proxy, runs wrk against it and stops it."""


def print_rows(rows: list[Row]) -> None:
    print(
        f"{'target':<10}{'req/s':>12}{'P50':>12}{'P99':>12}{'CPU/req':>12}{'user':>7}{'sys/req':>9}"
        f"{'ups/req':>9}  note"
    )
    for r in rows:
        rps = f"{r.rps:,.0f}" if r.rps is not None else "-"
        cpu = f"{r.cpu_us:.1f}us" if r.cpu_us is not None else "-"
        user = f"{r.user_share:.0%}" if r.user_share is not None else "-"
        calls = f"{r.syscalls:.2f}" if r.syscalls is not None else "-"
        ups = f"{r.upstream_us:.1f}us" if r.upstream_us is not None else "-"
        print(f"{r.name:<10}{rps:>12}{r.p50:>12}{r.p99:>12}{cpu:>12}{user:>7}{calls:>9}{ups:>9}  {r.note}")


def compare(rows: list[Row], name: str, reference: str = "haproxy") -> str:
    """``name``'s req/s as a share of ``reference``'s and its P99 minus the reference's."""
    by = {r.name: r for r in rows}
    row, ref = by.get(name), by.get(reference)
    if row is None or ref is None or row.rps is None or not ref.rps:
        return f"{name}/{reference}: -"
    p99, ref_p99 = millis(row.p99), millis(ref.p99)
    delta = (
        f", P99 {row.p99} vs {ref.p99} ({p99 - ref_p99:+.2f} ms)"
        if p99 is not None and ref_p99 is not None
        else ""
    )
    return f"{name}/{reference}: {row.rps / ref.rps:.2f}x req/s{delta}"


def bench_gapless_haproxy(args: argparse.Namespace, tmp: Path, upstreams: list[int]) -> Row:
    """gapless's HAProxy router, started and driven by ``HaproxyRouters`` as the control plane does.

    This process is pinned to the proxy's CPU while HAProxy starts (so HAProxy inherits that CPU and
    runs one thread, like the plain row) and stays there: the control plane's part (the request log
    ring followed on the runtime socket, read in batches; runtime API; stats polls) shares the proxy's
    core, so the row counts what the metrics cost, as on a machine where both run side by side.
    """
    from gapless.controller.haproxy import HaproxyRouters
    from gapless.controller.traffic import RouterChoice, Routing
    from gapless.platform.local import LocalPlatform

    binary = shutil.which("haproxy")
    if binary is None:
        return Row("gapless-haproxy", None, "-", "-", "haproxy not installed")
    port = free_port()
    state = tmp / "state"
    state.mkdir(exist_ok=True)

    async def run() -> Row:
        routers = HaproxyRouters(state, LocalPlatform(state, state_id="bench"))
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {args.proxy_cpu})
        try:
            choice = RouterChoice("haproxy", binary, latency_sampling=args.latency_sampling)
            await routers.ensure("bench", f"127.0.0.1:{port}", router=choice)
            backends = [
                Backend(id=f"u{i}", port=p, revision=rev)
                for i, (p, rev) in enumerate(zip(upstreams, "ab", strict=True))
            ]
            await routers.set_backends("bench", backends, Routing(weights={"a": 1, "b": 1}))
            wait_port(port)
            answer = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/")
            assert answer.status_code == 200
            pid = routers.state("bench").pid
            worker = serving_pid(pid) if pid is not None else None
            done = asyncio.Event()

            async def poll() -> None:
                while not done.is_set():
                    await routers.stats("bench")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(done.wait(), 1.0)

            poller = asyncio.create_task(poll())
            me = psutil.Process()
            before_cpu = me.cpu_times()
            row = await asyncio.to_thread(run_wrk, args, port, "gapless-haproxy", worker)
            after_cpu = me.cpu_times()
            done.set()
            await poller
            stats = await routers.stats("bench")
            logged = sum(r.latency_count for r in stats.revisions.values()) if stats else 0
            served = sum(r.requests for r in stats.revisions.values()) if stats else 0
            rlog = routers.request_log("bench")
            dropped = rlog.dropped if rlog is not None else 0
            wakeups = routers.log_wakeups("bench")
            control = (after_cpu.user - before_cpu.user) + (after_cpu.system - before_cpu.system)
            measured = row.rps * args.duration if row.rps else 0
            row.note = (
                row.note + f" control plane {control * 1e6 / measured if measured else 0:.1f}us/req;"
                f" 1 in {args.latency_sampling}: {logged} of {served} requests timed "
                f"({logged * args.latency_sampling / served if served else 0:.2f} of the expected), "
                f"{dropped} lines lost, {logged / wakeups if wakeups else 0:.1f} lines per wakeup"
            ).strip()
            return row
        finally:
            await routers.remove("bench")
            await routers.aclose()
            os.sched_setaffinity(0, before)

    return asyncio.run(run())


BENCHES["gapless-haproxy"] = bench_gapless_haproxy


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--runs", type=int, default=3, help="times the rows run side by side")
    parser.add_argument("--wrk-cpu", type=int, default=0)
    parser.add_argument("--proxy-cpu", type=int, default=1)
    parser.add_argument("--upstream-cpu", type=int, help="CPU of the upstreams (default: the proxy's)")
    parser.add_argument("--only", choices=list(BENCHES), action="append")
    parser.add_argument(
        "--no-routes", action="store_true", help="the gapless row without its header route and stickiness"
    )
    parser.add_argument(
        "--syscalls", action="store_true", help="count each proxy's system calls per request with strace"
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="record a py-spy profile of the router (.svg flame graph, .txt raw)"
    )
    parser.add_argument(
        "--latency-sampling",
        type=int,
        default=DEFAULT_LATENCY_SAMPLING,
        metavar="N",
        help="the gapless-haproxy row logs one request in N (spec.router.latencySampling; "
        f"default {DEFAULT_LATENCY_SAMPLING})",
    )
    parser.add_argument("--verbose", action="store_true", help="print wrk's whole output")
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install -y wrk util-linux")
    only = set(args.only or BENCHES)
    upstream_cpu = args.proxy_cpu if args.upstream_cpu is None else args.upstream_cpu
    ports = [free_port(), free_port()]
    upstreams = [
        subprocess.Popen(pinned(upstream_cpu, [sys.executable, str(HERE / "upstream.py"), "--port", str(p)]))
        for p in ports
    ]
    args.upstream_pids = [u.pid for u in upstreams]
    runs: list[list[Row]] = []
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, wrk on CPU {args.wrk_cpu}, "
        f"proxy on CPU {args.proxy_cpu}, upstreams on CPU {upstream_cpu}; {args.runs} run(s)"
    )
    print(
        "(CPU/req: CPU time the proxy process used per request; for 'direct', the upstream's;"
        " ups/req: both upstreams' CPU time per request, on the proxy's core)"
    )
    try:
        for p in ports:
            wait_port(p)
        for n in range(1, args.runs + 1):
            with tempfile.TemporaryDirectory(prefix="gapless-bench-") as d:
                rows = [bench(args, Path(d), ports) for name, bench in BENCHES.items() if name in only]
            runs.append(rows)
            print(f"\nrun {n}")
            print_rows(rows)
            print(compare(rows, "gapless"))
            print(compare(rows, "gapless-haproxy"))
    finally:
        for u in upstreams:
            stop(u)
    if len(runs) > 1:
        print("\nevery run:")
        for n, rows in enumerate(runs, 1):
            print(f"  run {n}: {compare(rows, 'gapless')}; {compare(rows, 'gapless-haproxy')}")


if __name__ == "__main__":
    main()
