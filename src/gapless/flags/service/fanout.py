"""Event streams written by the publisher: a change reaches every stream in one pass of the event loop.

A stream used to be a task waiting on a queue: a change woke one task per stream, and each went through
the queue, a timeout and the response's generator before writing (measured: about 0.1 ms of the
service's core per stream and change, so 200 streams took 20 ms or more after the change was stored).
Now each open stream is a ``Sink`` held by the hub, and ``Hub.publish`` hands the change to every sink
of the project environment in one loop: the sink encodes it (the bytes are made once per change, kind
of stream and revision the stream had before, and shared) and calls the ASGI ``send`` right there, without a task or a wakeup. ``send``
is a coroutine, but the server's send only waits when the connection's write buffer is over its high
mark (flow control), so it is stepped once: nearly always it finishes in that step.

When it does not (a client reading slower than changes come), the rest of that send runs in a task of
the sink's own, and the sink keeps only the newest change meanwhile (each event holds the whole ruleset,
so a newer one replaces an older one that was not written): the memory a slow client holds is bounded
by the server's write buffer and one shared change. A client that takes longer than ``stall_seconds``
to take one event is evicted: its response ends and the server closes the connection. The SDK
reconnects and gets the current ruleset first thing, so it converges; an SDK that was disconnected for
any reason does the same (revisions only go up, and a stream sends nothing older than what it sent).

``EventStream`` is the response: the status line and headers, then whatever its sink writes, a
heartbeat comment every ``HEARTBEAT_SECONDS``, until the client goes or the sink ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Generator
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gapless.flags.service.store import RulesetChange

__all__ = ["HEARTBEAT_SECONDS", "EventStream", "Sink"]

HEARTBEAT_SECONDS = 15.0
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

log = logging.getLogger("gapless.flags")

Encode = Callable[[RulesetChange, "int | None"], bytes]
"""The event for a change, given the revision of the last event written to the stream (None: it is the
stream's first), so an encoder may send only what changed since then."""


class Sink:
    """One open event stream, as the hub sees it: ``offer`` a change and it is written now or soon.

    Before the response starts (``bind``), offers are kept (the newest only), so a change published
    between reading the state and the response being sent is not lost.
    """

    stall_seconds = 30.0
    """A client that has not taken one event within this long is evicted."""

    def __init__(
        self,
        project: str,
        environment: str,
        encode: Encode,
        written: Callable[[int], None] | None = None,
        *,
        kind: str = "gapless",
    ) -> None:
        self.project = project
        self.environment = environment
        self.kind = kind
        """The protocol of the stream (``gapless``, ``unleash``): the hub takes turns between kinds."""
        self.revision = 0
        """The newest revision offered (written, or waiting for the client)."""
        self._encode = encode
        self._written = written
        self._send: Send | None = None
        self._sent: int | None = None
        """The revision of the last event handed to ``send`` (what the client has, or will have once the
        server's buffer is written: events go out in order)."""
        self._pending: RulesetChange | None = None
        self._busy: asyncio.Task[None] | None = None
        self._ended = False
        self.closed: asyncio.Future[str] | None = None
        """Done (with the reason) when the sink ended on its own: the client evicted, or a send failed."""
        self.evictions = 0

    def offer(self, change: RulesetChange) -> None:
        """Write ``change`` if it is newer than anything offered before; never waits."""
        if change.revision <= self.revision or self._ended:
            return
        self.revision = change.revision
        if self._send is None or self._busy is not None:
            self._pending = change  # the newest only: each event holds the whole ruleset
            return
        self._write(change)

    def bind(self, send: Send) -> asyncio.Future[str]:
        """The response started: write what was offered so far, and from now on write at once.
        Returns ``closed``."""
        self._send = send
        closed = self.closed = asyncio.get_running_loop().create_future()
        self._write_pending()
        return closed

    def heartbeat(self) -> None:
        if self._send is not None and self._busy is None and not self._ended:
            self._step(b": heartbeat\n\n", None)

    @property
    def busy(self) -> bool:
        """A write is held up by the client's flow control."""
        return self._busy is not None

    def close(self) -> None:
        """The response ends: stop a held-up write, write nothing more."""
        self._ended = True
        self._pending = None
        busy, self._busy = self._busy, None
        if busy is not None:
            busy.cancel()

    # -- writing --------------------------------------------------------------------------------------

    def _write_pending(self) -> None:
        change, self._pending = self._pending, None
        if change is not None:
            self._write(change)

    def _write(self, change: RulesetChange) -> None:
        previous, self._sent = self._sent, change.revision
        self._step(self._encode(change, previous), change.revision)

    def _step(self, chunk: bytes, revision: int | None) -> None:
        """Call ``send`` and run it to its first wait; what is left of it runs in a task."""
        send = self._send
        if send is None:
            return
        coro = send({"type": "http.response.body", "body": chunk, "more_body": True}).__await__()
        try:
            waiting = coro.send(None)
        except StopIteration:
            self._done_writing(revision)
            return
        except Exception as e:  # the connection failed under the write
            coro.close()
            self._end(f"write failed: {e}")
            return
        self._busy = asyncio.get_running_loop().create_task(self._finish(coro, waiting, revision))

    async def _finish(self, coro: Generator[Any, Any, Any], waiting: Any, revision: int | None) -> None:
        try:
            await asyncio.wait_for(_resumed(coro, waiting), self.stall_seconds)
        except TimeoutError:
            self.evictions += 1
            log.info(
                "evicting a stream of %s/%s: it took no event for %.0f s",
                self.project,
                self.environment,
                self.stall_seconds,
            )
            self._busy = None
            self._end("evicted: the client did not read")
            return
        except Exception as e:
            self._busy = None
            self._end(f"write failed: {e}")
            return
        self._busy = None
        self._done_writing(revision)
        if not self._ended:
            self._write_pending()

    def _done_writing(self, revision: int | None) -> None:
        if revision is not None and self._written is not None:
            self._written(revision)

    def _end(self, reason: str) -> None:
        self.close()
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(reason)


async def _resumed(coro: Generator[Any, Any, Any], waiting: Any) -> Any:
    return await _Resume(coro, waiting)


class _Resume:
    """Awaits the rest of an awaitable (its ``__await__`` iterator) that was stepped by hand and is
    waiting on ``waiting``: the enclosing task waits on what it yields and sends (or throws) the outcome
    back into it, as it would have had it awaited it from the start."""

    def __init__(self, coro: Generator[Any, Any, Any], waiting: Any) -> None:
        self._coro = coro
        self._waiting = waiting

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waiting = self._coro, self._waiting
        while True:
            try:
                value = yield waiting
            except BaseException as e:  # thrown into the task (a cancellation): pass it on
                try:
                    waiting = coro.throw(e)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    waiting = coro.send(value)
                except StopIteration as stop:
                    return stop.value


class EventStream(Response):
    """A server-sent-event response whose events ``sink`` writes as changes are published.

    ``on_close`` runs when the response ends, for any reason (the hub forgets the sink there).
    """

    media_type = "text/event-stream"

    def __init__(self, sink: Sink, on_close: Callable[[], None]) -> None:
        super().__init__(status_code=200, headers=STREAM_HEADERS, media_type=self.media_type)
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]  # chunked
        self.sink = sink
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone: asyncio.Task[None] | None = None
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            closed = self.sink.bind(send)
            gone = asyncio.get_running_loop().create_task(_disconnected(receive))
            while True:
                done, _ = await asyncio.wait(
                    (gone, closed), timeout=HEARTBEAT_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                if done:
                    break
                self.sink.heartbeat()
        finally:
            if gone is not None:
                gone.cancel()
            self.sink.close()
            self._on_close()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
