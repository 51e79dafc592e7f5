"""The router as an OS process: ``python -m gapless.router`` ends up in ``run()``.

The process names itself ``gapless router NAME`` so the control plane (and a human with ``ps``) can
find and adopt it after a restart, runs on uvloop when it is installed, and routes with the config it
saved last until the control plane pushes a newer one. It never calls the control plane, so it keeps
serving when that is gone. SIGTERM or SIGINT stop accepting, let in-flight requests finish for up to
``GRACE`` seconds, and exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from setproctitle import setproctitle

from gapless.router.admin import AdminServer
from gapless.router.persist import load_config, read_token_digest
from gapless.router.proxy import Router

__all__ = ["GRACE", "parse_listen", "run", "serve"]

log = logging.getLogger("gapless.router")

GRACE = 10.0
"""Seconds in-flight requests get to finish after SIGTERM."""


def parse_listen(listen: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:8080`` for IPv6) into host and port."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen: expected HOST:PORT, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an empty host means every address


async def serve(
    name: str, listen: str, admin_socket: str | Path, token_file: str | Path, config_file: str | Path
) -> None:
    """Run the router until SIGTERM/SIGINT, then drain and return."""
    host, port = parse_listen(listen)
    digest = read_token_digest(token_file)
    try:
        config = load_config(config_file)
    except ValueError as exc:
        log.error("ignoring the saved config: %s", exc)
        config = None
    router = Router(name, config)
    await router.start(host, port)
    if port != 0:
        router.listen = listen  # /healthz reports the address as the control plane spelt it
    admin = AdminServer(router, admin_socket, digest, config_file)
    await admin.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "router %s listening on %s, admin on %s, config version %d",
        name,
        router.listen,
        admin_socket,
        router.config.version,
    )
    try:
        await stop.wait()
        log.info("router %s stopping: draining %d busy connection(s)", name, router.busy())
        await router.stop(GRACE)
    finally:
        await admin.stop()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # optional speed-up, imported only where the loop is made
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(name: str, listen: str, admin_socket: str, token_file: str, config_file: str) -> None:
    """Name the process, pick the event loop and serve until told to stop."""
    setproctitle(f"gapless router {name}")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(name, listen, admin_socket, token_file, config_file))
