"""The read verbs on a real rollout: ``-o yaml`` equals ``-o json``, times are RFC 3339, change causes and
revision numbers show where history shows them, ``--since``, ``--instance`` and ``status --watch`` into a
pipe behave as kubectl users expect."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import pytest
import yaml

from gapless import __version__
from tests.e2e.harness import Gapless, rollout_doc
from tests.ports import free_port

pytestmark = pytest.mark.slow

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _json_docs(text: str) -> list[Any]:
    """A single JSON document, or one per line (a stream)."""
    try:
        return [json.loads(text)]
    except ValueError:
        return [json.loads(line) for line in text.split("\n") if line.strip()]


LIVE = {"updatedAt", "lastUpdateTime"}
"""Status times every reconcile pass writes anew: two calls a moment apart differ there and only there."""


def _without(doc: Any, keys: set[str]) -> Any:
    if isinstance(doc, dict):
        return {k: _without(v, keys) for k, v in doc.items() if k not in keys}
    if isinstance(doc, list):
        return [_without(v, keys) for v in doc]
    return doc


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two documents differ (for a readable failure)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in a.keys() | b.keys() for p in _differences(a.get(k), b.get(k), f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            p for i, (x, y) in enumerate(zip(a, b, strict=True)) for p in _differences(x, y, f"{path}[{i}]")
        ]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


async def test_read_verbs(g: Gapless) -> None:
    """Every read verb's YAML reads back as its JSON; causes, numbers, filters and the watch stream work."""
    port = free_port()
    started = time.time()
    code, out, err = await g.acli("up", "-f", str(g.write(rollout_doc("r", port, "v1", replicas=2))))
    assert code == 0, out + err
    code, out, err = await g.acli(
        "apply",
        "-f",
        str(g.write(rollout_doc("r", port, "v2", replicas=2))),
        "--change-cause",
        "bump to v2: faster checkout",
        "--wait",
    )
    assert code == 0, out + err

    # -o yaml reads back as -o json, for every read verb.
    verbs = [
        ["status"],
        ["status", "r"],
        ["history", "r"],
        ["history", "r", "--revision", "2"],
        ["events"],
        ["events", "r"],
        ["analysis", "r"],
    ]
    for argv in verbs:
        code, as_json, err = await g.acli(*argv, "-o", "json")
        assert code == 0, (argv, err)
        code, as_yaml, err = await g.acli(*argv, "-o", "yaml")
        assert code == 0, (argv, err)
        from_yaml = _without(list(yaml.safe_load_all(as_yaml)), LIVE)
        from_json = _without(_json_docs(as_json), LIVE)
        assert from_yaml == from_json, (argv, _differences(from_yaml, from_json))

    version = [
        subprocess.run(
            [sys.executable, "-m", "gapless", "version", "-o", fmt],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for fmt in ("json", "yaml")
    ]
    assert yaml.safe_load(version[1]) == json.loads(version[0]) == {"version": __version__}

    # Times are RFC 3339.
    code, out, _ = await g.acli("history", "r", "-o", "json")
    history = json.loads(out)
    assert all(RFC3339.match(r["createdAt"]) for r in history)
    code, out, _ = await g.acli("events", "r", "-o", "json")
    events = _json_docs(out)
    assert all(RFC3339.match(e["time"]) for e in events)
    status = (await g.acli("status", "r", "-o", "json"))[1]
    assert all(RFC3339.match(i["startedAt"]) for i in json.loads(status)["instances"])

    # The change cause: with its revision in history, <none> where none was given.
    assert [(r["number"], r["changeCause"]) for r in history] == [
        (1, None),
        (2, "bump to v2: faster checkout"),
    ]
    code, out, err = await g.acli("history", "r")
    assert code == 0, err
    assert "<none>" in out
    assert "bump to v2: faster checkout" in out
    code, out, err = await g.acli("history", "r", "--revision", "2")
    assert code == 0, err
    assert "revision 2" in out
    assert "change-cause  bump to v2: faster checkout" in out
    assert "--version" in out  # the template's command
    assert "v2" in out
    code, out, err = await g.acli("history", "r", "--revision", "7")
    assert code == 1
    assert "revision 7" in err
    assert "known: 1, 2" in err

    # Events name revisions by number, as history does.
    created = [e for e in events if e["type"] == "RevisionCreated"]
    assert [e["revisionNumber"] for e in created] == [1, 2]
    assert all(isinstance(e["revisionNumber"], int) for e in events if e["revision"])
    code, out, _ = await g.acli("events", "r")
    assert re.search(r"r\s+2\s+RevisionCreated\s+revision 2", out), out

    # --since: a duration before now, or an RFC 3339 time.
    code, out, err = await g.acli("events", "r", "--since", "10m", "-o", "json")
    assert code == 0, err
    assert len(_json_docs(out)) == len(events)
    later = datetime.fromisoformat(created[1]["time"]).timestamp()
    code, out, err = await g.acli("events", "r", "--since", created[1]["time"], "-o", "json")
    assert code == 0, err
    recent = _json_docs(out)
    assert recent
    assert all(datetime.fromisoformat(e["time"]).timestamp() >= later - 0.001 for e in recent)
    assert len(recent) < len(events)
    code, out, err = await g.acli("events", "r", "--since", "1ms", "-o", "json")
    assert (code, out.strip()) == (0, "")

    # logs --instance: only that instance; an unknown one is named.
    instance = json.loads(status)["instances"][0]["id"]
    code, out, err = await g.acli("logs", "r", "--instance", instance)
    assert code == 0, err
    assert out.strip()
    assert {line.split()[0] for line in out.splitlines() if line.strip()} == {instance}
    code, out, err = await g.acli("logs", "r", "--instance", "r-nothere-1")
    assert code == 1
    assert "r-nothere-1" in err

    # logs --timestamps: each line with the time it was written (within the control plane's second);
    # --since: only lines from then on.
    code, out, err = await g.acli("logs", "r", "--instance", instance, "--timestamps")
    assert code == 0, err
    stamped = [line.split(" ", 2) for line in out.splitlines() if line.strip()]
    assert stamped
    for _, when, _ in stamped:
        assert RFC3339.match(when), when
        assert started - 2 <= datetime.fromisoformat(when).timestamp() <= time.time() + 1
    code, out, err = await g.acli("logs", "r", "--since", "10m")
    assert code == 0, err
    assert "listening" in out
    code, out, err = await g.acli("logs", "r", "--since", "1ms")
    assert (code, out.strip()) == (0, "")
    code, out, err = await g.acli("logs", "r", "--since", "soon")
    assert code == 2
    assert "'soon'" in err

    # status --watch into a pipe: plain lines, one per change, no terminal control codes.
    proc = await _watch(g, "status", "r", "--watch")
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert first.decode().startswith("r Healthy  revision 2")
        assert b"\x1b" not in first
        code, _, err = await g.acli("pause", "r")
        assert code == 0, err
        second = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert second.decode().startswith("r Paused")
    finally:
        proc.kill()
        await proc.wait()

    # Every rollout, as JSON documents: one per change, none while nothing changes.
    proc = await _watch(g, "status", "--watch", "-o", "json")
    try:
        assert proc.stdout is not None
        first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        assert (first["name"], first["phase"]) == ("r", "Paused")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(proc.stdout.readline(), 2.5)
        code, _, err = await g.acli("resume", "r")
        assert code == 0, err
        second = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        assert second["phase"] != "Paused"
    finally:
        proc.kill()
        await proc.wait()

    # events -f: the header once, then only the rows of the events that follow.
    code, out, _ = await g.acli("events", "r", "-o", "json")
    pauses = sum(e["type"] == "Paused" for e in _json_docs(out)) + 1
    proc = await _watch(g, "events", "r", "-f")
    try:
        assert proc.stdout is not None
        header = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert header.split() == ["TIME", "ROLLOUT", "REVISION", "TYPE", "MESSAGE"]
        await asyncio.sleep(1.5)  # the events so far are printed
        code, _, err = await g.acli("pause", "r")
        assert code == 0, err
        lines: list[str] = []
        while sum(line.split()[3:4] == ["Paused"] for line in lines) < pauses:
            lines.append((await asyncio.wait_for(proc.stdout.readline(), 20)).decode())
    finally:
        proc.kill()
        await proc.wait()
    assert not any(line.startswith("TIME") for line in lines), lines


async def _watch(g: Gapless, *argv: str) -> asyncio.subprocess.Process:
    """A gapless command that runs until killed, its output into a pipe."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gapless",
        *argv,
        "--state-dir",
        str(g.state_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=g.env(),
    )
