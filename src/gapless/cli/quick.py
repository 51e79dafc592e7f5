"""The incident verbs, started without the command-line framework.

``gapless promote``, ``abort``, ``undo``, ``pause`` and ``resume`` are what someone types while traffic
is failing, and their whole point is how soon the router holds the new weights. typer and rich alone
take longer to import than the control plane takes to apply the command, so the console script first
tries this module: a command line in the plain grammar below (a rollout name, ``--state-dir``, and the
verb's own options, each at most once) runs here, with the standard library only. Anything else
(``--help``, ``--wait``, a malformed value, an unknown option) goes to the typer application in
``gapless.cli.main``, which parses it with the same meaning and reports errors as usual. The typer
commands call the functions here, so both paths send the same requests and print the same lines;
tests/cli/test_quick.py checks that both parse every command line alike. ``gapless status NAME`` and
``gapless version`` take this path too (status renders with rich, as the typer command does, but
skips building the typer application).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # the typing module alone costs a few milliseconds of this path's start
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

__all__ = ["QuickCall", "abort", "main", "parse", "promote", "set_paused", "undo"]

API_SOCKET = "api.sock"  # gapless.core.files.API_SOCKET (a test checks they agree)
TOKEN_FILE = "token"  # noqa: S105 -- gapless.core.files.TOKEN_FILE, a file name
TIMEOUT = 30.0
"""Seconds the quick path waits for the control plane's answer (as ``SyncClient``)."""


def post(sd: Path, name: str, verb: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST a command to a rollout; the control plane answers once its rollout's pass applied it."""
    from gapless.cli.api import SyncClient, rollout_path

    with SyncClient(sd) as client:
        return dict(client.request("POST", rollout_path(name, verb), body or {}))


def promote_line(name: str, full: bool) -> str:
    return f"{name}: {'full promotion' if full else 'promoted to the next step'}"


def abort_line(name: str) -> str:
    return f"{name}: aborted, all traffic goes to the stable revision"


def paused_line(name: str, paused: bool, result: dict[str, Any]) -> str:
    verb = "pause" if paused else "resume"
    return f"{name} {verb}d" if result.get("changed") else f"{name} was already {verb}d"


def undo_line(name: str, result: dict[str, Any]) -> str:
    if not result.get("changed"):
        return f"{name} already runs revision {result.get('revision')}"
    return (
        f"{name} rolling back to the template of revision {result.get('from')} "
        f"(now revision {result.get('revision')})"
    )


def promote(sd: Path, name: str, full: bool) -> str:
    post(sd, name, "promote", {"full": full})
    return promote_line(name, full)


def abort(sd: Path, name: str) -> str:
    post(sd, name, "abort")
    return abort_line(name)


def set_paused(sd: Path, name: str, paused: bool) -> str:
    return paused_line(name, paused, post(sd, name, "pause" if paused else "resume"))


def undo(sd: Path, name: str, to_revision: int | None) -> tuple[dict[str, Any], str]:
    """(the answer, the line to print) of an undo."""
    result = post(sd, name, "undo", {"toRevision": to_revision} if to_revision is not None else {})
    return result, undo_line(name, result)


# -- the command sent before the rest is imported ---------------------------------------------------

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(name: str) -> str:
    """``urllib.parse.quote(name, safe="")`` without importing it (a test checks they agree)."""
    data = name.encode("utf-8", "surrogateescape")
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in data)


def request_bytes(state_dir: str, verb: str, name: str, body: str) -> bytes:
    """The HTTP/1.1 request of a command (``Connection: close``: the answer ends with the stream)."""
    try:
        with open(os.path.join(state_dir, TOKEN_FILE), encoding="utf-8") as f:
            token = f.read().strip()
    except FileNotFoundError:
        token = ""
    payload = body.encode()
    head = (
        f"POST /api/v1/rollouts/{quote(name)}/{verb} HTTP/1.1\r\n"
        "Host: gapless\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Accept: application/json\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + payload


def send(state_dir: str, verb: str, name: str, body: str) -> dict[str, Any]:
    """Send a command to the control plane at once, then import what reading its answer needs.

    The request leaves before ``json``, ``socket`` and ``http.client`` are imported (together about
    as long as the control plane takes to apply a promote or an abort), so that import overlaps the
    control plane's work instead of delaying it. The answer is read by the standard library's own
    HTTP response parser, and errors are reported exactly as ``SyncClient`` reports them.
    """
    import _socket  # the C module under ``socket``, without the enum classes that module builds

    path = os.path.join(state_dir, API_SOCKET)
    if not os.path.exists(path):
        from gapless.cli.api import not_running

        raise not_running(state_dir)
    raw = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        raw.settimeout(TIMEOUT)
        raw.connect(path)
        raw.sendall(request_bytes(state_dir, verb, name, body))
    except OSError as e:
        raw.close()
        from gapless.cli.api import connection_error

        raise connection_error(state_dir, e, TIMEOUT) from e
    import http.client
    import json
    import socket

    from gapless.cli.api import connection_error, raise_for_error

    sock = socket.socket(fileno=raw.detach())
    sock.settimeout(TIMEOUT)  # the descriptor is non-blocking: without a timeout, reads would not wait
    try:
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()
        data = response.read()
    except (OSError, http.client.HTTPException) as e:
        raise connection_error(state_dir, e, TIMEOUT) from e
    finally:
        sock.close()
    raise_for_error(response.status, data)
    return dict(json.loads(data))


def _state_dir(option: str | None) -> str:
    """``gapless.cli.api.resolve_state_dir`` on strings (pathlib costs this path's start-up)."""
    if option is not None:
        return os.path.realpath(os.path.expanduser(option))
    home = os.environ.get("GAPLESS_HOME")
    if home:
        return os.path.realpath(os.path.expanduser(home))
    return os.path.realpath(os.path.join(os.getcwd(), ".gapless"))


# -- the plain grammar ------------------------------------------------------------------------------

FLAGS: dict[str, frozenset[str]] = {
    "promote": frozenset({"--full"}),
    "abort": frozenset(),
    "undo": frozenset(),
    "pause": frozenset(),
    "resume": frozenset(),
    "status": frozenset(),
}
"""Each quick verb's options that take no value (``--state-dir`` and ``--to-revision`` take one)."""
VALUED: dict[str, frozenset[str]] = {
    "promote": frozenset({"--state-dir"}),
    "abort": frozenset({"--state-dir"}),
    "undo": frozenset({"--state-dir", "--to-revision"}),
    "pause": frozenset({"--state-dir"}),
    "resume": frozenset({"--state-dir"}),
    "status": frozenset({"--state-dir"}),
}


class QuickCall:
    """A command line the quick path runs (a plain class: dataclasses costs this path's start-up)."""

    __slots__ = ("flags", "name", "state_dir", "values", "verb")

    def __init__(
        self,
        verb: str,
        name: str,
        state_dir: str | None = None,
        flags: frozenset[str] = frozenset(),
        values: dict[str, str] | None = None,
    ) -> None:
        self.verb = verb
        self.name = name
        self.state_dir = state_dir
        self.flags = flags
        self.values = values or {}

    def __repr__(self) -> str:
        return f"QuickCall({self.verb!r}, {self.name!r}, {self.state_dir!r}, {set(self.flags)!r}, {self.values!r})"

    @property
    def to_revision(self) -> int | None:
        v = self.values.get("--to-revision")
        return None if v is None else int(v)


def parse(argv: list[str]) -> QuickCall | None:
    """The call ``argv`` (without the program name) makes, or None when typer must parse it."""
    if not argv or argv[0] not in FLAGS:
        return None
    verb, rest = argv[0], argv[1:]
    names: list[str] = []
    flags: set[str] = set()
    values: dict[str, str] = {}
    i = 0
    while i < len(rest):
        token = rest[i]
        if token.startswith("-"):
            option, eq, value = token.partition("=")
            if option in FLAGS[verb] and not eq and option not in flags:
                flags.add(option)
            elif option in VALUED[verb] and option not in values:
                if not eq:
                    i += 1
                    if i == len(rest) or rest[i].startswith("-"):
                        return None
                    value = rest[i]
                values[option] = value
            else:
                return None  # --help, --, -x, an option given twice, --wait, ...
        else:
            names.append(token)
        i += 1
    if len(names) != 1 or not names[0]:
        return None
    revision = values.get("--to-revision")
    if revision is not None and not (revision.isascii() and revision.isdigit() and int(revision) >= 1):
        return None  # typer reports it
    state = values.get("--state-dir")
    if state is not None and not state:
        return None
    return QuickCall(verb, names[0], state or None, frozenset(flags), values)


def run(call: QuickCall) -> int:
    """Send the call; print its line (or the error) to stderr; the exit code."""
    sd = _state_dir(call.state_dir)
    try:
        if call.verb == "promote":
            full = "--full" in call.flags
            send(sd, "promote", call.name, '{"full": true}' if full else '{"full": false}')
            line = promote_line(call.name, full)
        elif call.verb == "abort":
            send(sd, "abort", call.name, "{}")
            line = abort_line(call.name)
        elif call.verb == "undo":
            to = call.to_revision
            line = undo_line(
                call.name, send(sd, "undo", call.name, "{}" if to is None else f'{{"toRevision": {to}}}')
            )
        elif call.verb == "status":
            return _status(sd, call.name)
        else:
            paused = call.verb == "pause"
            line = paused_line(call.name, paused, send(sd, call.verb, call.name, "{}"))
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        from gapless.cli.api import report_error

        code, lines = report_error(e)
        if code is None:
            raise
        color = sys.stderr.isatty() and "NO_COLOR" not in os.environ
        head = "\x1b[31merror:\x1b[0m" if color else "error:"
        sys.stderr.write("\n".join([f"{head} {lines[0]}", *lines[1:]]) + "\n")
        return code
    sys.stderr.write(line + "\n")
    return 0


def _status(sd: str, name: str) -> int:
    """``gapless status NAME`` as the typer command prints it, without typer (rich renders it)."""
    from pathlib import Path

    from rich.console import Console

    from gapless.cli.api import SyncClient
    from gapless.cli.render import render_status

    with SyncClient(Path(sd)) as client:
        st = client.status(name)
    Console().print(render_status(st))
    return 0


def main() -> None:
    """The console script: a quick verb runs here, everything else in the typer application."""
    if sys.argv[1:] in (["--version"], ["version"]):  # without importing the framework
        from gapless import __version__

        sys.stdout.write(__version__ + "\n")
        return
    call = parse(sys.argv[1:])
    if call is None and sys.argv[1:2] == ["flags"]:  # the kill switch has a quick path of its own
        from gapless.cli import flags_quick

        switch = flags_quick.parse(sys.argv[2:])
        if switch is not None:
            sys.exit(flags_quick.run(switch))
    if call is None:
        from gapless.cli.main import main as full

        full()
        return
    sys.exit(run(call))
