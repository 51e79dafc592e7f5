"""Command groups whose modules are imported only when one of their commands runs.

``gapless status`` must not pay for importing the migration planner, the flag engine or the load
generator. Each entry names a module and an attribute: a ``typer.Typer`` (a group of commands) or a
function (one command). ``gapless --help`` imports them all to show their help lines.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from typer._click import Command, Context  # typer vendors click since 0.26

__all__ = ["LAZY_COMMANDS", "LazyGroup"]

LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "flags": ("gapless.cli.flags_import", "flags_app"),  # flags_import adds `flags import` to flags_app
    "migrate": ("gapless.cli.migrate_cmd", "migrate_app"),
    "release": ("gapless.cli.release_cmd", "release_app"),
    "load": ("gapless.cli.load_cmd", "load_command"),
}
"""Command name -> (module, attribute)."""


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
    return command


class LazyGroup(TyperGroup):
    """A Typer group that adds the ``LAZY_COMMANDS`` and imports each on first use."""

    def list_commands(self, ctx: Context) -> list[str]:
        names = super().list_commands(ctx)
        return names + [n for n in LAZY_COMMANDS if n not in names]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            self.commands[cmd_name] = _load(cmd_name)
        return super().get_command(ctx, cmd_name)
