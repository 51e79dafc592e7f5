"""The router as OS processes: ``python -m gapless.router`` ends up in ``run()``.

``run`` is the supervisor (see ``supervisor.py``): titled ``gapless router NAME`` so the control plane
(and a human with ``ps``) can find it, it raises its open-file limit, binds the public address and forks
the worker, ``gapless router NAME worker``, which serves that socket and the admin API on its event
loop (uvloop when installed) with the config it saved last until the control plane pushes a newer one.
Neither calls the control plane, so routing goes on when that is gone. SIGTERM or SIGINT stop accepting,
let in-flight requests finish for up to ``GRACE`` seconds, and exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from setproctitle import setproctitle

from gapless.router.admin import AdminServer
from gapless.router.persist import load_config, read_token_digest
from gapless.router.proxy import Router
from gapless.router.supervisor import bind, raise_open_file_limit, supervise

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
    name: str,
    listen: str,
    admin_socket: str | Path,
    digest: str,
    config_file: str | Path,
    *,
    sock: socket.socket | None = None,
    restarts: int = 0,
    pid: int | None = None,
    fd_limit: int | None = None,
) -> None:
    """Run the router until SIGTERM/SIGINT, then drain and return.

    ``sock`` is the listening socket the supervisor bound (else ``listen`` is bound here); ``pid`` the
    process ``/healthz`` reports (the supervisor's), ``restarts`` how many workers it started before.
    """
    host, port = parse_listen(listen)
    try:
        config = load_config(config_file)
    except ValueError as exc:
        log.error("ignoring the saved config: %s", exc)
        config = None
    router = Router(name, config, fd_limit=fd_limit)
    router.restarts = restarts
    await router.start(host, port, sock)
    if port != 0:
        router.listen = listen  # /healthz reports the address as the control plane spelt it
    admin = AdminServer(router, admin_socket, digest, config_file, pid=pid)
    await admin.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "router %s listening on %s, admin on %s, config version %d, at most %d client connections%s",
        name,
        router.listen,
        admin_socket,
        router.config.version,
        router.max_connections,
        f", after {restarts} restart(s)" if restarts else "",
    )
    watch = loop.create_task(_watch_supervisor(pid)) if pid is not None else None
    try:
        await stop.wait()
        log.info("router %s stopping: draining %d busy connection(s)", name, router.busy())
        await router.stop(GRACE)
    finally:
        if watch is not None:
            watch.cancel()
        await admin.stop()


async def _watch_supervisor(pid: int) -> None:
    """Say so once when the supervisor is gone (SIGKILLed): this worker serves on, but unsupervised."""
    # Polling: nothing signals a parent's death to a child but a prctl the standard library lacks.
    while os.getppid() == pid:  # noqa: ASYNC110
        await asyncio.sleep(1.0)
    log.error(
        "the router's supervisor (pid %d) is gone: this worker keeps serving, but nothing restarts it if it "
        "dies; `gapless up` or a restart of the rollout's router brings supervision back",
        pid,
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # optional speed-up, imported only where the loop is made
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(name: str, listen: str, admin_socket: str, token_file: str, config_file: str) -> int:
    """Bind ``listen``, then serve it from a worker process restarted whenever it dies; the exit status.

    Raises ``ValueError`` for a bad ``listen`` and ``OSError`` (``BindError`` when the address is
    taken) before anything is forked.
    """
    setproctitle(f"gapless router {name}")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    host, port = parse_listen(listen)
    digest = read_token_digest(token_file)
    fd_limit = raise_open_file_limit()
    sock = bind(host, port, listen)
    factory = _loop_factory()  # imported once here, so a restarted worker starts in milliseconds
    supervisor = os.getpid()

    def work(restarts: int) -> int:
        setproctitle(f"gapless router {name} worker")
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(
                serve(
                    name,
                    listen,
                    admin_socket,
                    digest,
                    config_file,
                    sock=sock,
                    restarts=restarts,
                    pid=supervisor,
                    fd_limit=fd_limit,
                )
            )
        return 0

    try:
        return supervise(work)
    finally:
        sock.close()
