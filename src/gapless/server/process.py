"""The control-plane process: store, platform, routers, controller and API wired together.

One control plane per state directory, guarded by an exclusive lock on ``control-plane.lock``. It is
restartable at any moment: SIGTERM or SIGKILL leave instances and routers running (they are in their own
sessions), and the next start adopts them. Only an explicit shutdown (``gapless down``) stops them.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sys
from pathlib import Path

import setproctitle
import uvicorn
import uvloop

from gapless.controller.commands import Commands
from gapless.controller.reconcile import Controller
from gapless.controller.traffic import LocalRouters
from gapless.core.clock import SystemClock
from gapless.platform.local import LocalPlatform
from gapless.server.api import build_app
from gapless.server.auth import ensure_token, read_token
from gapless.store.sqlite import Store

__all__ = ["API_SOCKET", "LOCK_FILE", "run_control_plane"]

API_SOCKET = "api.sock"
LOCK_FILE = "control-plane.lock"

log = logging.getLogger("gapless.control-plane")


def run_control_plane(state_dir: Path) -> int:
    """Run until shut down through the API (exit 0) or signalled; 3 if another one holds the lock."""
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    os.umask(0o077)
    setproctitle.setproctitle("gapless control-plane")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    lock = (state_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another control plane is running for {state_dir}", file=sys.stderr)
        return 3
    try:
        uvloop.run(_serve(state_dir))
        return 0
    finally:
        lock.close()


async def _serve(state_dir: Path) -> None:
    store = Store(state_dir / "state.db").open()
    digest = ensure_token(state_dir, store)
    platform = LocalPlatform(state_dir)
    traffic = LocalRouters(state_dir, read_token(state_dir), platform)
    clock = SystemClock()
    controller = Controller(store, platform, traffic, clock, state_dir)
    commands = Commands(store, controller, clock)
    app = build_app(store, controller, commands, digest)
    sock = state_dir / API_SOCKET
    sock.unlink(missing_ok=True)
    server = uvicorn.Server(
        uvicorn.Config(app, uds=str(sock), log_level="warning", lifespan="off", access_log=False)
    )
    log.info("control plane for %s (pid %d) listening on %s", state_dir, os.getpid(), sock)
    try:
        async with asyncio.TaskGroup() as tg:
            ctl = tg.create_task(controller.run(), name="controller")
            srv = tg.create_task(server.serve(), name="api")
            done, _ = await asyncio.wait({ctl, srv}, return_when=asyncio.FIRST_COMPLETED)
            if ctl in done:
                log.info("all rollouts stopped; exiting")
                server.should_exit = True
            else:
                ctl.cancel()
    finally:
        await traffic.aclose()
        platform.release()
        store.close()
        sock.unlink(missing_ok=True)
