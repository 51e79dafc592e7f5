"""Name every way a request can fail, so that no failure is folded into another or lost.

Each request ends in exactly one outcome: ok (2xx or 3xx) or one failure kind. The kinds are stable
strings because scripts read them from the JSON report:

``status_<code>``
    the server answered 4xx or 5xx (``status_503``).
``connect_refused``
    nothing listened on the port (ECONNREFUSED).
``connection_reset``
    the peer reset the connection (ECONNRESET).
``broken_pipe``
    writing to a connection the peer had already closed (EPIPE).
``connection_closed``
    the server closed the connection cleanly before a complete response.
``timeout``
    no complete response within the timeout, counted from the moment the request was started.
``overload``
    the request was due but the cap on outstanding requests was reached, so it was never sent.
``protocol_error``
    the response was not valid HTTP/1.x.
``os_error_<ERRNO>``
    any other socket error, by errno name (``os_error_EMFILE`` when the client runs out of files).
``error_<ClassName>``
    anything else, by exception class.

The functions here are pure: they map an exception or a status code to a kind.
"""

from __future__ import annotations

import errno

from gapless.loadgen.http1 import ConnectionClosedError, ProtocolError

__all__ = [
    "CONNECTION_CLOSED",
    "CONNECTION_RESET",
    "CONNECT_REFUSED",
    "OVERLOAD",
    "TIMEOUT",
    "failure_kind",
    "is_ok_status",
    "status_kind",
]

CONNECT_REFUSED = "connect_refused"
CONNECTION_RESET = "connection_reset"
BROKEN_PIPE = "broken_pipe"
CONNECTION_CLOSED = "connection_closed"
TIMEOUT = "timeout"
OVERLOAD = "overload"
PROTOCOL_ERROR = "protocol_error"


def is_ok_status(status: int) -> bool:
    """2xx and 3xx count as ok; a redirect is an answer, and the generator does not follow it."""
    return 200 <= status < 400


def status_kind(status: int) -> str:
    """The failure kind of a non-ok status: ``status_<code>``."""
    return f"status_{status}"


def failure_kind(exc: BaseException) -> str:
    """Map the exception that ended a request to its failure kind."""
    # Order matters: TimeoutError, ConnectionRefusedError and friends are all OSError subclasses.
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    if isinstance(exc, ConnectionRefusedError):
        return CONNECT_REFUSED
    if isinstance(exc, ConnectionResetError):
        return CONNECTION_RESET
    if isinstance(exc, BrokenPipeError):
        return BROKEN_PIPE
    if isinstance(exc, ConnectionClosedError):
        return CONNECTION_CLOSED
    if isinstance(exc, ProtocolError):
        return PROTOCOL_ERROR
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"os_error_{errno.errorcode.get(exc.errno, str(exc.errno))}"
    return f"error_{type(exc).__name__}"
