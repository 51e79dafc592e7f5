"""``gapless flags serve``: the flag service as its own process (uvicorn on a TCP address).

On first start it creates an admin token and writes it to ``<state dir>/flags-admin-token`` (mode 0600);
the database keeps only its SHA-256. A background task advances release plans whose current stage has a
``monitoringWindow`` that has run out, audited as ``release-plan``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
import time
from datetime import datetime
from pathlib import Path

import uvicorn

from gapless.flags.service.app import FlagChange, OnChange, build_flag_app
from gapless.flags.service.hub import Hub
from gapless.flags.service.relay import relay_changes
from gapless.flags.service.store import Actor, FlagStore

__all__ = ["ADMIN_TOKEN_FILE", "advance_due", "advance_forever", "ensure_admin_token", "run_flag_service"]

ADMIN_TOKEN_FILE = "flags-admin-token"  # noqa: S105 -- a file name, not a secret
RELEASE_ACTOR = Actor("release-plan", "gapless release plan")

log = logging.getLogger("gapless.flags")


def ensure_admin_token(store: FlagStore, state_dir: Path) -> Path | None:
    """Create a first admin token when there is none; returns the file it was written to (else None)."""
    if any(t.kind == "admin" and t.revoked_at is None for t in store.tokens()):
        return None
    _, token = store.create_token("admin", "bootstrap admin")
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / ADMIN_TOKEN_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return path


def advance_due(store: FlagStore, hub: Hub, now: float, on_change: OnChange | None = None) -> int:
    """Advance every release plan whose current stage's monitoring window ran out; returns how many.

    ``on_change`` hears of each advance, as it hears of changes made through the API.
    """
    advanced = 0
    for project in store.projects():
        for flag in store.project(project["key"]).flags:
            for env, fe in flag.environments.items():
                plan = fe.release_plan
                if plan is None or plan.current_stage + 1 >= len(plan.stages):
                    continue
                window = plan.stage.monitoring_window
                started = plan.stage_started_at
                if window is None or started is None or started.timestamp() + window > now:
                    continue

                def step(
                    doc: dict[str, object], env: str = env, to: int = plan.current_stage + 1
                ) -> dict[str, object]:
                    envs = dict(doc.get("environments") or {})  # type: ignore[call-overload]
                    e = dict(envs[env])
                    stamp = datetime.fromtimestamp(now).astimezone().isoformat()
                    e["releasePlan"] = dict(e["releasePlan"]) | {"currentStage": to, "stageStartedAt": stamp}
                    envs[env] = e
                    return doc | {"environments": envs}

                result, changes = store.change_flag(
                    project["key"], flag.key, RELEASE_ACTOR, "flag.release.advance", step
                )
                hub.publish(changes)
                advanced += int(result["changed"])
                if on_change is not None and result["changed"]:
                    try:
                        on_change(
                            FlagChange(
                                "flag.release.advance",
                                project["key"],
                                flag.key,
                                RELEASE_ACTOR,
                                tuple(changes),
                                env,
                            )
                        )
                    except Exception:
                        log.exception("the change hook failed for the release plan of %s", flag.key)
    return advanced


async def advance_forever(
    store: FlagStore, hub: Hub, interval: float = 1.0, on_change: OnChange | None = None
) -> None:
    while True:
        try:
            advance_due(store, hub, time.time(), on_change)
        except Exception:
            log.exception("advancing release plans failed")
        await asyncio.sleep(interval)


class _NoUpgradeWarning(logging.Filter):
    """Drop uvicorn's warning for each declined HTTP/2 upgrade (one per request of a Java client)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Unsupported upgrade request" not in record.getMessage()


def run_flag_service(listen: tuple[str, int], database_url: str, state_dir: Path) -> int:
    """Serve until signalled. Exit 1 when the address is taken or the database cannot be opened."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    store = FlagStore(database_url).open()
    token_file = ensure_admin_token(store, state_dir)
    if token_file is not None:
        print(f"created an admin token in {token_file}", file=sys.stderr)
    hub = Hub()
    app = build_flag_app(store, hub)
    host, port = listen
    # Streams never end on their own: give them a second to notice the shutdown, then close them.
    # h11, not httptools: Java's HTTP client asks every plain-HTTP request to upgrade to HTTP/2 (h2c),
    # and uvicorn's httptools protocol then drops the request's body (an OFREP context, a flag document)
    # while still answering; h11 declines the upgrade and reads the body.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    logging.getLogger("uvicorn.error").addFilter(_NoUpgradeWarning())
    server = uvicorn.Server(config)

    async def main() -> None:
        tasks = [asyncio.create_task(advance_forever(store, hub))]
        if store.postgres:  # other service processes on the same database: hear their changes
            tasks.append(asyncio.create_task(relay_changes(store, hub)))
        try:
            await server.serve()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    print(
        f"flag service on http://{host}:{port} (database {store.engine.url.render_as_string()})",
        file=sys.stderr,
    )
    # What start-up made (modules, the app, SQLAlchemy's and pydantic's structures: some 130,000 objects)
    # lives as long as the process: out of the collector's reach, a full collection no longer walks it.
    # Measured before, over one benchmark run (start-up included): full collections of up to 134 ms, and
    # every collection while serving stalls every stream.
    gc.collect()
    gc.freeze()
    try:
        asyncio.run(main())
    finally:
        store.close()
    return 0 if server.started else 1
