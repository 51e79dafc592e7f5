"""The router's supervisor: it binds the public address once and keeps a router worker serving it.

A router that dies takes its listening socket with it, and until a new one has bound the address every
connection is refused (117 of 7,497 requests in 0.3-0.85 s when the control plane restarted a SIGKILLed
router). So the process the control plane starts binds the address, then forks the worker that serves
it, as systemd's socket activation hands a socket to a service: the socket belongs to the supervisor,
and while a worker is replaced the kernel keeps completing connections into its backlog, which the next
worker accepts. A killed worker costs the requests it had in flight, never a refused connection.

The supervisor does nothing else: no event loop, no requests. It waits for signals with ``sigwait``
(SIGCHLD: a worker ended; SIGTERM/SIGINT: stop, passed on to the worker, which drains). A worker that
ends without being told to is forked again at once, or after a pause doubling from 0.1 s to 5 s while
workers keep dying within a second of starting. Each restart is logged and counted; the worker reports
the count (``restarts`` in ``/healthz``, ``/stats`` and ``gapless_router_restarts_total``) so that the
control plane records it as an event.

Binding happens before anything else, so an address in use ends the process at once with exit status
``EXIT_BIND`` and a message naming the address.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import signal
import socket
import time
from collections.abc import Callable

__all__ = ["EXIT_BIND", "BindError", "bind", "raise_open_file_limit", "supervise"]

log = logging.getLogger("gapless.router.supervisor")

EXIT_BIND = 3
"""Exit status of a router that could not bind its public address."""

BACKLOG = 4096
"""Connections the kernel completes and queues while no worker accepts (during a restart, a burst)."""

_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
_FIRST_PAUSE = 0.1
_MAX_PAUSE = 5.0
_STABLE = 1.0
"""A worker that lived this long resets the crash-loop pause."""
_STOP_GRACE = 15.0
"""Seconds a stopping worker gets before it is killed (its own drain takes at most 10)."""


class BindError(OSError):
    """The public address could not be bound; the message names it and the reason."""


def raise_open_file_limit() -> int:
    """Raise the soft limit of open files to the hard one (a proxy holds two per request); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else target
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft
    return target


def bind(host: str, port: int, listen: str) -> socket.socket:
    """A listening TCP socket on ``host:port``; ``listen`` is how the address is named in errors."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=BACKLOG, reuse_port=False)
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise BindError(exc.errno, f"cannot listen on {listen}: {reason}") from exc


def supervise(work: Callable[[int], int]) -> int:
    """Run ``work(restarts)`` in a forked worker, again whenever it dies, until SIGTERM/SIGINT.

    ``work`` runs in the child with the signal mask cleared and returns its exit status. Returns the
    exit status of the last worker after a stop (0 when it drained cleanly).
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    restarts = 0
    pause = _FIRST_PAUSE
    stopping = False
    pid, started = _fork(work, restarts), time.monotonic()
    while True:
        if stopping:
            info = signal.sigtimedwait(_SIGNALS, _STOP_GRACE)
            if info is None:
                log.warning("router worker %d did not stop within %gs: killing it", pid, _STOP_GRACE)
                _kill(pid, signal.SIGKILL)
                continue
            sig = info.si_signo
        else:
            sig = signal.sigwait(_SIGNALS)
        if sig in (signal.SIGTERM, signal.SIGINT):
            stopping = True
            _kill(pid, signal.SIGTERM)
        status = _reap(pid)
        if status is None:
            continue
        if stopping:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1
        lived = time.monotonic() - started
        restarts += 1
        log.error(
            "router worker %d %s after %.1fs: starting another (restart %d); the listening socket stays open",
            pid,
            _how(status),
            lived,
            restarts,
        )
        if lived >= _STABLE:
            pause = _FIRST_PAUSE
        else:
            info = signal.sigtimedwait({signal.SIGTERM, signal.SIGINT}, pause)
            pause = min(_MAX_PAUSE, pause * 2)
            if info is not None:
                return 0
        pid, started = _fork(work, restarts), time.monotonic()


def _fork(work: Callable[[int], int], restarts: int) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        code = work(restarts)
    except BaseException:
        log.exception("router worker failed")
    finally:
        logging.shutdown()
        os._exit(code)


def _reap(pid: int) -> int | None:
    """The wait status of ``pid`` if it has ended (other children are reaped and ignored)."""
    found = None
    while True:
        try:
            child, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return found
        if child == 0:
            return found
        if child == pid:
            found = status


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"
