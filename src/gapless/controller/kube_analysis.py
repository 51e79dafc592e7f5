"""Analysis runs on Kubernetes, kept in the Rollout's status: the cluster is the store.

The planner asks for analysis runs by key (``step-2``, ``background``) exactly as on one machine, and
reads their phases back through ``RolloutView.analyses``; the runs are counted and judged by the same
pure code (:mod:`gapless.analysis.run`, :class:`gapless.analysis.metric_judge.MetricJudge`). What
differs is where a run lives and how a measurement is taken:

- **Where**: every run is a record in ``status.analysisRuns`` of its Rollout (its resolved templates,
  each metric's counts and last measurements), written with the rest of the status by the pass that
  changed it, with the resourceVersion read. An operator killed at any moment continues from there: a
  measurement taken but not yet written is simply taken again. Nothing is kept in the operator's memory.
- **When**: a pass is the only place a run changes (level-triggered). A metric's next measurement is
  due ``interval`` after its last one (a ``prometheus`` metric's first ``initialDelay + interval`` after
  the run started, as locally; a ``job`` metric's first right after ``initialDelay``, as Argo's); the
  pass asks to be woken at the earliest due time.
- **How**: a ``prometheus`` metric is queried by the operator (``due_queries``; the answers come in
  as ``Observed.readings`` of a later pass); a ``job`` metric's measurement is a Job the pass asks to
  create (:mod:`gapless.platform.kubernetes.jobs`) and whose ``Complete``/``Failed`` condition a later
  pass reads from the Job cache.

The router's signals, process resources and business counters (``builtin``, ``resource``,
``business``) are what gapless's own router and instances give on one machine; on Kubernetes there is
neither, so a run meeting them errors naming the metric (and, as locally, an errored run aborts).

Everything here is pure: ``(status, templates, jobs, readings, now) -> (runs, actions)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gapless.analysis.errors import AnalysisError, ExpressionError
from gapless.analysis.from_spec import template_problems
from gapless.analysis.metric_judge import MetricJudge
from gapless.analysis.run import MetricProgress, record, run_phase, stop
from gapless.analysis.verdict import Verdict
from gapless.controller.analysis import analysis_for, describe, metric_progress, resolve_run
from gapless.core.errors import GaplessError, SpecError
from gapless.platform.kubernetes.jobs import LABEL_RUN, analysis_job, job_name, job_outcome
from gapless.spec.analysis import AnalysisTemplate, Metric
from gapless.spec.models import Rollout

__all__ = [
    "MAX_RUNS",
    "RUNS_FIELD",
    "AnalysisActions",
    "Observed",
    "Query",
    "due_queries",
    "failure_detail",
    "fold",
    "run_phases",
    "settle",
]

RUNS_FIELD = "analysisRuns"
"""The status field holding the runs."""
MAX_RUNS = 20
"""Runs kept in the status; the oldest finished ones of other revisions go first."""
_KUBERNETES_PROVIDERS = ("prometheus", "job")


@dataclass(frozen=True)
class Query:
    """A Prometheus measurement that is due: the operator runs it and hands the value to the next pass."""

    run_id: str
    metric: str
    address: str
    query: str
    timeout: float


@dataclass(frozen=True)
class Observed:
    """What a pass knows of the analysis besides the Rollout: templates, Jobs and fresh query results.

    ``templates`` maps a name to an AnalysisTemplate object of the Rollout's namespace; ``jobs`` are the
    rollout's Jobs; ``readings`` maps (run id, metric) to a query's value, or to a ``str`` saying why
    the query could not be answered.
    """

    templates: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    jobs: Sequence[Mapping[str, Any]] = ()
    readings: Mapping[tuple[str, str], float | list[float] | str] = field(default_factory=dict)


@dataclass
class AnalysisActions:
    """What the pass must do for the analysis besides writing ``runs`` into the status."""

    runs: list[dict[str, Any]]
    jobs: list[dict[str, Any]] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)
    events: list[tuple[str, str, bool]] = field(default_factory=list)
    requeue_at: float | None = None


def _runs(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(r) for r in status.get(RUNS_FIELD) or []]


def _metrics(run: Mapping[str, Any]) -> list[Metric]:
    return [Metric.model_validate(m) for m in (run.get("spec") or {}).get("metrics", [])]


def _last_at(progress: MetricProgress) -> float | None:
    return float(progress.measurements[-1]["at"]) if progress.measurements else None


def _due(run: Mapping[str, Any], metric: Metric, progress: MetricProgress) -> float:
    last = _last_at(progress)
    if metric.provider.job is not None:
        return last + metric.interval if last is not None else float(run["createdAt"]) + metric.initial_delay
    base = last if last is not None else float(run["createdAt"]) + metric.initial_delay
    return base + metric.interval


def run_phases(runs: Sequence[Mapping[str, Any]], revision: str) -> dict[str, str]:
    """Phase of each active run of ``revision`` by key (the latest run of a key wins): what the planner reads."""
    ordered = sorted(runs, key=lambda r: float(r.get("createdAt", 0)))
    return {r["key"]: r["phase"] for r in ordered if r.get("revision") == revision and r.get("active", True)}


def due_queries(status: Mapping[str, Any], now: float) -> list[Query]:
    """The Prometheus measurements of running runs that are due at ``now``."""
    out: list[Query] = []
    for run in _runs(status):
        if run.get("phase") != "running":
            continue
        for metric, data in zip(_metrics(run), run.get("metrics") or [], strict=False):
            progress = MetricProgress.from_json(data)
            p = metric.provider.prometheus
            if p is not None and not progress.done and _due(run, metric, progress) <= now:
                out.append(Query(run["id"], metric.name, p.address, p.query, p.timeout))
    return out


def fold(
    status: Mapping[str, Any], rollout: str, target: str, observed: Observed, now: float, *, restart: bool
) -> AnalysisActions:
    """The runs with what was measured counted in: what the planner must see this pass.

    ``restart`` retires the target's earlier runs (an earlier template applied again starts over).
    """
    out = AnalysisActions(runs=_runs(status))
    if restart:
        for r in out.runs:
            if r.get("revision") == target:
                r["active"] = False
    _fold(out, rollout, observed, now)
    return out


def settle(
    out: AnalysisActions,
    rollout: Rollout,
    *,
    namespace: str,
    uid: str,
    target: str,
    stable: str | None,
    wanted: tuple[str, ...],
    observed: Observed,
    now: float,
) -> None:
    """Make the target's runs match ``wanted`` (the plan's ``analyses``; empty when the target is not
    progressing), stop other revisions' runs, and list the Jobs to create and to delete."""
    _sync(out, rollout, target, stable, wanted, observed.templates, now)
    _jobs(out, rollout, namespace, uid, observed.jobs, now)
    _prune(out, target)


# -- measurements -------------------------------------------------------------------------------------


def _fold(out: AnalysisActions, rollout: str, observed: Observed, now: float) -> None:
    jobs = {j["metadata"]["name"]: j for j in observed.jobs}
    for run in out.runs:
        if run.get("phase") != "running":
            continue
        metrics = [MetricProgress.from_json(m) for m in run.get("metrics") or []]
        changed = False
        for i, metric in enumerate(_metrics(run)):
            progress = metrics[i]
            if progress.done:
                continue
            verdict: Verdict | None = None
            if metric.provider.job is not None:
                job = jobs.get(job_name(rollout, run["id"], metric.name, progress.measured + 1))
                if job is not None:
                    outcome, why = job_outcome(job)
                    if outcome != "running":
                        verdict = Verdict(outcome, {"job": job["metadata"]["name"]}, why)
            elif (reading := observed.readings.get((run["id"], metric.name))) is not None:
                verdict = _judge_reading(metric, run, reading)
            if verdict is not None:
                metrics[i] = record(progress, verdict, now)
                changed = True
        if not changed:
            continue
        run["metrics"] = [m.to_json() for m in metrics]
        phase, message = run_phase(metrics)
        if phase != "running":
            _finish(out, run, phase, message, now)


def _judge_reading(metric: Metric, run: Mapping[str, Any], reading: float | list[float] | str) -> Verdict:
    if isinstance(reading, str):
        return Verdict("error", {}, reading)
    try:
        judge = MetricJudge(metric, dict((run.get("spec") or {}).get("args", {})))
    except (ExpressionError, AnalysisError) as e:
        return Verdict("error", {}, f"the metric's condition does not compile: {e}")
    return judge.judge_value(reading)


def _finish(out: AnalysisActions, run: dict[str, Any], phase: str, message: str, now: float) -> None:
    run.update(phase=phase, message=message, finishedAt=now)
    kind = {
        "successful": "AnalysisRunSuccessful",
        "failed": "AnalysisRunFailed",
        "error": "AnalysisRunError",
        "inconclusive": "AnalysisRunInconclusive",
    }.get(phase, "AnalysisRunEnded")
    out.events.append((kind, f"{describe(run['key'])} {phase}: {message}", phase != "successful"))


def _stop(out: AnalysisActions, run: dict[str, Any], reason: str, now: float) -> None:
    metrics = [stop(MetricProgress.from_json(m), reason) for m in run.get("metrics") or []]
    run["metrics"] = [m.to_json() for m in metrics]
    phase, message = run_phase(metrics)
    if phase == "running":  # cannot happen after stop(); keep the record consistent anyway
        phase, message = "successful", reason
    _finish(out, run, phase, message, now)


# -- which runs exist -----------------------------------------------------------------------------------


def _sync(
    out: AnalysisActions,
    rollout: Rollout,
    target: str,
    stable: str | None,
    wanted: tuple[str, ...],
    templates: Mapping[str, Mapping[str, Any]],
    now: float,
) -> None:
    mine: dict[str, dict[str, Any]] = {}
    for run in sorted(out.runs, key=lambda r: float(r.get("createdAt", 0))):
        if run.get("revision") != target:
            if run.get("phase") == "running":
                _stop(out, run, "stopped: the revision was replaced", now)
        elif run.get("active", True):
            mine[run["key"]] = run
    for key in wanted:
        if key not in mine:
            out.runs.append(_start(out, rollout, key, target, stable or "", templates, now))
    for run in mine.values():
        if run.get("phase") == "running" and run["key"] not in wanted:
            _stop(out, run, "stopped: no longer needed by the rollout", now)


def _start(
    out: AnalysisActions,
    rollout: Rollout,
    key: str,
    target: str,
    stable: str,
    templates: Mapping[str, Mapping[str, Any]],
    now: float,
) -> dict[str, Any]:
    run: dict[str, Any] = {
        "id": f"{key}-{target[:8]}-{int(now * 1000):x}",
        "key": key,
        "revision": target,
        "phase": "running",
        "active": True,
        "createdAt": now,
        "message": "",
        "spec": {},
        "metrics": [],
    }
    try:
        resolved = resolve_run(
            rollout.name,
            key,
            analysis_for(rollout.spec, key),
            target,
            stable,
            lambda name: _template_document(templates.get(name)),
        )
        metrics = [Metric.model_validate(m) for m in resolved["metrics"]]
    except GaplessError as e:
        message = _error_text(e) or f"{describe(key)} is not configured"
        run.update(phase="error", message=message, finishedAt=now)
        out.events.append(("AnalysisRunError", f"{describe(key)}: {message}", True))
        return run
    for m in metrics:
        if m.provider.kind not in _KUBERNETES_PROVIDERS:
            message = (
                f"metric {m.name!r} uses the {m.provider.kind} provider, which reads gapless's own router "
                "or processes on one machine; on Kubernetes a metric uses prometheus or job"
            )
            run.update(phase="error", message=message, finishedAt=now, spec=resolved)
            out.events.append(("AnalysisRunError", f"{describe(key)}: {message}", True))
            return run
    run.update(spec=resolved, metrics=[metric_progress(m).to_json() for m in metrics])
    names = ", ".join(resolved["templates"])
    out.events.append(("AnalysisRunStarted", f"{describe(key)} started ({names})", False))
    return run


def _template_document(obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An AnalysisTemplate object as the document gapless validates; refused when a condition does not compile."""
    if obj is None:
        return None
    meta = obj.get("metadata") or {}
    doc = {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": {"name": meta.get("name")},
        "spec": obj.get("spec"),
    }
    try:
        template = AnalysisTemplate.model_validate(doc)
    except ValueError:
        return doc  # resolve_run validates it again and names the fields
    if problems := template_problems(template):
        raise SpecError(f"AnalysisTemplate {template.name}", problems)
    return doc


def _error_text(e: GaplessError) -> str:
    if isinstance(e, SpecError):
        return f"{e.source}: " + "; ".join(f"{p.path}: {p.message}" for p in e.problems)
    return str(e)


# -- Jobs -------------------------------------------------------------------------------------------------


def _jobs(
    out: AnalysisActions,
    rollout: Rollout,
    namespace: str,
    uid: str,
    existing: Sequence[Mapping[str, Any]],
    now: float,
) -> None:
    """Create each due Job; delete Jobs of runs no longer kept or no longer running (still active ones)."""
    names = {j["metadata"]["name"] for j in existing}
    wake: list[float] = []
    for run in out.runs:
        if run.get("phase") != "running":
            continue
        for metric, data in zip(_metrics(run), run.get("metrics") or [], strict=False):
            progress = MetricProgress.from_json(data)
            if progress.done:
                continue
            due = _due(run, metric, progress)
            job = metric.provider.job
            if job is None:
                wake.append(due)
                continue
            number = progress.measured + 1
            if job_name(rollout.name, run["id"], metric.name, number) in names:
                continue  # its outcome arrives by the Job's watch
            if due > now:
                wake.append(due)
                continue
            out.jobs.append(
                analysis_job(
                    job,
                    rollout=rollout.name,
                    namespace=namespace,
                    uid=uid,
                    revision=run["revision"],
                    run_id=run["id"],
                    metric=metric.name,
                    number=number,
                )
            )
    running = {r["id"] for r in out.runs if r.get("phase") == "running"}
    kept = {r["id"] for r in out.runs}
    for j in existing:
        run_id = (j["metadata"].get("labels") or {}).get(LABEL_RUN)
        active = job_outcome(j)[0] == "running"
        if run_id not in kept or (active and run_id not in running):
            out.delete_jobs.append(j["metadata"]["name"])
    out.requeue_at = min(wake) if wake else None


def _prune(out: AnalysisActions, target: str) -> None:
    """Keep the status bounded: drop the oldest finished runs of other revisions beyond ``MAX_RUNS``."""
    extra = len(out.runs) - MAX_RUNS
    if extra <= 0:
        return
    old = sorted(
        (r for r in out.runs if r.get("revision") != target and r.get("phase") != "running"),
        key=lambda r: float(r.get("createdAt", 0)),
    )
    drop = {id(r) for r in old[:extra]}
    out.runs = [r for r in out.runs if id(r) not in drop]


def failure_detail(runs: Sequence[Mapping[str, Any]], revision: str) -> str:
    """The message of the target's latest failed or errored run (naming the metric), or ''."""
    bad = [
        r
        for r in runs
        if r.get("revision") == revision and r.get("active", True) and r.get("phase") in ("failed", "error")
    ]
    return str(max(bad, key=lambda r: float(r.get("createdAt", 0))).get("message", "")) if bad else ""
