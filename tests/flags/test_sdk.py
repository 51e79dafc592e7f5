"""FlagClient: sources of rulesets, atomic cache, revisions, counts, threads, forks, and its imports."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from gapless.flags import sdk as sdk_module
from gapless.flags.evaluate import ErrorCode, Reason, RulesetError
from gapless.flags.sdk import FlagClient

from .conftest import boolean_flag, ruleset

PRO = {"attribute": "plan", "operator": "in", "values": ["pro"]}


def versioned(revision: int) -> dict[str, Any]:
    """A ruleset whose string flag ``rev`` serves ``r<revision>`` and boolean ``on`` is on for pro plans."""
    rev = {
        "kind": "string",
        "variants": [{"key": f"v{revision}", "value": f"r{revision}"}],
        "offVariant": f"v{revision}",
        "enabled": True,
    }
    on = boolean_flag(rules=[{"conditions": [PRO], "variant": "on"}])
    return ruleset({"rev": rev, "on": on}, revision=revision)


def test_bootstrap_dict_serves_without_start() -> None:
    """A client built from a bootstrap dict evaluates at once; is_enabled and variant read it."""
    client = FlagClient(bootstrap=versioned(3))
    assert client.revision == 3
    assert client.is_enabled("on", {"plan": "pro"}) is True
    assert client.is_enabled("on", {"plan": "free"}) is False
    assert client.variant("rev") == "v3"
    assert client.evaluate("rev").value == "r3"


def test_defaults_on_errors() -> None:
    """is_enabled and variant give their defaults for missing flags and flags of another kind."""
    client = FlagClient(bootstrap=versioned(1))
    assert client.is_enabled("missing", default=True) is True
    assert client.is_enabled("rev", default=True) is True  # a string flag: TYPE_MISMATCH
    assert client.evaluate("rev", default=False).error_code == ErrorCode.TYPE_MISMATCH
    assert client.variant("missing", default="control") == "control"
    assert client.variant("on", {"plan": "pro"}, default="control") == "on"


def test_no_ruleset_is_not_ready() -> None:
    """Before any ruleset, evaluations give the default with PROVIDER_NOT_READY."""
    client = FlagClient()
    ev = client.evaluate("on", {}, True)
    assert (ev.value, ev.reason, ev.error_code) == (True, Reason.ERROR, ErrorCode.PROVIDER_NOT_READY)
    assert client.is_enabled("on") is False


def test_constructor_touches_no_file(tmp_path: Path) -> None:
    """Files are read by start(), not by the constructor."""
    path = tmp_path / "flags.json"
    client = FlagClient(bootstrap_file=path)
    assert client.revision is None
    path.write_text(json.dumps(versioned(5)))
    assert client.start().revision == 5
    assert client.started


def test_bootstrap_file_errors_raise(tmp_path: Path) -> None:
    """A missing, non-JSON or unusable bootstrap file makes start() raise."""
    with pytest.raises(FileNotFoundError):
        FlagClient(bootstrap_file=tmp_path / "none.json").start()
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="Expecting"):
        FlagClient(bootstrap_file=tmp_path / "bad.json").start()
    (tmp_path / "frame.json").write_text("{}")
    with pytest.raises(RulesetError, match="revision"):
        FlagClient(bootstrap_file=tmp_path / "frame.json").start()
    with pytest.raises(ValueError, match="not both"):
        FlagClient(bootstrap={}, bootstrap_file=tmp_path / "x.json")


def test_update_applies_newer_and_ignores_older_revisions() -> None:
    """update() swaps in a newer revision and ignores one that is not newer."""
    client = FlagClient(bootstrap=versioned(5))
    assert client.update(versioned(6)) is True
    assert client.evaluate("rev").value == "r6"
    assert client.update(versioned(4)) is False
    assert client.update(versioned(6)) is False
    assert client.evaluate("rev").value == "r6"
    stats = client.statistics()
    assert (stats.revision, stats.updates_applied, stats.updates_ignored) == (6, 1, 2)
    with pytest.raises(RulesetError):
        client.update({"revision": 9})
    assert client.revision == 6


def test_cache_file_is_written_atomically_and_reloaded(tmp_path: Path) -> None:
    """Each update replaces the cache whole, leaves no temporary file, and a new client starts from it."""
    cache = tmp_path / "cache" / "flags.json"
    cache.parent.mkdir()
    client = FlagClient(bootstrap=versioned(1), cache_file=cache).start()
    assert not cache.exists()  # nothing applied yet
    client.update(versioned(2))
    client.update(versioned(3))
    assert json.loads(cache.read_text()) == versioned(3)
    assert sorted(p.name for p in cache.parent.iterdir()) == ["flags.json"]
    restarted = FlagClient(cache_file=cache).start()
    assert restarted.revision == 3
    assert restarted.evaluate("rev").value == "r3"


def test_a_failed_cache_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the rename fails, the previous cache file is intact, the temporary file is gone, and the update stands."""
    cache = tmp_path / "flags.json"
    client = FlagClient(bootstrap=versioned(1), cache_file=cache)
    client.update(versioned(2))

    def no_rename(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    client.update(versioned(3))
    assert client.revision == 3
    assert json.loads(cache.read_text())["revision"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["flags.json"]
    assert client.statistics().cache_write_errors == 1


def test_higher_revision_of_bootstrap_and_cache_wins(tmp_path: Path) -> None:
    """start() serves whichever of bootstrap file and cache has the higher revision."""
    boot, cache = tmp_path / "boot.json", tmp_path / "cache.json"
    boot.write_text(json.dumps(versioned(4)))
    cache.write_text(json.dumps(versioned(9)))
    assert FlagClient(bootstrap_file=boot, cache_file=cache).start().revision == 9
    cache.write_text(json.dumps(versioned(2)))
    assert FlagClient(bootstrap_file=boot, cache_file=cache).start().revision == 4


def test_a_corrupt_cache_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A cache file that is not a ruleset is logged and ignored; the bootstrap serves."""
    cache = tmp_path / "cache.json"
    cache.write_text('{"revision": 7, "flags": {"x"')
    with caplog.at_level(logging.WARNING, logger="gapless.flags"):
        client = FlagClient(bootstrap=versioned(1), cache_file=cache).start()
    assert client.revision == 1
    assert "ignoring flag cache" in caplog.text


def test_counts_per_flag_and_variant() -> None:
    """Evaluations are counted per (flag, variant), errors under variant None; draining resets them."""
    client = FlagClient(bootstrap=versioned(1))
    for plan in ("pro", "pro", "free"):
        client.is_enabled("on", {"plan": plan})
    client.variant("rev")
    client.evaluate("missing")
    client.evaluate(["not", "a", "key"])  # type: ignore[arg-type]
    assert client.drain_counts() == {
        ("on", "on"): 2,
        ("on", "off"): 1,
        ("rev", "v1"): 1,
        ("missing", None): 1,
    }
    assert client.drain_counts() == {}


def test_threads_evaluating_while_rulesets_swap() -> None:
    """Eight threads evaluate while 200 updates land: no errors, no mixed ruleset, no lost or doubled count."""
    client = FlagClient(bootstrap=versioned(0))
    stop = threading.Event()
    seen: list[set[int]] = [set() for _ in range(8)]
    done = [0] * 8
    failures: list[BaseException] = []
    drained = 0

    def evaluate(n: int) -> None:
        try:
            while not stop.is_set():
                ev = client.evaluate("rev", {"plan": "pro"}, "default")
                assert ev.error_code is None, ev
                assert ev.variant is not None
                assert ev.value == "r" + ev.variant[1:]  # value and variant from the same ruleset
                seen[n].add(int(ev.variant[1:]))
                assert client.is_enabled("on", {"plan": "pro"})
                done[n] += 2
        except BaseException as e:
            failures.append(e)
            raise

    threads = [threading.Thread(target=evaluate, args=(n,)) for n in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so that swaps land between evaluations
    try:
        for t in threads:
            t.start()
        for revision in range(1, 201):
            assert client.update(versioned(revision))
            if revision % 20 == 0:
                drained += sum(client.drain_counts().values())  # draining while threads count
            time.sleep(0.0001)
        stop.set()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not failures
    assert client.revision == 200
    assert len(set().union(*seen)) > 10
    drained += sum(client.drain_counts().values())
    assert drained == sum(done)


def test_counts_from_many_threads_are_exact() -> None:
    """Eight threads start together, so the first evaluations of each (flag, variant) race to register
    its counter, and evaluate while another thread drains: every evaluation is counted exactly once."""
    client = FlagClient(bootstrap=versioned(1))
    n_threads, rounds = 8, 3_000
    barrier = threading.Barrier(n_threads + 1)
    stop = threading.Event()
    failures: list[BaseException] = []
    drained: dict[tuple[str, str | None], int] = {}

    def add(counts: dict[tuple[str, str | None], int]) -> None:
        for pair, n in counts.items():
            drained[pair] = drained.get(pair, 0) + n

    def evaluate() -> None:
        try:
            barrier.wait()
            for i in range(rounds):
                client.is_enabled("on", {"plan": "pro" if i % 3 else "free"})
                client.evaluate("rev")
                client.variant(f"missing-{i % 5}")
        except BaseException as e:
            failures.append(e)
            raise

    def drain() -> None:
        barrier.wait()
        while not stop.is_set():
            add(client.drain_counts())

    threads = [threading.Thread(target=evaluate) for _ in range(n_threads)]
    drainer = threading.Thread(target=drain)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often
    try:
        for t in [*threads, drainer]:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        drainer.join()
    finally:
        sys.setswitchinterval(interval)
    assert not failures
    add(client.drain_counts())
    pro = sum(1 for i in range(rounds) if i % 3)
    expected: dict[tuple[str, str | None], int] = {
        ("on", "on"): n_threads * pro,
        ("on", "off"): n_threads * (rounds - pro),
        ("rev", "v1"): n_threads * rounds,
    }
    for k in range(5):
        expected[(f"missing-{k}", None)] = n_threads * rounds // 5
    assert drained == expected
    assert client.drain_counts() == {}
    assert client.statistics().counts_dropped == 0


def test_counts_beyond_the_bound_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_COUNTED_KEYS (flag, variant) pairs, evaluations of new pairs are counted as dropped;
    pairs already counted go on being counted. is_enabled prepares a counter for each variant of its
    flag and for errors at once, and evaluates without its generated function when they do not fit."""
    monkeypatch.setattr(sdk_module, "MAX_COUNTED_KEYS", 5)
    client = FlagClient(bootstrap=versioned(1))
    client.is_enabled("on", {"plan": "pro"})  # on, off and None: three pairs
    client.evaluate("rev")
    for i in range(5):
        client.evaluate(f"missing-{i}")  # one more pair fits, then four are dropped
    client.is_enabled("on", {"plan": "pro"})
    client.is_enabled("on", {"plan": "free"})
    assert client.drain_counts() == {
        ("on", "on"): 2,
        ("on", "off"): 1,
        ("rev", "v1"): 1,
        ("missing-0", None): 1,
    }
    assert client.statistics().counts_dropped == 4
    assert client.statistics().counts_dropped == 4  # reading it does not change it

    monkeypatch.setattr(sdk_module, "MAX_COUNTED_KEYS", 2)
    small = FlagClient(bootstrap=versioned(1))
    assert small.is_enabled("on", {"plan": "pro"})  # three counters do not fit: evaluated and counted
    assert not small.is_enabled("on", {"plan": "free"})
    assert not small.is_enabled("on", {"plan": "free"}, default=True)
    assert small.is_enabled("on", None, default=True) is False
    assert small.drain_counts() == {("on", "on"): 1, ("on", "off"): 3}


def _wait_readable(fd: int, timeout: float) -> bool:
    readable, _, _ = select.select([fd], [], [], timeout)
    return bool(readable)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_while_locks_are_held() -> None:
    """A child forked while the client's locks are held evaluates, updates and drains, counting from zero.

    The test holds the update lock and the counters' lock across the fork, as another thread of a
    preloading server (applying an update, or draining counts) would at the wrong moment; without
    the at-fork reset the child would wait forever for locks that no thread of its own holds.
    """
    client = FlagClient(bootstrap=versioned(1))
    client.is_enabled("on", {"plan": "pro"})
    read_fd, write_fd = os.pipe()
    with client._lock, client._counts._lock:
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(read_fd)
                ok = client.is_enabled("on", {"plan": "pro"}) and client.evaluate("rev").value == "r1"
                updated = client.update(versioned(2))
                counts = client.drain_counts()
                report = {
                    "ok": ok,
                    "updated": updated,
                    "counts": sum(counts.values()),
                    "rev": client.revision,
                }
                os.write(write_fd, json.dumps(report).encode())
            finally:
                os._exit(0)
    os.close(write_fd)
    try:
        hung = not _wait_readable(read_fd, 10)
        if hung:
            os.kill(pid, signal.SIGKILL)
        assert not hung, "the child hung"
        result = json.loads(os.read(read_fd, 4096))
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)
    assert result == {"ok": True, "updated": True, "counts": 2, "rev": 2}  # the child's own evaluations only
    assert client.revision == 1  # the parent is unaffected
    assert client.drain_counts() == {("on", "on"): 1}


class RecordingTransport:
    """A stand-in at the Transport seam that records calls and pushes one ruleset when started."""

    def __init__(self, push: dict[str, Any]) -> None:
        self.push = push
        self.calls: list[str] = []

    def start(self, client: FlagClient) -> None:
        self.calls.append(f"start at {client.revision}")
        client.update(self.push)

    def close(self) -> None:
        self.calls.append("close")

    def after_fork(self) -> None:
        self.calls.append("after_fork")


def test_transport_seam() -> None:
    """start() hands the client to the transport after loading files; close() closes it."""
    transport = RecordingTransport(versioned(8))
    with FlagClient(bootstrap=versioned(2), transport=transport) as client:
        assert client.revision == 8
        client.start()
    assert transport.calls == ["start at 2", "close"]


def test_the_sdk_imports_nothing_of_the_control_plane() -> None:
    """Importing the SDK and the OpenFeature provider loads no pydantic, Starlette or control-plane module."""
    heavy = ["pydantic", "starlette", "fastapi", "uvicorn", "sqlalchemy", "psutil", "yaml"]
    ours = ["gapless.spec", "gapless.controller", "gapless.server", "gapless.store", "gapless.router"]
    ours += ["gapless.cli", "gapless.flags.model", "gapless.flags.service"]
    code = (
        "import sys, gapless.flags.sdk, gapless.flags.openfeature; "
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r} or m.startswith(tuple({ours!r}))); "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


def _shapes() -> dict[str, Any]:
    """Boolean flags of every shape is_enabled generates code for, plus flags it must not take over."""
    pro = {"attribute": "plan", "operator": "in", "values": ["pro", "enterprise"]}
    de = {"attribute": "country", "operator": "equals", "value": "DE"}
    new = {"attribute": "appVersion", "operator": "semverGte", "value": "2.1.0"}
    not_free = {"attribute": "plan", "operator": "notIn", "values": ["free"]}
    ci = {"attribute": "country", "operator": "equals", "value": "de", "caseInsensitive": True}
    after = {"attribute": "currentTime", "operator": "dateAfter", "value": "2030-01-01T00:00:00Z"}
    in_beta = {"operator": "inSegment", "values": ["beta"]}

    def split(on: int, **extra: Any) -> dict[str, Any]:
        weights = [{"variant": "on", "weight": on}, {"variant": "off", "weight": 100_000 - on}]
        return {"split": {"weights": weights, **extra}}

    three = {
        "kind": "boolean",
        "variants": [*BOOLEAN_VARIANTS, {"key": "on-too", "value": True}],
        "offVariant": "off",
        "enabled": True,
        "defaultRollout": {
            "split": {
                "weights": [
                    {"variant": "on", "weight": 20_000},
                    {"variant": "on-too", "weight": 30_000},
                    {"variant": "off", "weight": 50_000},
                ]
            }
        },
    }
    string_flag = {
        "kind": "string",
        "variants": [{"key": "a", "value": "A"}],
        "offVariant": "a",
        "enabled": True,
    }
    return {
        "on": boolean_flag(default={"variant": "on"}),
        "killed": boolean_flag(default={"variant": "on"}, enabled=False),
        "rollout": boolean_flag(default=split(25_000)),
        "by-org": boolean_flag(default=split(50_000, stickiness="orgId", salt="grüppe")),
        "full": boolean_flag(default=split(100_000)),
        "targeted": boolean_flag(rules=[{"conditions": [pro, de, new], **split(50_000)}]),
        "rules": boolean_flag(
            rules=[
                {"conditions": [not_free, ci], "variant": "on"},
                {"conditions": [in_beta], **split(10_000, stickiness="orgId")},
                {"conditions": [], "variant": "off"},
            ]
        ),
        "timed": boolean_flag(rules=[{"conditions": [after], "variant": "on"}], default=split(50_000)),
        "three": three,
        "broken": boolean_flag(rules=[{"conditions": [{"operator": "like"}], "variant": "on"}]),
        "text": string_flag,
    }


BOOLEAN_VARIANTS = [{"key": "on", "value": True}, {"key": "off", "value": False}]


class _ReadOnly(Mapping[str, Any]):
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class _Unreadable(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("no reading me")

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("no reading me")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("no iterating me")

    def __len__(self) -> int:
        return 1


def _contexts() -> list[Any]:
    out: list[Any] = [None, {}, "not a mapping", _Unreadable()]
    plans = ["pro", "enterprise", "free", "starter", 7, None]
    countries = ["DE", "de", "FR", None]
    versions = ["2.1.0", "2.0.9", "3.0.0-beta.1", "2.1.0-rc.1", "banana", None]
    keys: list[Any] = ["user-1", "usér-2", "\udcffx", "", 12345, 1.5, None]
    for i in range(400):
        ctx = {
            "targetingKey": keys[i % len(keys)] if i % 11 else f"user-{i}",
            "plan": plans[i % len(plans)],
            "country": countries[i % len(countries)],
            "appVersion": versions[i % len(versions)],
            "orgId": f"org-{i % 13}" if i % 3 else None,
            "beta": i % 2 == 0,
        }
        if i % 17 == 0:
            ctx["currentTime"] = "2031-01-01"
        out.append(ctx if i % 5 else _ReadOnly(ctx))
    return out


def test_is_enabled_agrees_with_evaluate_and_counts_the_same() -> None:
    """is_enabled's generated functions give evaluate()'s value (or the default on an error) and count
    the same (flag, variant) pairs, for every flag shape, context and default, rulesets swapped included."""
    segments = {"beta": {"conditions": [{"attribute": "beta", "operator": "in", "values": [True]}]}}
    data = ruleset(_shapes(), segments=segments)
    launch = 1_893_456_000.0
    fast = FlagClient(bootstrap=data, clock=lambda: launch + 1)
    slow = FlagClient(bootstrap=data, clock=lambda: launch + 1)
    keys = [*_shapes(), "missing"]
    for revision in (1, 2):
        for key in keys:
            for default in (False, True, None, "x"):
                for ctx in _contexts():
                    ev = slow.evaluate(key, ctx, default)
                    expected = ev.value if type(ev.value) is bool else default
                    got = fast.is_enabled(key, ctx, default)  # type: ignore[arg-type]
                    assert got is expected, (key, default, ctx, ev)
        assert set(fast._live) == set(_shapes()) - {"text"}  # every boolean flag took the generated path
        assert fast.drain_counts() == slow.drain_counts()
        assert fast.update({**data, "revision": revision + 1})
        assert slow.update({**data, "revision": revision + 1})
    assert fast.statistics().counts_dropped == 0
