"""``gapless completion SHELL`` prints a script the shell loads, and the completions it asks for work.

bash is required here; zsh and fish are checked with their own syntax check when installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import in_ci

BIN = Path(sys.executable).parent


def gapless(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gapless", *args],
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        timeout=60,
        check=False,
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_bash_script_loads_and_completes(tmp_path: Path) -> None:
    """The bash script passes `bash -n`, registers a completion function, and completes verbs and options."""
    proc = gapless("completion", "bash")
    assert proc.returncode == 0, proc.stderr
    script = tmp_path / "gapless.bash"
    script.write_text(proc.stdout)
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    probe = (
        f"source {script}\n"
        "complete -p gapless\n"
        "COMP_WORDS=(gapless st); COMP_CWORD=1; _gapless_completion gapless\n"
        'echo "verbs: ${COMPREPLY[*]}"\n'
        "COMP_WORDS=(gapless wait web --f); COMP_CWORD=3; _gapless_completion gapless\n"
        'echo "options: ${COMPREPLY[*]}"\n'
        "COMP_WORDS=(gapless wait web --for h); COMP_CWORD=4; _gapless_completion gapless\n"
        'echo "values: ${COMPREPLY[*]}"\n'
        "COMP_WORDS=(gapless status web -o ''); COMP_CWORD=4; _gapless_completion gapless\n"
        'echo "formats: ${COMPREPLY[*]}"\n'
    )
    out = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", probe],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
        check=True,
    ).stdout
    assert "complete -o default -F _gapless_completion gapless" in out
    verbs = next(line for line in out.splitlines() if line.startswith("verbs:")).split()[1:]
    assert "status" in verbs
    assert "up" not in verbs  # only what starts with "st"
    options = next(line for line in out.splitlines() if line.startswith("options:"))
    assert "--for" in options
    values = next(line for line in out.splitlines() if line.startswith("values:")).split()[1:]
    assert values == ["healthy"]
    formats = next(line for line in out.splitlines() if line.startswith("formats:")).split()[1:]
    assert formats == ["text", "json", "yaml"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_parse(shell: str, tmp_path: Path) -> None:
    """The zsh and fish scripts pass their shell's syntax check."""
    proc = gapless("completion", shell)
    assert proc.returncode == 0, proc.stderr
    assert "gapless" in proc.stdout
    path = shutil.which(shell)
    if path is None:
        if in_ci():
            pytest.fail(f"{shell} is not installed (.ci/run installs it under CI)")
        pytest.skip(f"{shell} is not installed: only generated, not syntax-checked")
    script = tmp_path / f"gapless.{shell}"
    script.write_text(proc.stdout)
    subprocess.run([path, "-n", str(script)], check=True, timeout=30)


def test_unknown_shell_exits_2() -> None:
    """An unknown shell is a usage error naming it."""
    proc = gapless("completion", "tcsh")
    assert proc.returncode == 2
    assert "'tcsh'" in proc.stderr
    assert proc.stdout == ""
