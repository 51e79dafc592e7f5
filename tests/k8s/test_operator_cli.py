"""``gapless operator run``'s bad input: exit 2 with a message naming what is wrong, before any connection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gapless", "operator", "run", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=(os.environ | (env or {})),
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--listen", "nope"], "--listen"),
        (["--listen", "127.0.0.1:99999"], "--listen"),
        (["--kubeconfig", "/nonexistent/kubeconfig"], "--kubeconfig"),
    ],
)
def test_bad_options_exit_2_naming_the_option(args: list[str], needle: str) -> None:
    r = run(*args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr


def test_an_unreadable_kubeconfig_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text("this: [is not a kubeconfig\n")
    r = run("--kubeconfig", str(bad))
    assert r.returncode == 2, r.stderr
    assert "Kubernetes configuration" in r.stderr


def test_no_configuration_at_all_exits_2(tmp_path: Path) -> None:
    """No --kubeconfig, no $KUBECONFIG, no ~/.kube/config and not in a pod."""
    r = run(env={"KUBECONFIG": "", "HOME": str(tmp_path), "KUBERNETES_SERVICE_HOST": ""})
    assert r.returncode == 2, r.stderr
    assert "Kubernetes configuration" in r.stderr


def test_an_unknown_context_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n"
        "users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n"
        "current-context: a\n"
    )
    r = run("--kubeconfig", str(config), "--context", "missing")
    assert r.returncode == 2, r.stderr
    assert "missing" in r.stderr
