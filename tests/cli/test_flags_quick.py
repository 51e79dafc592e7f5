"""The kill switch's quick path parses every command line as the typer application does.

Rules: (1) whenever ``flags_quick.parse`` accepts a command line, typer accepts it too, with the same
verb, names, state directory, URL and token; (2) both paths send the same request, print the same line
and exit with the same code, against a real flag service.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gapless.cli import flags_quick
from gapless.cli.main import app

TOKENS = st.sampled_from(
    [
        "shop",
        "new-checkout",
        "production",
        "x",
        "--state-dir",
        "--state-dir=/tmp/s",
        "/tmp/other",
        "--url",
        "--url=http://127.0.0.1:9",
        "http://h:1",
        "--token",
        "--token=gfl_a_b",
        "--help",
        "-h",
        "--",
        "",
        "--url=",
        "-",
        "--stage",
        "-o",
    ]
)


def typer_parse(argv: list[str]) -> dict[str, Any] | None:
    """The parameters typer's ``flags VERB`` command gets for ``argv``, or None when typer refuses it."""
    import typer.main

    group = typer.main.get_command(app)
    try:
        with group.make_context("gapless", ["flags"]) as ctx:
            flags = group.get_command(ctx, "flags")  # type: ignore[attr-defined]
            with flags.make_context("flags", [argv[0]], parent=ctx) as fctx:
                command = flags.get_command(fctx, argv[0])
                with command.make_context(argv[0], list(argv[1:]), parent=fctx) as sub:
                    return dict(sub.params)
    except BaseException:  # click's usage errors and --help's exit
        return None


@given(st.sampled_from(["kill", "enable"]), st.lists(TOKENS, max_size=7))
def test_what_the_quick_path_accepts_typer_reads_alike(verb: str, rest: list[str]) -> None:
    """A command line the quick path runs means the same call to typer."""
    call = flags_quick.parse([verb, *rest])
    if call is None:
        return
    params = typer_parse([verb, *rest])
    assert params is not None, rest
    assert (call.project, call.flag, call.environment) == (
        params["project"],
        params["flag"],
        params["environment"],
    )
    assert call.state_dir == params["state_dir"]
    assert call.url == params["url"]
    assert call.token == params["token"]


def test_the_usual_command_lines_take_the_quick_path() -> None:
    """The lines people type are run without typer; help and other verbs are not."""
    assert flags_quick.parse(["kill", "shop", "f", "production"]) is not None
    assert flags_quick.parse(["enable", "shop", "f", "production", "--state-dir", "s", "--url=http://h:1"])
    assert flags_quick.parse(["kill", "shop", "f", "production", "--help"]) is None
    assert flags_quick.parse(["kill", "shop", "f"]) is None
    assert flags_quick.parse(["get", "shop", "f"]) is None


def test_both_paths_fail_alike_when_nothing_answers(tmp_path: Path) -> None:
    """The quick path (no typer imported) and typer print the same error and exit with the same code."""
    argv = [
        "flags",
        "kill",
        "shop",
        "f",
        "production",
        "--state-dir",
        str(tmp_path),
        "--url",
        "http://127.0.0.1:9",
    ]
    quick = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gapless", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    # an option given twice is left to typer, which takes the last: the same call
    full = subprocess.run(
        [sys.executable, "-m", "gapless", *argv[:-1], "http://127.0.0.1:8", "--url", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    imported = [
        line.split("|")[2].strip() for line in quick.stderr.splitlines() if line.startswith("import time:")
    ]
    assert "typer" not in imported
    assert "rich" not in imported
    said = [line for line in quick.stderr.splitlines() if not line.startswith("import time:")]
    assert quick.returncode == full.returncode == 1
    assert said == full.stderr.splitlines()
    assert "no flag service answers" in said[0]
