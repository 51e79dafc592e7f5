"""Benchmark: requests per second of the flag service's SDK protocols on one core, driven by wrk.

A real ``gapless flags serve`` (SQLite in a temporary state directory) pinned to CPU 0 with
``taskset``; wrk pinned to CPU 1, on loopback. Through the admin API: a project with ``--flags``
boolean flags, each with a targeting rule and a 10% rollout, and an SDK token. Then, for ``--seconds``
each and ``--runs`` times in turn:

- ``GET /api/client/features`` (the Unleash client API, what Unleash's server-side SDKs poll), with and
  without ``If-None-Match`` (a 304 when nothing changed, which is what a polling SDK gets nearly always);
- ``POST /ofrep/v1/evaluate/flags`` (OFREP bulk evaluation of every flag for one context);
- ``POST /ofrep/v1/evaluate/flags/{key}`` (OFREP single-flag evaluation).

Printed per endpoint and run: requests/s, latency P50/P99 as wrk reports them, non-2xx/3xx answers,
and the service's CPU seconds over the run (user + system, all its threads, from ``/proc``) as
requests per CPU second: on a machine shared with other work, wall-clock requests/s measure the
neighbours too, while requests per CPU second are what one core would serve if it were the service's.
Needs wrk and taskset (Debian packages wrk and util-linux) and two CPUs.

    .venv/bin/python bench/flags_protocols.py [--flags 50] [--seconds 5] [--runs 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flags_propagation import ENV, PROJECT, Service  # the same service process and project names

WRK_LUA = """
wrk.method = "{method}"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "{token}"
{extra}
"""


def flag(i: int) -> dict[str, object]:
    """A flag both protocols serve: pro users always, 10% of the others by Unleash-compatible buckets."""
    return {
        "key": f"bench-flag-{i}",
        "owner": "bench",
        "kind": "boolean",
        "variants": [{"key": "on", "value": True}, {"key": "off", "value": False}],
        "offVariant": "off",
        "environments": {
            ENV: {
                "enabled": True,
                "rules": [
                    {
                        "conditions": [{"attribute": "plan", "operator": "in", "values": ["pro"]}],
                        "variant": "on",
                    },
                    {
                        "conditions": [
                            {
                                "attribute": "userId",
                                "operator": "inRollout",
                                "value": 10_000,
                                "bucketing": "unleash",
                            }
                        ],
                        "variant": "on",
                    },
                ],
            }
        },
    }


def setup(service: Service, flags: int) -> str:
    admin = httpx.Client(
        base_url=service.url, headers={"Authorization": f"Bearer {service.admin_token()}"}, timeout=30
    )
    with admin:
        admin.put(f"/api/v1/projects/{PROJECT}", json={"environments": [ENV]}).raise_for_status()
        for i in range(flags):
            admin.post(f"/api/v1/projects/{PROJECT}/flags", json=flag(i)).raise_for_status()
        r = admin.post(
            "/api/v1/tokens", json={"kind": "sdk", "name": "bench", "project": PROJECT, "environment": ENV}
        )
        r.raise_for_status()
        return str(r.json()["token"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, script: str, seconds: int, connections: int) -> dict[str, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            [
                "taskset",
                "-c",
                "1",
                "wrk",
                "-t",
                "1",
                "-c",
                str(connections),
                "-d",
                f"{seconds}s",
                "--latency",
                "-s",
                f.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps.group(1) if rps else "?",
        "p50": p50.group(1) if p50 else "?",
        "p99": p99.group(1) if p99 else "?",
        "bad": bad.group(1) if bad else "0",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flags", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not (1 <= args.flags <= 1000 and 1 <= args.seconds <= 60 and 1 <= args.runs <= 10):
        parser.error("--flags 1..1000, --seconds 1..60, --runs 1..10")
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (Debian packages wrk and util-linux)")
    if (os.cpu_count() or 1) < 2:
        parser.error("needs two CPUs: the service on one, wrk on the other")
    with tempfile.TemporaryDirectory(prefix="gapless-bench-protocols-") as tmp:
        service = Service(Path(tmp))
        service.start()
        try:
            assert service.proc is not None
            subprocess.run(
                ["taskset", "-a", "-p", "-c", "0", str(service.proc.pid)], check=True, capture_output=True
            )
            token = setup(service, args.flags)
            features = httpx.get(
                f"{service.url}/api/client/features", headers={"Authorization": token}, timeout=30
            )
            features.raise_for_status()
            etag = features.headers.get("etag", "")
            count = len(features.json().get("features", []))
            context = json.dumps(
                json.dumps({"context": {"targetingKey": "user-42", "userId": "user-42", "plan": "free"}})
            )
            cases = [
                (
                    "GET /api/client/features",
                    "/api/client/features",
                    WRK_LUA.format(method="GET", body="nil", token=token, extra=""),
                ),
                (
                    "GET /api/client/features (If-None-Match: 304)",
                    "/api/client/features",
                    WRK_LUA.format(
                        method="GET",
                        body="nil",
                        token=token,
                        extra=f'wrk.headers["If-None-Match"] = {json.dumps(etag)}',
                    ),
                ),
                (
                    "POST /ofrep/v1/evaluate/flags (bulk)",
                    "/ofrep/v1/evaluate/flags",
                    WRK_LUA.format(method="POST", body=context, token=f"Bearer {token}", extra=""),
                ),
                (
                    "POST /ofrep/v1/evaluate/flags/{key}",
                    "/ofrep/v1/evaluate/flags/bench-flag-7",
                    WRK_LUA.format(method="POST", body=context, token=f"Bearer {token}", extra=""),
                ),
            ]
            print(
                f"flag service pinned to CPU 0, wrk to CPU 1; {args.flags} flags ({count} served to Unleash SDKs); "
                f"{args.connections} connections, {args.seconds} s a run; load average {os.getloadavg()[0]:.1f}"
            )
            for run in range(1, args.runs + 1):
                for label, path, script in cases:
                    cpu = cpu_seconds(service.proc.pid)
                    r = wrk(service.url + path, script, args.seconds, args.connections)
                    cpu = cpu_seconds(service.proc.pid) - cpu
                    per_cpu = float(r["rps"]) * args.seconds / cpu if r["rps"] != "?" and cpu > 0 else 0.0
                    print(
                        f"run {run}  {label:<48} {r['rps']:>9} req/s  P50 {r['p50']:>8}  P99 {r['p99']:>8}  "
                        f"non-2xx/3xx {r['bad']}  service CPU {cpu:5.2f} s = {per_cpu:7.0f} req per CPU s"
                    )
                time.sleep(0.5)
        finally:
            service.stop()


if __name__ == "__main__":
    main()
