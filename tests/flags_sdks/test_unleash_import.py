"""``gapless flags import --from-unleash`` against a real service: a dry run lists, refusals name the feature,
``--apply`` writes, a second import changes nothing, and the imported flags answer as Unleash's engine does."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gapless.flags.evaluate import compile_ruleset
from tests.flags_sdks.test_unleash_export import contexts, gapless_answer, unleash_answer
from tests.flags_service.test_delivery import ServiceProcess, admin
from tests.ports import free_port

yggdrasil = pytest.importorskip("yggdrasil_engine.engine", reason="UnleashClient's engine (dev extra)")

pytestmark = pytest.mark.slow

EXPORT: dict[str, Any] = {
    "version": 2,
    "segments": [
        {
            "id": 7,
            "name": "Germany",
            "constraints": [{"contextName": "country", "operator": "IN", "values": ["DE"]}],
        }
    ],
    "features": [
        {
            "name": "checkout",
            "project": "shop",
            "type": "release",
            "enabled": True,
            "impressionData": True,
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {"rollout": "25", "stickiness": "default", "groupId": "checkout"},
                    "constraints": [
                        {"contextName": "plan", "operator": "IN", "values": ["pro", "enterprise"]}
                    ],
                    "segments": [7],
                },
                {"name": "userWithId", "parameters": {"userIds": "user-1,user-2"}},
            ],
        },
        {
            "name": "theme",
            "project": "shop",
            "type": "experiment",
            "enabled": True,
            "strategies": [{"name": "default"}],
            "variants": [
                {
                    "name": "blue",
                    "weight": 500,
                    "stickiness": "default",
                    "payload": {"type": "string", "value": "#00f"},
                    "overrides": [{"contextName": "userId", "values": ["user-9"]}],
                },
                {"name": "green", "weight": 500, "stickiness": "default"},
            ],
        },
        {
            "name": "child",
            "project": "shop",
            "enabled": True,
            "dependencies": [{"feature": "checkout"}],
            "strategies": [{"name": "default"}],
        },
        {"name": "Bad.Name", "project": "shop", "enabled": True, "strategies": [{"name": "default"}]},
        {"name": "custom", "project": "shop", "enabled": True, "strategies": [{"name": "myStrategy"}]},
    ],
}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[ServiceProcess, str]]:
    svc = ServiceProcess(tmp_path / "state", free_port())
    svc.start()
    try:
        with admin(svc) as c:
            yield svc, c.headers["Authorization"].removeprefix("Bearer ")
    finally:
        svc.stop()
        svc.log.close()


def run_import(svc: ServiceProcess, token: str, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "gapless", "flags", "import", "--from-unleash", str(path), "--url", svc.url]
    return subprocess.run(
        [*argv, "--token", token, *extra], capture_output=True, text=True, timeout=60, check=False
    )


def test_import_dry_run_refusals_apply_and_same_answers(
    service: tuple[ServiceProcess, str], tmp_path: Path
) -> None:
    """Dry run lists and changes nothing; refusals are named; --apply --skip-refused writes; answers match."""
    svc, token = service
    path = tmp_path / "unleash.json"
    path.write_text(json.dumps(EXPORT))
    dry = run_import(svc, token, path)
    assert dry.returncode == 2, dry.stderr  # refusals make the dry run exit 2
    for words in ("unleash-7", "checkout", "theme", "child", "create", "Bad.Name", "not a gapless flag key"):
        assert words in dry.stdout, (words, dry.stdout)
    assert "unknown strategy 'myStrategy'" in dry.stdout
    with admin(svc) as c:
        assert c.get("/api/v1/projects/shop").status_code == 404  # nothing written
    refused = run_import(svc, token, path, "--apply")
    assert refused.returncode == 2
    assert "nothing written" in refused.stderr
    with admin(svc) as c:
        assert c.get("/api/v1/projects/shop").status_code == 404
    applied = run_import(svc, token, path, "--apply", "--skip-refused")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    again = run_import(svc, token, path)
    assert "create" not in again.stdout
    assert "update" not in again.stdout
    assert again.stdout.count("unchanged") == 4  # the segment and three flags
    with admin(svc) as c:
        flag_keys = {f["key"] for f in c.get("/api/v1/projects/shop/flags").json()["items"]}
        assert flag_keys == {"checkout", "theme", "child"}
        sdk = c.post(
            "/api/v1/tokens",
            json={"kind": "sdk", "name": "t", "project": "shop", "environment": "production"},
        ).json()["token"]
        ruleset = c.get("/sdk/v1/ruleset", headers={"Authorization": f"Bearer {sdk}"}).json()
    rs = compile_ruleset(ruleset, strict=True)
    engine = yggdrasil.UnleashEngine()
    engine.take_state(json.dumps(EXPORT))
    for ctx in contexts(2_000, seed=3):
        ctx["properties"]["country"] = ctx["properties"].get("country", "DE")
        for name in ("checkout", "theme", "child"):
            assert unleash_answer(engine, name, ctx) == gapless_answer(rs, name, ctx), (name, ctx)
