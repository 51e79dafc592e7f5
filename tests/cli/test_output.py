"""``-o json`` and ``-o yaml`` carry the same document, and the help texts read well.

Rules: (1) for any API data, YAML read back with ``yaml.safe_load`` equals the JSON read back, single
documents and streams alike (strings that look like times, numbers or booleans stay strings); (2) an
unknown format is refused naming it; (3) no command's ``--help`` shows a ``<bool>`` metavar, and every
line of it fits 80 columns.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from gapless.cli.output import check_format, dump

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(["yes", "no", "on", "null", "~", "1e3", "0x10", "2026-12-05", "12:30", "-", "'", "#"])
)
DATA = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text() | st.sampled_from(["time", "createdAt", "at"]), inner, max_size=4)
    ),
    max_leaves=25,
)


@given(DATA)
def test_yaml_reads_back_as_the_json(data: Any) -> None:
    """A document written as YAML reads back as the same data as written as JSON."""
    assert yaml.safe_load(dump(data, "yaml")) == json.loads(dump(data, "json"))


@given(st.lists(DATA, min_size=1, max_size=4))
def test_streams_read_back_alike(docs: list[Any]) -> None:
    """A stream (one JSON document per line, YAML documents after ---) reads back document by document."""
    as_json = [json.loads(line) for d in docs for line in dump(d, "json", stream=True).split("\n") if line]
    as_yaml = list(yaml.safe_load_all("".join(dump(d, "yaml", stream=True) for d in docs)))
    assert as_yaml == as_json
    assert len(as_json) == len(docs)


@given(st.text())
def test_only_known_formats(fmt: str) -> None:
    """text, json and yaml are formats; anything else is refused by name."""
    problem = check_format(fmt)
    if fmt in ("text", "json", "yaml"):
        assert problem is None
    else:
        assert problem is not None
        assert repr(fmt) in problem


def _commands() -> list[list[str]]:
    """Every command path of the CLI, lazy groups included."""
    import typer.main

    from gapless.cli.main import app

    root = typer.main.get_command(app)
    found: list[list[str]] = [[]]

    def walk(group: Any, path: list[str]) -> None:
        ctx = group.make_context("gapless", [], resilient_parsing=True)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if command is None or getattr(command, "hidden", False):
                continue
            found.append([*path, name])
            if hasattr(command, "list_commands"):
                walk(command, [*path, name])

    walk(root, [])
    return found


COMMANDS = _commands()


def test_the_walk_finds_the_groups() -> None:
    """The walk reaches nested commands of the lazy groups, so the help checks cover them."""
    assert ["wait"] in COMMANDS
    assert ["completion"] in COMMANDS
    assert any(len(c) == 2 and c[0] == "flags" for c in COMMANDS)
    assert any(len(c) == 2 and c[0] == "migrate" for c in COMMANDS)


def test_no_bool_metavar_and_80_columns() -> None:
    """No command's help shows <bool>, and at COLUMNS=80 every help line fits 80 columns."""
    env = dict(os.environ) | {"COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"}
    env.pop("GAPLESS_HOME", None)
    script = (
        "import sys\n"
        "from gapless.cli.main import app\n"
        "import typer.main\n"
        "root = typer.main.get_command(app)\n"
        "for line in sys.stdin:\n"
        "    argv = line.split()\n"
        "    try:\n"
        "        root.main([*argv, '--help'], prog_name='gapless', standalone_mode=True)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    print('\\x00' + ' '.join(argv), flush=True)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        input="\n".join(" ".join(c) for c in COMMANDS) + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    helps: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in proc.stdout.splitlines():
        if line.startswith("\x00"):
            helps[line[1:]] = lines
            lines = []
        else:
            lines.append(line)
    assert len(helps) == len(COMMANDS)
    with_bool = [name or "gapless" for name, text in helps.items() if any("<bool>" in t for t in text)]
    assert not with_bool, f"<bool> in the help of {with_bool}"
    wide = [(name, t) for name, text in helps.items() for t in text if len(t) > 80]
    assert not wide, wide[:3]
    assert all(any("Usage" in t for t in text) for text in helps.values())
    # The check sees the metavars where they are shown (it could see a <bool> there).
    assert any("--to-revision" in t and "<int>" in t for t in helps["undo"])
    ragged = [(name, a, b) for name, text in helps.items() for a, b in _broken_mid_sentence(text)]
    assert not ragged, ragged[:3]


def _broken_mid_sentence(text: list[str]) -> list[tuple[str, str]]:
    """Pairs of description lines where the next line's first word would have fitted on the line before:
    a docstring's own line break kept in the help, not the terminal's wrapping (which fills lines)."""
    description = []
    for line in text:
        if line.lstrip().startswith("╭"):
            break
        description.append(line.strip())
    return [
        (a, b)
        for a, b in itertools.pairwise(description)
        if a and b and not a.startswith("Usage") and b[0].islower() and len(a) + 1 + len(b.split()[0]) <= 78
    ]
