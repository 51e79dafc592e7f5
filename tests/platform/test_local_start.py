"""Starting, observing and discovering instances of the local platform, with real processes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest

from gapless.platform import InstanceHandle, InstanceStartError, LocalPlatform
from tests.conftest import PYTHON, REPO
from tests.platform.support import (
    IGNORING_PARENT_WITH_GRANDCHILD,
    app_command,
    group_members,
    make_spec,
    wait_for,
    wait_http,
)

REPORT_ENV = """
import json, os, sys
keys = ["PORT", "GREETING", "GAPLESS_STATE_DIR", "GAPLESS_ROLE", "GAPLESS_ROLLOUT", "GAPLESS_INSTANCE",
        "GAPLESS_REVISION"]
print(json.dumps({"env": {k: os.environ.get(k) for k in keys}, "argv": sys.argv[1:], "cwd": os.getcwd(),
                  "stdin": sys.stdin.read()}))
print("to stderr", file=sys.stderr)
"""


async def test_start_sets_port_markers_and_appends_to_the_log(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """An instance gets PORT, the spec's env and the marker variables, ${PORT} substituted, its log appended."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    spec = make_spec(
        tmp_path,
        [PYTHON, "-c", REPORT_ENV, "--port=${PORT}", "plain"],
        env={"GREETING": "hi"},
        working_dir=str(workdir),
        rollout="shop",
        revision="abc123",
        instance_id="shop-abc123-1",
    )
    spec.log_path.parent.mkdir(parents=True)
    spec.log_path.write_text("from a previous run\n")

    handle = await platform.start(spec)
    await wait_for(lambda: not platform.is_running(handle), what="the reporter to exit")

    lines = spec.log_path.read_text().splitlines()
    assert lines[0] == "from a previous run"
    report = json.loads(next(line for line in lines if line.startswith("{")))
    assert report["env"] == {
        "PORT": str(handle.port),
        "GREETING": "hi",
        "GAPLESS_STATE_DIR": str(platform.state_dir),
        "GAPLESS_ROLE": "instance",
        "GAPLESS_ROLLOUT": "shop",
        "GAPLESS_INSTANCE": "shop-abc123-1",
        "GAPLESS_REVISION": "abc123",
    }
    assert report["argv"] == [f"--port={handle.port}", "plain"]
    assert report["cwd"] == str(workdir.resolve())
    assert report["stdin"] == ""
    assert "to stderr" in lines
    assert handle.pid == handle.pgid
    assert handle.log_path == spec.log_path


async def test_app_answers_on_its_assigned_port(platform: LocalPlatform, tmp_path: Path) -> None:
    """The example app started by the platform serves its version on the port in the handle."""
    handle = await platform.start(make_spec(tmp_path, app_command("--version", "v7")))
    response = await wait_http(handle.port)
    assert response.status_code == 200
    assert response.text == "hello from v7\n"
    assert response.headers["X-Version"] == "v7"
    assert platform.is_running(handle)


async def test_instance_leads_its_own_session_and_group(platform: LocalPlatform, tmp_path: Path) -> None:
    """An instance runs in a new session and process group, so it does not die with the control plane."""
    handle = await platform.start(make_spec(tmp_path, ["sleep", "30"]))
    assert os.getsid(handle.pid) == handle.pid
    assert os.getpgid(handle.pid) == handle.pid
    assert os.getsid(handle.pid) != os.getsid(0)


async def test_ports_are_not_handed_out_twice(platform: LocalPlatform, tmp_path: Path) -> None:
    """Instances started one after another get distinct ports even when each exits at once."""
    ports = set()
    for i in range(20):
        handle = await platform.start(make_spec(tmp_path, ["true"], instance_id=f"i-{i}"))
        ports.add(handle.port)
    assert len(ports) == 20


async def test_instance_outlives_the_process_that_started_it(
    platform: LocalPlatform, state_dir: Path, tmp_path: Path
) -> None:
    """An instance started by another (now exited) control plane keeps serving and is adopted and stopped."""
    script = f"""
import asyncio, json, sys
from pathlib import Path
sys.path.insert(0, {str(REPO)!r})
from gapless.platform import LocalPlatform
from tests.platform.support import app_command, make_spec

async def main():
    platform = LocalPlatform(Path({str(state_dir)!r}))
    h = await platform.start(make_spec(Path({str(tmp_path)!r}), app_command(), instance_id="adopted-1"))
    print(json.dumps({{"pid": h.pid, "pgid": h.pgid, "port": h.port, "started_at": h.started_at}}))
    platform.release()  # exit leaving the instance running, as a control plane that shuts down does

asyncio.run(main())
"""
    # The first control plane exits right after starting the instance.
    out = await asyncio.to_thread(
        subprocess.run, [PYTHON, "-W", "error", "-c", script], capture_output=True, text=True, check=True
    )
    data = json.loads(out.stdout)
    handle = InstanceHandle(instance_id="adopted-1", log_path=tmp_path / "logs" / "adopted-1.log", **data)

    assert (await wait_http(handle.port)).status_code == 200
    [found] = platform.discover()
    assert (found.pid, found.instance_id, found.role) == (handle.pid, "adopted-1", "instance")
    assert platform.is_running(handle)
    assert platform.instance_env(handle)["PORT"] == str(handle.port)

    result = await platform.stop(handle, pre_stop=None, grace_seconds=5)
    assert result.exited
    assert not result.killed
    assert not platform.is_running(handle)
    assert platform.discover() == []


async def test_missing_program_raises_and_leaves_nothing(platform: LocalPlatform, tmp_path: Path) -> None:
    """A program that does not exist raises InstanceStartError and starts no process."""
    with pytest.raises(InstanceStartError, match=r"gapless-no-such-program.*not found in PATH"):
        await platform.start(make_spec(tmp_path, ["gapless-no-such-program", "--port", "${PORT}"]))
    with pytest.raises(InstanceStartError, match="No such file"):
        await platform.start(make_spec(tmp_path, [str(tmp_path / "missing")]))
    assert platform.discover() == []


async def test_non_executable_program_raises(platform: LocalPlatform, tmp_path: Path) -> None:
    """A file without execute permission raises InstanceStartError with the reason."""
    script = tmp_path / "serve.sh"
    script.write_text("#!/bin/sh\nsleep 100\n")
    script.chmod(0o644)
    with pytest.raises(InstanceStartError, match="Permission denied"):
        await platform.start(make_spec(tmp_path, [str(script)]))
    assert platform.discover() == []


async def test_missing_working_dir_raises(platform: LocalPlatform, tmp_path: Path) -> None:
    """A working directory that does not exist raises InstanceStartError naming it."""
    with pytest.raises(InstanceStartError, match="working directory"):
        await platform.start(make_spec(tmp_path, ["sleep", "10"], working_dir=str(tmp_path / "nope")))


async def test_is_running_false_after_exit(platform: LocalPlatform, tmp_path: Path) -> None:
    """A process that exited is not running (and is reaped, not left a zombie)."""
    handle = await platform.start(make_spec(tmp_path, ["true"]))
    await wait_for(lambda: not platform.is_running(handle), what="exit")
    assert group_members(handle.pgid) == []


async def test_is_running_false_for_a_different_create_time(platform: LocalPlatform, tmp_path: Path) -> None:
    """A handle whose create time differs names another process (a reused pid), which is not running."""
    handle = await platform.start(make_spec(tmp_path, ["sleep", "30"]))
    assert platform.is_running(handle)
    assert not platform.is_running(dataclasses.replace(handle, started_at=handle.started_at - 100))
    assert not platform.is_running(dataclasses.replace(handle, pid=2**22 + 7))


async def test_discover_finds_marked_processes_only(state_dir: Path, tmp_path: Path) -> None:
    """discover() lists this state dir's instances, not another state dir's nor unmarked processes."""
    ours = LocalPlatform(state_dir)
    other = LocalPlatform(tmp_path / "other-state")
    unmarked = subprocess.Popen(["sleep", "30"])
    try:
        a1 = await ours.start(make_spec(tmp_path, ["sleep", "30"], instance_id="a1", revision="r1"))
        a2 = await ours.start(make_spec(tmp_path, ["sleep", "30"], instance_id="a2", revision="r2"))
        b1 = await other.start(make_spec(tmp_path, ["sleep", "30"], instance_id="b1"))

        found = {d.instance_id: d for d in ours.discover()}
        assert set(found) == {"a1", "a2"}
        assert found["a2"].revision == "r2"
        assert found["a1"].rollout == "web"
        assert found["a1"].role == "instance"
        assert (found["a1"].pid, found["a1"].pgid) == (a1.pid, a1.pgid)
        assert found["a1"].started_at == pytest.approx(a1.started_at, abs=0.5)
        assert found["a2"].pid == a2.pid
        assert [d.instance_id for d in other.discover()] == ["b1"]
        assert b1.pid not in {d.pid for d in ours.discover()}
    finally:
        for platform in (ours, other):
            for proc in platform.discover():
                await platform.kill_group(proc.pgid)
            platform.release()
        unmarked.kill()
        unmarked.wait()


async def test_discover_lists_an_instance_with_children_once(platform: LocalPlatform, tmp_path: Path) -> None:
    """An instance whose children inherited its markers is one discovered entry: its group leader."""
    spec = make_spec(tmp_path, [PYTHON, "-c", IGNORING_PARENT_WITH_GRANDCHILD])
    handle = await platform.start(spec)
    await wait_for(lambda: len(group_members(handle.pgid)) == 2, what="the grandchild")
    [found] = platform.discover()
    assert found.pid == handle.pid


async def test_resources_sum_over_the_group(platform: LocalPlatform, tmp_path: Path) -> None:
    """resources() counts every process of the instance's group, with memory and descriptors."""
    handle = await platform.start(make_spec(tmp_path, [PYTHON, "-c", IGNORING_PARENT_WITH_GRANDCHILD]))
    await wait_for(lambda: len(group_members(handle.pgid)) == 2, what="the grandchild")
    first = platform.resources(handle)
    second = platform.resources(handle)
    assert first.num_processes == 2
    assert first.rss_bytes > 1_000_000
    assert first.open_files >= 3
    assert second.cpu_percent >= 0.0
    await platform.kill_group(handle.pgid)
    assert platform.resources(handle).num_processes == 0


async def test_kill_group_kills_everything_and_refuses_our_own_group(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """kill_group leaves no process of the group, and refuses to kill the caller's own group."""
    handle = await platform.start(make_spec(tmp_path, [PYTHON, "-c", IGNORING_PARENT_WITH_GRANDCHILD]))
    await wait_for(lambda: len(group_members(handle.pgid)) == 2, what="the grandchild")
    await platform.kill_group(handle.pgid)
    assert group_members(handle.pgid) == []
    assert not platform.is_running(handle)
    with pytest.raises(ValueError, match="own"):
        await platform.kill_group(os.getpgrp())
    with pytest.raises(ValueError, match="group 0"):
        await platform.stop(dataclasses.replace(handle, pgid=0), pre_stop=None, grace_seconds=1)
