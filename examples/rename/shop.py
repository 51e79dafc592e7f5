"""The shop of the rename example: an HTTP service whose every request reads and writes PostgreSQL.

Two versions of one program, as two releases of a real service would be:

- ``--version v1`` reads and writes ``users.name``, on the base schema (``search_path=public``);
- ``--version v2`` (code written for the migration ``0001_full_name``) writes both ``name`` and
  ``full_name`` and reads ``full_name``, through the migration's schema of views
  (``search_path=public_0001_full_name``).

Each connection says who it is in ``application_name`` (``gapless:shop:<schema version>:<instance>``),
so ``gapless migrate complete`` can see whether an old version is still connected.

v2 also evaluates the feature flag ``full-name-ui`` (``flags.yaml``) with gapless's Python SDK, from the
flag service the control plane serves: the control plane gives every instance its address in
``$GAPLESS_FLAGS_URL`` (a unix socket), and ``$GAPLESS_FLAGS_SDK_TOKEN_FILE`` (set in ``shop-v2.yaml``)
names the file holding the shop's SDK token (``gapless flags token --kind sdk --project shop
--environment production --to-file shop-flags-token``). ``GET /users/ID?user=KEY&email=E&plan=P`` asks
the flag for that user: on, v2 reads ``full_name`` and answers ``full name: ...``; off (and always in
v1), it reads ``name`` and answers ``name: ...``; the header ``X-Full-Name-UI`` says which. So the
release's flag stages (internal -> beta -> 25% -> everyone) change what users see as they happen.
v2 is ready once it has the flag's ruleset (or after 10 s without one: the flag then reads as off).

Routes: ``GET /`` signs a user up (one INSERT) and looks one up (one SELECT), ``GET /users/ID`` reads,
``POST /users`` (body: the name) writes; ``/healthz`` is ready once the database answered and until a
drain; ``/livez``; ``/metrics`` counts requests, queries and failed queries in Prometheus' text format.
A failed query answers 500 and is logged (``query failed: ...``) and counted
(``shop_query_errors_total``). ``--query-delay-ms`` makes every read wait in the database
(``pg_sleep``), to show what a slow version does to an analysis.

``python shop.py init --rows N`` creates the table ``users`` and fills it; ``python shop.py check
converted`` exits 1 while a row of the new version's view has no ``full_name``, and ``check drained``
exits 1 while a client of the base schema (v1) is connected. Shutdown on SIGTERM drains like
``examples/app.py``: no new connections, idle ones closed, requests in flight finished.

Standard library and psycopg, and gapless's flag SDK in v2. The database URL is ``--database-url`` or
``$SHOP_DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import psycopg

if TYPE_CHECKING:
    from gapless.flags.sdk import FlagClient

MIGRATION = "0001_full_name"
FLAG = "full-name-ui"
FLAGS_WAIT = 10.0
"""Seconds v2 waits for the flag's ruleset before it becomes ready anyway (the flag then reads as off)."""
MAX_APPLICATION_NAME = 63
T = TypeVar("T")


def log(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} shop[{os.getpid()}] {message}\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class Version:
    """What one version of the code reads and writes, and the schema version it was written for."""

    name: str
    schema_version: str  # "" for the base schema
    read_column: str
    write_columns: tuple[str, ...]
    full_name_ui: bool  # whether this version asks the flag full-name-ui


VERSIONS = {
    "v1": Version("v1", "", "name", ("name",), full_name_ui=False),
    "v2": Version("v2", MIGRATION, "full_name", ("name", "full_name"), full_name_ui=True),
}


def connect_args(version: Version, instance: str, schema: str = "public") -> dict[str, str]:
    """libpq parameters putting a connection on its schema version and naming it for the gate."""
    path = f"{schema}_{version.schema_version}" if version.schema_version else schema
    prefix = f"gapless:shop:{version.schema_version}:"
    instance = instance.replace(":", "-")[: MAX_APPLICATION_NAME - len(prefix)]
    return {"application_name": prefix + instance, "options": f"-c search_path={path}"}


class Pool:
    """A few connections shared by the request threads; a connection that broke is replaced."""

    def __init__(self, url: str, kwargs: dict[str, str], size: int) -> None:
        self._url, self._kwargs = url, kwargs
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._url, autocommit=True, connect_timeout=5, **self._kwargs)  # type: ignore[arg-type]

    def run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        with self._slots:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            try:
                result = work(conn)
            except BaseException:
                if conn.closed or conn.broken:
                    conn.close()
                else:
                    self._idle.put(conn)
                raise
            self._idle.put(conn)
            return result

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class Shop(ThreadingHTTPServer):
    """A threading HTTP server that can drain, with the shop's counters and database pool."""

    daemon_threads = False  # server_close() joins the connection threads: that is the drain
    block_on_close = True
    request_queue_size = 512

    def __init__(
        self, address: tuple[str, int], version: Version, pool: Pool, delay_ms: int, flags: FlagClient | None
    ) -> None:
        super().__init__(address, Handler)
        self.version, self.pool, self.delay_ms, self.flags = version, pool, delay_ms, flags
        self.ready = threading.Event()
        self.draining = threading.Event()
        self.wake_r, self._wake_w = os.pipe()
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "queries": 0, "query_errors": 0}
        self.max_id = 1

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n

    def signup(self, name: str) -> int:
        columns = self.version.write_columns
        sql = f"INSERT INTO users ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id"  # noqa: S608 -- column names are constants

        def work(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(sql, [name] * len(columns)).fetchone()
            if row is None:
                raise psycopg.DataError("INSERT ... RETURNING returned no row")
            return int(row[0])

        new_id = self._query(work)
        with self.lock:
            self.max_id = max(self.max_id, new_id)
        return new_id

    def full_name_ui(self, context: dict[str, str]) -> bool:
        """Whether this user sees the full name: the flag, in a version that can show it."""
        return self.flags is not None and self.flags.is_enabled(FLAG, context)

    def lookup(self, user_id: int, column: str | None = None) -> str | None:
        sleep = f"pg_sleep({self.delay_ms / 1000}), " if self.delay_ms > 0 else ""
        column = column or self.version.read_column
        sql = f"SELECT {sleep}{column} FROM users WHERE id = %s"  # noqa: S608 -- constants

        def work(conn: psycopg.Connection[Any]) -> str | None:
            row = conn.execute(sql, (user_id,)).fetchone()
            return None if row is None else str(row[-1])

        return self._query(work)

    def _query(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        self.count("queries")
        try:
            return self.pool.run(work)
        except psycopg.Error as exc:
            self.count("query_errors")
            log(f"query failed: {type(exc).__name__}: {str(exc).strip()}")
            raise

    def drain(self) -> None:
        """Stop accepting, wake idle connections so they close, and wait for busy ones to finish."""
        self.draining.set()
        self.shutdown()
        self.socket.close()
        os.write(self._wake_w, b"x")
        self.server_close()
        os.close(self.wake_r)
        os.close(self._wake_w)
        self.pool.close()
        if self.flags is not None:
            self.flags.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gapless-shop/1"
    disable_nagle_algorithm = True
    server: Shop

    def handle(self) -> None:
        self.close_connection = False
        while not self.close_connection:
            readable, _, _ = select.select([self.connection, self.server.wake_r], [], [])
            if self.connection not in readable:
                return  # idle while draining: close this keep-alive connection
            self.handle_one_request()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        shop = self.server
        if path == "/":
            shop.count("requests")
            try:
                new_id = shop.signup(f"user {random.randrange(10**9)}")  # noqa: S311 -- not crypto
                seen = shop.lookup(random.randint(1, shop.max_id))  # noqa: S311
            except psycopg.Error as exc:
                self._send(500, f"query failed in {shop.version.name}: {type(exc).__name__}\n")
                return
            self._send(200, f"signed up {new_id}; a user: {seen}\n")
        elif path.startswith("/users/"):
            shop.count("requests")
            try:
                user_id = int(path.removeprefix("/users/"))
            except ValueError:
                self._send(400, "a user id is an integer\n")
                return
            query = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
            context = {"targetingKey": query.get("user") or str(user_id)}
            context |= {k: query[k] for k in ("email", "plan") if k in query}
            ui = shop.full_name_ui(context)
            try:
                name = shop.lookup(user_id, "full_name" if ui else "name")
            except psycopg.Error as exc:
                self._send(500, f"query failed in {shop.version.name}: {type(exc).__name__}\n")
                return
            if name is None:
                self._send(404, "no such user\n")
            else:
                label = "full name" if ui else "name"
                self._send(200, f"{label}: {name}\n", {"X-Full-Name-UI": "on" if ui else "off"})
        elif path == "/healthz":
            ready = shop.ready.is_set() and not shop.draining.is_set()
            self._send(200 if ready else 503, "ready\n" if ready else "not ready\n")
        elif path == "/livez":
            self._send(200, "alive\n")
        elif path == "/metrics":
            with shop.lock:
                counts = dict(shop.counts)
            label = f'{{version="{shop.version.name}"}}'
            self._send(
                200,
                "# TYPE shop_requests_total counter\n"
                f"shop_requests_total{label} {counts['requests']}\n"
                "# TYPE shop_queries_total counter\n"
                f"shop_queries_total{label} {counts['queries']}\n"
                "# TYPE shop_query_errors_total counter\n"
                f"shop_query_errors_total{label} {counts['query_errors']}\n",
            )
        else:
            self._send(404, "not found\n")

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/users":
            self._send(404, "not found\n")
            return
        self.server.count("requests")
        length = int(self.headers.get("Content-Length") or 0)
        name = self.rfile.read(length).decode("utf-8", "replace").strip()
        if not name:
            self._send(400, "the body is the user's name\n")
            return
        try:
            new_id = self.server.signup(name)
        except psycopg.Error as exc:
            self._send(500, f"query failed in {self.server.version.name}: {type(exc).__name__}\n")
            return
        self._send(201, f"{new_id}\n")

    def _send(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Version", self.server.version.name)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.server.draining.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _warm_up(shop: Shop) -> None:
    """Ready once the database answers the version's own read (its schema version exists) and, in v2,
    the flag's ruleset has arrived (at most ``FLAGS_WAIT`` seconds: then the flag reads as off)."""
    deadline = time.monotonic() + FLAGS_WAIT
    while shop.flags is not None and shop.flags.revision is None and time.monotonic() < deadline:
        if shop.draining.wait(0.05):
            return
    if shop.flags is not None:
        revision = shop.flags.revision
        log(
            f"flags: {'no ruleset yet, ' + FLAG + ' reads as off' if revision is None else f'ruleset {revision}'}"
        )
    while not shop.draining.is_set():
        try:

            def work(conn: psycopg.Connection[Any]) -> int:
                conn.execute(f"SELECT {shop.version.read_column} FROM users LIMIT 0")  # noqa: S608 -- a constant
                row = conn.execute("SELECT coalesce(max(id), 1) FROM users").fetchone()
                return 1 if row is None else int(row[0])

            shop.max_id = shop.pool.run(work)
        except psycopg.Error as exc:
            log(f"database not ready: {type(exc).__name__}: {str(exc).strip()}")
            time.sleep(0.5)
            continue
        shop.ready.set()
        log(f"version {shop.version.name} ready: {shop.max_id} users")
        return


def flag_client() -> FlagClient | None:
    """gapless's flag SDK on the service ``$GAPLESS_FLAGS_URL`` names (None: not set; the flag is off)."""
    from gapless.flags.sdk import FlagClient
    from gapless.flags.transport import HttpTransport

    transport = HttpTransport.from_env()  # ValueError: set but unusable (no token file, say)
    if transport is None:
        log(f"flags: $GAPLESS_FLAGS_URL is not set; {FLAG} reads as off")
        return None
    log(f"flags: {FLAG} from {transport.url}" + (f" on {transport.socket}" if transport.socket else ""))
    return FlagClient(transport=transport)


def serve(args: argparse.Namespace, url: str) -> int:
    version = VERSIONS[args.version]
    instance = os.environ.get("GAPLESS_INSTANCE") or f"pid{os.getpid()}"
    try:
        flags = flag_client() if version.full_name_ui else None
    except ValueError as exc:
        log(f"flags: {exc}")
        return 2
    pool = Pool(url, connect_args(version, instance, args.schema), args.pool)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # before any thread: only sigwait sees them
    shop = Shop((args.host, int(args.port)), version, pool, args.query_delay_ms, flags)
    if flags is not None:
        flags.start()  # after the signal mask: the transport's threads inherit it
    accept_loop = threading.Thread(target=shop.serve_forever, kwargs={"poll_interval": 0.05})
    accept_loop.start()
    threading.Thread(target=_warm_up, args=(shop,), daemon=True).start()
    log(f"version {version.name} listening on {args.host}:{shop.server_address[1]}")
    received = signal.sigwait(stop_signals)
    log(f"received {signal.Signals(received).name}: draining")
    shop.drain()
    accept_loop.join()
    with shop.lock:
        log(f"drained, exiting: {shop.counts['queries']} queries, {shop.counts['query_errors']} failed")
    return 0


def init(url: str, rows: int) -> int:
    """The table ``users`` with ``rows`` users (added to it when it exists)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS users (id bigserial PRIMARY KEY, name text NOT NULL)")
        conn.execute(
            "INSERT INTO users (name) SELECT 'user ' || g FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("ANALYZE users")
        row = conn.execute("SELECT count(*) FROM users").fetchone()
    print(f"users: {0 if row is None else row[0]} rows")
    return 0


def check(url: str, what: str, schema: str) -> int:
    """``converted``: no row of the new version's view without full_name; ``drained``: no v1 client."""
    with psycopg.connect(url, autocommit=True, application_name="shop check") as conn:
        if what == "converted":
            row = conn.execute(
                f'SELECT count(*) FROM "{schema}_{MIGRATION}".users WHERE full_name IS NULL'  # noqa: S608
            ).fetchone()
            left = 0 if row is None else int(row[0])
            print(f"{left} users without full_name")
        else:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'gapless:shop::%'"
            ).fetchone()
            left = 0 if row is None else int(row[0])
            print(f"{left} connections of v1 (base schema)")
    return 1 if left else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("SHOP_DATABASE_URL"), help="default: $SHOP_DATABASE_URL"
    )
    parser.add_argument("--schema", default="public", help="the base schema (default public)")
    sub = parser.add_subparsers(dest="command")
    p_init = sub.add_parser("init", help="create the users table and fill it")
    p_init.add_argument("--rows", type=int, default=1000)
    p_check = sub.add_parser("check", help="exit 1 unless the check holds")
    p_check.add_argument("what", choices=["converted", "drained"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=os.environ.get("PORT"), help="default: $PORT")
    parser.add_argument("--version", choices=sorted(VERSIONS), default="v1")
    parser.add_argument("--pool", type=int, default=4, help="database connections (default 4)")
    parser.add_argument(
        "--query-delay-ms", type=int, default=0, metavar="N", help="every read waits N ms in the database"
    )
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url is required when $SHOP_DATABASE_URL is not set")
    if args.command == "init":
        if args.rows < 0:
            parser.error("--rows must be 0 or more")
        return init(args.database_url, args.rows)
    if args.command == "check":
        return check(args.database_url, args.what, args.schema)
    if args.port is None:
        parser.error("--port is required when $PORT is not set")
    if args.pool < 1:
        parser.error("--pool must be 1 or more")
    return serve(args, args.database_url)


if __name__ == "__main__":
    sys.exit(main())
