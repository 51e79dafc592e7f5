"""The CLI contract: malformed specs exit 2 naming the field and change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import Gapless, rollout_doc
from tests.ports import free_port

BAD = [
    ({"spec": {"replicas": -1}}, "spec.replicas"),
    ({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "x"}}}}, "spec.strategy.rollingUpdate.maxSurge"),
    (
        {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}},
        "spec.strategy.rollingUpdate.maxUnavailable",
    ),
    ({"spec": {"listen": "nowhere"}}, "spec.listen"),
    ({"spec": {"template": {"command": []}}}, "spec.template.command"),
    (
        {"spec": {"template": {"readinessProbe": {"httpGet": {"path": "/"}, "timeoutSeconds": -1}}}},
        "spec.template.readinessProbe.timeoutSeconds",
    ),
    ({"metadata": {"name": "Bad Name"}}, "metadata.name"),
    ({"kind": "Deployment"}, "kind"),
    (
        {"spec": {"strategy": {"canary": {"steps": [{"setWieght": 5}]}}}},
        "spec.strategy.canary.steps.0.setWieght",
    ),
    (
        {"spec": {"strategy": {"canary": {"steps": [{"setWeight": 150}]}}}},
        "spec.strategy.canary.steps.0.setWeight",
    ),
    (
        {
            "spec": {
                "strategy": {
                    "canary": {
                        "steps": [
                            {
                                "setHeaderRoute": {
                                    "match": [{"headerName": "X", "headerValue": {"regex": "(["}}]
                                }
                            }
                        ]
                    }
                }
            }
        },
        "spec.strategy.canary.steps.0.setHeaderRoute.match.0.headerValue.regex",
    ),
    (
        {"spec": {"strategy": {"canary": {"steps": [{"analysis": {}}]}}}},
        "spec.strategy.canary.steps.0.analysis",
    ),
    (
        {
            "spec": {
                "strategy": {
                    "canary": {
                        "steps": [
                            {
                                "setHeaderRoute": {
                                    "match": [{"headerName": "X", "headerValue": {"regex": "(?=a)"}}]
                                }
                            }
                        ]
                    }
                }
            }
        },
        "spec.strategy.canary.steps.0.setHeaderRoute.match.0.headerValue.regex",
    ),
    ({"spec": {"router": {"maxConnections": True}}}, "spec.router.maxConnections"),
    ({"spec": {"router": {"headerTimeoutSeconds": float("inf")}}}, "spec.router.headerTimeoutSeconds"),
]


def _merge(base: dict, patch: dict) -> dict:
    out = dict(base)
    for k, v in patch.items():
        out[k] = _merge(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


@pytest.mark.parametrize(("patch", "path"), BAD)
def test_malformed_spec_exits_2_naming_the_field(g: Gapless, patch: dict, path: str) -> None:
    """`gapless up` of a malformed spec exits 2, names the field, and starts nothing."""
    doc = _merge(rollout_doc("bad", free_port(), "v1"), patch)
    f = g.write(doc, "bad.yaml")
    r = g.cli("up", "-f", str(f))
    assert r.returncode == 2, r.stdout + r.stderr
    assert path in r.stderr
    assert not (g.state_dir / "state.db").exists()
    assert g.processes() == []


def test_unreadable_and_invalid_yaml_exit_2(g: Gapless, tmp_path: Path) -> None:
    """A missing file and broken YAML are usage errors (exit 2)."""
    r = g.cli("apply", "-f", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2
    assert "cannot read file" in r.stderr
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    r = g.cli("up", "-f", str(tmp_path / "broken.yaml"))
    assert r.returncode == 2
    assert "invalid YAML" in r.stderr


def test_status_without_control_plane_is_an_error(g: Gapless) -> None:
    """Asking for status with nothing running says so and exits 1."""
    r = g.cli("status", "x")
    assert r.returncode == 1
    assert "no control plane" in r.stderr


def test_help_lists_commands() -> None:
    """`gapless --help` lists every command of the contract."""
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "gapless", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0
    for cmd in (
        "up",
        "apply",
        "status",
        "history",
        "undo",
        "pause",
        "resume",
        "logs",
        "down",
        "load",
        "demo",
    ):
        assert cmd in r.stdout


def test_preview_listen_equal_to_listen_exits_2(g: Gapless) -> None:
    """A blue-green previewListen equal to listen is a usage error naming the field."""
    port = free_port()
    doc = rollout_doc("bg", port, "v1", strategy={"blueGreen": {"previewListen": f"127.0.0.1:{port}"}})
    r = g.cli("up", "-f", str(g.write(doc, "bg.yaml")))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "spec.strategy.blueGreen.previewListen" in r.stderr
    assert g.processes() == []
