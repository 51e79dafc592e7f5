"""`gapless load` through typer's CliRunner on a throwaway app: output modes and exit codes 0/1/2."""

from __future__ import annotations

import asyncio
import json

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from gapless.cli.load_cmd import load_command
from tests.loadgen.server import LocalServer

pytestmark = pytest.mark.asyncio(loop_factories=["asyncio"])


def make_app() -> typer.Typer:
    """A one-command app, so the tests do not depend on the real CLI's registration."""
    app = typer.Typer()
    app.command()(load_command)
    return app


async def invoke(*args: str) -> Result:
    """Run the command in a worker thread, as its own event loop needs, while the server runs here."""
    return await asyncio.to_thread(CliRunner().invoke, make_app(), list(args))


async def test_exit_0_and_a_table_when_nothing_failed(server: LocalServer) -> None:
    """A clean run exits 0, prints the report table on stdout and progress on stderr."""
    result = await invoke(server.url("/ok"), "--rps", "50", "--duration", "0.2")
    assert result.exit_code == 0, result.output
    assert "gapless load" in result.stdout
    assert "version v1" in result.stdout
    assert "sent 10" in result.stderr


async def test_exit_1_and_only_json_on_stdout_when_requests_failed(server: LocalServer) -> None:
    """Any failed request exits 1; -o json prints just the JSON report, and no progress."""
    result = await invoke(server.url("/every/2/503"), "--rps", "50", "-d", "0.2", "-o", "json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert (data["sent"], data["ok"], data["failed"]) == (10, 5, 5)
    assert data["failures"] == {"status_503": 5}
    assert result.stderr == ""


async def test_exit_1_when_the_port_refuses(refused_port: int) -> None:
    """Refused connections are failures too, not an empty success."""
    result = await invoke(f"http://127.0.0.1:{refused_port}/", "--rps", "50", "-d", "0.1", "-o", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["failures"] == {"connect_refused": 5}


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["http://10.1.2.3/"], "URL"),
        (["http://example.com/"], "URL"),
        (["https://127.0.0.1/"], "URL"),
        (["http://127.0.0.1:9/", "--rps", "0"], "--rps"),
        (["http://127.0.0.1:9/", "--rps", "lots"], "--rps"),
        (["http://127.0.0.1:9/", "--duration", "4000"], "--duration"),
        (["http://127.0.0.1:9/", "--timeout", "-1"], "--timeout"),
        (["http://127.0.0.1:9/", "--version-header", "bad header"], "--version-header"),
        (["http://127.0.0.1:9/", "--method", "BREW"], "--method"),
        (["http://127.0.0.1:9/", "--max-in-flight", "0"], "--max-in-flight"),
        (["http://127.0.0.1:9/", "-o", "xml"], "--output"),
    ],
)
async def test_exit_2_on_bad_input_naming_the_option(args: list[str], named: str) -> None:
    """Bad input exits 2 before sending anything, with a message that names the offending option."""
    result = await invoke(*args)
    assert result.exit_code == 2, result.output
    assert named in result.stderr
    assert result.stdout == ""


async def test_help_explains_safety_and_exit_codes() -> None:
    """--help states the loopback rule, the failure kinds and the exit codes."""
    result = await invoke("--help")
    assert result.exit_code == 0
    for needle in ("loopback", "overload", "Exit status", "--rps", "--version-header", "json"):
        assert needle in result.stdout
