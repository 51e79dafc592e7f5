"""Benchmark: ``gapless flags kill`` from the process's start to its exit, and where that time goes.

What runs, on this machine over loopback:

- ``--via serve`` (default): a real ``gapless flags serve`` on a free 127.0.0.1 port with a temporary
  state directory (SQLite); the verb is given ``--url`` and ``--state-dir`` (the token file).
- ``--via control-plane``: a real control plane (``gapless control-plane --state-dir DIR``, no rollouts),
  which serves the flag service at ``/flags`` of its unix socket; the verb is given ``--state-dir`` alone
  and finds the service and its token there.

Through the admin API: a project ``bench`` with the environment ``production`` and a boolean flag. Then
``--runs`` times: the flag is enabled through the admin API (not timed), and the console script
``gapless flags kill bench bench-flag production`` runs as a subprocess, timed with
``time.perf_counter()`` from just before the process is spawned to its exit. Each run must exit 0.

Printed: every run in ms and their median; for comparison, the median of the same number of
``python -c pass`` (the interpreter alone) and of the kill request sent from this process over a kept
connection (the service's own share); and the modules the verb imports, from one
``python -X importtime -m gapless flags kill ...``: their count, total self time and the ten top-level
packages that cost most (cumulative, as ``-X importtime`` reports them). Everything started is stopped
at the end.

    .venv/bin/python bench/flags_cli.py [--runs 10] [--via serve|control-plane]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT = "bench"
ENV = "production"
FLAG = "bench-flag"
ADMIN_TOKEN_FILE = "flags-admin-token"  # noqa: S105 -- the file the flag service writes, not a secret


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("gapless", timeout=10)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class Service:
    """A flag service (its own process and session) and an admin connection to it."""

    def __init__(self, via: str, state_dir: Path) -> None:
        self.via = via
        self.state_dir = state_dir
        self.port = free_port()
        self.prefix = "" if via == "serve" else "/flags"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    def connection(self) -> http.client.HTTPConnection:
        if self.via == "serve":
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        return _UnixConnection(str(self.state_dir / "api.sock"))

    def start(self) -> None:
        argv = [sys.executable, "-m", "gapless"]
        if self.via == "serve":
            argv += [
                "flags",
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--state-dir",
                str(self.state_dir),
            ]
        else:
            argv += ["control-plane", "--state-dir", str(self.state_dir)]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / "bench-service.log").open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                status, _ = self.call("GET", "/healthz")
                if status == 200 and (self.state_dir / ADMIN_TOKEN_FILE).exists():
                    self.token = (self.state_dir / ADMIN_TOKEN_FILE).read_text().strip()
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the flag service ({self.via}) did not start; see {self.state_dir}")

    def call(
        self, method: str, path: str, body: Any = None, conn: http.client.HTTPConnection | None = None
    ) -> tuple[int, Any]:
        own = conn is None
        c = self.connection() if conn is None else conn
        try:
            headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
            c.request(method, self.prefix + path, None if body is None else json.dumps(body), headers)
            r = c.getresponse()
            data = r.read()
            return r.status, json.loads(data) if data else None
        finally:
            if own:
                c.close()

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.call(method, path, body)
        if status >= 400:
            raise RuntimeError(f"{method} {path}: {status} {data}")
        return data

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples):.1f} ms"


def timed(runs: int, before: Callable[[], None], argv: list[str], env: dict[str, str]) -> list[float]:
    """Milliseconds from spawning ``argv`` to its exit, ``runs`` times; each must exit 0."""
    samples = []
    for _ in range(runs):
        before()
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, env=env, check=False)
        samples.append((time.perf_counter() - t0) * 1000)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
    return samples


def import_profile(argv: list[str], env: dict[str, str]) -> list[tuple[str, int, int]]:
    """(module, self us, cumulative us) of every module ``python -X importtime ARGV`` imports."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, env=env, check=False
    )
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "self [us]" not in line:
            own, cumulative, name = line[len("import time:") :].split("|")
            rows.append((name.rstrip(), int(own), int(cumulative)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--via", choices=("serve", "control-plane"), default="serve")
    args = parser.parse_args()

    script = str(Path(sys.executable).parent / "gapless")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAPLESS_")}
    env["COLUMNS"] = "80"
    with tempfile.TemporaryDirectory(prefix="gapless-flags-cli-") as tmp:
        svc = Service(args.via, Path(tmp) / "state")
        try:
            svc.start()
            svc.admin("PUT", f"/api/v1/projects/{PROJECT}", {"environments": [ENV]})
            flag = {"key": FLAG, "kind": "boolean", "environments": {ENV: {"enabled": True}}}
            svc.admin("PUT", f"/api/v1/projects/{PROJECT}/flags/{FLAG}", flag)
            switch = f"/api/v1/projects/{PROJECT}/flags/{FLAG}/environments/{ENV}"

            def enable() -> None:
                svc.admin("POST", f"{switch}/enable")

            verb = ["flags", "kill", PROJECT, FLAG, ENV, "--state-dir", str(svc.state_dir)]
            if args.via == "serve":
                verb += ["--url", f"http://127.0.0.1:{svc.port}"]
            kill = timed(args.runs, enable, [script, *verb], env)
            bare = timed(args.runs, lambda: None, [sys.executable, "-c", "pass"], env)
            conn = svc.connection()
            request = []
            for _ in range(args.runs):
                enable()
                t0 = time.perf_counter()
                status, _ = svc.call("POST", f"{switch}/kill", conn=conn)
                request.append((time.perf_counter() - t0) * 1000)
                assert status == 200, status
            conn.close()
            enable()
            rows = import_profile(["-m", "gapless", *verb], env)
        finally:
            svc.stop()

    print(f"gapless flags kill via {args.via}, {args.runs} runs (process start to exit):")
    print("  runs:   " + " ".join(f"{s:.1f}" for s in kill) + " ms")
    print(f"  median: {median_ms(kill)}")
    print(
        f"python -c pass (the interpreter alone): median {median_ms(bare)}  [{' '.join(f'{s:.1f}' for s in bare)}]"
    )
    print(
        f"the kill request alone (kept connection): median {median_ms(request)}  [{' '.join(f'{s:.1f}' for s in request)}]"
    )
    total = sum(own for _, own, _ in rows)
    print(f"imports: {len(rows)} modules, {total / 1000:.1f} ms self time in all (-X importtime, one run)")
    top = sorted((r for r in rows if "." not in r[0].strip()), key=lambda r: -r[2])[:10]
    for name, _, cumulative in top:
        print(f"  {name.strip():<28} {cumulative / 1000:7.1f} ms cumulative")


if __name__ == "__main__":
    main()
