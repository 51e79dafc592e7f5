"""Refused at apply with exit 2 and nothing started: a missing or too old HAProxy, and what its configuration cannot carry."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Gapless, rollout_doc
from tests.ports import free_port

pytestmark = pytest.mark.slow


def fake_old_haproxy(directory: Path) -> Path:
    """A test double at the binary seam: a script that answers ``-v`` like HAProxy 2.4 and does nothing else."""
    path = directory / "old-haproxy"
    path.write_text("#!/bin/sh\necho 'HAProxy version 2.4.22-0+deb11u1 2023/02/14 - https://haproxy.org/'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def doc(port: int, router: dict[str, Any], **kw: Any) -> dict[str, Any]:
    d = rollout_doc("bad", port, "v1", replicas=1, **kw)
    d["spec"]["router"] = router
    return d


def test_bad_router_settings_are_refused_and_nothing_starts(g: Gapless, tmp_path: Path) -> None:
    """Each bad setting: exit 2, a message naming the field, no instance and no router started."""
    port = free_port()
    old = fake_old_haproxy(tmp_path)
    sticky = {"canary": {"steps": [{"setWeight": 10}], "trafficRouting": {"stickiness": {"cookie": "a b"}}}}
    route = {
        "canary": {
            "steps": [
                {"setWeight": 10},
                {"setHeaderRoute": {"match": [{"headerName": "X", "headerValue": {"exact": "it's"}}]}},
            ]
        }
    }
    cases = [
        (
            {"type": "haproxy", "binary": str(old)},
            {},
            "spec.router.binary",
            "HAProxy 2.4.22; gapless needs HAProxy >= 2.6",
        ),
        ({"type": "haproxy", "binary": str(tmp_path / "nowhere")}, {}, "spec.router.binary", "not found"),
        ({"type": "haproxy", "binary": "/bin/true"}, {}, "spec.router.binary", "does not look like HAProxy"),
        (
            {"type": "haproxy"},
            {"strategy": sticky},
            "spec.strategy.canary.trafficRouting.stickiness",
            "not a cookie name",
        ),
        (
            {"type": "haproxy"},
            {"strategy": route},
            "spec.strategy.canary.steps.1.setHeaderRoute",
            "holds a quote",
        ),
        (
            {"type": "haproxy", "ejectAfterFailures": 5},
            {},
            "spec.router.ejectAfterFailures",
            "health checks are off",
        ),
        ({"type": "nginx"}, {}, "spec.router.type", ""),
    ]
    for router, extra, field, message in cases:
        done = g.cli("up", "-f", str(g.write(doc(port, router, **extra), filename="bad.yaml")))
        assert done.returncode == 2, (router, done.stdout, done.stderr)
        out = done.stdout + done.stderr
        assert field in out, (field, out)
        assert message in out, (message, out)
        assert not [p for p in g.processes() if p.role in ("instance", "router")]
    assert not (g.state_dir / "routers" / "bad.haproxy.json").exists()
