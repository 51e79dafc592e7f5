"""Probe and lifecycle-handler actions, with the kubelet's semantics, returning results as data.

A failing probe is the normal state of a starting or dying instance, not an exceptional one, so nothing
here raises for it: every outcome (refused connection, timeout, bad status, missing program) is a
``ProbeResult`` whose message says what happened. Judging results over time (thresholds, periods) is
the prober's job, not this module's.

Choices that follow the kubelet: an HTTP status from 200 to 399 is success and redirects are not
followed; an exec action runs its argv without a shell and is killed with its whole process group when
it outlives its timeout, so a probe never leaves processes behind. HTTP probes ignore proxy settings from
the environment (a probe of 127.0.0.1 must never go through ``HTTP_PROXY``) and send
``Connection: close`` so a probe holds no keep-alive connection to the instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from gapless.spec.models import HTTPGetAction, PreStopHandler, Probe, TCPSocketAction

__all__ = ["ProbeResult", "http_get", "run_exec", "run_handler", "run_probe", "tcp_connect"]

_BODY_SNIPPET = 200
_OUTPUT_SNIPPET = 300
_USER_AGENT = "gapless-probe/1"


@dataclass(frozen=True)
class ProbeResult:
    """One probe or handler outcome; ``message`` is meant for humans (events, status, logs)."""

    success: bool
    message: str


async def run_probe(probe: Probe, *, port: int, env: Mapping[str, str]) -> ProbeResult:
    """Run one probe against an instance listening on ``port``.

    ``env`` is the complete environment of an exec action (normally the instance's own environment).
    """
    timeout = probe.timeout_seconds
    if probe.http_get is not None:
        return await http_get(probe.http_get, port=port, timeout=timeout)
    if probe.tcp_socket is not None:
        return await tcp_connect(probe.tcp_socket, port=port, timeout=timeout)
    if probe.exec is not None:
        return await run_exec(probe.exec.command, env=env, timeout=timeout)
    # The model validator guarantees exactly one action; this is a programming error, not a result.
    raise AssertionError("a Probe has exactly one action")


async def run_handler(
    handler: PreStopHandler, *, port: int, env: Mapping[str, str], timeout: float
) -> ProbeResult:
    """Run a preStop handler, bounded by ``timeout`` (what is left of the grace period)."""
    if handler.exec is not None:
        return await run_exec(handler.exec.command, env=env, timeout=timeout)
    if handler.http_get is not None:
        return await http_get(handler.http_get, port=port, timeout=timeout)
    if handler.sleep is not None:
        seconds = handler.sleep.seconds
        if seconds > timeout:
            await asyncio.sleep(max(timeout, 0.0))
            return ProbeResult(False, f"sleep {seconds:g}s cut short after {timeout:g}s (grace period)")
        await asyncio.sleep(seconds)
        return ProbeResult(True, f"slept {seconds:g}s")
    raise AssertionError("a PreStopHandler has exactly one action")


def _url(action: HTTPGetAction, port: int) -> str:
    host = f"[{action.host}]" if ":" in action.host else action.host
    return f"http://{host}:{action.port or port}{action.path}"


def _headers(action: HTTPGetAction) -> list[tuple[str, str]]:
    given = {h.name.lower() for h in action.http_headers}
    defaults = [("User-Agent", _USER_AGENT), ("Accept", "*/*"), ("Connection", "close")]
    headers = [(k, v) for k, v in defaults if k.lower() not in given]
    headers.extend((h.name, h.value) for h in action.http_headers)
    return headers


_shared: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None


def _client() -> httpx.AsyncClient:
    """One HTTP client per event loop for every probe: building a client (its transport and an SSL
    context) cost more than the probe itself, and with probes every 100 ms across a dozen instances it
    held the control plane's loop busy. No connection is kept alive, so each probe still opens its own
    connection, as a kubelet's does: a listener that stopped accepting fails the next probe."""
    global _shared
    loop = asyncio.get_running_loop()
    if _shared is None or _shared[0] is not loop or _shared[1].is_closed:
        # verify=False: the scheme is always plain HTTP. trust_env=False: no proxies, no netrc.
        client = httpx.AsyncClient(
            verify=False,  # noqa: S501
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        _shared = (loop, client)
    return _shared[1]


async def http_get(action: HTTPGetAction, *, port: int, timeout: float) -> ProbeResult:
    """GET ``action.path``; a status from 200 to 399 within ``timeout`` seconds is success."""
    url = _url(action, port)
    try:
        async with (
            asyncio.timeout(timeout),
            _client().stream("GET", url, headers=_headers(action), timeout=timeout) as response,
        ):
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= _BODY_SNIPPET:
                    break
    except (TimeoutError, httpx.TimeoutException):
        return ProbeResult(False, f"GET {url}: no response within {timeout:g}s")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return ProbeResult(False, f"GET {url}: {type(exc).__name__}: {exc}")
    except Exception as exc:
        # The HTTP stack's own slips are failed probes too: a connection reset at the moment httpcore
        # asked anyio for its peer raised AttributeError (the closed transport's socket is None) and
        # took the instance's prober down with it.
        return ProbeResult(False, f"GET {url}: {type(exc).__name__}: {exc}")
    status = response.status_code
    if 200 <= status < 400:
        return ProbeResult(True, f"GET {url}: HTTP {status}")
    snippet = body[:_BODY_SNIPPET].decode("utf-8", errors="replace").strip()
    return ProbeResult(False, f"GET {url}: HTTP {status}" + (f": {snippet}" if snippet else ""))


async def tcp_connect(action: TCPSocketAction, *, port: int, timeout: float) -> ProbeResult:
    """Open (and close) a TCP connection within ``timeout`` seconds."""
    target_port = action.port or port
    where = f"{action.host}:{target_port}"
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(action.host, target_port)
    except TimeoutError:
        return ProbeResult(False, f"TCP {where}: no connection within {timeout:g}s")
    except OSError as exc:
        return ProbeResult(False, f"TCP {where}: {exc.strerror or exc}")
    writer.close()
    # The connection was established, which is all the probe asks; a reset while closing it (the
    # instance closing its side first) does not change the result.
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ProbeResult(True, f"TCP {where}: connected")


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"exit status {returncode}"


async def run_exec(command: Sequence[str], *, env: Mapping[str, str], timeout: float) -> ProbeResult:
    """Run ``command`` (no shell) in its own process group; exit status 0 within ``timeout`` is success.

    On timeout or cancellation the whole process group is killed, so a handler that spawned helpers
    leaves nothing behind.
    """
    program = command[0]
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return ProbeResult(False, f"cannot run {program!r}: {exc.strerror or exc}")
    finished = False
    try:
        async with asyncio.timeout(timeout):
            output, _ = await proc.communicate()
        finished = True
    except TimeoutError:
        return ProbeResult(False, f"{program} did not finish within {timeout:g}s; killed")
    finally:
        if not finished:
            # The leader's pid stays the group id while any member lives, so this cannot hit a
            # stranger's group even when the leader has already exited.
            _kill_group(proc.pid)
            await proc.wait()
    returncode = await proc.wait()  # already reaped by communicate(); this only reads the status
    text = output.decode("utf-8", errors="replace").strip()
    if len(text) > _OUTPUT_SNIPPET:
        text = "..." + text[-_OUTPUT_SNIPPET:]
    status = _describe_exit(returncode)
    message = f"{program}: {status}" + (f": {text}" if text else "")
    return ProbeResult(returncode == 0, message)
