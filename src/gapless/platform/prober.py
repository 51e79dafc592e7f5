"""Watching one instance with its template's probes, with the kubelet's semantics.

The startup probe gates the other two: until it succeeds, readiness and liveness are not probed, so a
slow starter is neither routed to nor killed. After it, readiness and liveness run side by side, each on
its own fixed-rate schedule whose first probe is at ``initialDelaySeconds`` after the process started
(as in Kubernetes, the delay counts from the start of the instance, not from the end of the startup
phase). Readiness starts false, becomes true after ``successThreshold`` consecutive successes and false
again after ``failureThreshold`` consecutive failures. ``failureThreshold`` consecutive liveness (or
startup) failures make the instance unhealthy.

Without a readiness probe an instance is ready as soon as its port accepts a TCP connection: Kubernetes
would call it ready at once, but routing to a process that is not listening yet only produces errors.

The prober reports through two plain callbacks and stores nothing else: what to do about an unhealthy
instance (replace it) is the controller's decision. After reporting unhealthy it marks the instance not
ready and returns, because an unhealthy instance is replaced, not probed further.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from gapless.platform.probes import ProbeResult, run_probe, tcp_connect
from gapless.spec.models import Probe, TCPSocketAction, Template

__all__ = ["InstanceProber"]

_IMPLICIT_READINESS_PERIOD = 0.1
"""How often the port is tried when there is no readiness probe."""
_IMPLICIT_READINESS_TIMEOUT = 1.0


class InstanceProber:
    """Runs the startup, readiness and liveness probes of one instance until cancelled.

    ``env`` is the environment of exec probes (the instance's own). ``on_ready_change`` is called on
    every readiness transition; ``on_unhealthy`` once, with the reason, when the startup or liveness
    probe fails ``failureThreshold`` times in a row. The constructor is inert: ``run()`` does the work,
    as a task owned by the caller's task group.

    ``initially_ready`` is for an instance adopted after a control-plane restart that was ready before:
    it starts ready and past its startup phase, so a restart of the control plane neither takes it out
    of the router nor reports a transition; only ``failureThreshold`` failed readiness probes do.
    """

    def __init__(
        self,
        template: Template,
        *,
        port: int,
        env: Mapping[str, str],
        on_ready_change: Callable[[bool], None],
        on_unhealthy: Callable[[str], None],
        initially_ready: bool = False,
    ) -> None:
        self._template = template
        self._port = port
        self._env = dict(env)
        self._on_ready_change = on_ready_change
        self._on_unhealthy = on_unhealthy
        self._ready = initially_ready
        self._started = initially_ready
        self._last_message = ""

    @property
    def ready(self) -> bool:
        """Whether the instance should receive traffic."""
        return self._ready

    @property
    def started(self) -> bool:
        """Whether the startup probe has succeeded (immediately true without one)."""
        return self._started

    @property
    def last_message(self) -> str:
        """The latest probe outcome, prefixed with the probe's kind, for status and events."""
        return self._last_message

    async def run(self) -> None:
        """Probe until cancelled; returns early only after reporting the instance unhealthy."""
        began = asyncio.get_running_loop().time()
        startup = self._template.startup_probe
        if startup is not None and not self._started:
            reason = await self._startup(startup, began)
            if reason is not None:
                self._unhealthy(reason)
                return
        self._started = True
        liveness = self._template.liveness_probe
        async with asyncio.TaskGroup() as tg:
            readiness = tg.create_task(self._readiness(began))
            if liveness is not None:
                reason = await self._liveness(liveness, began)
                readiness.cancel()
                self._unhealthy(reason)
                return
        await asyncio.get_running_loop().create_future()  # nothing left to probe: wait to be cancelled

    # -- the three loops -----------------------------------------------------------------------

    async def _startup(self, probe: Probe, began: float) -> str | None:
        at = began + probe.initial_delay_seconds
        successes = failures = 0
        while True:
            result = await self._probe_at(probe, at, "startup")
            if result.success:
                successes += 1
                failures = 0
                if successes >= probe.success_threshold:
                    return None
            else:
                successes = 0
                failures += 1
                if failures >= probe.failure_threshold:
                    return f"startup probe failed {failures} times: {result.message}"
            at = self._next(at, probe)

    async def _readiness(self, began: float) -> None:
        probe = self._template.readiness_probe
        if probe is None:
            if not self._ready:
                await self._wait_listening()
            return
        at = began + probe.initial_delay_seconds
        successes = failures = 0
        while True:
            result = await self._probe_at(probe, at, "readiness")
            if result.success:
                successes += 1
                failures = 0
                if not self._ready and successes >= probe.success_threshold:
                    self._set_ready(True)
            else:
                successes = 0
                failures += 1
                if self._ready and failures >= probe.failure_threshold:
                    self._set_ready(False)
            at = self._next(at, probe)

    async def _wait_listening(self) -> None:
        action = TCPSocketAction()
        while True:
            result = await tcp_connect(action, port=self._port, timeout=_IMPLICIT_READINESS_TIMEOUT)
            self._last_message = f"readiness (port check, no readiness probe): {result.message}"
            if result.success:
                self._set_ready(True)
                return
            await asyncio.sleep(_IMPLICIT_READINESS_PERIOD)

    async def _liveness(self, probe: Probe, began: float) -> str:
        at = began + probe.initial_delay_seconds
        failures = 0
        while True:
            result = await self._probe_at(probe, at, "liveness")
            if result.success:
                failures = 0
            else:
                failures += 1
                if failures >= probe.failure_threshold:
                    return f"liveness probe failed {failures} times: {result.message}"
            at = self._next(at, probe)

    # -- helpers -------------------------------------------------------------------------------

    async def _probe_at(self, probe: Probe, at: float, kind: str) -> ProbeResult:
        delay = at - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)
        result = await run_probe(probe, port=self._port, env=self._env)
        self._last_message = f"{kind}: {result.message}"
        return result

    @staticmethod
    def _next(at: float, probe: Probe) -> float:
        """The next probe time on a fixed-rate schedule; a probe that overran skips missed ticks."""
        return max(at + probe.period_seconds, asyncio.get_running_loop().time())

    def _set_ready(self, ready: bool) -> None:
        if ready != self._ready:
            self._ready = ready
            self._on_ready_change(ready)

    def _unhealthy(self, reason: str) -> None:
        self._last_message = reason
        self._set_ready(False)
        self._on_unhealthy(reason)
