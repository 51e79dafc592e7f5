"""``gapless flags refs PATH``: where source code uses each flag of a project, for stale-flag cleanup.

A reference to a flag is its key as a whole string literal (between ``"``, ``'`` or backquotes, as
every SDK call names a flag: ``is_enabled("new-checkout")``, ``getBooleanValue('new-checkout', ...)``),
so ``"new-checkout-v2"`` is no reference to ``new-checkout``. A string literal that is the first
argument of a flag-evaluation call (``EVALUATION_CALL``) but names no flag of the project is a reference
to an unknown flag: a typo, or a flag deleted while the code still asks for it. Flags no file refers to
are the ones whose code path is gone: archive them.

The walk skips version-control and dependency directories (``SKIPPED_DIRS``), files that look binary
(a NUL byte in their first 8 KiB), files over ``MAX_BYTES`` and symbolic links to directories.
``scan_text`` is pure; ``scan_tree`` reads the files.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from gapless.cli.flags_client import FlagsError, api_path
from gapless.cli.flags_cmd import (
    Output,
    StateDir,
    Token,
    Url,
    _check_output,
    _emit,
    _fail,
    flags_app,
    read_project_file,
    say,
    service,
)

__all__ = ["EVALUATION_CALL", "SKIPPED_DIRS", "Reference", "scan_text", "scan_tree"]

SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".mypy_cache", ".tox"}
)
MAX_BYTES = 4 * 1024 * 1024
"""Larger files are not source code (generated bundles, data): skipped."""

_LITERAL = re.compile(r"""(?=(["'`])([A-Za-z0-9][A-Za-z0-9._-]{0,127})\1)""")
"""A string literal that could be a flag key (keys are ``[a-z0-9][a-z0-9._-]*``, at most 128); a
lookahead, so that matches may overlap and a stray quote earlier on the line hides none."""

EVALUATION_CALL = re.compile(
    r"""\b(?:is_?[Ee]nabled|[Ii]sEnabled|variant|get_?[Vv]ariant|evaluate|"""
    r"""get_?(?:[Bb]oolean|[Ss]tring|[Nn]umber|[Ii]nteger|[Ff]loat|[Oo]bject)_?(?:[Vv]alue|[Dd]etails)|"""
    r"""[Gg]et(?:Boolean|String|Number|Integer|Float|Object)(?:Value|Details)|"""
    r"""(?:Bool|String|Int|Float|JSON)Variation(?:Detail)?)"""
    r"""\s*\(\s*(["'`])([A-Za-z0-9][A-Za-z0-9._-]{0,127})\1"""
)
"""A flag-evaluation call of gapless's SDK, OpenFeature's (Python, JS, Java, Go) and Unleash's SDKs."""


@dataclass(frozen=True, order=True)
class Reference:
    file: str
    line: int
    key: str
    known: bool


def scan_text(text: str, keys: frozenset[str]) -> list[tuple[int, str, bool]]:
    """(line, key, known) of each reference in ``text``: a known key as a literal, or an unknown key
    in an evaluation call; each (line, key) once, in order."""
    found: list[tuple[int, str, bool]] = []
    seen: set[tuple[int, str]] = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not any(q in line for q in "\"'`"):
            continue
        hits = [(m.start(), m.group(2), True) for m in _LITERAL.finditer(line) if m.group(2) in keys]
        hits += [
            (m.start(), m.group(2), False) for m in EVALUATION_CALL.finditer(line) if m.group(2) not in keys
        ]
        for _, key, known in sorted(hits):
            if (number, key) not in seen:
                seen.add((number, key))
                found.append((number, key, known))
    return found


def _files(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            yield Path(directory) / name


def _text(path: Path) -> str | None:
    """The file's text, or None when it is binary, too large, or not a regular file."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def scan_tree(root: Path, keys: Iterable[str]) -> list[Reference]:
    """Every reference under ``root`` (a directory or one file), by file (relative to ``root``) and line."""
    wanted = frozenset(keys)
    refs = []
    for path in _files(root):
        text = _text(path)
        if text is None:
            continue
        name = str(path.relative_to(root)) if path != root else path.name
        refs += [Reference(name, line, key, known) for line, key, known in scan_text(text, wanted)]
    return refs


def refs_data(keys: list[str], refs: list[Reference]) -> dict[str, Any]:
    used = {r.key for r in refs if r.known}
    return {
        "references": [{"file": r.file, "line": r.line, "key": r.key, "known": r.known} for r in refs],
        "unreferenced": [k for k in keys if k not in used],
        "unknown": sorted({r.key for r in refs if not r.known}),
    }


@flags_app.command("refs")
def refs_command(
    path: Annotated[Path, typer.Argument(help="A directory (walked) or a file to search.")],
    project: Annotated[
        str | None, typer.Option("--project", help="The project whose flags to look for (asks the service).")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "-f", "--file", help="Take the flag keys from this project file instead of the service."
        ),
    ] = None,
    include_archived: Annotated[
        bool, typer.Option("--include-archived", help="Count archived flags as known.")
    ] = False,
    output: Output = "text",
    url: Url = None,
    token: Token = None,
    state_dir: StateDir = None,
) -> None:
    """Where the code under PATH uses each flag: `file:line: key`, then flags no file uses and unknown keys.

    Exit 0 whatever is found (1 when the service fails, 2 on bad input).
    """
    _check_output(output)
    if (project is None) == (file is None):
        raise _fail("give --project (the service's flags) or -f FILE (a project file), one of them", 2)
    if not path.exists():
        raise _fail(f"{path}: no such file or directory", 2)
    if file is not None:
        try:
            doc = read_project_file(file)
        except FlagsError as e:
            raise _fail(str(e), 2) from e
        keys = [str(f["key"]) for f in doc.get("flags") or [] if include_archived or not f.get("archived")]
    elif project is not None:
        with service(url, token, state_dir) as svc:
            items = svc.call("GET", api_path("projects", project, "flags"))["items"]
        keys = [str(f["key"]) for f in items if include_archived or not f.get("archived")]
    refs = scan_tree(path, keys)
    data = refs_data(keys, refs)
    if output != "text":
        _emit(data, output)
        return
    for r in refs:
        sys.stdout.write(f"{r.file}:{r.line}: {r.key}{'' if r.known else ' (unknown flag)'}\n")
    for key in data["unreferenced"]:
        say(f"{key}: no references (stale? archive it once its code is gone)")
    used = len(keys) - len(data["unreferenced"])
    say(f"{used} of {len(keys)} flag(s) referenced, {len(data['unknown'])} unknown key(s) used")
