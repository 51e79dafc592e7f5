"""Benchmark: the CLI's cold start per verb, from process start to exit, median of ``--runs``.

Each verb is run as a fresh ``gapless`` process (the console script, as a user types it), one after the
other, ``--runs`` times; every run's wall time is printed, then the median. Two situations:

  no control plane   ``version``, ``--help``, ``status NAME`` and the incident verbs against a state
                     directory where nothing runs (they exit 1 with "not running": the start-up cost)
  control plane up   a real control plane with a two-instance rollout: ``status NAME``,
                     ``pause``/``resume`` (alternating, so each changes something), ``promote``,
                     ``abort`` and ``undo`` of a rollout name that does not exist (answered 404, exit 2: the
                     full path of start, request and error, without changing what runs), ``history``

Peers in the same run: ``python -c pass`` (the interpreter's own floor) and, when it is found,
``kubectl version --client`` (``--kubectl PATH``, else the one ``./dev k8s-bin`` builds, else PATH).

    .venv/bin/python bench/cli.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GAPLESS = Path(sys.executable).with_name("gapless")
APP = REPO / "examples" / "app.py"
K8S_VERSION = "1.36.3"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_kubectl(given: str | None) -> str | None:
    if given:
        return given
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    built = Path(os.environ.get("GAPLESS_K8S_BIN", cache / "gapless" / f"k8s-v{K8S_VERSION}")) / "kubectl"
    if built.is_file() and os.access(built, os.X_OK):
        return str(built)
    return shutil.which("kubectl")


def time_runs(argv: list[str], runs: int, expect: set[int]) -> list[float]:
    out: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        out.append(time.perf_counter() - t0)
        if proc.returncode not in expect:
            raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.decode()[-400:]}")
    return out


def report(label: str, seconds: list[float]) -> None:
    runs = " ".join(f"{s * 1000:.0f}" for s in seconds)
    print(f"  {label:<34} median {statistics.median(seconds) * 1000:6.0f} ms   runs: {runs}", flush=True)


def rollout(name: str, port: int) -> dict[str, object]:
    return {
        "apiVersion": "gapless.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "listen": f"127.0.0.1:{port}",
            "template": {
                "command": [sys.executable, str(APP), "--version", "v1"],
                "readinessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 0.2},
            },
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10, help="runs per verb (default 10)")
    p.add_argument("--kubectl", help="kubectl to compare with (default: ./dev k8s-bin's, else PATH)")
    args = p.parse_args()
    if args.runs < 1:
        p.error("--runs must be at least 1")
    tmp = Path(tempfile.mkdtemp(prefix="gapless-bench-cli-"))
    idle, state = tmp / "idle", tmp / "state"
    idle.mkdir(mode=0o700)
    g = str(GAPLESS)
    n = args.runs
    print(f"cold start, wall time from process start to exit, {n} runs each (ms)", flush=True)
    print("peers:")
    report("python -c pass", time_runs([sys.executable, "-c", "pass"], n, {0}))
    kubectl = find_kubectl(args.kubectl)
    if kubectl:
        report("kubectl version --client", time_runs([kubectl, "version", "--client"], n, {0}))
    else:
        print("  kubectl version --client           not found (./dev k8s-bin builds one)")
    print("no control plane:")
    report("gapless version", time_runs([g, "version"], n, {0}))
    report("gapless --help", time_runs([g, "--help"], n, {0}))
    for verb in ("status", "promote", "abort", "undo", "pause"):
        report(f"gapless {verb} web", time_runs([g, verb, "web", "--state-dir", str(idle)], n, {1}))

    spec = tmp / "web.yaml"
    spec.write_text(yaml.safe_dump(rollout("web", free_port())))
    up = [g, "up", "-f", str(spec), "--state-dir", str(state)]
    subprocess.run(up, check=True, capture_output=True)
    try:
        sd = ["--state-dir", str(state)]
        print("control plane up (rollout web, 2 instances):")
        report("gapless status web", time_runs([g, "status", "web", *sd], n, {0}))
        report("gapless history web", time_runs([g, "history", "web", *sd], n, {0}))
        pauses: list[float] = []
        resumes: list[float] = []
        for _ in range(n):
            pauses += time_runs([g, "pause", "web", *sd], 1, {0})
            resumes += time_runs([g, "resume", "web", *sd], 1, {0})
        report("gapless pause web", pauses)
        report("gapless resume web", resumes)
        for verb in ("promote", "abort", "undo"):
            report(f"gapless {verb} missing (404)", time_runs([g, verb, "missing", *sd], n, {1, 2}))
    finally:
        subprocess.run([g, "down", *sd], check=False, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
