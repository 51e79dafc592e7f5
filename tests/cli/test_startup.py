"""The CLI's start-up budget: the verbs typed during an incident import only what they need.

A cold ``gapless version`` or ``gapless status`` costs Python's start plus its imports; the control plane's
modules (pydantic models, the HTTP server, the reconcile loop), httpx and asyncio alone cost several
times the 150 ms a verb may take. This test fails when any of them creeps back into such a verb's
imports, or when their number grows past the budget. bench/cli.py measures the time itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gapless.cli.lazy import LAZY_COMMANDS, LAZY_HELP, _load

FORBIDDEN = (
    "asyncio",
    "httpx",
    "pydantic",
    "yaml",
    "uvicorn",
    "starlette",
    "psycopg",
    "sqlite3",
    "gapless.spec",
    "gapless.server",
    "gapless.controller",
    "gapless.platform",
    "gapless.store",
    "gapless.flags",
    "gapless.migrations",
    "gapless.strategies",
    "gapless.analysis",
    "gapless.router",
    "gapless.loadgen",
)
MODULE_BUDGET = 280
"""Modules a fast verb may import (249 when this budget was set: Python, typer, rich and http.client)."""

FAST_VERBS = [
    ["version"],
    ["status"],
    ["status", "web"],
    ["promote", "web"],
    ["abort", "web"],
    ["undo", "web"],
    ["pause", "web"],
    ["resume", "web"],
    ["history", "web"],
]


def imported(argv: list[str], home: Path) -> tuple[int, list[str]]:
    """Run ``python -X importtime -m gapless ARGV``; its exit code and every module it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gapless", *argv],
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "GAPLESS_HOME": str(home), "COLUMNS": "80"},
        timeout=60,
    )
    modules = [
        line.split("|")[2].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line and not line.endswith("| package")
    ]
    return proc.returncode, modules


@pytest.mark.parametrize("argv", FAST_VERBS, ids=" ".join)
def test_fast_verbs_import_little(argv: list[str], tmp_path: Path) -> None:
    code, modules = imported(argv, tmp_path)
    # Without a control plane: version works, the others say none runs (exit 1), never a crash.
    assert code == (0 if argv == ["version"] else 1)
    heavy = sorted({m for m in modules for f in FORBIDDEN if m == f or m.startswith(f + ".")})
    assert not heavy, f"`gapless {' '.join(argv)}` imports {heavy}"
    assert len(modules) <= MODULE_BUDGET, f"`gapless {' '.join(argv)}` imports {len(modules)} modules"


QUICK_VERBS = [
    ["promote", "web"],
    ["promote", "web", "--full"],
    ["abort", "web"],
    ["undo", "web"],
    ["pause", "web"],
]
QUICK_BUDGET = 150
"""The incident verbs skip typer and rich (gapless.cli.quick): 138 modules when this was set."""


@pytest.mark.parametrize("argv", QUICK_VERBS, ids=" ".join)
def test_incident_verbs_skip_the_framework(argv: list[str], tmp_path: Path) -> None:
    code, modules = imported(argv, tmp_path)
    assert code == 1  # no control plane runs
    heavy = sorted(
        {
            m
            for m in modules
            for f in (*FORBIDDEN, "typer", "rich", "click")
            if m == f or m.startswith(f + ".")
        }
    )
    assert not heavy, f"`gapless {' '.join(argv)}` imports {heavy}"
    assert len(modules) <= QUICK_BUDGET, f"`gapless {' '.join(argv)}` imports {len(modules)} modules"


def test_the_budget_can_fail(tmp_path: Path) -> None:
    """The parse sees heavy imports where they happen: `gapless migrate` loads the migration planner."""
    _, modules = imported(["migrate", "--help"], tmp_path)
    assert any(m.startswith("gapless.migrations") for m in modules)


def test_help_lists_lazy_groups_without_importing_them() -> None:
    """``gapless --help`` shows each lazy group's own first help line and imports none of them."""
    code = (
        "import sys\n"
        "from gapless.cli.main import app\n"
        "try:\n"
        "    app(['--help'], prog_name='gapless')\n"
        "except SystemExit:\n"
        "    pass\n"
        "from gapless.cli.lazy import LAZY_COMMANDS\n"
        "print('LOADED', [m for m, _ in LAZY_COMMANDS.values() if m in sys.modules])\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "400", "NO_COLOR": "1"},
    )
    assert "LOADED []" in r.stdout
    flat = " ".join(r.stdout.split())
    for name in LAZY_COMMANDS:
        real = _load(name)
        first = (real.short_help or real.help or "").split("\n\n")[0]
        assert LAZY_HELP[name] == " ".join(first.split()), name
        assert LAZY_HELP[name] in flat, name


def test_version_option_skips_the_framework(tmp_path: Path) -> None:
    """`gapless --version` prints what `gapless version` prints, without importing typer or rich."""
    code, modules = imported(["--version"], tmp_path)
    assert code == 0
    heavy = sorted(
        {m for m in modules for f in ("typer", "rich", "click") if m == f or m.startswith(f + ".")}
    )
    assert not heavy
    assert len(modules) <= QUICK_BUDGET
    env = {"PATH": "/usr/bin:/bin", "GAPLESS_HOME": str(tmp_path)}
    both = [
        subprocess.run(
            [sys.executable, "-m", "gapless", *argv], capture_output=True, text=True, env=env, check=True
        ).stdout
        for argv in (["--version"], ["version"])
    ]
    assert both[0] == both[1] != ""


CONTROL_PLANE = ("gapless.server.process", "gapless.controller", "uvicorn", "starlette", "psycopg")


@pytest.mark.parametrize("verb", ["apply", "up"])
def test_apply_and_up_do_not_load_the_control_plane(verb: str, tmp_path: Path) -> None:
    """`gapless apply` and `gapless up` read and send the spec; the control plane's modules stay out."""
    from tests.e2e.harness import rollout_doc

    doc = rollout_doc("web", 8080, "v1")
    if verb == "up":  # refused after the spec is read: nothing is started
        doc["spec"]["replicas"] = -1
    spec = tmp_path / "web.yaml"
    spec.write_text(yaml.safe_dump(doc))
    state = tmp_path / "state"
    code, modules = imported([verb, "-f", str(spec), "--state-dir", str(state)], tmp_path)
    assert code == (1 if verb == "apply" else 2)  # no control plane runs / the spec is refused
    assert "gapless.spec.load" in modules
    heavy = sorted({m for m in modules for f in CONTROL_PLANE if m == f or m.startswith(f + ".")})
    assert not heavy, f"`gapless {verb}` imports {heavy}"
    assert not (state / "control-plane.log").exists()
