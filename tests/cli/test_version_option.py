"""``gapless --version`` answers as ``gapless version`` does, without importing the framework."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cli.test_startup import QUICK_BUDGET, imported


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
