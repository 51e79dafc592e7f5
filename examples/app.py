"""The example service of the gapless demo and tests: well behaved by default, misbehaving on request.

Standard library only, so it runs under any Python 3.11 without installing anything. It speaks HTTP/1.1
with keep-alive (a thread per connection), because a router that keeps connections to its backends is
exactly the case where a careless shutdown drops requests.

On SIGTERM (or SIGINT) it shuts down the way a service behind gapless should: it stops accepting
connections, closes idle keep-alive connections, lets requests in flight finish (answering them with
``Connection: close``), and exits 0. Signals are taken synchronously with ``sigwait`` in the main thread
(blocked in every thread), so no handler runs in the middle of request code. Pipelined requests are not
supported: a connection is read again only after its previous response was sent.

Flags make it misbehave for tests and demos: ``--ready-delay``, ``--never-ready``,
``--fail-liveness-after``, ``--ignore-sigterm`` and ``--slow-ms``; and, for automated analysis,
``--error-rate`` (a share of ``/`` answered 500), ``--leak-kib-per-second`` (memory that grows steadily)
and ``--orders-per-request`` (the business counter ``orders_completed_total`` on ``/metrics``, in the
Prometheus text format, counts an order for that share of ``/`` requests).
"""

from __future__ import annotations

import argparse
import os
import random
import select
import signal
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Config:
    version: str
    ready_delay: float
    never_ready: bool
    fail_liveness_after: float | None
    slow_ms: int
    access_log: bool
    error_rate: float = 0.0
    orders_per_request: float = 0.0


def log(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} app[{os.getpid()}] {message}\n")
    sys.stderr.flush()


class AppServer(ThreadingHTTPServer):
    """A threading HTTP server that can drain: no new connections, idle ones closed, busy ones finish."""

    daemon_threads = False  # server_close() joins the connection threads: that is the drain
    block_on_close = True
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], config: Config) -> None:
        super().__init__(address, Handler)
        self.config = config
        self.started = time.monotonic()
        self.draining = threading.Event()
        # Every idle connection waits on its socket and on this pipe; one byte wakes them all.
        self.wake_r, self._wake_w = os.pipe()
        self.counts_lock = threading.Lock()
        self.requests_total = 0
        self.orders_total = 0

    def uptime(self) -> float:
        return time.monotonic() - self.started

    def drain(self) -> None:
        """Stop accepting, wake idle connections so they close, and wait for busy ones to finish."""
        self.shutdown()  # the accept loop returns
        self.socket.close()  # new connections are refused from here on
        self.draining.set()
        os.write(self._wake_w, b"x")
        self.server_close()  # joins every connection thread
        os.close(self.wake_r)
        os.close(self._wake_w)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gapless-example/1"
    disable_nagle_algorithm = True  # headers and body are separate writes; Nagle would delay the body
    server: AppServer

    def handle(self) -> None:
        self.close_connection = False
        while not self.close_connection:
            readable, _, _ = select.select([self.connection, self.server.wake_r], [], [])
            if self.connection not in readable:
                return  # idle while draining: close this keep-alive connection
            self.handle_one_request()

    def do_GET(self) -> None:
        config = self.server.config
        url = urlsplit(self.path)
        if url.path == "/":
            self._pause(config.slow_ms)
            failed = config.error_rate > 0 and random.random() < config.error_rate  # noqa: S311 -- not crypto
            ordered = not failed and random.random() < config.orders_per_request  # noqa: S311
            with self.server.counts_lock:
                self.server.requests_total += 1
                self.server.orders_total += int(ordered)
            if failed:
                self._send(500, f"injected failure in {config.version}\n")
            else:
                self._send(200, f"hello from {config.version}\n")
        elif url.path == "/metrics":
            with self.server.counts_lock:
                requests, orders = self.server.requests_total, self.server.orders_total
            self._send(
                200,
                "# HELP http_requests_total Requests to /.\n"
                "# TYPE http_requests_total counter\n"
                f'http_requests_total{{version="{config.version}"}} {requests}\n'
                "# HELP orders_completed_total Orders completed.\n"
                "# TYPE orders_completed_total counter\n"
                f'orders_completed_total{{version="{config.version}"}} {orders}\n',
            )
        elif url.path == "/slow":
            raw = parse_qs(url.query).get("ms", [str(config.slow_ms)])[0]
            try:
                ms = int(raw)
            except ValueError:
                self._send(400, f"ms must be an integer, not {raw!r}\n")
                return
            self._pause(ms)
            self._send(200, f"slept {ms} ms in {config.version}\n")
        elif url.path == "/healthz":
            ready = (
                not config.never_ready
                and self.server.uptime() >= config.ready_delay
                and not self.server.draining.is_set()
            )
            self._send(200 if ready else 503, "ready\n" if ready else "not ready\n")
        elif url.path == "/livez":
            failing = (
                config.fail_liveness_after is not None and self.server.uptime() >= config.fail_liveness_after
            )
            self._send(500 if failing else 200, "unhealthy\n" if failing else "alive\n")
        else:
            self._send(404, "not found\n")

    @staticmethod
    def _pause(ms: int) -> None:
        if ms > 0:
            time.sleep(ms / 1000)

    def _send(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Version", self.server.config.version)
        if self.server.draining.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.config.access_log:
            log(f'"{self.requestline}" {code}')


def leak(kib_per_second: float) -> None:
    """Keep allocating (and touching) memory that is never freed, ten times a second."""
    kept: list[bytes] = []
    chunk = max(1, int(kib_per_second * 1024 / 10))
    while True:
        kept.append(b"\x01" * chunk)
        time.sleep(0.1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=os.environ.get("PORT"), help="default: $PORT")
    parser.add_argument("--version", default="v1", help="reported in the body and X-Version")
    parser.add_argument("--ready-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--never-ready", action="store_true")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--fail-liveness-after", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--slow-ms", type=int, default=0, metavar="N", help="delay of every / request")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--error-rate", type=float, default=0.0, metavar="SHARE", help="share of / answered 500"
    )
    parser.add_argument(
        "--orders-per-request", type=float, default=0.0, metavar="SHARE", help="orders counted per / request"
    )
    parser.add_argument(
        "--leak-kib-per-second", type=float, default=0.0, metavar="KIB", help="grow memory steadily"
    )
    args = parser.parse_args(argv)
    if args.port is None:
        parser.error("--port is required when $PORT is not set")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = Config(
        version=args.version,
        ready_delay=args.ready_delay,
        never_ready=args.never_ready,
        fail_liveness_after=args.fail_liveness_after,
        slow_ms=args.slow_ms,
        access_log=args.access_log,
        error_rate=args.error_rate,
        orders_per_request=args.orders_per_request,
    )
    stop_signals = {signal.SIGINT}
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        stop_signals.add(signal.SIGTERM)
    # Blocked before any thread starts, so every thread inherits the mask and only sigwait sees them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server = AppServer((args.host, int(args.port)), config)
    accept_loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    accept_loop.start()
    if args.leak_kib_per_second > 0:
        threading.Thread(target=leak, args=(args.leak_kib_per_second,), daemon=True).start()
    log(f"version {config.version} listening on {args.host}:{server.server_address[1]}")
    received = signal.sigwait(stop_signals)
    log(f"received {signal.Signals(received).name}: draining")
    server.drain()
    accept_loop.join()
    log("drained, exiting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
