"""Regression tests of issue 14 for the flag service: bad bodies are a 4xx, and its SQLite files are private.

Before, deeply nested JSON and huge numbers were a 500 there too, and ``flags serve`` created its database
world-readable (mode 0644 from the umask): token digests and every flag's rules for anyone on the machine.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gapless.flags.service.store import FlagStore
from tests.flags_service.conftest import Service, flag_doc


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than"),
        (b'{"key": "f", "variants": ' + b"[" * 3000 + b"]" * 3000 + b"}", "nested deeper than"),
        (b'{"key": "f", "owner": 1e309}', "out of range"),
        (b'{"key": "f", "owner": ' + b"7" * 5000 + b"}", "out of range"),
        (b'{"key": "f", "owner": NaN}', "not a number"),
    ],
)
async def test_bad_flag_bodies_are_400_naming_the_problem(service: Service, body: bytes, says: str) -> None:
    """Deep nesting, infinities, NaN and huge integers in a flag body are a 400 that says so; nothing is stored."""
    async with service.client() as c:
        await c.put("/api/v1/projects/shop", json={"environments": ["production"]})
        r = await c.post(
            "/api/v1/projects/shop/flags", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == 400, r.text
        assert says in r.json()["error"]
        assert (await c.get("/api/v1/projects/shop/flags/f")).status_code == 404


async def test_huge_numbers_in_sdk_reports_and_queries_are_4xx(service: Service) -> None:
    """A revision beyond 64 bits in an SDK report or a delivery query is refused, not a 500."""
    async with service.client() as c:
        await c.put("/api/v1/projects/shop", json={"environments": ["production"]})
        assert (await c.post("/api/v1/projects/shop/flags", json=flag_doc())).status_code == 201
        r = await c.get("/api/v1/projects/shop/environments/production/delivery?revision=" + "9" * 30)
        assert 400 <= r.status_code < 500, r.text


def test_sqlite_database_and_wal_are_private(tmp_path: Path) -> None:
    """The flag database and its -wal and -shm files are created 0600, and an older 0644 database is made 0600."""
    old = os.umask(0o022)
    try:
        path = tmp_path / "flags.db"
        s = FlagStore(f"sqlite:///{path}").open()
        s.create_token("admin", "t")
        files = [p for p in tmp_path.iterdir() if p.name.startswith("flags.db")]
        assert {p.name for p in files} >= {"flags.db", "flags.db-wal", "flags.db-shm"}
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        s.close()
        path.chmod(0o644)
        FlagStore(f"sqlite:///{path}").open().close()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old)


async def test_flag_change_on_a_full_disk_is_503_naming_the_cause(tmp_path: Path) -> None:
    """A flag change the database cannot take (a really full disk) is a 503 that says why, and nothing is half-stored."""
    from tests.small_disk import fill, small_tmpfs

    with small_tmpfs(tmp_path / "disk", 4) as disk:
        store = FlagStore(f"sqlite:///{disk / 'flags.db'}").open()
        try:
            service = Service(store)
            async with service.client() as c:
                assert (
                    await c.put("/api/v1/projects/shop", json={"environments": ["production"]})
                ).status_code == 200
                filler = fill(disk)
                for i in range(200):  # until SQLite must grow a file
                    r = await c.post("/api/v1/projects/shop/flags", json=flag_doc(f"f{i}"))
                    if r.status_code != 201:
                        break
                assert r.status_code == 503, r.text
                assert "full" in r.json()["error"]
                assert r.headers["retry-after"] == "5"
                assert (await c.get(f"/api/v1/projects/shop/flags/f{i}")).status_code == 404
                filler.unlink()
                assert (
                    await c.post("/api/v1/projects/shop/flags", json=flag_doc(f"f{i}"))
                ).status_code == 201
        finally:
            store.close()


def test_flags_serve_creates_its_database_private(tmp_path: Path) -> None:
    """`gapless flags serve` under a permissive umask leaves flags.db and its -wal/-shm readable by the owner alone."""
    from tests.flags_service.test_delivery import ServiceProcess, admin
    from tests.ports import free_port

    old = os.umask(0o022)
    try:
        svc = ServiceProcess(tmp_path / "state", free_port())
        svc.start()
    finally:
        os.umask(old)
    try:
        with admin(svc) as c:
            assert c.put("/api/v1/projects/shop", json={"environments": ["production"]}).status_code == 200
        files = sorted(p for p in svc.state_dir.iterdir() if p.name.startswith("flags.db"))
        assert {p.name for p in files} >= {"flags.db", "flags.db-wal", "flags.db-shm"}
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}
    finally:
        svc.stop()
        svc.log.close()
