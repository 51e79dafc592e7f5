"""Entry point of the ``gapless`` console script."""

from __future__ import annotations

import typer

from gapless import __version__

app = typer.Typer(
    name="gapless",
    help="Zero-downtime deployments: rolling updates of local processes behind a built-in router.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the gapless version."""
    typer.echo(__version__)


def main() -> None:
    app()
