"""A real HTTP server exposing whatever metrics text a test sets, on a free loopback port."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Exporter:
    """Serves ``body`` with ``status`` at ``/metrics`` from a thread; ``hang`` makes it never answer.

    The body and status are read on every request, so a test changes them between scrapes to play a
    restart, an error or garbage.
    """

    def __init__(self) -> None:
        self.body = ""
        self.status = 200
        self.hang = False
        self.requests = 0
        self._release = threading.Event()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                exporter.requests += 1
                if exporter.hang:
                    exporter._release.wait(30)
                    return
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                data = exporter.body.encode()
                self.send_response(exporter.status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def target(self) -> str:
        """``host:port``, as a Prometheus scrape target."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
