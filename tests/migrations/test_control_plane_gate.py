"""The control plane's side of rollout gating: ``template.requiresSchema``, ``GET /api/v1/schema-versions``
and ``POST /api/v1/events`` for migration events (over the real app and store, nothing running)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gapless.cli.migrate_cmd import _database_name, _revision_gate
from gapless.controller.commands import Commands
from gapless.controller.reconcile import Controller
from gapless.controller.traffic import LocalRouters
from gapless.core.clock import FakeClock
from gapless.platform.local import LocalPlatform
from gapless.server.api import build_app
from gapless.server.auth import ensure_token, read_token
from gapless.spec import parse_rollout, template_hash
from gapless.spec.models import Template
from gapless.store.records import InstanceRecord, RevisionRecord, RolloutRecord
from gapless.store.sqlite import Store

OLD_TEMPLATE = {
    "command": ["python", "app.py", "--version", "v1"],
    "env": {"A": "1"},
    "readinessProbe": {"httpGet": {"path": "/healthz"}},
}


def test_template_without_schema_version_keeps_its_hash() -> None:
    """Hashes computed before requiresSchema existed (pinned here) are unchanged, so no new revisions appear."""
    assert template_hash(Template.model_validate(OLD_TEMPLATE)) == "0af76316ad"
    assert template_hash(Template.model_validate({"command": ["python", "app.py"]})) == "9bbd636869"


def test_schema_version_is_part_of_the_revision() -> None:
    """Declaring or changing the schema version makes a new revision; it round-trips through YAML."""
    base = template_hash(Template.model_validate(OLD_TEMPLATE))
    v1 = template_hash(Template.model_validate(OLD_TEMPLATE | {"requiresSchema": "0001_base"}))
    v2 = template_hash(Template.model_validate(OLD_TEMPLATE | {"requiresSchema": "0002_email"}))
    assert len({base, v1, v2}) == 3
    doc = parse_rollout(
        "apiVersion: gapless.dev/v1alpha1\nkind: Rollout\nmetadata: {name: shop}\n"
        "spec:\n  listen: 127.0.0.1:8080\n  template:\n    command: [app]\n    requiresSchema: 0002_email\n"
    )
    assert doc.spec.template.requires_schema == "0002_email"
    assert doc.to_document()["spec"]["template"]["requiresSchema"] == "0002_email"


@pytest.mark.parametrize("bad", ["", "a:b", "x" * 64, "tab\there"])
def test_bad_schema_version_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="requiresSchema"):
        Template.model_validate({"command": ["app"], "requiresSchema": bad})


def test_revision_gate_judges_only_declared_older_versions() -> None:
    """Older versions block, the same or newer pass, undeclared revisions are reported as not judged."""
    items = [
        {
            "rollout": "shop",
            "revisions": [
                {"revision": "aaa", "number": 1, "requiresSchema": "0001_base", "instances": 2},
                {"revision": "bbb", "number": 2, "requiresSchema": "0002_email", "instances": 1},
            ],
        },
        {
            "rollout": "other",
            "revisions": [{"revision": "ccc", "number": 4, "requiresSchema": None, "instances": 3}],
        },
    ]
    older, fine, notes = _revision_gate(items, "0002_email")
    assert [(r.app, r.revision, r.schema_version, r.instances) for r in older] == [
        ("rollout shop", "1 (aaa)", "0001_base", 2)
    ]
    assert [r.revision for r in fine] == ["2 (bbb)"]
    assert notes == ["rollout other revision 4 (ccc): 3 instance(s) that declare no template.requiresSchema"]


def test_database_name_of_the_event_stream() -> None:
    assert _database_name("postgresql://u@h:5432/shop") == "shop"
    assert _database_name("host=h dbname=orders") == "orders"
    assert _database_name("sqlite:///data/app.db") == "app.db"


@pytest.fixture
async def api(state_dir: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    store = Store(state_dir / "state.db").open()
    digest = ensure_token(state_dir, store)
    clock = FakeClock()
    platform = LocalPlatform(state_dir)
    controller = Controller(
        store, platform, LocalRouters(state_dir, read_token(state_dir), platform), clock, state_dir
    )
    app = build_app(store, controller, Commands(store, controller, clock), digest)
    headers = {"Authorization": f"Bearer {read_token(state_dir)}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers
    ) as c:
        yield c, store
    store.close()


def _instance(id_: str, revision: str, state: str) -> InstanceRecord:
    return InstanceRecord(id_, "shop", revision, state, 1.0, "/dev/null")  # type: ignore[arg-type]


async def test_schema_versions_counts_live_instances(api: tuple[httpx.AsyncClient, Store]) -> None:
    client, store = api
    store.put_rollout(RolloutRecord("shop", {}, 1, 1.0, 1.0))
    store.put_revision(RevisionRecord("shop", "aaa", 1, OLD_TEMPLATE | {"requiresSchema": "0001_base"}, 1.0))
    store.put_revision(RevisionRecord("shop", "bbb", 2, OLD_TEMPLATE, 2.0))
    store.put_revision(RevisionRecord("shop", "ccc", 3, OLD_TEMPLATE | {"requiresSchema": "0003_x"}, 3.0))
    store.put_instance(_instance("i1", "aaa", "running"))
    store.put_instance(_instance("i2", "aaa", "terminating"))
    store.put_instance(_instance("i3", "bbb", "starting"))
    store.put_instance(_instance("i4", "ccc", "stopped"))
    r = await client.get("/api/v1/schema-versions")
    assert r.status_code == 200
    assert r.json() == {
        "items": [
            {
                "rollout": "shop",
                "revisions": [
                    {"revision": "aaa", "number": 1, "requiresSchema": "0001_base", "instances": 2},
                    {"revision": "bbb", "number": 2, "requiresSchema": None, "instances": 1},
                ],
            }
        ]
    }
    anonymous = await client.get("/api/v1/schema-versions", headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def test_post_event_is_stored_and_listed(api: tuple[httpx.AsyncClient, Store]) -> None:
    client, _ = api
    body = {
        "rollout": "migrations:shop",
        "revision": "0002_email",
        "type": "BackfillDone",
        "message": "users 3/3",
    }
    r = await client.post("/api/v1/events", json=body)
    assert r.status_code == 201, r.text
    items = (await client.get("/api/v1/events", params={"rollout": "migrations:shop"})).json()["items"]
    assert [(e["rollout"], e["revision"], e["type"], e["message"]) for e in items] == [
        ("migrations:shop", "0002_email", "BackfillDone", "users 3/3")
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], ""),
        ({"rollout": "shop", "revision": "m1", "type": "MigrationStarted"}, "rollout"),
        ({"rollout": "migrations:", "revision": "m1", "type": "MigrationStarted"}, "rollout"),
        ({"rollout": "migrations:shop", "revision": "", "type": "MigrationStarted"}, "revision"),
        ({"rollout": "migrations:shop", "revision": "m1", "type": "Promoted"}, "type"),
        (
            {"rollout": "migrations:shop", "revision": "m1", "type": "MigrationStarted", "message": 3},
            "message",
        ),
        ({"rollout": "migrations:shop", "revision": "m1", "type": "MigrationStarted", "extra": 1}, "extra"),
        ({"rollout": "migrations:shop", "revision": "m" * 201, "type": "MigrationStarted"}, "revision"),
    ],
)
async def test_bad_event_is_400_and_nothing_stored(
    api: tuple[httpx.AsyncClient, Store], body: object, field: str
) -> None:
    client, store = api
    r = await client.post("/api/v1/events", json=body)
    assert r.status_code == 400
    assert field in [p["path"] for p in r.json()["problems"]]
    assert store.events() == []


async def test_post_event_needs_the_token(api: tuple[httpx.AsyncClient, Store]) -> None:
    client, store = api
    body = {"rollout": "migrations:shop", "revision": "m1", "type": "MigrationStarted"}
    r = await client.post("/api/v1/events", json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert store.events() == []
