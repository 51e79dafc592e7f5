"""Benchmark: backfill throughput and what the application feels while a migration starts.

Creates a throwaway database with ``--rows`` rows, runs an application load (the old version: point
reads, updates and inserts through its schema version) for a few seconds to get its steady latency,
then starts an ``alter_column`` type change (shadow column, triggers, batched backfill) and a rename
under the same load. Prints the backfill's rows/s, the application's P50/P99 before and during, the
slowest application query, and failures (there should be none). The database is dropped at the end.

    .venv/bin/python bench/migrations.py --rows 1000000 --batch-size 5000
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
import uuid

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from gapless.migrations.backfill import BackfillProgress
from gapless.migrations.engine import EngineEvent, EngineSettings, MigrationEngine
from gapless.migrations.files import parse_migration
from gapless.migrations.gate import connect_kwargs
from gapless.migrations.policy import BatchPolicy, LockPolicy

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


class Load:
    """The old application version: a steady mix of reads, updates and inserts, latency of each recorded."""

    def __init__(self, url: str, rows: int, workers: int) -> None:
        self.url = url
        self.rows = rows
        self.workers = workers
        self.samples: list[tuple[float, float]] = []  # (time, seconds)
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(workers)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)  # noqa: S311 -- a reproducible load pattern, not security
        with psycopg.connect(self.url, autocommit=True, **connect_kwargs("bench", "v1", f"w{seed}")) as c:
            while not self.stop.is_set():
                key = rng.randint(1, self.rows)
                kind = rng.random()
                t0 = time.monotonic()
                try:
                    if kind < 0.6:
                        c.execute("SELECT owner, balance FROM accounts WHERE id = %s", (key,))
                    elif kind < 0.9:
                        c.execute("UPDATE accounts SET balance = balance + 1 WHERE id = %s", (key,))
                    else:
                        c.execute("INSERT INTO accounts (owner, balance) VALUES ('new', 1)")
                except psycopg.Error as e:
                    self.failures.append(str(e))
                t1 = time.monotonic()
                with self.lock:
                    self.samples.append((t1, t1 - t0))
                time.sleep(0.001)

    def window(self, start: float, end: float) -> list[float]:
        with self.lock:
            return sorted(d for t, d in self.samples if start <= t < end)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("GAPLESS_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--batch-delay", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--steady", type=float, default=3.0, help="seconds of load before the migration")
    args = parser.parse_args()

    name = f"gapless_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(args.database_url, dbname=name)
    try:
        settings = EngineSettings(
            lock=LockPolicy(timeout=2.0), batch=BatchPolicy(size=args.batch_size, delay=args.batch_delay)
        )
        with MigrationEngine(url, settings) as engine:
            engine.start(parse_migration(BASE))
            engine.complete()
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(
                "INSERT INTO accounts (owner, balance) SELECT 'owner' || g, g %% 1000 FROM generate_series(1, %s) g",
                (args.rows,),
            )
            c.execute("VACUUM ANALYZE accounts")
        progress: list[tuple[float, int]] = []

        def on_event(event: EngineEvent) -> None:
            if isinstance(event, BackfillProgress):
                progress.append((time.monotonic(), event.rows_done))

        with Load(url, args.rows, args.workers) as load:
            t_steady = time.monotonic()
            time.sleep(args.steady)
            t_start = time.monotonic()
            with MigrationEngine(url, settings, on_event=on_event) as engine:
                engine.start(parse_migration(CHANGE))
            t_end = time.monotonic()
            time.sleep(0.5)
        before = load.window(t_steady, t_start)
        during = load.window(t_start, t_end)
        backfill_seconds = progress[-1][0] - progress[0][0] if len(progress) > 1 else float("nan")
        rows = progress[-1][1] if progress else 0
        print(f"rows: {args.rows}, batch size {args.batch_size}, {args.workers} application workers")
        print(
            f"start took {t_end - t_start:.2f}s; backfill {rows} rows at {rows / backfill_seconds:,.0f} rows/s"
        )
        print(
            f"application P50/P99 before: {statistics.median(before) * 1000:.2f} / {percentile(before, 0.99) * 1000:.2f} ms "
            f"({len(before)} queries)"
        )
        print(
            f"application P50/P99 during: {statistics.median(during) * 1000:.2f} / {percentile(during, 0.99) * 1000:.2f} ms "
            f"({len(during)} queries)"
        )
        print(f"slowest application query during start: {max(during, default=0) * 1000:.1f} ms")
        print(f"failed application queries: {len(load.failures)}")
    finally:
        with psycopg.connect(args.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
