"""The incident verbs' quick path parses every command line as the typer application does.

Rules: (1) whenever ``quick.parse`` accepts a command line, typer accepts it too and derives the same
verb, rollout name, state directory and options; (2) what the quick path leaves alone, typer handles
(help, unknown options, bad values); (3) both paths print the same line and exit with the same code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gapless.cli import quick
from gapless.cli.main import app

TOKENS = st.sampled_from(
    [
        "web",
        "api-2",
        "--full",
        "--state-dir",
        "--state-dir=/tmp/s",
        "/tmp/other",
        "--to-revision",
        "--to-revision=3",
        "3",
        "0",
        "-1",
        "x",
        "--wait",
        "--timeout",
        "--timeout=2m",
        "--help",
        "-h",
        "--",
        "",
        "--full=yes",
        "--state-dir=",
        "-",
    ]
)
VERBS = st.sampled_from(["promote", "abort", "undo", "pause", "resume", "status", "retry"])


def typer_parse(argv: list[str]) -> dict[str, Any] | None:
    """The parameters typer's command gets for ``argv``, or None when typer refuses it."""
    import typer.main

    group = typer.main.get_command(app)
    try:
        with group.make_context("gapless", [argv[0]]) as ctx:  # the group has no options of its own
            command = group.get_command(ctx, argv[0])  # type: ignore[attr-defined]
            assert command is not None
            with command.make_context(argv[0], list(argv[1:]), parent=ctx) as sub:
                return dict(sub.params)
    except BaseException:  # click's usage errors and --help's exit
        return None


@given(VERBS, st.lists(TOKENS, max_size=5))
def test_quick_parse_agrees_with_typer(verb: str, rest: list[str]) -> None:
    argv = [verb, *rest]
    call = quick.parse(argv)
    if call is None:
        return  # typer parses it (rule 2); nothing to compare
    params = typer_parse(argv)
    assert params is not None, f"typer refuses {argv} which the quick path accepts"
    assert params["name"] == call.name
    assert params["state_dir"] == (None if call.state_dir is None else Path(call.state_dir))
    if verb == "promote":
        assert params["full"] == ("--full" in call.flags)
    if verb == "undo":
        assert params["to_revision"] == call.to_revision
        assert params["wait"] is False


@pytest.mark.parametrize(
    "argv",
    [
        ["promote", "web"],
        ["promote", "--full", "web"],
        ["abort", "web", "--state-dir", "/tmp/s"],
        ["undo", "web", "--to-revision=2"],
        ["pause", "--state-dir=/tmp/s", "web"],
        ["resume", "web"],
        ["status", "web"],
        ["status", "web", "--state-dir", "/tmp/s"],
    ],
)
def test_quick_takes_the_plain_lines(argv: list[str]) -> None:
    assert quick.parse(argv) is not None


@pytest.mark.parametrize(
    "argv",
    [
        ["promote"],
        ["promote", "a", "b"],
        ["promote", "--help"],
        ["undo", "web", "--wait"],
        ["undo", "web", "--to-revision", "0"],
        ["abort", "web", "--state-dir"],
        ["abort", "--full", "web"],
        ["status"],
        ["status", "web", "-w"],
        ["status", "web", "-o", "json"],
        ["promote", "web", "--full", "--full"],
    ],
)
def test_quick_leaves_the_rest_to_typer(argv: list[str]) -> None:
    assert quick.parse(argv) is None


def run(entry: str, argv: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    code = f"import sys; sys.argv[0] = 'gapless'; from {entry} import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "GAPLESS_HOME": str(home), "COLUMNS": "200"},
        timeout=60,
    )


@pytest.mark.parametrize(
    "argv",
    [["promote", "web"], ["abort", "web"], ["undo", "web", "--to-revision", "2"], ["status", "web"]],
)
def test_both_paths_say_the_same(argv: list[str], tmp_path: Path) -> None:
    """Without a control plane: the same message and exit code 1 either way."""
    fast = run("gapless.cli.quick", argv, tmp_path)
    slow = run("gapless.cli.main", argv, tmp_path)
    assert fast.returncode == slow.returncode == 1
    assert fast.stderr == slow.stderr
    assert "no control plane is running" in fast.stderr
