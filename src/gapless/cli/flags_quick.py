"""The kill switch, started without the command-line framework.

``gapless flags kill PROJECT FLAG ENV`` is typed while a feature is hurting users; its whole point is
how soon SDKs get the off variant. Like the rollout verbs of ``gapless.cli.quick``, a command line of
``flags kill`` or ``flags enable`` in the plain grammar below (three names, and ``--state-dir``,
``--url`` and ``--token`` each at most once, each with a value) runs here with the standard library
only; anything else (``--help``, a missing name, an unknown option) goes to the typer application,
which parses it with the same meaning. The typer commands call ``switch`` too, so both paths send the
same request and print the same line; tests/cli/test_flags_quick.py checks that both parse alike.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NamedTuple

from gapless.cli.api import resolve_state_dir
from gapless.cli.flags_client import FlagsClient, FlagsError, api_path, candidates

__all__ = ["SwitchCall", "parse", "run", "switch"]

VERBS = ("kill", "enable")
VALUED = ("--state-dir", "--url", "--token")


def switch(
    project: str,
    flag: str,
    environment: str,
    action: str,
    url: str | None,
    token: str | None,
    state_dir: Path,
) -> str:
    """Throw the kill switch (``kill``) or turn the flag back on (``enable``); the line to print."""
    path = api_path("projects", project, "flags", flag, "environments", environment, action)
    endpoints = candidates(url, state_dir, os.environ)
    with FlagsClient(endpoints, state_dir, token or os.environ.get("GAPLESS_FLAGS_TOKEN")) as client:
        result = client.call("POST", path)
    revision = (result.get("revisions") or {}).get(environment)
    what = f"revision {revision}" if revision else "no change"
    return f"{flag} in {project}/{environment}: {'killed' if action == 'kill' else 'enabled'} ({what})"


class SwitchCall(NamedTuple):  # not a dataclass: see gapless.core.errors.Problem
    action: str
    project: str
    flag: str
    environment: str
    state_dir: Path | None = None
    url: str | None = None
    token: str | None = None


def parse(argv: list[str]) -> SwitchCall | None:
    """The call ``argv`` (after ``flags``) makes, or None when typer must parse it."""
    if not argv or argv[0] not in VERBS:
        return None
    names: list[str] = []
    values: dict[str, str] = {}
    rest = argv[1:]
    i = 0
    while i < len(rest):
        token = rest[i]
        if token.startswith("-"):
            option, eq, value = token.partition("=")
            if option not in VALUED or option in values:
                return None  # --help, --, -x, an option given twice
            if not eq:
                i += 1
                if i == len(rest) or rest[i].startswith("-"):
                    return None
                value = rest[i]
            if not value:
                return None
            values[option] = value
        else:
            names.append(token)
        i += 1
    if len(names) != 3 or not all(names):
        return None
    state = values.get("--state-dir")
    project, flag, environment = names
    return SwitchCall(
        argv[0],
        project,
        flag,
        environment,
        Path(state) if state else None,
        values.get("--url"),
        values.get("--token"),
    )


def run(call: SwitchCall) -> int:
    """Send the call; print its line (or the error) to stderr; the exit code."""
    try:
        line = switch(
            call.project,
            call.flag,
            call.environment,
            call.action,
            call.url,
            call.token,
            resolve_state_dir(call.state_dir),
        )
    except FlagsError as e:
        color = sys.stderr.isatty() and "NO_COLOR" not in os.environ
        head = "\x1b[31merror:\x1b[0m" if color else "error:"
        sys.stderr.write("\n".join([f"{head} {e}", *e.details]) + "\n")
        return e.code
    except KeyboardInterrupt:
        return 130
    sys.stderr.write(line + "\n")
    return 0
