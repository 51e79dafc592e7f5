"""How an application's ``FlagClient`` gets rulesets from the flag service: streaming, else polling.

``HttpTransport`` runs two daemon threads:

- **delivery**: a server-sent-event stream (``GET /sdk/v1/stream``). Every ``ruleset`` event is applied
  with ``client.update`` at once. A broken stream is reopened after a backoff (0.25 s doubling to 30 s, with
  jitter); after ``poll_after_failures`` failed attempts in a row the thread polls ``GET
  /sdk/v1/ruleset`` with the last ETag every ``poll_interval`` seconds between stream attempts, so a
  proxy that breaks streaming costs latency, not correctness.
- **reporting**: the acknowledgement of each applied revision (``POST /sdk/v1/applied``, so the service
  can say how many SDKs run each revision), sent ``ack_delay`` to twice that after applying (random), the
  newest revision only when several were applied meanwhile, with ``age``: the seconds since it was
  applied, so the service dates the application, not the report. Delayed, the acks of a change do not
  compete with that change's delivery to the other SDKs (on the service's event loop, and in a process
  with many clients). Every ``flush_interval`` seconds, the evaluation counts (``client.drain_counts()``)
  go to ``POST /sdk/v1/evaluations``; counts of a failed send are kept for the next one.

The service is named by an ``http(s)://`` URL or a unix-domain socket, ``unix:PATH[:BASE]``
(``gapless.flags.address``): the control plane serves the flag service only on its API socket, and
sets ``$GAPLESS_FLAGS_URL`` to that address for its instances. ``HttpTransport.from_env()`` builds a
transport from that variable and an SDK token read from the file ``$GAPLESS_FLAGS_SDK_TOKEN_FILE``
names (or ``$GAPLESS_FLAGS_SDK_TOKEN``), so an application needs no address or secret of its own.

Nothing here raises into the application: failures are logged and retried; the client keeps evaluating
with the last ruleset it has (or its bootstrap or cache file). Standard library plus httpx only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import stat
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from gapless.flags.address import ENV_URL, parse_address

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from gapless.flags.sdk import FlagClient

__all__ = ["ENV_SDK_TOKEN", "ENV_SDK_TOKEN_FILE", "ENV_URL", "HttpTransport"]

ENV_SDK_TOKEN_FILE = "GAPLESS_FLAGS_SDK_TOKEN_FILE"  # noqa: S105 -- a variable name, not a secret
"""The file holding the application's SDK token (``gapless flags token --kind sdk --to-file PATH``, mode 0600)."""
ENV_SDK_TOKEN = "GAPLESS_FLAGS_SDK_TOKEN"  # noqa: S105 -- a variable name, not a secret
"""The SDK token itself, when no file is named (the file is preferred: an environment is easier to leak)."""

log = logging.getLogger("gapless.flags.transport")

_MIN_BACKOFF = 0.25
_MAX_BACKOFF = 30.0
_ACK_RETRY = 1.0


class HttpTransport:
    """Streaming with reconnect and backoff, polling fallback, applied acks and evaluation counts."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        sdk_id: str | None = None,
        poll_interval: float = 10.0,
        poll_after_failures: int = 3,
        flush_interval: float = 10.0,
        ack_delay: float = 0.1,
        stream: bool = True,
        timeout: float = 10.0,
    ) -> None:
        """``url``: ``http(s)://HOST[:PORT][/PATH]`` or ``unix:/path/to.sock[:/base]``; ``ValueError`` otherwise."""
        address = parse_address(url)
        self.url = address.url
        self.socket = address.socket
        self.sdk_id = sdk_id or uuid.uuid4().hex
        self.poll_interval = poll_interval
        self.poll_after_failures = poll_after_failures
        self.flush_interval = flush_interval
        self.ack_delay = ack_delay
        self.streaming = stream
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = timeout
        self._client: FlagClient | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._http: httpx.Client | None = None
        self._etag: str | None = None
        self._pending: dict[tuple[str, str | None], int] = {}
        self._response: httpx.Response | None = None
        self._wake = threading.Condition()
        self._ack: tuple[int, bool, float] | None = None
        """The newest applied revision not acknowledged yet: (revision, streaming, monotonic time applied)."""
        self._ack_due: float | None = None
        self.connected = threading.Event()
        """Set while a stream is open (for tests and health checks)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> HttpTransport | None:
        """A transport to the service ``$GAPLESS_FLAGS_URL`` names, with the SDK token of
        ``$GAPLESS_FLAGS_SDK_TOKEN_FILE`` (else ``$GAPLESS_FLAGS_SDK_TOKEN``); None when no URL is set.

        Raises ``ValueError`` naming the variable for a malformed URL, a URL without a token, or a token
        file that cannot be read or is empty. A token file that others may read is logged (it should be
        0600, as ``gapless flags token --to-file`` writes it). ``options`` go to the constructor.
        """
        env = os.environ if environ is None else environ
        url = env.get(ENV_URL, "").strip()
        if not url:
            return None
        parse_address(url, f"${ENV_URL}")
        path = env.get(ENV_SDK_TOKEN_FILE, "").strip()
        if path:
            token = _read_token(path)
        else:
            token = env.get(ENV_SDK_TOKEN, "").strip()
            if not token:
                raise ValueError(
                    f"${ENV_URL} is set but no SDK token is: set ${ENV_SDK_TOKEN_FILE} to a file holding one "
                    f"(gapless flags token --kind sdk --project P --environment E --to-file PATH)"
                )
        return cls(url, token, **options)

    # -- Transport protocol ---------------------------------------------------------------------------

    def start(self, client: FlagClient) -> None:
        self._client = client
        self._stop.clear()
        transport = _UnixTransport(self.socket) if self.socket is not None else None
        self._http = httpx.Client(headers=self._headers, timeout=self._timeout, transport=transport)
        self._threads = [
            threading.Thread(target=self._deliver, name="gapless-flags-delivery", daemon=True),
            threading.Thread(target=self._report, name="gapless-flags-report", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """Stop both threads, send the last ack and counts, close the connections; waits about a second at most."""
        with self._wake:
            self._stop.set()
            self._wake.notify_all()
        response = self._response
        if response is not None:
            _interrupt(response)  # the delivery thread's blocking read of the stream returns at once
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=1.0)  # daemon threads: one stuck in a slow request is left behind
        self._threads = []
        self._send_ack()
        self._flush()
        http, self._http = self._http, None
        if http is not None:
            http.close()  # after the threads: a request started during close would leak its socket

    def after_fork(self) -> None:
        """In a forked child the threads are gone and the connection pool is the parent's: start afresh."""
        client = self._client
        self._threads = []
        self._http = None
        self._wake = threading.Condition()  # the parent's may have been held by a thread that is gone
        self._ack, self._ack_due = None, None
        self.connected.clear()
        self.sdk_id = uuid.uuid4().hex
        if client is not None:
            self.start(client)

    # -- delivery -------------------------------------------------------------------------------------

    def _deliver(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if self.streaming:
                try:
                    self._stream()
                    failures = 0  # the stream ended cleanly (the service restarted): reconnect now
                    continue
                except (httpx.HTTPError, OSError, ValueError) as e:
                    failures += 1
                    if not self._stop.is_set():
                        log.warning("flag stream to %s failed (%d in a row): %s", self.url, failures, e)
                finally:
                    self.connected.clear()
            if not self.streaming or failures >= self.poll_after_failures:
                self._poll_once()
                if self._stop.wait(
                    self.poll_interval if not self.streaming else min(self.poll_interval, _backoff(failures))
                ):
                    return
            elif self._stop.wait(_backoff(failures)):
                return

    def _stream(self) -> None:
        http = self._http
        if http is None:
            return
        # The read timeout bounds silence: the service sends a heartbeat at least every 15 s.
        timeout = httpx.Timeout(self._timeout, read=max(self._timeout, 45.0))
        with http.stream(
            "GET", f"{self.url}/sdk/v1/stream", params={"sdkId": self.sdk_id}, timeout=timeout
        ) as response:
            self._response = response
            if response.status_code != 200:
                response.read()
                raise ValueError(f"stream answered {response.status_code}: {response.text[:200]}")
            self.connected.set()
            event: dict[str, str] = {}
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if not line:
                    if event.get("event") == "ruleset" and "data" in event:
                        self._apply(event["data"], streaming=True)
                    event = {}
                elif line.startswith(":"):
                    continue  # heartbeat
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    event[name] = event[name] + "\n" + value if name == "data" and name in event else value

    def _poll_once(self) -> None:
        http = self._http
        if http is None:
            return
        headers = {"If-None-Match": self._etag} if self._etag else {}
        try:
            r = http.get(f"{self.url}/sdk/v1/ruleset", headers=headers)
        except (httpx.HTTPError, OSError) as e:
            log.warning("flag poll of %s failed: %s", self.url, e)
            return
        if r.status_code == 304:
            return
        if r.status_code != 200:
            log.warning("flag poll of %s answered %d: %s", self.url, r.status_code, r.text[:200])
            return
        self._etag = r.headers.get("etag")
        self._apply(r.text, streaming=False)

    def _apply(self, data: str, *, streaming: bool) -> None:
        client = self._client
        if client is None:
            return
        try:
            ruleset = json.loads(data)
        except ValueError:
            log.warning("flag service sent a ruleset that is not JSON; keeping the current one")
            return
        client.update(ruleset)
        revision = client.revision
        if revision is not None:
            self._schedule_ack(revision, streaming)

    # -- reporting ------------------------------------------------------------------------------------

    def _schedule_ack(self, revision: int, streaming: bool) -> None:
        """Acknowledge ``revision`` soon; a pending ack of an older one is replaced, keeping its time."""
        now = time.monotonic()
        with self._wake:
            if self._ack is not None and self._ack[0] >= revision:
                return
            self._ack = (revision, streaming, now)
            if self._ack_due is None:
                jitter = random.random()  # noqa: S311 -- spreading the acks, not crypto
                self._ack_due = now + self.ack_delay * (1.0 + jitter)
            self._wake.notify_all()

    def _send_ack(self) -> None:
        with self._wake:
            ack, self._ack, self._ack_due = self._ack, None, None
        if ack is None:
            return
        revision, streaming, applied = ack
        body = {
            "sdkId": self.sdk_id,
            "revision": revision,
            "streaming": streaming,
            "age": round(max(0.0, time.monotonic() - applied), 6),
        }
        if not self._post("/sdk/v1/applied", body):
            with self._wake:  # again in a second or so, unless a newer revision is pending by now
                if self._ack is None and not self._stop.is_set():
                    self._ack = ack
                    self._ack_due = time.monotonic() + _ACK_RETRY * (1.0 + random.random())  # noqa: S311

    def _report(self) -> None:
        next_flush = time.monotonic() + self.flush_interval
        while True:
            with self._wake:
                while not self._stop.is_set():
                    now = time.monotonic()
                    due = next_flush if self._ack_due is None else min(next_flush, self._ack_due)
                    if now >= due:
                        break
                    self._wake.wait(due - now)
                if self._stop.is_set():
                    return
                ack_due = self._ack_due is not None and self._ack_due <= time.monotonic()
            if ack_due:
                self._send_ack()
            if time.monotonic() >= next_flush:
                self._flush()
                next_flush = time.monotonic() + self.flush_interval

    def _flush(self) -> None:
        client = self._client
        if client is None:
            return
        for key, n in client.drain_counts().items():
            self._pending[key] = self._pending.get(key, 0) + n
        if not self._pending:
            return
        counts = [
            {"flag": flag, "variant": variant if variant is not None else "", "count": n}
            for (flag, variant), n in self._pending.items()
        ]
        if self._post("/sdk/v1/evaluations", {"counts": counts}):
            self._pending.clear()

    def _post(self, path: str, body: dict[str, Any]) -> bool:
        http = self._http
        if http is None:
            return False
        try:
            r = http.post(f"{self.url}{path}", json=body)
        except (httpx.HTTPError, OSError) as e:
            log.warning("flag service %s failed: %s", path, e)
            return False
        if r.status_code >= 400:
            log.warning("flag service %s answered %d: %s", path, r.status_code, r.text[:200])
            return False
        return True


class _ClosingBackend(httpcore.SyncBackend):
    """httpcore's backend, but a unix-socket connect that fails closes its socket.

    httpcore 1.0's ``connect_unix_socket`` leaves the socket of a failed connect to the garbage
    collector (a ``ResourceWarning`` per attempt); an SDK retries its stream every few seconds while the
    control plane is away (its socket file gone, or left behind by a SIGKILL and refusing).
    """

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(timeout)
            sock.connect(path)
        except TimeoutError as e:
            sock.close()
            raise httpcore.ConnectTimeout(str(e)) from e
        except OSError as e:
            sock.close()
            raise httpcore.ConnectError(str(e)) from e
        return _stream(sock)


def _stream(sock: socket.socket) -> httpcore.NetworkStream:
    # The stream type httpcore's own connect returns (not exported by httpcore).
    from httpcore._backends.sync import SyncStream

    return SyncStream(sock)


class _UnixTransport(httpx.HTTPTransport):
    """httpx's transport on a unix socket, with ``_ClosingBackend`` under its connection pool."""

    def __init__(self, path: str) -> None:
        super().__init__(uds=path)
        self._pool = httpcore.ConnectionPool(uds=path, network_backend=_ClosingBackend())


def _read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            mode = os.fstat(f.fileno()).st_mode
            token = f.read().strip()
    except OSError as e:
        raise ValueError(f"${ENV_SDK_TOKEN_FILE} {path!r}: cannot read the SDK token: {e.strerror}") from e
    if not token:
        raise ValueError(f"${ENV_SDK_TOKEN_FILE} {path!r}: the file is empty")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "SDK token file %s is readable by others (mode %o); it should be 0600", path, mode & 0o777
        )
    return token


def _interrupt(response: httpx.Response) -> None:
    """Shut the stream's socket down: closing the response alone does not wake a thread blocked in recv."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        response.close()


def _backoff(failures: int) -> float:
    """Exponential backoff with full jitter in its upper half, capped."""
    ceiling = min(_MAX_BACKOFF, _MIN_BACKOFF * 2.0 ** max(0, failures - 1))
    return float(ceiling / 2 + random.random() * ceiling / 2)  # noqa: S311 -- jitter, not crypto
