"""Analysis runs: measuring the canary against the stable revision while a rollout waits for a verdict.

The planners say which runs should exist (``Plan.analyses``, by key); :class:`AnalysisRunner` starts the
missing ones, resumes the ones a restarted control plane finds running, and stops the ones no longer
wanted. Each run is an asyncio task with one coroutine per metric; every measurement is judged
(:mod:`gapless.analysis.metric_judge`), counted with Argo's rules (:mod:`gapless.analysis.run`) and
written to the store at once, so ``gapless analysis`` shows what was measured while it happens and a
crash loses at most the window in progress. A run that ends wakes the reconcile loop, whose planner
reads the phase and acts on it: a failed or errored run aborts the rollout (all traffic back to stable).

Windows: router counters and business counters are read at the start of each interval and again at its
end; the canary and the baseline are measured from the same two reads, so they always share a window.
Resource samples come from a sampler that reads every instance once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx
from pydantic import ValidationError

from gapless.analysis.measurements import Measurement
from gapless.analysis.metric_judge import MetricJudge
from gapless.analysis.run import MetricProgress, record, run_phase, stop
from gapless.analysis.verdict import Verdict
from gapless.controller.instances import instance_handle
from gapless.controller.traffic import PREVIEW_SUFFIX, Traffic
from gapless.core.clock import Clock
from gapless.core.errors import GaplessError, SpecError
from gapless.platform.base import Platform
from gapless.providers.business import BusinessWindow, scrape
from gapless.providers.errors import ProviderError
from gapless.providers.prometheus import query
from gapless.providers.resources import ResourceSampler
from gapless.providers.router import window_measurements
from gapless.router.stats import RouterStats
from gapless.spec.analysis import AnalysisTemplate, Metric, substitute
from gapless.spec.load import problems_from_validation
from gapless.spec.models import RolloutSpec
from gapless.spec.strategy import RolloutAnalysis
from gapless.store.records import AnalysisRunRecord, InstanceRecord
from gapless.store.sqlite import Store
from gapless.strategies.bluegreen import POST_PROMOTION, PRE_PROMOTION
from gapless.strategies.canary import BACKGROUND

__all__ = [
    "RELEASE_KEY_PREFIX",
    "SAMPLE_INTERVAL",
    "AnalysisRunner",
    "analysis_for",
    "describe",
    "metric_progress",
    "resolve_run",
    "run_summary",
]

log = logging.getLogger("gapless.analysis")

SAMPLE_INTERVAL = 1.0
"""Seconds between two resource samples of every instance."""
RELEASE_KEY_PREFIX = "release:"
"""Keys of runs a release step owns (``release:NAME:STEP``): the rollout's own sync leaves them alone."""

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]
EventSink = Callable[[str, str, str, str], None]


def analysis_for(spec: RolloutSpec, key: str) -> RolloutAnalysis | None:
    """The rollout's analysis reference for a run key (``step-3``, ``background``, ...)."""
    canary = spec.strategy.canary
    bg = spec.strategy.blue_green
    if key == BACKGROUND and canary is not None:
        return canary.analysis
    if key.startswith("step-") and canary is not None:
        index = int(key.removeprefix("step-"))
        return canary.steps[index].analysis if index < len(canary.steps) else None
    if key == PRE_PROMOTION and bg is not None:
        return bg.pre_promotion_analysis
    if key == POST_PROMOTION and bg is not None:
        return bg.post_promotion_analysis
    return None


def _describe(key: str) -> str:
    if key.startswith(RELEASE_KEY_PREFIX):
        _, name, step = key.split(":", 2)
        return f"analysis of release {name} step {step}"
    if key.startswith("step-"):
        return f"analysis of step {int(key.removeprefix('step-')) + 1}"
    return {
        BACKGROUND: "background analysis",
        PRE_PROMOTION: "pre-promotion analysis",
        POST_PROMOTION: "post-promotion analysis",
    }.get(key, key)


@dataclass(frozen=True)
class _Context:
    rollout: str
    canary: str
    stable: str
    args: dict[str, str]


class AnalysisRunner:
    """Starts, resumes and stops analysis runs; owns the resource sampler. Inert until used."""

    def __init__(
        self,
        store: Store,
        traffic: Traffic,
        platform: Platform,
        clock: Clock,
        *,
        event: EventSink,
        wake: Callable[[], None],
        spawn: Spawn,
    ) -> None:
        self._store = store
        self._traffic = traffic
        self._platform = platform
        self._clock = clock
        self._event = event
        self._wake = wake
        self._spawn = spawn
        self.sampler = ResourceSampler(platform)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._http: httpx.AsyncClient | None = None

    # -- what the planner reads -------------------------------------------------------------------

    @staticmethod
    def phases(runs: Sequence[AnalysisRunRecord], revision: str) -> dict[str, str]:
        """Phase of every active run of a revision, by key (the latest run of a key wins)."""
        return {r.key: r.phase for r in runs if r.revision == revision and r.active}

    # -- what the controller asks -----------------------------------------------------------------

    def sync(
        self,
        rollout: str,
        spec: RolloutSpec,
        canary: str,
        stable: str | None,
        wanted: tuple[str, ...] | None,
        runs: Sequence[AnalysisRunRecord],
    ) -> None:
        """Stop other revisions' running runs; make ``canary``'s match ``wanted`` (None: leave them).

        ``runs`` are the rollout's runs as read at the start of the pass (one read per pass).
        """
        mine: dict[str, AnalysisRunRecord] = {}
        for run in runs:
            if run.key.startswith(RELEASE_KEY_PREFIX):
                continue  # a release step's run: the release controller starts and stops it
            if run.revision != canary:
                if run.phase == "running":
                    self._stop(run.id, "stopped: the revision was replaced")
            elif run.active:
                mine[run.key] = run
        if wanted is None:
            return
        for key in wanted:
            found = mine.get(key)
            if found is None:
                self._start(rollout, spec, canary, stable or "", key)
            elif found.phase == "running" and found.id not in self._tasks:
                self._resume(found)
        for run in mine.values():
            if run.phase == "running" and run.key not in wanted:
                self._stop(run.id, "stopped: no longer needed by the rollout")

    def stop_rollout(self, rollout: str, reason: str) -> None:
        """Stop every running run of a rollout (it is being removed)."""
        for run in self._store.analysis_runs(rollout):
            if run.phase == "running":
                self._stop(run.id, reason)

    async def aclose(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        if self._http is not None:
            await self._http.aclose()

    # -- resource sampling ----------------------------------------------------------------------------

    async def sample_forever(self) -> None:
        """Read every running instance's resources once a second, for resource metrics and trends."""
        while True:
            running = [
                (i.id, i.revision, instance_handle(i))
                for i in self._store.instances()
                if i.state == "running" and i.pid is not None
            ]
            try:
                self.sampler.sample(running, self._clock.now())
            except Exception:
                log.exception("resource sampling failed")
            await asyncio.sleep(SAMPLE_INTERVAL)

    # -- lifecycle ----------------------------------------------------------------------------------

    def ensure_run(
        self, run_id: str, rollout: str, revision: str, key: str, ref: RolloutAnalysis
    ) -> AnalysisRunRecord | None:
        """A run owned outside the rollout's planner (a release step's): started once under ``run_id``,
        resumed when a restarted control plane finds it running; the stored run."""
        found = self._store.find_analysis_run(run_id)
        if found is None:
            self._begin(run_id, rollout, revision, revision, key, ref)
            return self._store.find_analysis_run(run_id)
        if found.phase == "running" and run_id not in self._tasks:
            self._resume(found)
        return found

    def stop_run(self, run_id: str, reason: str) -> None:
        """Stop one run (it ends with what its metrics decided so far)."""
        self._stop(run_id, reason)

    def _start(self, rollout: str, spec: RolloutSpec, canary: str, stable: str, key: str) -> None:
        run_id = f"{rollout}-{canary[:8]}-{key}-{secrets.token_hex(3)}"
        self._begin(run_id, rollout, canary, stable, key, analysis_for(spec, key))

    def _begin(
        self, run_id: str, rollout: str, canary: str, stable: str, key: str, ref: RolloutAnalysis | None
    ) -> None:
        now = self._clock.now()
        run = AnalysisRunRecord(
            id=run_id,
            rollout=rollout,
            revision=canary,
            key=key,
            phase="running",
            created_at=now,
        )
        try:
            resolved = self._resolve(rollout, key, ref, canary, stable)
        except GaplessError as e:
            message = str(e) or f"{_describe(key)} is not configured"
            self._store.put_analysis_run(replace(run, phase="error", message=message, finished_at=now))
            self._event(rollout, canary, "AnalysisRunError", f"{_describe(key)}: {message}")
            self._wake()
            return
        run = replace(run, spec=resolved, metrics=[metric_progress(m).to_json() for m in _metrics(resolved)])
        self._store.put_analysis_run(run)
        names = ", ".join(resolved["templates"])
        self._event(rollout, canary, "AnalysisRunStarted", f"{_describe(key)} started ({names})")
        self._resume(run)

    def _resolve(
        self, rollout: str, key: str, ref: RolloutAnalysis | None, canary: str, stable: str
    ) -> dict[str, Any]:
        def find(name: str) -> dict[str, Any] | None:
            rec = self._store.find_analysis_template(name)
            return None if rec is None else rec.spec

        resolved = resolve_run(rollout, key, ref, canary, stable, find)
        for m in resolved["metrics"]:
            if m["provider"].get("job") is not None:
                raise GaplessError(
                    f"metric {m['name']!r} uses the job provider, which runs only on Kubernetes "
                    "(the local platform has no Jobs)"
                )
        return resolved

    def _resume(self, run: AnalysisRunRecord) -> None:
        self._tasks[run.id] = self._spawn(self._run(run), f"analysis {run.id}")

    def _stop(self, run_id: str, reason: str) -> None:
        task = self._tasks.pop(run_id, None)
        if task is not None:
            task.cancel()
        run = self._store.find_analysis_run(run_id)
        if run is None or run.phase != "running":
            return
        metrics = [stop(MetricProgress.from_json(m), reason) for m in run.metrics]
        phase, message = run_phase(metrics)
        if phase == "running":  # cannot happen after stop(); keep the record consistent anyway
            phase, message = "successful", reason
        self._finish(run, metrics, phase, message)

    def _finish(
        self, run: AnalysisRunRecord, metrics: list[MetricProgress], phase: str, message: str
    ) -> None:
        now = self._clock.now()
        self._store.put_analysis_run(
            replace(
                run,
                phase=phase,
                message=message,
                finished_at=now,
                metrics=[m.to_json() for m in metrics],
            )
        )
        kind = {
            "successful": "AnalysisRunSuccessful",
            "failed": "AnalysisRunFailed",
            "error": "AnalysisRunError",
            "inconclusive": "AnalysisRunInconclusive",
        }.get(phase, "AnalysisRunEnded")
        self._event(run.rollout, run.revision, kind, f"{_describe(run.key)} {phase}: {message}")
        self._wake()

    # -- one run ----------------------------------------------------------------------------------

    async def _run(self, run: AnalysisRunRecord) -> None:
        ctx = _Context(
            run.rollout, run.revision, str(run.spec.get("stable", "")), dict(run.spec.get("args", {}))
        )
        metrics = _metrics(run.spec)
        try:
            async with asyncio.TaskGroup() as tg:
                for index, metric in enumerate(metrics):
                    tg.create_task(self._measure_metric(run.id, index, metric, ctx))
        finally:
            if self._tasks.get(run.id) is asyncio.current_task():
                self._tasks.pop(run.id, None)

    async def _measure_metric(self, run_id: str, index: int, metric: Metric, ctx: _Context) -> None:
        run = self._store.find_analysis_run(run_id)
        if run is None:
            return
        progress = MetricProgress.from_json(run.metrics[index])
        if progress.done:
            return
        judge = MetricJudge(metric, ctx.args)
        judge.restore(progress.state)  # a restarted control plane continues the sequential test
        progress = replace(progress, concludes=judge.concludes)
        delay = run.created_at + metric.initial_delay - self._clock.now()
        if delay > 0 and progress.measured == 0:
            await asyncio.sleep(delay)
        source = _Source(self, metric, ctx)
        await source.prime()
        while True:
            started = self._clock.now()
            await asyncio.sleep(metric.interval)
            try:
                verdict = await source.measure(judge, started, self._clock.now())
            except ProviderError as e:
                verdict = Verdict("error", {}, str(e))
            progress = replace(record(progress, verdict, self._clock.now()), state=judge.snapshot())
            if self._save(run_id, index, progress) or progress.done:
                return

    def _save(self, run_id: str, index: int, progress: MetricProgress) -> bool:
        """Store one metric's progress; end the run when it is decided. True when the run has ended."""
        run = self._store.find_analysis_run(run_id)
        if run is None or run.phase != "running":
            return True
        metrics = [MetricProgress.from_json(m) for m in run.metrics]
        metrics[index] = progress
        phase, message = run_phase(metrics)
        if phase == "running":
            self._store.put_analysis_run(replace(run, metrics=[m.to_json() for m in metrics]))
            return False
        self._finish(run, metrics, phase, message)
        task = self._tasks.pop(run_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()  # the other metrics have nothing left to decide
        return True

    # -- providers --------------------------------------------------------------------------------

    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http

    async def router_stats(self, rollout: str) -> list[RouterStats]:
        """The rollout's router, and its preview router when one runs (blue-green's green is there)."""
        out = []
        for name in (rollout, rollout + PREVIEW_SUFFIX):
            if name == rollout or name in self._traffic.known():
                stats = await self._traffic.stats(name)
                if stats is not None:
                    out.append(stats)
                elif name == rollout:
                    raise ProviderError(f"the router of {rollout} did not answer for its statistics")
        return out

    def instances(self, rollout: str, revisions: set[str]) -> list[InstanceRecord]:
        return [
            i
            for i in self._store.instances(rollout)
            if i.revision in revisions and i.state == "running" and i.port is not None
        ]


class _Source:
    """Takes the measurements of one metric: reads at the start of a window, then at its end."""

    def __init__(self, runner: AnalysisRunner, metric: Metric, ctx: _Context) -> None:
        self._runner = runner
        self._metric = metric
        self._ctx = ctx
        self._before: list[RouterStats] = []
        self._business = BusinessWindow()

    async def prime(self) -> None:
        kind = self._metric.provider.kind
        if kind in ("builtin", "business"):
            try:
                self._before = await self._runner.router_stats(self._ctx.rollout)
            except ProviderError:
                self._before = []
        if kind == "business":
            with contextlib.suppress(ProviderError):  # the first window then counts from zero
                self._business.advance(await self._scrape())

    async def measure(self, judge: MetricJudge, start: float, end: float) -> Verdict:
        provider = self._metric.provider
        ctx = self._ctx
        if provider.prometheus is not None:
            p = provider.prometheus
            value = await query(self._runner.http(), p.address, p.query, timeout=p.timeout)
            return judge.judge_value(value)
        if provider.resource is not None:
            sampler = self._runner.sampler
            canary = Measurement(ctx.canary, start, end, resources=sampler.window(ctx.canary, start, end))
            baseline = Measurement(ctx.stable, start, end, resources=sampler.window(ctx.stable, start, end))
            return judge.judge(canary, baseline)
        canary, baseline = await self._router_window(start, end)
        if provider.business is not None:
            deltas = self._business.advance(await self._scrape())
            canary = replace(canary, counters=deltas.get(ctx.canary, {}))
            baseline = replace(baseline, counters=deltas.get(ctx.stable, {}))
        return judge.judge(canary, baseline)

    async def _router_window(self, start: float, end: float) -> tuple[Measurement, Measurement]:
        after = await self._runner.router_stats(self._ctx.rollout)
        before = {s.name: s for s in self._before}
        self._before = after
        classes = (
            tuple(self._metric.provider.builtin.error_classes) if self._metric.provider.builtin else ("5xx",)
        )
        canary = Measurement(self._ctx.canary, start, end)
        baseline = Measurement(self._ctx.stable, start, end)
        for stats in after:
            windows = window_measurements(before.get(stats.name), stats, start, end, error_classes=classes)
            if self._ctx.canary in windows:
                canary = _add(canary, windows[self._ctx.canary])
            if self._ctx.stable in windows and not stats.name.endswith(PREVIEW_SUFFIX):
                baseline = _add(baseline, windows[self._ctx.stable])
        return canary, baseline

    async def _scrape(self) -> dict[str, tuple[str, dict[str, float]]]:
        b = self._metric.provider.business
        if b is None:
            return {}
        ctx = self._ctx
        instances = self._runner.instances(ctx.rollout, {ctx.canary, ctx.stable})
        client = self._runner.http()

        async def one(i: InstanceRecord) -> tuple[str, tuple[str, dict[str, float]]]:
            url = f"http://127.0.0.1:{b.port or i.port}{b.path}"
            return i.id, (i.revision, await scrape(client, url, b.metrics, b.timeout))

        results = await asyncio.gather(*(one(i) for i in instances))
        return dict(results)


def resolve_run(
    rollout: str,
    key: str,
    ref: RolloutAnalysis | None,
    canary: str,
    stable: str,
    find_template: Callable[[str], Mapping[str, Any] | None],
) -> dict[str, Any]:
    """What a run measures: its templates' metrics with every ``{{args.NAME}}`` filled in.

    ``find_template(name)`` returns an AnalysisTemplate document (or None when there is none); the
    local control plane reads its store, the Kubernetes operator its cache of the namespace's
    AnalysisTemplate objects. Raises :class:`GaplessError` naming what is missing or wrong.
    """
    if ref is None:
        raise GaplessError(f"{_describe(key)} is not configured in the rollout")
    values = {"rollout": rollout, "canary": canary, "stable": stable} | {a.name: a.value for a in ref.args}
    metrics: list[dict[str, Any]] = []
    seen: set[str] = set()
    for t in ref.templates:
        doc = find_template(t.template_name)
        if doc is None:
            raise GaplessError(f"AnalysisTemplate {t.template_name!r} does not exist")
        try:
            template = substitute(AnalysisTemplate.model_validate(doc), values)
        except ValidationError as e:
            raise SpecError(f"AnalysisTemplate {t.template_name}", problems_from_validation(e)) from e
        for m in template.spec.metrics:
            if m.name in seen:
                raise GaplessError(f"metric {m.name!r} is defined by more than one template")
            seen.add(m.name)
            metrics.append(m.model_dump(mode="json", by_alias=True))
    return {
        "templates": [t.template_name for t in ref.templates],
        "args": values,
        "stable": stable,
        "metrics": metrics,
    }


def describe(key: str) -> str:
    """How a run key reads in a message: ``analysis of step 2``, ``background analysis``..."""
    return _describe(key)


def run_summary(run: AnalysisRunRecord) -> dict[str, Any]:
    """A run as the status shows it: phase, why, and each metric's counts and last verdict."""
    metrics = []
    for m in run.metrics:
        p = MetricProgress.from_json(m)
        last = p.measurements[-1] if p.measurements else None
        metrics.append(
            {
                "name": p.name,
                "phase": p.phase,
                "dryRun": p.dry_run,
                "measured": p.measured,
                "successful": p.successful,
                "failed": p.failed,
                "inconclusive": p.inconclusive,
                "errors": p.errors,
                "message": p.message,
                "last": last,
            }
        )
    return {
        "id": run.id,
        "key": run.key,
        "name": _describe(run.key),
        "phase": run.phase,
        "message": run.message,
        "startedAt": run.created_at,
        "finishedAt": run.finished_at,
        "templates": run.spec.get("templates", []),
        "metrics": metrics,
    }


def _add(total: Measurement, part: Measurement) -> Measurement:
    if total.requests == 0 and total.latency is None:
        return replace(part, start=total.start, end=total.end)
    return total.merge(part)


def _metrics(resolved: dict[str, Any]) -> list[Metric]:
    return [Metric.model_validate(m) for m in resolved.get("metrics", [])]


def metric_progress(metric: Metric) -> MetricProgress:
    """A metric's progress before its first measurement."""
    return MetricProgress(
        name=metric.name,
        count=metric.count,
        failure_limit=metric.failure_limit,
        inconclusive_limit=metric.inconclusive_limit,
        consecutive_error_limit=metric.consecutive_error_limit,
        dry_run=metric.dry_run,
        concludes=metric.judge is not None and metric.judge.sequential is not None,
    )
