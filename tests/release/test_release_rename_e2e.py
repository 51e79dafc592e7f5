"""The seed's rename scenario end to end: ``examples/rename/`` on a real control plane, PostgreSQL and router.

The example's own files are used, with only what a test must change: absolute paths, a free port, two
replicas, and seconds instead of minutes for the canary pauses and the monitoring windows. The shop
(``examples/rename/shop.py``) runs an INSERT and a SELECT for every request, v1 on the base schema
(``name``), v2 through the migration's schema of views (writes ``name`` and ``full_name``, reads
``full_name``). Steady load goes through the router for the whole release. v2 evaluates the flag
``full-name-ui`` with gapless's SDK over the control plane's socket (``$GAPLESS_FLAGS_URL``) and its own SDK
token (``gapless flags token --to-file``): a prober asks it, through the router, for an internal user, a
beta user and 40 others, all along.

- The whole release: expand + backfill of 100,000 rows, canary of v2 with analysis, the flag through
  internal -> beta -> 25% -> everyone with an analysed window after each, v1 drained, every row
  converted, sign-off, contract: 0 failed requests, 0 failed queries, no row without ``full_name``;
  in each window the shop shows the full name to exactly the users of the stage (none, internal,
  internal and beta, some of the others, everyone).
- The same release aborted at the sign-off: the flag steps are undone first, and v2 answers off for
  everyone before v1 takes over again.
- v2 slow in the database (``--query-delay-ms``): the canary's analysis fails on ``p99-fast``; the
  release rolls everything back (v1 at full size, the migration rolled back, the flag as it was),
  0 failed requests, and ``release status`` names the metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from gapless.flags.service.serve import ADMIN_TOKEN_FILE
from tests.e2e.harness import Gapless, Load, api
from tests.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rename"
SHOP = EXAMPLE / "shop.py"
ROWS = 100_000
RPS = 40
WINDOW = "2s"


def _command(argv: list[str]) -> list[str]:
    """The example's ``[python, shop.py, ...]`` with this interpreter and the script's absolute path."""
    assert argv[:2] == ["python", "shop.py"], argv
    return [sys.executable, str(SHOP), *argv[2:]]


def _rollout(
    doc: dict[str, Any], port: int, extra_args: tuple[str, ...] = (), specs: Path | None = None
) -> dict[str, Any]:
    spec = doc["spec"]
    spec["replicas"] = 2
    spec["listen"] = f"127.0.0.1:{port}"
    spec["progressDeadlineSeconds"] = 60
    template = spec["template"]
    template["command"] = _command(template["command"]) + list(extra_args)
    env = template.get("env") or {}
    if specs is not None and "GAPLESS_FLAGS_SDK_TOKEN_FILE" in env:
        env["GAPLESS_FLAGS_SDK_TOKEN_FILE"] = str(specs / env["GAPLESS_FLAGS_SDK_TOKEN_FILE"])
    template["readinessProbe"] |= {"periodSeconds": 0.2, "failureThreshold": 1}
    canary = spec["strategy"].get("canary")
    if canary is not None:  # the same steps, seconds instead of a minute
        canary["steps"] = [
            {"setWeight": 25},
            {"pause": {"duration": "6s"}},
            {"setWeight": 50},
            {"pause": {"duration": "2s"}},
        ]
    return doc


def _specs(g: Gapless, port: int, v2_args: tuple[str, ...] = ()) -> Path:
    """Write the example's files into the test's spec directory, adjusted; the release's path."""
    template, v1 = yaml.safe_load_all((EXAMPLE / "shop-v1.yaml").read_text())
    for metric in template["spec"]["metrics"]:
        metric["interval"] = "1s"
    (g.specs / "shop-v1.yaml").write_text(yaml.safe_dump_all([template, _rollout(v1, port)], sort_keys=False))
    v2 = _rollout(yaml.safe_load((EXAMPLE / "shop-v2.yaml").read_text()), port, v2_args, g.specs)
    (g.specs / "shop-v2.yaml").write_text(yaml.safe_dump(v2, sort_keys=False))
    (g.specs / "0001_full_name.yaml").write_text((EXAMPLE / "0001_full_name.yaml").read_text())
    (g.specs / "flags.yaml").write_text((EXAMPLE / "flags.yaml").read_text())
    release = yaml.safe_load((EXAMPLE / "release.yaml").read_text())
    for step in release["spec"]["steps"]:
        if "wait" in step:
            step["wait"]["duration"] = WINDOW
        if "verify" in step:
            step["verify"]["exec"]["command"] = _command(step["verify"]["exec"]["command"])
    path = g.specs / "release.yaml"
    path.write_text(yaml.safe_dump(release, sort_keys=False))
    return path


async def _setup(
    g: Gapless, url: str, monkeypatch: pytest.MonkeyPatch, v2_args: tuple[str, ...] = (), rows: int = ROWS
) -> tuple[int, Path]:
    """The table filled, v1 up, the flag project applied, the shop's SDK token made; the router port and
    the release file."""
    monkeypatch.setenv("SHOP_DATABASE_URL", url)  # the control plane, its instances and checks inherit it
    init = subprocess.run(
        [sys.executable, str(SHOP), "init", "--rows", str(rows)], capture_output=True, text=True, check=False
    )
    assert init.returncode == 0, init.stderr
    assert init.stdout.strip() == f"users: {rows} rows"
    port = free_port()
    release = _specs(g, port, v2_args)
    code, out, err = await g.acli("up", "-f", str(g.specs / "shop-v1.yaml"))
    assert code == 0, out + err
    code, out, err = await g.acli("flags", "apply", "-f", str(g.specs / "flags.yaml"))
    assert code == 0, out + err
    assert await _flag(g) == {"enabled": True, "stage": "off"}
    token_file = g.specs / "shop-flags-token"
    code, out, err = await g.acli(
        "flags", "token", "--kind", "sdk", "--project", "shop", "--environment", "production",
        "--name", "shop", "--to-file", str(token_file),
    )  # fmt: skip
    assert code == 0, out + err
    assert "gfl_" not in out + err  # the secret is in the file only
    assert token_file.stat().st_mode & 0o777 == 0o600
    return port, release


OTHERS = 40
"""Users of neither segment the prober asks for: the 25% stage shows the full name to some of them."""


async def _ask(c: httpx.AsyncClient, port: int, query: str) -> tuple[str, str]:
    """(the version that answered, whether it showed the full name) for one user through the router."""
    r = await c.get(f"http://127.0.0.1:{port}/users/1?{query}")
    assert r.status_code == 200, r.text
    ui = r.headers.get("x-full-name-ui", "")
    label = "full name" if ui == "on" else "name"
    assert r.text.startswith(f"{label}: "), (ui, r.text)
    return r.headers["x-version"], ui


class Prober:
    """Asks the shop, through the router, what an internal user, a beta user and 40 others see (all at
    once), again and again; each sample keeps its times and the release's running step before and after."""

    def __init__(self, g: Gapless, port: int) -> None:
        self.g, self.port = g, port
        self.samples: list[dict[str, Any]] = []
        self._task = asyncio.ensure_future(self._run())

    async def _step(self) -> str | None:
        st = await _status(self.g)
        running = [s for s in st["steps"] if s["phase"] in ("running", "undoing")]
        return f"{running[0]['phase']}:{running[0]['name']}" if running else st["phase"]

    async def _run(self) -> None:
        queries = ["user=ann&email=ann@shop.example", "user=bob&plan=beta"]
        queries += [f"user=customer-{i}" for i in range(OTHERS)]
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=16)) as c:
            while True:
                before = await self._step()
                t0 = time.time()
                answers = await asyncio.gather(*(_ask(c, self.port, q) for q in queries))
                t1 = time.time()
                after = await self._step()
                self.samples.append(
                    {
                        "step": before if before == after else None,
                        "t0": t0,
                        "t1": t1,
                        "versions": {v for v, _ in answers},
                        "internal": answers[0][1] == "on",
                        "beta": answers[1][1] == "on",
                        "others": sum(ui == "on" for _, ui in answers[2:]),
                    }
                )
                await asyncio.sleep(0.05)

    async def stop(self) -> list[dict[str, Any]]:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.samples


SETTLED = 0.5
"""Seconds into a window after which every instance has the stage's ruleset (streamed in milliseconds)."""
STAGES = {  # window -> (internal user sees it, beta user sees it, how many of the others see it)
    "watch-internal": (True, False, range(1)),
    "watch-beta": (True, True, range(1)),
    "watch-25-percent": (True, True, range(3, 21)),  # 25% of 40 keys by their hash: about 10
    "watch-everyone": (True, True, range(OTHERS, OTHERS + 1)),
}


def _check_stages(samples: list[dict[str, Any]], steps: list[dict[str, Any]]) -> None:
    """Each sample taken wholly inside a step (a window: from ``SETTLED`` after its start) shows the
    full name to exactly the stage's users; before the first flag step, to nobody. Steps' times are the
    control plane's clock, the samples' this machine's: the same clock."""
    seen = dict.fromkeys(STAGES, 0)
    for step in steps:
        name, begin, end = step["name"], step["startedAt"], step["finishedAt"]
        if name not in STAGES and name not in ("expand", "canary-v2"):
            continue
        begin += SETTLED if name in STAGES else 0.0
        for s in (s for s in samples if begin <= s["t0"] and s["t1"] <= end):
            if name in STAGES:
                internal, beta, others = STAGES[name]
                assert s["versions"] == {"v2"}, (name, s)
                assert (s["internal"], s["beta"]) == (internal, beta), (name, s)
                assert s["others"] in others, (name, s)
                seen[name] += 1
            else:
                assert (s["internal"], s["beta"], s["others"]) == (False, False, 0), (name, s)
    assert all(seen.values()), (seen, len(samples), [round(s["t1"] - s["t0"], 2) for s in samples])


async def _flag(g: Gapless) -> dict[str, Any]:
    transport = httpx.AsyncHTTPTransport(uds=str(g.state_dir / "api.sock"))
    headers = {"Authorization": f"Bearer {(g.state_dir / ADMIN_TOKEN_FILE).read_text().strip()}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://gapless/flags", timeout=10) as c:
        r = await c.get("/api/v1/projects/shop/flags/full-name-ui", headers=headers)
        assert r.status_code == 200, r.text
        env = r.json()["environments"]["production"]
        plan = env["releasePlan"]
        return {"enabled": env["enabled"], "stage": plan["stages"][plan["currentStage"]]["name"]}


async def _status(g: Gapless) -> dict[str, Any]:
    return dict(await api(g, "GET", "/api/v1/releases/rename-full-name"))


async def _until(g: Gapless, predicate: Any, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        st = await _status(g)
        if predicate(st):
            return st
        assert time.monotonic() < deadline, json.dumps(st, indent=1)
        await asyncio.sleep(0.2)


async def _serving(port: int) -> set[str]:
    async with httpx.AsyncClient(timeout=10) as c:
        return {(await c.get(f"http://127.0.0.1:{port}/")).headers.get("x-version", "") for _ in range(20)}


async def _query_report(g: Gapless) -> tuple[int, int, list[str]]:
    """(queries, failed queries, lines naming a failed query) over every instance's log, stopped ones too."""
    code, out, err = await g.acli("logs", "shop")
    assert code == 0, out + err
    queries = failed = 0
    for m in re.finditer(r"drained, exiting: (\d+) queries, (\d+) failed", out):
        queries, failed = queries + int(m[1]), failed + int(m[2])
    return queries, failed, [line for line in out.splitlines() if "query failed" in line]


async def _live_query_counts(port: int) -> tuple[float, float]:
    """(queries, failed queries) of the instances still running, from their /metrics (through the router)."""
    async with httpx.AsyncClient(timeout=10) as c:
        text = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
    values = dict(re.findall(r"^(shop_\w+)\{[^}]*\} (\S+)$", text, re.MULTILINE))
    return float(values["shop_queries_total"]), float(values["shop_query_errors_total"])


def _table(url: str) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as c:
        columns: dict[str, str] = dict(
            c.execute(
                "SELECT column_name, is_nullable FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = 'users'"
            ).fetchall()
        )
        rows, missing, differ = c.execute(
            "SELECT count(*), count(*) FILTER (WHERE full_name IS NULL), "
            "count(*) FILTER (WHERE full_name IS DISTINCT FROM name) FROM users"
            if "full_name" in columns
            else "SELECT count(*), 0, 0 FROM users"
        ).fetchone() or (0, 0, 0)
        known = c.execute("SELECT to_regclass('gapless_migrations.migrations')").fetchone()
        phase = (
            c.execute(
                "SELECT phase FROM gapless_migrations.migrations WHERE name = '0001_full_name'"
            ).fetchone()
            if known is not None and known[0] is not None
            else None
        )
    return {
        "columns": columns,
        "rows": int(rows),
        "missing": int(missing),
        "differ": int(differ),
        "phase": None if phase is None else phase[0],
    }


async def _release_events(g: Gapless) -> list[dict[str, Any]]:
    code, out, err = await g.acli("events", "-o", "json")
    assert code == 0, err
    return [e for e in map(json.loads, out.splitlines()) if e["rollout"] == "release:rename-full-name"]


async def test_the_rename_release_end_to_end_under_load(
    g: Gapless, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expand + backfill 100,000 rows, canary, four flag stages with analysed windows, contract: nothing fails."""
    port, release = await _setup(g, postgres_url, monkeypatch)
    plan_run = subprocess.run(
        [sys.executable, "-m", "gapless", "release", "plan", "-f", str(release), "-o", "json"],
        capture_output=True, text=True, check=False, env=g.env(),
    )  # fmt: skip
    assert plan_run.returncode == 0, plan_run.stderr
    plan = json.loads(plan_run.stdout)
    assert plan["pointOfNoRollback"] == len(plan["steps"]) - 1  # the contract, last
    load = Load(f"http://127.0.0.1:{port}/", rps=RPS)
    started = time.monotonic()
    code, out, err = await g.acli("release", "apply", "-f", str(release))
    assert code == 0, out + err
    prober = Prober(g, port)
    st = await _until(
        g, lambda s: s["steps"][0]["phase"] != "running" and s["steps"][0]["phase"] != "pending"
    )
    expand = st["steps"][0]
    assert expand["phase"] == "succeeded", expand
    [backfill] = expand["record"]["engine"]["backfills"]
    assert int(backfill["rowsDone"]) >= ROWS, backfill
    gate = next(i for i, s in enumerate(st["steps"]) if s["name"] == "sign-off")
    st = await _until(
        g,
        lambda s: s["steps"][gate]["phase"] == "running" or s["phase"] not in ("Progressing", "RollingBack"),
    )
    assert [s["phase"] for s in st["steps"][:gate]] == ["succeeded"] * gate, json.dumps(st, indent=1)
    assert await _flag(g) == {"enabled": True, "stage": "everyone"}
    assert await _serving(port) == {"v2"}
    rollout = await g.status("shop")
    assert rollout["phase"] == "Healthy"
    assert rollout["availableReplicas"] == 2
    by_name = {s["name"]: s for s in st["steps"]}
    assert "0 connections of v1" in by_name["v1-drained"]["message"], by_name["v1-drained"]
    assert "0 users without full_name" in by_name["all-converted"]["message"], by_name["all-converted"]
    _check_stages(await prober.stop(), st["steps"])
    code, out, err = await g.acli("release", "promote", "rename-full-name")
    assert code == 0, out + err
    st = await _until(g, lambda s: s["phase"] not in ("Progressing", "RollingBack"))
    elapsed = time.monotonic() - started
    report = await load.stop()
    assert st["phase"] == "Succeeded", json.dumps(st, indent=1)
    assert report.failed == 0, report.failures
    assert report.ok >= RPS * elapsed * 0.8, (report.ok, elapsed)  # load ran the whole release
    # Every row converted and both columns agree (v1 rows by the trigger, v2 rows by v2's own writes).
    table = _table(postgres_url)
    assert table["phase"] == "completed"
    assert table["columns"] == {"id": "NO", "name": "NO", "full_name": "NO"}
    assert table["rows"] >= ROWS + report.ok
    assert (table["missing"], table["differ"]) == (0, 0)
    # Not one application query failed: v1's instances said so when they stopped, v2's still count.
    stopped_queries, stopped_failed, failed_lines = await _query_report(g)
    live_queries, live_failed = await _live_query_counts(port)
    assert failed_lines == []
    assert (stopped_failed, live_failed) == (0, 0)
    assert stopped_queries > 0  # v1 ran queries, then drained
    assert live_queries > 0
    events = await _release_events(g)
    started_steps = [e["revision"] for e in events if e["type"] == "StepStarted"]
    assert sorted(started_steps) == sorted(set(started_steps))
    assert len(started_steps) == len(st["steps"])
    runs = (await api(g, "GET", "/api/v1/rollouts/shop/analysis"))["items"]
    windows = [r for r in runs if str(r.get("key", "")).startswith("release:rename-full-name:")]
    assert len(windows) == 4, windows
    assert all(r["phase"] == "successful" for r in windows), windows


async def test_a_slow_v2_fails_the_canary_analysis_and_everything_rolls_back(
    g: Gapless, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v2's reads wait in the database: p99-fast fails at the canary; v1, the schema and the flag are as before."""
    port, release = await _setup(
        g, postgres_url, monkeypatch, v2_args=("--query-delay-ms", "400", "--pool", "32")
    )
    before = _table(postgres_url)
    assert before["columns"] == {"id": "NO", "name": "NO"}
    load = Load(f"http://127.0.0.1:{port}/", rps=RPS)
    code, out, err = await g.acli("release", "apply", "-f", str(release))
    assert code == 0, out + err
    st = await _until(g, lambda s: s["phase"] not in ("Progressing", "RollingBack"))
    report = await load.stop()
    assert report.failed == 0, report.failures
    assert st["phase"] == "RolledBack", json.dumps(st, indent=1)
    assert [s["phase"] for s in st["steps"][:2]] == ["undone", "undone"]
    assert all(s["phase"] == "pending" for s in st["steps"][2:])
    code, out, err = await g.acli("release", "status", "rename-full-name")
    assert code == 0, out + err
    assert "p99-fast" in out, out
    events = await _release_events(g)
    [failed] = [e["message"] for e in events if e["type"] == "StepFailed"]
    assert "p99-fast" in failed, failed
    # v1 serves everyone at full size, the migration is rolled back, the flag is where it was.
    assert await _serving(port) == {"v1"}
    rollout = await g.status("shop")
    assert rollout["phase"] == "Healthy"
    assert rollout["availableReplicas"] == 2
    assert await _flag(g) == {"enabled": True, "stage": "off"}
    after = _table(postgres_url)
    assert after["phase"] == "rolled_back"
    assert after["columns"] == {"id": "NO", "name": "NO"}
    assert after["rows"] >= ROWS + report.ok  # every signup kept, v2's too
    stopped_queries, stopped_failed, failed_lines = await _query_report(g)
    assert failed_lines == []
    assert stopped_failed == 0
    assert stopped_queries > 0  # v2's instances ran queries before they were stopped


async def test_an_abort_at_the_sign_off_turns_the_full_name_off_in_v2_before_v1_returns(
    g: Gapless, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Aborted with the flag at everyone: v2 answers off for every user once the flag steps are undone,
    then v1 serves; the flag is back at its stage before the release, and nothing failed."""
    port, release = await _setup(g, postgres_url, monkeypatch, rows=2000)
    load = Load(f"http://127.0.0.1:{port}/", rps=RPS)
    code, out, err = await g.acli("release", "apply", "-f", str(release))
    assert code == 0, out + err
    gate = [s["name"] for s in (await _status(g))["steps"]].index("sign-off")
    await _until(
        g,
        lambda s: s["steps"][gate]["phase"] == "running" or s["phase"] not in ("Progressing", "RollingBack"),
    )
    async with httpx.AsyncClient(timeout=10) as c:
        assert await _ask(c, port, "user=customer-1") == ("v2", "on")
    prober = Prober(g, port)
    code, out, err = await g.acli("release", "abort", "rename-full-name", "--wait")
    assert code == 0, out + err
    await asyncio.sleep(1)  # a few samples with v1 back
    samples = await prober.stop()
    report = await load.stop()
    assert report.failed == 0, report.failures
    assert await _flag(g) == {"enabled": True, "stage": "off"}
    assert (await _status(g))["phase"] == "RolledBack"
    # The flag steps are undone before the rollout step: from the moment v1 answers again, and all through
    # the rollout's undo, nobody is shown the full name. (Whether a sample catches v2 alone inside the
    # rollout's undo depends on how fast the weights move back: a sample of 42 requests takes 0.2-0.3 s.)
    undoing_rollout = [s for s in samples if s["step"] == "undoing:canary-v2"]
    assert undoing_rollout, samples
    for s in undoing_rollout + [s for s in samples if s["step"] == "RolledBack" or "v1" in s["versions"]]:
        assert (s["internal"], s["beta"], s["others"]) == (False, False, 0), s
    last = samples[-1]
    assert (last["step"], last["versions"]) == ("RolledBack", {"v1"}), samples
