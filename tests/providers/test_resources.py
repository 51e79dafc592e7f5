"""The resource sampler against real instance processes started by the local platform."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from gapless.analysis import Measurement
from gapless.analysis.measurements import least_squares
from gapless.platform import InstanceHandle, InstanceSpec, LocalPlatform
from gapless.providers.resources import ResourceSampler
from tests.conftest import PYTHON

MIB = 1 << 20

GROWING = """
import time
blocks = []
while True:
    blocks.append(b"x" * (2 << 20))  # 2 MiB of touched pages every 50 ms
    time.sleep(0.05)
"""

HOLDING = """
import sys, time
block = b"x" * (int(sys.argv[1]) << 20)
print("ready", flush=True)
time.sleep(1000)
"""

BUSY = """
import time
end = time.monotonic() + 60
while time.monotonic() < end:
    pass
"""


async def start(
    platform: LocalPlatform, tmp_path: Path, instance_id: str, revision: str, script: str, *args: str
) -> InstanceHandle:
    spec = InstanceSpec(
        rollout="web",
        instance_id=instance_id,
        revision=revision,
        command=[PYTHON, "-c", script, *args],
        env={},
        working_dir=None,
        log_path=tmp_path / "logs" / f"{instance_id}.log",
    )
    return await platform.start(spec)


async def wait_ready(handle: InstanceHandle) -> None:
    """Wait until a HOLDING process printed ``ready``: its start-up CPU and allocation are behind it."""
    deadline = time.monotonic() + 10
    while "ready" not in (handle.log_path.read_text() if handle.log_path.exists() else ""):
        assert time.monotonic() < deadline, "the process did not become ready"
        await asyncio.sleep(0.02)


async def wait_for_rss(platform: LocalPlatform, handle: InstanceHandle, at_least: int) -> None:
    deadline = time.monotonic() + 10
    while platform.resources(handle).rss_bytes < at_least:
        assert time.monotonic() < deadline, "the process did not allocate its memory"
        await asyncio.sleep(0.02)


async def test_growing_process_shows_a_clearly_positive_memory_slope(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """A process that allocates steadily gives samples whose least-squares slope is clearly positive."""
    handle = await start(platform, tmp_path, "leaky-1", "leaky", GROWING)
    sampler = ResourceSampler(platform)
    began = time.monotonic()
    for _ in range(15):
        sampler.sample([("leaky-1", "leaky", handle)], time.monotonic())
        await asyncio.sleep(0.1)

    samples = sampler.window("leaky", began, time.monotonic())

    assert len(samples) == 15
    trend = least_squares([(s.at, float(s.rss_bytes)) for s in samples])
    assert trend is not None
    # 40 MiB/s is allocated; scheduling noise on a busy machine may slow it, but not to a fifth.
    assert trend.slope > 8 * MIB, trend
    assert trend.slope > 5 * trend.stderr, trend
    assert Measurement("leaky", began, time.monotonic(), resources=samples).env()["rss_slope"] > 8 * MIB


async def test_window_is_the_mean_per_instance_of_each_revision(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """A one-instance canary and a three-instance baseline holding the same memory look alike."""
    handles = [
        ("canary-1", "canary", await start(platform, tmp_path, "canary-1", "canary", HOLDING, "40")),
        *[
            (f"base-{i}", "baseline", await start(platform, tmp_path, f"base-{i}", "baseline", HOLDING, "40"))
            for i in range(3)
        ],
    ]
    for _, _, handle in handles:
        await wait_for_rss(platform, handle, 40 * MIB)
    sampler = ResourceSampler(platform)
    for at in (10.0, 11.0, 12.0):
        sampler.sample(handles, at)

    canary = sampler.window("canary", 10.0, 13.0)
    baseline = sampler.window("baseline", 10.0, 13.0)

    assert [s.at for s in canary] == [s.at for s in baseline] == [10.0, 11.0, 12.0]
    latest = sampler.latest()
    assert set(latest) == {"canary-1", "base-0", "base-1", "base-2"}
    assert {r.revision for r in latest.values()} == {"canary", "baseline"}
    assert all(r.at == 12.0 and r.open_files > 0 for r in latest.values())
    per_instance = [latest[f"base-{i}"].rss_bytes for i in range(3)]
    assert baseline[-1].rss_bytes == round(sum(per_instance) / 3)
    assert baseline[-1].cpu_seconds == sum(latest[f"base-{i}"].cpu_seconds for i in range(3)) / 3
    assert canary[-1].rss_bytes == latest["canary-1"].rss_bytes
    assert baseline[-1].open_files == sum(latest[f"base-{i}"].open_files for i in range(3)) / 3
    assert canary[-1].open_files == latest["canary-1"].open_files
    env = Measurement("canary", 10.0, 13.0, resources=canary).env()
    assert env["open_files"] == env["peak_open_files"] == latest["canary-1"].open_files
    # Mean, not sum: the baseline is not three times the canary.
    assert 0.8 < baseline[-1].rss_bytes / canary[-1].rss_bytes < 1.25
    assert canary[-1].rss_bytes > 40 * MIB


async def test_gone_instances_are_skipped_and_forgotten(platform: LocalPlatform, tmp_path: Path) -> None:
    """An instance whose processes exited is neither sampled nor reported any more."""
    one = await start(platform, tmp_path, "web-1", "r1", HOLDING, "1")
    two = await start(platform, tmp_path, "web-2", "r1", HOLDING, "30")
    await wait_for_rss(platform, two, 30 * MIB)
    instances = [("web-1", "r1", one), ("web-2", "r1", two)]
    sampler = ResourceSampler(platform)
    sampler.sample(instances, 1.0)
    assert set(sampler.latest()) == {"web-1", "web-2"}

    await platform.kill_group(two.pgid)
    sampler.sample(instances, 2.0)

    assert set(sampler.latest()) == {"web-1"}
    first, second = sampler.window("r1", 0.0, 3.0)
    assert second.rss_bytes == sampler.latest()["web-1"].rss_bytes
    assert first.rss_bytes > second.rss_bytes + 10 * MIB  # the mean of both, then web-1 alone

    await platform.kill_group(one.pgid)
    sampler.sample(instances, 3.0)
    assert sampler.latest() == {}
    assert len(sampler.window("r1", 0.0, 4.0)) == 2  # no sample without live instances


async def test_old_samples_are_dropped_and_windows_are_half_open(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """Samples older than keep_seconds are gone; a window includes its start and excludes its end."""
    handle = await start(platform, tmp_path, "web-1", "r1", HOLDING, "1")
    instances = [("web-1", "r1", handle)]
    sampler = ResourceSampler(platform, keep_seconds=60.0)
    for at in (0.0, 30.0, 60.0, 90.0):
        sampler.sample(instances, at)

    assert [s.at for s in sampler.window("r1", 0.0, 100.0)] == [30.0, 60.0, 90.0]
    assert [s.at for s in sampler.window("r1", 30.0, 90.0)] == [30.0, 60.0]
    assert sampler.window("other", 0.0, 100.0) == ()


async def test_cpu_seconds_grow_with_work(platform: LocalPlatform, tmp_path: Path) -> None:
    """The platform's cumulative CPU time lets a window tell a busy revision from an idle one."""
    busy = await start(platform, tmp_path, "busy-1", "busy", BUSY)
    idle = await start(platform, tmp_path, "idle-1", "idle", HOLDING, "1")
    await wait_ready(idle)
    instances = [("busy-1", "busy", busy), ("idle-1", "idle", idle)]
    sampler = ResourceSampler(platform)
    began = time.monotonic()
    for _ in range(8):
        sampler.sample(instances, time.monotonic())
        await asyncio.sleep(0.1)
    end = time.monotonic()

    busy_cores = Measurement("busy", began, end, resources=sampler.window("busy", began, end)).cpu_cores
    idle_cores = Measurement("idle", began, end, resources=sampler.window("idle", began, end)).cpu_cores

    assert busy_cores is not None
    assert idle_cores is not None
    assert busy_cores > 0.2  # a spinning process gets a good share of a core even on a shared machine
    assert idle_cores < 0.05
    assert platform.resources(busy).cpu_seconds > 0.2
