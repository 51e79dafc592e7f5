"""Unleash's admin export imported with ``gapless flags import`` and served by a real ``gapless flags serve``:
UnleashClient polling gapless answers as UnleashClient loaded from the original flags, and bad files
change nothing.

The original is written twice by hand: as Unleash's admin export (``ADMIN``: what its export UI writes)
and as the client features Unleash serves for it (``CLIENT``: strategies in ``sortOrder``, the disabled
one left out, segments with their constraints). UnleashClient is bootstrapped from ``CLIENT`` in a file
(no server), and a second UnleashClient polls ``/api/client/features`` of the imported project.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.flags_sdks.test_unleash_export import contexts
from tests.flags_service.test_delivery import ServiceProcess, admin
from tests.ports import free_port

unleash_sdk = pytest.importorskip("UnleashClient", reason="UnleashClient (dev extra)")
cache_mod = pytest.importorskip("UnleashClient.cache", reason="UnleashClient (dev extra)")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
]

GERMANY = [{"contextName": "country", "operator": "IN", "values": ["DE"]}]
PRO = {"contextName": "plan", "operator": "IN", "values": ["pro", "enterprise"]}
NEW_APP = {"contextName": "appVersion", "operator": "SEMVER_GT", "value": "2.0.9"}
NUMBER = {"contextName": "customField", "operator": "NUM_LT", "value": "500", "inverted": True}
ROLLOUT = {
    "name": "flexibleRollout",
    "parameters": {"rollout": "30", "stickiness": "default", "groupId": "checkout"},
}
THEME_VARIANTS = [
    {
        "name": "blue",
        "weight": 600,
        "weightType": "variable",
        "stickiness": "default",
        "payload": {"type": "string", "value": "#00f"},
        "overrides": [{"contextName": "userId", "values": ["user-9", "user-10"]}],
    },
    {"name": "green", "weight": 400, "weightType": "variable", "stickiness": "default", "overrides": []},
]
STRATEGY_VARIANTS = [
    {"name": "fast", "weight": 500, "weightType": "variable", "stickiness": "default"},
    {
        "name": "slow",
        "weight": 500,
        "weightType": "variable",
        "stickiness": "default",
        "payload": {"type": "json", "value": '{"ms": 200}'},
    },
]

ADMIN: dict[str, Any] = {
    "features": [
        {"name": "checkout", "project": "shop", "type": "release", "impressionData": True, "archived": False},
        {"name": "theme", "project": "shop", "type": "experiment", "description": "colours"},
        {"name": "search", "project": "shop", "type": "release"},
        {"name": "child", "project": "shop", "type": "release"},
        {"name": "dormant", "project": "shop", "type": "kill-switch"},
    ],
    "featureStrategies": [
        {
            **ROLLOUT,
            "id": "s2",
            "featureName": "checkout",
            "title": "30% of pro users in Germany",
            "constraints": [PRO],
            "segments": [7],
            "sortOrder": 1,
            "disabled": False,
            "variants": [],
        },
        {
            "id": "s1",
            "featureName": "checkout",
            "name": "userWithId",
            "parameters": {"userIds": "user-1,user-2"},
            "sortOrder": 0,
            "constraints": [],
            "segments": [],
        },
        {
            "id": "s3",
            "featureName": "checkout",
            "name": "default",
            "sortOrder": 2,
            "disabled": True,
            "constraints": [],
            "segments": [],
        },
        {
            "id": "t1",
            "featureName": "theme",
            "name": "default",
            "constraints": [],
            "segments": [],
            "sortOrder": 0,
        },
        {
            "id": "q1",
            "featureName": "search",
            "name": "flexibleRollout",
            "parameters": {"rollout": "100", "stickiness": "userId", "groupId": "search"},
            "constraints": [NEW_APP, NUMBER],
            "segments": [],
            "variants": STRATEGY_VARIANTS,
            "sortOrder": 0,
        },
        {
            "id": "c1",
            "featureName": "child",
            "name": "default",
            "constraints": [],
            "segments": [],
            "sortOrder": 0,
        },
        {
            "id": "d1",
            "featureName": "dormant",
            "name": "default",
            "constraints": [],
            "segments": [],
            "sortOrder": 0,
        },
    ],
    "featureEnvironments": [
        {
            "name": "checkout",
            "featureName": "checkout",
            "environment": "production",
            "enabled": True,
            "variants": [],
        },
        {
            "name": "theme",
            "featureName": "theme",
            "environment": "production",
            "enabled": True,
            "variants": THEME_VARIANTS,
        },
        {
            "name": "search",
            "featureName": "search",
            "environment": "production",
            "enabled": True,
            "variants": [],
        },
        {
            "name": "child",
            "featureName": "child",
            "environment": "production",
            "enabled": True,
            "variants": [],
        },
        {
            "name": "dormant",
            "featureName": "dormant",
            "environment": "production",
            "enabled": False,
            "variants": [],
        },
    ],
    "segments": [{"id": 7, "name": "Germany", "constraints": GERMANY}],
    "tagTypes": [{"name": "simple", "description": "Simple tag", "icon": "#"}],
    "featureTags": [{"featureName": "theme", "tagType": "simple", "tagValue": "ui"}],
    "contextFields": [{"name": "plan", "legalValues": [{"value": "pro"}]}, {"name": "country"}],
    "dependencies": [{"feature": "child", "dependencies": [{"feature": "theme", "variants": ["blue"]}]}],
}

CLIENT: dict[str, Any] = {
    "version": 2,
    "segments": [{"id": 7, "name": "Germany", "constraints": GERMANY}],
    "features": [
        {
            "name": "checkout",
            "project": "shop",
            "type": "release",
            "enabled": True,
            "impressionData": True,
            "strategies": [
                {"name": "userWithId", "parameters": {"userIds": "user-1,user-2"}, "constraints": []},
                {**ROLLOUT, "constraints": [PRO], "segments": [7], "variants": []},
            ],
            "variants": [],
        },
        {
            "name": "theme",
            "project": "shop",
            "type": "experiment",
            "enabled": True,
            "strategies": [{"name": "default", "constraints": []}],
            "variants": THEME_VARIANTS,
        },
        {
            "name": "search",
            "project": "shop",
            "type": "release",
            "enabled": True,
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {"rollout": "100", "stickiness": "userId", "groupId": "search"},
                    "constraints": [NEW_APP, NUMBER],
                    "variants": STRATEGY_VARIANTS,
                }
            ],
            "variants": [],
        },
        {
            "name": "child",
            "project": "shop",
            "type": "release",
            "enabled": True,
            "strategies": [{"name": "default", "constraints": []}],
            "dependencies": [{"feature": "theme", "variants": ["blue"]}],
            "variants": [],
        },
        {
            "name": "dormant",
            "project": "shop",
            "type": "kill-switch",
            "enabled": False,
            "strategies": [{"name": "default"}],
            "variants": [],
        },
    ],
}
FEATURES = [f["name"] for f in CLIENT["features"]]


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


def answer(client: Any, flag: str, ctx: dict[str, Any]) -> tuple[bool, str, Any]:
    variant = client.get_variant(flag, ctx)
    return bool(client.is_enabled(flag, ctx)), variant["name"], variant.get("payload")


def test_admin_export_round_trip_through_unleash_client(
    service: tuple[ServiceProcess, str], tmp_path: Path
) -> None:
    """An imported admin export, served over /api/client/features, answers in UnleashClient as the original does."""
    svc, token = service
    path = tmp_path / "export.json"
    path.write_text(json.dumps(ADMIN))
    dry = run_import(svc, token, path, "--dry-run", "--environment", "production")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    for words in ("unleash-7", "checkout", "create", "disabled strategy", "context fields country, plan"):
        assert words in dry.stdout.replace("\n", " ") or words in dry.stdout, (words, dry.stdout)
    with admin(svc) as c:
        assert c.get("/api/v1/projects/shop").status_code == 404  # a dry run writes nothing
    applied = run_import(svc, token, path, "--apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    with admin(svc) as c:
        theme = c.get("/api/v1/projects/shop/flags/theme").json()
        assert theme["tags"] == ["simple:ui"]
        sdk = c.post(
            "/api/v1/tokens",
            json={"kind": "sdk", "name": "u", "project": "shop", "environment": "production"},
        ).json()["token"]
    original = tmp_path / "client.json"
    original.write_text(json.dumps(CLIENT))
    cache = cache_mod.FileCache("original", directory=str(tmp_path / "orig-cache"))
    cache.bootstrap_from_file(original)
    from_file = unleash_sdk.UnleashClient(
        url="http://127.0.0.1:9/api",  # never asked: bootstrapped, no fetching, no metrics
        app_name="original",
        cache=cache,
        disable_metrics=True,
        disable_registration=True,
    )
    from_file.initialize_client(fetch_toggles=False)
    served = unleash_sdk.UnleashClient(
        url=f"{svc.url}/api",
        app_name="served",
        custom_headers={"Authorization": sdk},
        cache_directory=str(tmp_path / "served-cache"),
        disable_metrics=True,
        refresh_interval=60,
    )
    served.initialize_client()
    try:
        assert set(FEATURES) <= set(served.feature_definitions())
        outcomes: dict[str, set[tuple[bool, str]]] = {f: set() for f in FEATURES}
        for ctx in contexts(3_000, seed=11):
            flat = dict(ctx)
            for flag in FEATURES:
                want = answer(from_file, flag, flat)
                assert answer(served, flag, flat) == want, (flag, flat)
                outcomes[flag].add(want[:2])
        # the comparison covered every branch: on and off, each variant
        assert {(True, "disabled"), (False, "disabled")} <= outcomes["checkout"]
        assert {(True, "blue"), (True, "green")} <= outcomes["theme"]
        assert {(True, "fast"), (True, "slow"), (False, "disabled")} <= outcomes["search"]
        assert {(True, "disabled"), (False, "disabled")} <= outcomes["child"]
        assert outcomes["dormant"] == {(False, "disabled")}
    finally:
        from_file.destroy()
        served.destroy()


def test_bad_exports_exit_2_naming_the_field_and_change_nothing(
    service: tuple[ServiceProcess, str], tmp_path: Path
) -> None:
    """Malformed exports and unknown operators: exit 2 naming the field or feature; the project is never written."""
    svc, token = service
    broken = json.loads(json.dumps(ADMIN))
    broken["featureStrategies"][4]["constraints"][0] = "SEMVER_GT"
    unknown_op = json.loads(json.dumps(ADMIN))
    unknown_op["featureStrategies"][0]["constraints"][0]["operator"] = "STR_MATCHES"
    no_segment = json.loads(json.dumps(ADMIN))
    del no_segment["segments"][0]["constraints"]
    cases = [
        ("not json", "{", "line 1"),
        ("wrong type", json.dumps(broken), "featureStrategies[4].constraints[0]: expected an object"),
        ("unknown top-level", json.dumps({**ADMIN, "featureFlags": []}), "featureFlags: not a field"),
        ("unknown operator", json.dumps(unknown_op), "unknown operator 'STR_MATCHES'"),
        ("segment without constraints", json.dumps(no_segment), "'Germany' (id 7)"),
    ]
    for what, text, words in cases:
        path = tmp_path / f"{what}.json"
        path.write_text(text)
        for extra in ((), ("--apply",)):
            r = run_import(svc, token, path, *extra)
            assert r.returncode == 2, (what, extra, r.stdout, r.stderr)
            shown = " ".join((r.stdout + r.stderr).split())
            assert words in shown, (what, words, shown)
    with admin(svc) as c:
        assert c.get("/api/v1/projects/shop").status_code == 404
    both = run_import(svc, token, tmp_path / "wrong type.json", "--apply", "--dry-run")
    assert both.returncode == 2
