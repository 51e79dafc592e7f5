"""The ``flags`` verbs against real flag services: the control plane's (``gapless up``) and ``flags serve``."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.harness import Gapless, rollout_doc
from tests.ports import free_port

pytestmark = pytest.mark.slow

PROJECT = {
    "key": "shop",
    "environments": ["staging", "production"],
    "segments": [
        {"key": "beta", "conditions": [{"attribute": "plan", "operator": "in", "values": ["beta"]}]}
    ],
    "flags": [
        {
            "key": "new-checkout",
            "owner": "team-a",
            "environments": {
                "production": {
                    "enabled": True,
                    "rules": [
                        {"conditions": [{"operator": "inSegment", "values": ["beta"]}], "variant": "on"}
                    ],
                    "defaultRollout": {
                        "split": {
                            "weights": [
                                {"variant": "on", "weight": 25000},
                                {"variant": "off", "weight": 75000},
                            ]
                        }
                    },
                }
            },
        },
        {
            "key": "dark-mode",
            "environments": {"staging": {"enabled": True, "defaultRollout": {"variant": "on"}}},
        },
    ],
}


def flags(g: Gapless, *args: str) -> subprocess.CompletedProcess[str]:
    return g.cli("flags", *args)


def audit_count(g: Gapless) -> int:
    r = flags(g, "audit", "--project", "shop", "-o", "json")
    assert r.returncode == 0, r.stderr
    return len(json.loads(r.stdout))


def test_up_then_the_flags_verbs_just_work(g: Gapless, tmp_path: Path) -> None:
    """After `gapless up`, the verbs find the control plane's flag service and its admin token."""
    up = g.cli("up", "-f", str(g.write(rollout_doc("web", free_port(), "v1", replicas=1))))
    assert up.returncode == 0, up.stdout + up.stderr
    project = tmp_path / "shop.yaml"
    project.write_text(yaml.safe_dump(PROJECT))

    r = flags(g, "apply", "-f", str(project))  # at once: waits out the service's loading (503)
    assert r.returncode == 0, r.stderr
    r = flags(g, "kill", "shop", "new-checkout", "production")
    assert r.returncode == 0, r.stderr
    assert "new-checkout in shop/production: killed (revision" in r.stderr

    as_json = json.loads(flags(g, "get", "shop", "new-checkout", "-o", "json").stdout)
    assert as_json["flag"]["environments"]["production"]["enabled"] is False
    staging = as_json["status"]["environments"]["staging"]
    assert (staging["enabled"], staging["stage"]) == (False, None)
    assert yaml.safe_load(flags(g, "get", "shop", "new-checkout", "-o", "yaml").stdout) == as_json
    listed = json.loads(flags(g, "list", "shop", "-o", "json").stdout)
    assert yaml.safe_load(flags(g, "list", "shop", "-o", "yaml").stdout) == listed
    assert [f["key"] for f in listed] == ["dark-mode", "new-checkout"]
    text = flags(g, "get", "shop", "new-checkout").stdout
    assert "production: OFF (killed" in text
    assert "rule 1: inSegment [beta] -> on" in text
    assert "rollout: on 25% / off 75%" in text

    # apply would turn the killed flag back on: diff says so, exit 1, and changes nothing
    before = audit_count(g)
    r = flags(g, "diff", "-f", str(project))
    assert r.returncode == 1, r.stderr
    assert r.stdout.splitlines() == [
        "flag new-checkout: changed",
        "  ~ environments.production.enabled: false -> true",
    ]
    assert audit_count(g) == before
    assert flags(g, "enable", "shop", "new-checkout", "production").returncode == 0
    r = flags(g, "diff", "-f", str(project), "-o", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["changes"] == []

    src = tmp_path / "src"
    (src / "node_modules").mkdir(parents=True)
    (src / "checkout.py").write_text('x = 1\nif flags.is_enabled("new-checkout", ctx):\n    pay()\n')
    (src / "old.js").write_text('if (client.getBooleanValue("summer-sale", false)) {}\n')
    (src / "node_modules" / "dep.js").write_text('"dark-mode"\n')
    r = flags(g, "refs", str(src), "--project", "shop")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["checkout.py:2: new-checkout", "old.js:1: summer-sale (unknown flag)"]
    assert "dark-mode: no references" in r.stderr
    data = json.loads(flags(g, "refs", str(src), "--project", "shop", "-o", "json").stdout)
    assert data["unreferenced"] == ["dark-mode"]
    assert data["unknown"] == ["summer-sale"]


def test_diff_refuses_bad_input_with_exit_2(g: Gapless, tmp_path: Path) -> None:
    """A file that is not YAML, or not a valid project, is exit 2 naming the problem; nothing changes."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("key: shop\nflags: [unclosed\n")
    r = flags(g, "diff", "-f", str(bad))
    assert r.returncode == 2
    assert "bad.yaml" in r.stderr
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(yaml.safe_dump(PROJECT | {"flags": [{"key": "x", "kind": "colour"}]}))
    port = free_port()
    with serve(g.state_dir, port):
        r = flags(g, "diff", "-f", str(invalid))
        assert r.returncode == 2, r.stdout + r.stderr
        assert "flags[0].kind" in r.stderr
        r = flags(g, "list", "shop", "-o", "xml")
        assert r.returncode == 2
        assert "--output must be text, json or yaml" in r.stderr
        project = tmp_path / "shop.yaml"
        project.write_text(yaml.safe_dump(PROJECT))
        r = flags(g, "diff", "-f", str(project), "--token", "gfl_nope_nope")
        assert r.returncode == 2, r.stdout + r.stderr  # diff's trouble is 2, not "differences"
        assert "401" in r.stderr
        r = flags(g, "refs", str(tmp_path))
        assert r.returncode == 2
        assert "give --project" in r.stderr
    # an unknown option is typer's usage error: exit 2 too
    assert flags(g, "kill", "shop", "f", "production", "--colour").returncode == 2


def test_an_explicit_url_or_token_wins(g: Gapless) -> None:
    """--url names the only place tried; a wrong --token is refused (exit 2) and changes nothing."""
    port = free_port()
    with serve(g.state_dir, port):
        r = flags(g, "list", "shop", "--url", f"http://127.0.0.1:{free_port()}")
        assert r.returncode == 1
        assert "no flag service answers; tried:" in r.stderr
        assert "--url at http://127.0.0.1:" in r.stderr
        assert "control plane" not in r.stderr
        r = flags(g, "kill", "shop", "x", "production", "--token", "gfl_nope_nope")
        assert r.returncode == 2
        assert "401" in r.stderr


def test_nothing_running_names_every_place_tried(g: Gapless) -> None:
    """Without a flag service, exit 1 and a message naming the socket and the default URL tried."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 8787)) == 0:
            pytest.skip("something serves on 127.0.0.1:8787 here")
    r = flags(g, "kill", "shop", "new-checkout", "production")
    assert r.returncode == 1, r.stderr
    assert f"the control plane at {g.state_dir / 'api.sock'}" in r.stderr
    assert "the default at http://127.0.0.1:8787" in r.stderr


def test_flags_serve_is_found_through_the_url_it_writes(g: Gapless, tmp_path: Path) -> None:
    """`flags serve` writes flags.url in the state dir; the verbs use it; it is removed on exit."""
    port = free_port()
    project = tmp_path / "shop.yaml"
    project.write_text(yaml.safe_dump(PROJECT))
    with serve(g.state_dir, port):
        assert (g.state_dir / "flags.url").read_text().strip() == f"http://127.0.0.1:{port}"
        assert flags(g, "apply", "-f", str(project)).returncode == 0
        r = flags(g, "kill", "shop", "dark-mode", "staging")
        assert r.returncode == 0, r.stderr
        doc = json.loads(flags(g, "get", "shop", "dark-mode", "-o", "json").stdout)
        assert doc["flag"]["environments"]["staging"]["enabled"] is False
    assert not (g.state_dir / "flags.url").exists()


@contextlib.contextmanager
def serve(state_dir: Path, port: int) -> Any:
    """A real `gapless flags serve` for the state directory, stopped afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAPLESS_")}
    argv = [sys.executable, "-m", "gapless", "flags", "serve", "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [*argv, "--state-dir", str(state_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "flags serve did not start"
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            try:
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.05)
            finally:
                c.close()
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
