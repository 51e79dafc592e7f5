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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapless.cli.api import SyncClient, resolve_state_dir, rollout_path

__all__ = ["QuickCall", "abort", "main", "parse", "promote", "set_paused", "undo"]


def post(sd: Path, name: str, verb: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST a command to a rollout; the control plane answers once its rollout's pass applied it."""
    with SyncClient(sd) as client:
        return dict(client.request("POST", rollout_path(name, verb), body or {}))


def promote(sd: Path, name: str, full: bool) -> str:
    post(sd, name, "promote", {"full": full})
    return f"{name}: {'full promotion' if full else 'promoted to the next step'}"


def abort(sd: Path, name: str) -> str:
    post(sd, name, "abort")
    return f"{name}: aborted, all traffic goes to the stable revision"


def set_paused(sd: Path, name: str, paused: bool) -> str:
    verb = "pause" if paused else "resume"
    result = post(sd, name, verb)
    return f"{name} {verb}d" if result.get("changed") else f"{name} was already {verb}d"


def undo(sd: Path, name: str, to_revision: int | None) -> tuple[dict[str, Any], str]:
    """(the answer, the line to print) of an undo."""
    result = post(sd, name, "undo", {"toRevision": to_revision} if to_revision is not None else {})
    if not result.get("changed"):
        return result, f"{name} already runs revision {result.get('revision')}"
    return result, (
        f"{name} rolling back to the template of revision {result.get('from')} "
        f"(now revision {result.get('revision')})"
    )


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


@dataclass(frozen=True)
class QuickCall:
    verb: str
    name: str
    state_dir: Path | None = None
    flags: frozenset[str] = frozenset()
    values: dict[str, str] = field(default_factory=dict)

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
    return QuickCall(verb, names[0], Path(state) if state else None, frozenset(flags), values)


def run(call: QuickCall) -> int:
    """Send the call; print its line (or the error) to stderr; the exit code."""
    from gapless.cli.api import report_error

    sd = resolve_state_dir(call.state_dir)
    try:
        if call.verb == "promote":
            line = promote(sd, call.name, "--full" in call.flags)
        elif call.verb == "abort":
            line = abort(sd, call.name)
        elif call.verb == "undo":
            _, line = undo(sd, call.name, call.to_revision)
        elif call.verb == "status":
            return _status(sd, call.name)
        else:
            line = set_paused(sd, call.name, call.verb == "pause")
    except Exception as e:
        code, lines = report_error(e)
        if code is None:
            raise
        color = sys.stderr.isatty() and "NO_COLOR" not in os.environ
        head = "\x1b[31merror:\x1b[0m" if color else "error:"
        sys.stderr.write("\n".join([f"{head} {lines[0]}", *lines[1:]]) + "\n")
        return code
    except KeyboardInterrupt:
        return 130
    sys.stderr.write(line + "\n")
    return 0


def _status(sd: Path, name: str) -> int:
    """``gapless status NAME`` as the typer command prints it, without typer (rich renders it)."""
    from rich.console import Console

    from gapless.cli.render import render_status

    with SyncClient(sd) as client:
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
