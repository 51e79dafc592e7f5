"""The suite's own PostgreSQL (tests/postgres.py, ``postgres_server`` in tests/conftest.py).

Rules: a test session that used the server leaves no ``postgres`` process and no data directory behind,
whether it ends normally or its process is SIGKILLed; ``$GAPLESS_TEST_DATABASE_URL`` replaces the
embedded server, and one that cannot be reached is an error, never a skip; every test gets a database
of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from tests.conftest import REPO

# A test module for a child pytest session: it uses the suite's fixture and records what it started.
CHILD = """
import json, os
import psutil, psycopg
from tests.conftest import postgres_server, postgres_url  # noqa: F401 - the fixtures under test

def test_record(postgres_url, postgres_server):
    with psycopg.connect(postgres_url) as c:
        port = c.execute("SELECT inet_server_port()").fetchone()[0]
        pid = c.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'").fetchone()[0]
    main = psutil.Process(pid).parent()
    info = {"port": port, "main": main.pid, "all": [main.pid] + [p.pid for p in main.children(recursive=True)],
            "dir": main.cmdline()[main.cmdline().index("-D") + 1]}
    with open(os.environ["RECORD"], "w") as f:
        json.dump(info, f)
"""


def run_child(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    (tmp_path / "test_child.py").write_text(CHILD)
    record = tmp_path / "record.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "test_child.py"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "GAPLESS_TEST_DATABASE_URL"}
        | {"PYTHONPATH": str(REPO), "RECORD": str(record), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result, json.loads(record.read_text()) if record.exists() else {}


def gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    """The pids among ``pids`` that still run a postgres process after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for pid in pids:
            try:
                if psutil.Process(pid).name() == "postgres":
                    left.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def test_a_session_leaves_no_postgres_process_and_no_directory(tmp_path: Path) -> None:
    result, info = run_child(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    pids = info["all"]
    assert isinstance(pids, list)
    assert len(pids) >= 4, pids  # the postmaster and its checkpointer, writer, WAL writer...
    # The child session has ended: every process of its server is gone at once (checked by pid).
    assert gone(pids, timeout=0) == []
    assert not Path(str(info["dir"])).exists()


def test_a_sigkilled_owner_leaves_no_postgres_process_and_no_directory(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from tests.postgres import EmbeddedPostgres\n"
        "pg = EmbeddedPostgres().start()\n"
        "print(pg.pid, pg.dir, flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        pid_text, directory = owner.stdout.readline().split()
        main = psutil.Process(int(pid_text))
        pids = [main.pid] + [p.pid for p in main.children(recursive=True)]
        assert main.name() == "postgres"
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        assert gone(pids) == [], "the server outlived its SIGKILLed owner"
        deadline = time.monotonic() + 10
        while Path(directory).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(directory).exists()
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()


def test_gapless_test_database_url_replaces_the_embedded_server(tmp_path: Path, postgres_server: str) -> None:
    with psycopg.connect(postgres_server) as c:
        port = c.execute("SELECT inet_server_port()").fetchone()
    result, info = run_child(tmp_path, GAPLESS_TEST_DATABASE_URL=postgres_server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert port is not None
    assert info["port"] == port[0]  # the named server, not a new one


def test_an_unreachable_gapless_test_database_url_is_an_error_not_a_skip(tmp_path: Path) -> None:
    result, info = run_child(tmp_path, GAPLESS_TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:1/none")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout
    assert "skipped" not in result.stdout
    assert "GAPLESS_TEST_DATABASE_URL names a PostgreSQL server that cannot be reached" in result.stdout
    assert info == {}


@pytest.mark.parametrize("table", ["first", "second"])
def test_every_test_gets_an_empty_database_of_its_own(postgres_url: str, table: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
        c.execute(f"CREATE TABLE {table} (id int)")
