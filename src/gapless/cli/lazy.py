"""Command groups whose modules are imported only when one of their commands runs.

``gapless status`` must not pay for importing the migration planner, the flag engine or the load
generator. Each entry names a module and an attribute: a ``typer.Typer`` (a group of commands) or a
function (one command). ``gapless --help`` lists them from ``LAZY_HELP`` without importing them (a
test checks that each line is the command's own first help line).
"""

from __future__ import annotations

import importlib
import re
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from typer._click import Command, Context  # typer vendors click since 0.26

__all__ = ["LAZY_COMMANDS", "LazyGroup", "unwrap_help"]

LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "flags": ("gapless.cli.flags_import", "flags_app"),  # flags_import adds `flags import` to flags_app
    "migrate": ("gapless.cli.migrate_cmd", "migrate_app"),
    "release": ("gapless.cli.release_cmd", "release_app"),
    "load": ("gapless.cli.load_cmd", "load_command"),
    "operator": ("gapless.cli.operator_cmd", "operator_app"),
    "k8s": ("gapless.cli.k8s_cmd", "k8s_app"),
}
"""Command name -> (module, attribute)."""

LAZY_HELP: dict[str, str] = {
    "flags": "Feature flags: the flag service, projects, flags, the kill switch and SDK tokens.",
    "migrate": (
        "Zero-downtime schema migrations on PostgreSQL and SQLite: expand/contract, old and new code"
        " served at once."
    ),
    "release": "Releases: one ordered plan of migrations, rollouts and flag changes, rolled back together.",
    "load": "Send HTTP requests to a local URL at a fixed rate and count every outcome.",
    "operator": "The Kubernetes operator: reconciles Rollouts on a cluster (rolling updates as ReplicaSets).",
    "k8s": "Kubernetes install: print the CRDs, RBAC and operator Deployment to apply to a cluster.",
}
"""Command name -> its line in ``gapless --help``, shown without importing the command's module."""


_KEEP_LINES = re.compile(r"^(\x08|\s|[-*] )", re.M)


def unwrap_help(command: Command) -> Command:
    """Join the hard-wrapped lines of ``command``'s help paragraphs (and its subcommands'), in place.

    Docstrings are wrapped at the source's width; Typer joins the lines of a help's first paragraph but
    keeps the later paragraphs' line breaks, so at 80 columns they came out ragged ("each\n database").
    A paragraph with an indented, bulleted or ``\b`` line is left as written.
    """
    if command.help and not getattr(command, "_unwrapped", False):
        import inspect  # only when a command is looked up, not on every start

        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(p if _KEEP_LINES.search(p) else p.replace("\n", " ") for p in paragraphs)
        command._unwrapped = True  # type: ignore[attr-defined]
    for sub in getattr(command, "commands", {}).values():
        unwrap_help(sub)
    return command


def _load(name: str) -> Command:
    module, attribute = LAZY_COMMANDS[name]
    target: Any = getattr(importlib.import_module(module), attribute)
    command: Command
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)
    else:
        single = typer.Typer()
        single.command(name)(target)
        command = typer.main.get_command(single)
    command.name = name
    return unwrap_help(command)


class LazyGroup(TyperGroup):
    """A Typer group that adds the ``LAZY_COMMANDS`` and imports each on first use."""

    def list_commands(self, ctx: Context) -> list[str]:
        names = super().list_commands(ctx)
        return names + [n for n in LAZY_COMMANDS if n not in names]

    def format_help(self, ctx: Context, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            if getattr(self, "_listing", False):  # the help's command list: the line only, no import
                return TyperCommand(cmd_name, help=LAZY_HELP[cmd_name])
            self.commands[cmd_name] = _load(cmd_name)
        command = super().get_command(ctx, cmd_name)
        return None if command is None else unwrap_help(command)
