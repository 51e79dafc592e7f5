"""The instance prober against the example app: readiness, liveness and startup with Kubernetes semantics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gapless.platform import InstanceHandle, InstanceProber, LocalPlatform
from gapless.spec.models import Template
from tests.platform.support import app_command, make_spec, wait_for


@dataclass
class Reports:
    """What a prober reported, stamped with seconds since the prober started."""

    began: float = field(default_factory=time.monotonic)
    ready_changes: list[tuple[float, bool]] = field(default_factory=list)
    unhealthy: list[tuple[float, str]] = field(default_factory=list)

    def on_ready_change(self, ready: bool) -> None:
        self.ready_changes.append((time.monotonic() - self.began, ready))

    def on_unhealthy(self, reason: str) -> None:
        self.unhealthy.append((time.monotonic() - self.began, reason))


@dataclass
class Watch:
    """A prober running as a task against an instance, and its reports."""

    prober: InstanceProber
    task: asyncio.Task[None]
    handle: InstanceHandle
    reports: Reports


@asynccontextmanager
async def watching(
    platform: LocalPlatform,
    tmp_path: Path,
    flags: list[str],
    probes: dict[str, object],
    *,
    initially_ready: bool = False,
) -> AsyncIterator[Watch]:
    """Start the app with ``flags`` and probe it with the template's ``probes`` until the block ends."""
    template = Template.model_validate({"command": app_command(*flags), **probes})
    handle = await platform.start(make_spec(tmp_path, template.command))
    reports = Reports()
    prober = InstanceProber(
        template,
        port=handle.port,
        env=platform.instance_env(handle),
        on_ready_change=reports.on_ready_change,
        on_unhealthy=reports.on_unhealthy,
        initially_ready=initially_ready,
    )
    task = asyncio.create_task(prober.run())
    try:
        yield Watch(prober, task, handle, reports)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def http(path: str, **timing: float) -> dict[str, object]:
    """An httpGet probe of ``path`` with the given timing fields."""
    return {"httpGet": {"path": path}, **timing}


async def test_readiness_turns_true_after_the_ready_delay(platform: LocalPlatform, tmp_path: Path) -> None:
    """With --ready-delay 0.6 the readiness probe turns the instance ready once, after about 0.6 s."""
    probes = {"readinessProbe": http("/healthz", periodSeconds=0.1)}
    async with watching(platform, tmp_path, ["--ready-delay", "0.6"], probes) as watch:
        assert not watch.prober.ready
        await wait_for(lambda: watch.prober.ready, what="readiness")
        await asyncio.sleep(0.3)
    [(at, ready)] = watch.reports.ready_changes
    assert ready
    assert 0.6 <= at < 2.5
    assert "HTTP 200" in watch.prober.last_message


async def test_never_ready_stays_not_ready(platform: LocalPlatform, tmp_path: Path) -> None:
    """With --never-ready the instance never becomes ready and nothing is reported."""
    probes = {"readinessProbe": http("/healthz", periodSeconds=0.1)}
    async with watching(platform, tmp_path, ["--never-ready"], probes) as watch:
        await asyncio.sleep(1.0)
        assert not watch.prober.ready
        assert watch.prober.started
        assert "HTTP 503" in watch.prober.last_message
    assert watch.reports.ready_changes == []
    assert watch.reports.unhealthy == []


async def test_liveness_failures_report_unhealthy(platform: LocalPlatform, tmp_path: Path) -> None:
    """/livez failing from 0.8 s makes the instance unhealthy after failureThreshold=3 periods of 0.2 s."""
    probes = {"livenessProbe": http("/livez", initialDelaySeconds=0.5, periodSeconds=0.2, failureThreshold=3)}
    async with watching(platform, tmp_path, ["--fail-liveness-after", "0.8"], probes) as watch:
        await asyncio.wait_for(watch.task, timeout=5)
    [(at, reason)] = watch.reports.unhealthy
    # Probes at 0.5 and 0.7 pass; from 0.9 on they fail, and the third failure comes about 0.4 s later.
    assert 1.2 <= at < 2.5
    assert reason.startswith("liveness probe failed 3 times")
    assert "HTTP 500" in reason
    # Without a readiness probe it was ready once the port accepted, and is not ready once unhealthy.
    assert [ready for _, ready in watch.reports.ready_changes] == [True, False]
    assert not watch.prober.ready


async def test_startup_probe_gates_liveness(platform: LocalPlatform, tmp_path: Path) -> None:
    """A liveness probe that would fail during startup is not run until the startup probe succeeds."""
    probes = {
        "startupProbe": http("/healthz", periodSeconds=0.1, failureThreshold=50),
        "livenessProbe": http("/healthz", periodSeconds=0.1, failureThreshold=1),
    }
    async with watching(platform, tmp_path, ["--ready-delay", "0.5"], probes) as watch:
        await asyncio.sleep(0.3)
        assert not watch.prober.started
        assert not watch.prober.ready
        await wait_for(lambda: watch.prober.ready, what="readiness after startup")
        assert watch.prober.started
        await asyncio.sleep(0.3)
        assert not watch.task.done()
    assert watch.reports.unhealthy == []


async def test_startup_failure_reports_unhealthy(platform: LocalPlatform, tmp_path: Path) -> None:
    """A startup probe failing failureThreshold times reports unhealthy and never makes the instance ready."""
    probes = {"startupProbe": http("/healthz", periodSeconds=0.1, failureThreshold=3)}
    async with watching(platform, tmp_path, ["--never-ready"], probes) as watch:
        await asyncio.wait_for(watch.task, timeout=5)
    [(_, reason)] = watch.reports.unhealthy
    assert reason.startswith("startup probe failed 3 times")
    assert not watch.prober.started
    assert watch.reports.ready_changes == []


async def test_readiness_turns_false_when_the_instance_stops_answering(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """A ready instance becomes not ready after failureThreshold failed readiness probes."""
    probes = {"readinessProbe": {"tcpSocket": {}, "periodSeconds": 0.1, "failureThreshold": 2}}
    async with watching(platform, tmp_path, [], probes) as watch:
        await wait_for(lambda: watch.prober.ready, what="readiness")
        await platform.stop(watch.handle, pre_stop=None, grace_seconds=5)
        await wait_for(lambda: not watch.prober.ready, what="not ready")
    assert [ready for _, ready in watch.reports.ready_changes] == [True, False]


async def test_no_readiness_probe_means_ready_when_the_port_accepts(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """Without a readiness probe the instance is ready as soon as it listens, not before."""
    async with watching(platform, tmp_path, [], {}) as watch:
        await wait_for(lambda: watch.prober.ready, what="readiness")
    assert "connected" in watch.prober.last_message
    assert len(watch.reports.ready_changes) == 1


async def test_adopted_ready_instance_starts_ready_and_skips_startup(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """With initially_ready the instance starts ready, skips startup, and only failed readiness flips it."""
    probes = {
        "startupProbe": http("/healthz", periodSeconds=0.1, failureThreshold=1),
        "readinessProbe": http("/healthz", periodSeconds=0.1, failureThreshold=3),
    }
    async with watching(platform, tmp_path, ["--never-ready"], probes, initially_ready=True) as watch:
        assert watch.prober.ready
        assert watch.prober.started
        await wait_for(lambda: not watch.prober.ready, what="not ready")
    [(at, ready)] = watch.reports.ready_changes
    assert not ready
    assert at >= 0.2
    assert watch.reports.unhealthy == []
