"""Stopping instances: preStop, SIGTERM, the grace period and SIGKILL, with real processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from gapless.platform import LocalPlatform
from gapless.spec.models import PreStopHandler
from tests.conftest import PYTHON
from tests.platform.support import (
    IGNORING_PARENT_WITH_GRANDCHILD,
    app_command,
    group_members,
    make_spec,
    pid_alive,
    wait_for,
    wait_http,
)


def pre_stop(document: dict[str, object]) -> PreStopHandler:
    """A preStop handler from its YAML form."""
    return PreStopHandler.model_validate(document)


async def test_well_behaved_app_exits_on_sigterm_quickly(platform: LocalPlatform, tmp_path: Path) -> None:
    """The example app exits on SIGTERM well within the grace period, without SIGKILL."""
    handle = await platform.start(make_spec(tmp_path, app_command()))
    await wait_http(handle.port)
    result = await platform.stop(handle, pre_stop=None, grace_seconds=10)
    assert result.exited
    assert not result.killed
    assert result.seconds < 1.0
    assert result.pre_stop_message is None
    assert not platform.is_running(handle)
    assert "drained, exiting" in handle.log_path.read_text()


async def test_sigterm_ignoring_group_is_killed_after_the_grace_period(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """A group that ignores SIGTERM, grandchild included, is SIGKILLed when the grace period ends."""
    handle = await platform.start(make_spec(tmp_path, [PYTHON, "-c", IGNORING_PARENT_WITH_GRANDCHILD]))
    await wait_for(lambda: "grandchild" in handle.log_path.read_text(), what="the grandchild")
    grandchild = int(handle.log_path.read_text().split("grandchild")[1].split()[0])
    assert pid_alive(grandchild)

    result = await platform.stop(handle, pre_stop=None, grace_seconds=1.0)

    assert result.exited
    assert result.killed
    assert 0.95 <= result.seconds < 1.6
    assert group_members(handle.pgid) == []
    assert not pid_alive(grandchild)
    assert not platform.is_running(handle)


async def test_app_ignoring_sigterm_is_killed(platform: LocalPlatform, tmp_path: Path) -> None:
    """The example app with --ignore-sigterm keeps serving after SIGTERM and is SIGKILLed at the deadline."""
    handle = await platform.start(make_spec(tmp_path, app_command("--ignore-sigterm")))
    await wait_http(handle.port)
    result = await platform.stop(handle, pre_stop=None, grace_seconds=0.5)
    assert result.killed
    assert 0.45 <= result.seconds < 1.1
    assert not platform.is_running(handle)


async def test_in_flight_request_finishes_during_stop(platform: LocalPlatform, tmp_path: Path) -> None:
    """A 2-second request that is running when the stop begins completes with 200 before the app exits."""
    handle = await platform.start(make_spec(tmp_path, app_command()))
    await wait_http(handle.port)
    async with httpx.AsyncClient(trust_env=False) as client:
        request = asyncio.create_task(client.get(f"http://127.0.0.1:{handle.port}/slow?ms=2000", timeout=10))
        await asyncio.sleep(0.3)
        result = await platform.stop(handle, pre_stop=None, grace_seconds=10)
        response = await request
    assert response.status_code == 200
    assert response.text == "slept 2000 ms in v1\n"
    assert response.headers["Connection"] == "close"
    assert not result.killed
    assert 1.4 <= result.seconds < 3.0


async def test_pre_stop_exec_runs_before_sigterm_with_the_instance_env(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """A preStop exec handler runs with PORT and the markers, and finishes before the app gets SIGTERM."""
    spec = make_spec(tmp_path, app_command(), env={"HOOK_LOG": str(tmp_path / "logs" / "web-1.log")})
    handle = await platform.start(spec)
    await wait_http(handle.port)
    hook = pre_stop(
        {"exec": {"command": ["sh", "-c", 'echo "prestop port=$PORT id=$GAPLESS_INSTANCE" >> "$HOOK_LOG"']}}
    )
    result = await platform.stop(handle, pre_stop=hook, grace_seconds=10)
    assert not result.killed
    assert result.pre_stop_message is not None
    assert "exit status 0" in result.pre_stop_message
    log = handle.log_path.read_text()
    assert f"prestop port={handle.port} id=web-1" in log
    assert log.index("prestop port=") < log.index("received SIGTERM")


async def test_pre_stop_http_get_runs_before_sigterm(platform: LocalPlatform, tmp_path: Path) -> None:
    """A preStop httpGet reaches the instance on its own port before the app gets SIGTERM."""
    handle = await platform.start(make_spec(tmp_path, app_command("--access-log")))
    await wait_http(handle.port, "/livez")
    hook = pre_stop({"httpGet": {"path": "/healthz?from=prestop"}})
    result = await platform.stop(handle, pre_stop=hook, grace_seconds=10)
    assert result.pre_stop_message is not None
    assert "HTTP 200" in result.pre_stop_message
    log = handle.log_path.read_text()
    assert log.index("GET /healthz?from=prestop") < log.index("received SIGTERM")


async def test_pre_stop_sleep_keeps_serving_before_sigterm(platform: LocalPlatform, tmp_path: Path) -> None:
    """During a preStop sleep the instance still serves; SIGTERM follows the sleep."""
    handle = await platform.start(make_spec(tmp_path, app_command()))
    await wait_http(handle.port)
    stopping = asyncio.create_task(
        platform.stop(handle, pre_stop=pre_stop({"sleep": {"seconds": 0.6}}), grace_seconds=10)
    )
    await asyncio.sleep(0.3)
    assert "received SIGTERM" not in handle.log_path.read_text()
    assert (await wait_http(handle.port)).status_code == 200
    result = await stopping
    assert not result.killed
    assert 0.6 <= result.seconds < 1.5
    assert "received SIGTERM" in handle.log_path.read_text()


async def test_pre_stop_longer_than_the_grace_period_is_cut_short(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """A preStop handler is cut off at the end of the grace period; then SIGTERM stops the app at once."""
    handle = await platform.start(make_spec(tmp_path, app_command()))
    await wait_http(handle.port)
    result = await platform.stop(handle, pre_stop=pre_stop({"sleep": {"seconds": 30}}), grace_seconds=0.5)
    assert not result.killed
    assert 0.5 <= result.seconds < 1.2
    assert result.pre_stop_message is not None
    assert "cut short" in result.pre_stop_message
    assert not platform.is_running(handle)


async def test_sigterm_gets_a_minimum_after_a_long_pre_stop(platform: LocalPlatform, tmp_path: Path) -> None:
    """After a preStop that used up the grace period, SIGKILL comes 2 s after SIGTERM, as in the kubelet."""
    handle = await platform.start(make_spec(tmp_path, app_command("--ignore-sigterm")))
    await wait_http(handle.port)
    result = await platform.stop(handle, pre_stop=pre_stop({"sleep": {"seconds": 30}}), grace_seconds=0.3)
    assert result.killed
    assert 2.3 <= result.seconds < 3.0
    assert not platform.is_running(handle)


async def test_stop_of_an_exited_instance_returns_at_once(platform: LocalPlatform, tmp_path: Path) -> None:
    """Stopping an instance that already exited reports it exited, skips preStop and needs no SIGKILL."""
    handle = await platform.start(make_spec(tmp_path, ["true"]))
    await wait_for(lambda: not platform.is_running(handle), what="exit")
    result = await platform.stop(handle, pre_stop=pre_stop({"sleep": {"seconds": 5}}), grace_seconds=5)
    assert result.exited
    assert not result.killed
    assert result.seconds < 0.5
    assert result.pre_stop_message is None


async def test_released_instances_are_adopted_and_stopped(state_dir: Path, tmp_path: Path) -> None:
    """A platform that released its children leaves them running; a new platform adopts and stops them."""
    first = LocalPlatform(state_dir)
    handle = await first.start(make_spec(tmp_path, app_command()))
    await wait_http(handle.port)
    first.release()

    second = LocalPlatform(state_dir)
    [found] = second.discover()
    assert found.pid == handle.pid
    assert second.is_running(handle)
    result = await second.stop(handle, pre_stop=None, grace_seconds=5)
    assert result.exited
    assert not result.killed
    assert not second.is_running(handle)
    assert second.discover() == []
