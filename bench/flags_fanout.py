"""Benchmark: the flag service's own fan-out, without SDKs: how soon the last of N streams has a change.

A real ``gapless flags serve`` (SQLite, loopback, as in flags_propagation.py) and N plain sockets, half
of them on ``/sdk/v1/stream`` and half on ``/api/client/streaming`` (as Unleash's Node SDK asks for it),
all read by one ``selectors`` loop in this process, which does nothing but receive: no SDK parses or
applies anything, and none acknowledges. For each of ``--changes`` kill / enable calls it prints the
call's time, when the last stream received the event (from the call being sent and from its answer),
and the service's CPU time from the call until the last stream had it (``/proc``, 10 ms ticks); at the
end, all of the service's CPU from the first call to the end of the last pause, per change (what a change
costs after its streams have it too, such as storing the Unleash streams' delivery records).

    python bench/flags_fanout.py [--streams 200] [--changes 20]
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flags_propagation import ENV, FLAG, PROJECT, Service, cpu_seconds, quantile, setup


def open_streams(port: int, token: str, count: int) -> tuple[selectors.DefaultSelector, list[socket.socket]]:
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        if i % 2 == 0:
            head = f"GET /sdk/v1/stream?sdkId=raw-{i} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n"
        else:
            head = (
                f"GET /api/client/streaming HTTP/1.1\r\nAuthorization: {token}\r\nunleash-appname: raw\r\n"
                f"unleash-instanceid: raw-{i}\r\nunleash-sdk: unleash-client-node:6.12.0\r\n"
            )
        s.sendall(f"{head}Host: 127.0.0.1\r\n\r\n".encode())
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
        socks.append(s)
    return sel, socks


def receive_until(
    sel: selectors.DefaultSelector, count: int, marker: bytes, timeout: float
) -> dict[int, float]:
    """When each stream first received ``marker`` (perf_counter), for up to ``timeout`` seconds."""
    seen: dict[int, float] = {}
    tails: dict[int, bytes] = {}
    end = time.perf_counter() + timeout
    while len(seen) < count and time.perf_counter() < end:
        for key, _ in sel.select(0.2):
            data = key.fileobj.recv(1 << 20)  # type: ignore[union-attr]
            now = time.perf_counter()
            tail = tails.get(key.data, b"") + data
            tails[key.data] = tail[-64:]
            if marker in tail and key.data not in seen:
                seen[key.data] = now
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--pause", type=float, default=0.3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gapless-bench-fanout-") as tmp:
        service = Service(Path(tmp))
        service.start()
        try:
            headers = {"Authorization": f"Bearer {service.admin_token()}"}
            with httpx.Client(base_url=service.url, headers=headers, timeout=30) as admin:
                token, revision = setup(admin)
                sel, socks = open_streams(service.port, token, args.streams)
                ready = receive_until(sel, args.streams, f"id: {revision}\n".encode(), 30)
                print(f"{len(ready)} of {args.streams} streams open; load average {os.getloadavg()[0]:.1f}")
                assert service.proc is not None
                rows = []
                cpu_start = cpu_seconds(service.proc.pid)
                for number in range(1, args.changes + 1):
                    action = "kill" if number % 2 else "enable"
                    cpu0 = cpu_seconds(service.proc.pid)
                    t0 = time.perf_counter()
                    r = admin.post(f"/api/v1/projects/{PROJECT}/flags/{FLAG}/environments/{ENV}/{action}")
                    t1 = time.perf_counter()
                    revision = int(r.json()["revisions"][ENV])
                    seen = receive_until(sel, args.streams, f"id: {revision}\n".encode(), 10)
                    cpu = (cpu_seconds(service.proc.pid) - cpu0) * 1000
                    last = max(seen.values()) if seen else float("nan")
                    rows.append(((t1 - t0) * 1000, (last - t0) * 1000, (last - t1) * 1000, cpu, len(seen)))
                    print(
                        f"  change {number:>2}: API {rows[-1][0]:5.1f} ms; last stream {rows[-1][1]:5.1f} ms "
                        f"after the call was sent, {rows[-1][2]:5.1f} ms after it returned; service CPU "
                        f"{cpu:5.1f} ms; {len(seen)} streams"
                    )
                    time.sleep(args.pause)
                cpu_all = (cpu_seconds(service.proc.pid) - cpu_start) * 1000 / args.changes
                for s in socks:
                    s.close()
            for name, i in (
                ("API call", 0),
                ("last stream from the call", 1),
                ("last stream from its answer", 2),
            ):
                values = [row[i] for row in rows]
                print(f"{name}: P50 {quantile(values, 0.5):.1f} ms   max {max(values):.1f} ms")
            cpu = [row[3] for row in rows]
            print(
                f"service CPU per change: P50 {quantile(cpu, 0.5):.1f} ms   mean {sum(cpu) / len(cpu):.1f} ms"
            )
            print(
                f"service CPU per change, everything it did from the first call to the end of the last "
                f"pause (the Unleash streams' delivery records included): {cpu_all:.1f} ms"
            )
            print(f"load average at the end {os.getloadavg()[0]:.1f}")
        finally:
            service.stop()


if __name__ == "__main__":
    main()
