"""The Kubernetes operator's loop: watches feed caches, a changed object queues its Rollout, one worker
reconciles queued Rollouts with ``decide`` and writes what it says.

Nothing is polled: a pass runs when a watch reports a change to a Rollout, one of its ReplicaSets, Pods or
analysis Jobs, or an AnalysisTemplate of its namespace, or when the plan asked to be woken (a pod becoming
available after ``minReadySeconds``, a progress deadline, an analysis measurement falling due). A
Prometheus measurement that is due is queried by a task of its own (a slow or unreachable Prometheus
holds up no other Rollout); its answer queues the Rollout again, and the next pass judges it
(:mod:`gapless.controller.kube_analysis`). An answer not yet written to the status when the operator
dies is simply asked again by the next operator. What the operator writes goes into its caches at once (write-through), so the next pass sees
its own writes even before their watch events arrive. A status write that meets a 409 (the Rollout
changed meanwhile) is not retried blindly: the Rollout is read again and the pass runs again on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx
from lightkube import ApiError

from gapless.controller.annotations import Annotation, AnnotationSender
from gapless.controller.kube_analysis import Observed, Query, due_queries
from gapless.controller.kube_steps import step_events
from gapless.controller.kubernetes import DELETION_COST, Decision, decide
from gapless.platform.kubernetes.client import (
    AnalysisTemplateResource,
    Informer,
    Job,
    KubeApi,
    Pod,
    ReplicaSet,
    RolloutResource,
    Service,
    conflict,
)
from gapless.platform.kubernetes.events import (
    EVENT_REVISION,
    EVENT_REVISION_NUMBER,
    EVENT_TIME,
    EVENT_TYPE,
    event_fields,
)
from gapless.platform.kubernetes.manifests import LABEL_REVISION, route_rules
from gapless.providers.errors import ProviderError
from gapless.providers.prometheus import query

__all__ = ["Operator"]

log = logging.getLogger(__name__)
Key = tuple[str, str]
WORKERS = 4
"""Rollouts reconciled at once by default: a pass mostly waits for the apiserver's answers to its
writes, so a few overlapping passes settle a thousand new Rollouts several times faster than one."""
Reading = float | list[float] | str


class Operator:
    """Reconciles every Rollout of ``namespace`` (all namespaces when None)."""

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str | None = None,
        annotations: AnnotationSender | None = None,
        workers: int = WORKERS,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.annotations = annotations
        self.events = 0
        self.rollouts = Informer(api, RolloutResource, self.enqueue, namespace=namespace, labelled=False)
        self.replica_sets = Informer(api, ReplicaSet, self.enqueue, namespace=namespace, labelled=True)
        self.pods = Informer(api, Pod, self.enqueue, namespace=namespace, labelled=True)
        self.services = Informer(api, Service, self.enqueue, namespace=namespace, labelled=True)
        self.jobs = Informer(api, Job, self.enqueue, namespace=namespace, labelled=True)
        self.templates = Informer(
            api, AnalysisTemplateResource, self._template_changed, namespace=namespace, labelled=False
        )
        self._http: httpx.AsyncClient | None = None
        self._queries: dict[tuple[str, str, str, str], asyncio.Task[None]] = {}
        self._readings: dict[tuple[str, str], dict[tuple[str, str], Reading]] = {}
        self.measurements = 0
        self.workers = workers
        self._dirty: set[Key] = set()
        self._busy: set[Key] = set()
        self._wake = asyncio.Event()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._routes: dict[Key, tuple[str, int, tuple[dict[str, Any], ...]]] = {}
        self.passes = 0
        self.first_resync_seconds: float | None = None
        """From the start of the first lists to one pass over every Rollout they held."""
        self._first: set[Key] = set()
        self._first_started = 0.0
        self.conflicts = 0
        self.last_pass_seconds = 0.0
        self.ready = asyncio.Event()

    def enqueue(self, namespace: str, name: str) -> None:
        self._dirty.add((namespace, name))
        self._wake.set()

    def _template_changed(self, namespace: str, _template: str) -> None:
        """An AnalysisTemplate changed: every Rollout of its namespace may be waiting for it."""
        for ns, name in list(self.rollouts.items):
            if ns == namespace:
                self.enqueue(ns, name)

    @property
    def informers(self) -> tuple[Informer, ...]:
        return (self.rollouts, self.replica_sets, self.pods, self.services, self.jobs, self.templates)

    async def run(self) -> None:
        informers = self.informers
        started = time.perf_counter()
        tasks = [asyncio.create_task(i.run(), name=f"watch-{i.kind.__name__}") for i in informers]
        if self.annotations is not None:
            tasks.append(asyncio.create_task(self.annotations.run(), name="grafana annotations"))
        try:
            await asyncio.gather(*(i.synced.wait() for i in informers))
            self.ready.set()
            self._first = set(self.rollouts.items)
            self._first_started = started
            if not self._first:
                self.first_resync_seconds = time.perf_counter() - started
            workers = [asyncio.create_task(self._work(), name=f"worker-{i}") for i in range(self.workers)]
            tasks += workers
            await asyncio.gather(*workers)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            for h in self._timers.values():
                h.cancel()
            for q in self._queries.values():
                q.cancel()
            if self._http is not None:
                await self._http.aclose()

    async def _work(self) -> None:
        """One worker: reconcile queued Rollouts one at a time. Several workers overlap their requests to
        the apiserver (a pass mostly waits for its writes), and never work on the same Rollout at once: a
        Rollout queued while a pass of it runs waits in the queue for that pass to end."""
        while True:
            key = self._take()
            if key is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._busy.add(key)
            try:
                await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciling %s/%s failed; retrying in 1 s", *key)
                self._later(key, time.time() + 1.0)
            finally:
                self._busy.discard(key)
                if key in self._dirty:
                    self._wake.set()

    def _take(self) -> Key | None:
        """A queued Rollout no worker is reconciling (taken off the queue), or None."""
        for key in self._dirty:
            if key not in self._busy:
                self._dirty.discard(key)
                return key
        return None

    def _later(self, key: Key, at: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, at - time.time())
        self._timers[key] = loop.call_later(delay, self.enqueue, *key)

    async def reconcile(self, key: Key) -> None:
        obj = self.rollouts.items.get(key)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            self._readings.pop(key, None)
            return
        namespace, name = key
        started = time.perf_counter()
        readings = self._measure(key, due_queries(obj.get("status") or {}, time.time()))
        observed = Observed(
            templates={n: t for (ns, n), t in self.templates.items.items() if ns == namespace},
            jobs=self.jobs.of_rollout(namespace, name),
            readings=readings,
        )
        d = decide(
            obj,
            self.replica_sets.of_rollout(namespace, name),
            self.pods.of_rollout(namespace, name),
            time.time(),
            analysis=observed,
        )
        if d.status:
            d.events.extend(step_events(obj, d.status))
        await self._apply(key, obj, d)
        self.passes += 1
        if self._first and key in self._first:
            self._first.discard(key)
            if not self._first:
                self.first_resync_seconds = time.perf_counter() - self._first_started
        self.last_pass_seconds = time.perf_counter() - started
        if d.requeue_at is not None:
            self._later(key, d.requeue_at)

    def _measure(self, key: Key, due: list[Query]) -> dict[tuple[str, str], Reading]:
        """The answers that arrived for this Rollout's due queries (taken: each is judged once), after
        starting a task for each due query not yet asked."""
        arrived = self._readings.pop(key, {})
        for q in due:
            if (q.run_id, q.metric) in arrived:
                continue
            task_key = (*key, q.run_id, q.metric)
            if task_key not in self._queries:
                self._queries[task_key] = asyncio.create_task(self._query(key, q), name=f"query {q.metric}")
        return arrived

    async def _query(self, key: Key, q: Query) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        value: Reading
        try:
            value = await query(self._http, q.address, q.query, timeout=q.timeout)
        except ProviderError as e:
            value = str(e)
        finally:
            self._queries.pop((*key, q.run_id, q.metric), None)
        self.measurements += 1
        self._readings.setdefault(key, {})[(q.run_id, q.metric)] = value
        self.enqueue(*key)

    async def _apply(self, key: Key, obj: dict[str, Any], d: Decision) -> None:
        namespace = key[0]
        for pod in d.mark_pods:
            cached = self.pods.items.get((namespace, pod))
            if (
                cached is not None
                and (cached["metadata"].get("annotations") or {}).get(DELETION_COST) == "-1000"
            ):
                continue
            await self.api.annotate_pod(namespace, pod, {DELETION_COST: "-1000"})
            if cached is not None:
                cached["metadata"].setdefault("annotations", {})[DELETION_COST] = "-1000"
        for rs in d.replica_sets:
            self.replica_sets.store(await self.api.apply(rs))
        for rs_name in d.delete_replica_sets:
            await self.api.delete_replica_set(namespace, rs_name)
            self.replica_sets.remove((namespace, rs_name))
        status = d.status or obj.get("status") or {}
        selected_before: dict[str, str] = {}
        for svc in d.services:
            cached = self.services.items.get((namespace, svc["metadata"]["name"]))
            selected_before[svc["metadata"]["name"]] = _selected(cached)
            if cached is None or not _service_matches(cached, svc):
                self.services.store(await self.api.apply(svc))
        weights = None if d.http_route is None else (d.http_route[1], d.http_route[1])
        if d.http_route is not None and self._routes.get(key) != d.http_route:
            weights = await self._route(key, obj, *d.http_route)
        before = traffic_split(key[1], selected_before, None if weights is None else weights[0])
        selected_after = {svc["metadata"]["name"]: _selected(svc) for svc in d.services}
        after = traffic_split(key[1], selected_after, None if weights is None else weights[1])
        if before and after and before != after:  # where requests go changed (not on the first pass)
            await self._event(key, obj, status, "TrafficShifted", weights_message(status, after), False, "")
        for reason, message, warning in d.events:
            await self._event(key, obj, d.status or obj.get("status") or {}, reason, message, warning)
        if d.status and d.status != obj.get("status"):
            try:
                self.rollouts.store(await self.api.replace_status(obj, d.status))
            except ApiError as e:
                if not conflict(e):
                    raise
                self.conflicts += 1
                fresh = await self.api.get_rollout(*key)
                if fresh is not None:
                    self.rollouts.store(fresh)
                self.enqueue(*key)
                return  # the Jobs belong to runs this status would have recorded: the next pass decides
        # A Job is created only once its run is in the status: a Job never exists for a run the
        # cluster does not know (a crash here leaves the run waiting for it; the next pass creates it).
        for job in d.jobs:
            self.jobs.store(await self.api.apply(job))
        for job_name in d.delete_jobs:
            await self.api.delete_job(namespace, job_name)
            self.jobs.remove((namespace, job_name))

    async def _event(
        self,
        key: Key,
        obj: dict[str, Any],
        status: dict[str, Any],
        reason: str,
        message: str,
        warning: bool,
        revision: str | None = None,
    ) -> None:
        """One transition as a Kubernetes Event carrying the gapless event's fields (the store), then as
        a Grafana annotation (only queued: a slow Grafana never holds up a pass). ``revision``: the
        event's revision hash when it is not the one its message names ("" for none, as the local
        ``TrafficShifted``, which is about the rollout's split rather than one revision)."""
        type_, named, number = event_fields(reason, message, status)
        if revision is not None and revision != named:
            numbers = _numbers(status)
            named, number = revision, numbers.get(revision)
        revision = named
        now = time.time()
        notes = {EVENT_TYPE: type_, EVENT_REVISION: revision, EVENT_TIME: f"{now:.6f}"}
        if number is not None:
            notes[EVENT_REVISION_NUMBER] = str(number)
        stored = await self.api.event(obj, reason, message, warning=warning, annotations=notes)
        self.events += 1
        if stored and self.annotations is not None:
            self.annotations.submit(Annotation(now, key[1], revision, type_, message))

    async def _route(
        self, key: Key, obj: dict[str, Any], route: str, weight: int, header: tuple[dict[str, Any], ...]
    ) -> tuple[int, int] | None:
        """Write the weights (and header route) into the user's HTTPRoute: one update, retried on a 409
        with a fresh read; nothing is written when the route already says it. The canary's weight in
        the route before and after; None when there is no such route."""
        namespace, name = key
        before = weight
        for _ in range(5):
            current = await self.api.get_route(namespace, route)
            if current is None:
                await self.api.event(obj, "HTTPRouteNotFound", f"HTTPRoute {route} not found", warning=True)
                return None
            rules = current.get("spec", {}).get("rules") or []
            before = canary_weight(rules, name) or 0  # a canary backend added at 0 sends it nothing
            wanted = route_rules(rules, name, weight, header)
            if wanted == rules:
                break
            try:
                await self.api.replace_route(current, wanted)
                break
            except ApiError as e:
                if not conflict(e):
                    raise
                self.conflicts += 1
        self._routes[key] = (route, weight, header)
        return before, weight


def _numbers(status: dict[str, Any]) -> dict[str, int]:
    return {
        h: int(rec["number"])
        for h, rec in (status.get("revisions") or {}).items()
        if isinstance(rec, dict) and isinstance(rec.get("number"), int)
    }


def weights_message(status: dict[str, Any], split: dict[str, int]) -> str:
    """The local ``TrafficShifted`` message: ``weights revision 1: 80%, revision 2: 20%``."""
    numbers = _numbers(status)
    shown = ", ".join(
        f"revision {numbers[h]}: {w}%" if h in numbers else f"{h}: {w}%" for h, w in split.items() if w
    )
    return f"weights {shown or 'even split'}"


def canary_weight(rules: list[dict[str, Any]], rollout: str) -> int | None:
    """The weight an HTTPRoute gives ``NAME-canary`` in its first rule sending to it (None: no such rule)."""
    canary = f"{rollout[:55]}-canary"
    for rule in rules:
        if rule.get("name") is not None:  # the header route
            continue
        for ref in rule.get("backendRefs") or []:
            if ref.get("name") == canary:
                return int(ref.get("weight", 1))
    return None


def _selected(svc: dict[str, Any] | None) -> str:
    """The revision a Service selects ("" for none, or no Service yet)."""
    return str((((svc or {}).get("spec") or {}).get("selector") or {}).get(LABEL_REVISION) or "")


def traffic_split(rollout: str, selected: dict[str, str], canary: int | None) -> dict[str, int]:
    """Where a rollout's requests go, per revision hash, from the revisions its Services select and the
    canary's weight in its HTTPRoute (None: no route; all of ``NAME-stable``'s traffic goes to the
    revision it selects). Empty while ``NAME-stable`` selects nothing (before its first apply).

    Per revision, not per Service: at the end of a canary the route's weight moves from ``NAME-canary``
    back to ``NAME-stable`` after ``NAME-stable`` was moved to the same revision, which shifts nothing.
    """
    stable = selected.get(f"{rollout[:55]}-stable", "")
    if not stable:
        return {}
    if canary is None:
        return {stable: 100}
    split: dict[str, int] = {}
    for revision, weight in ((stable, 100 - canary), (selected.get(f"{rollout[:55]}-canary", ""), canary)):
        if weight and revision:
            split[revision] = split.get(revision, 0) + weight
    return split


def _service_matches(cached: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a Service already has what the operator would apply (selector, ports, labels, owner)."""
    spec, want = cached.get("spec") or {}, wanted["spec"]
    if spec.get("selector") != want["selector"]:
        return False
    ports = [
        {k: p.get(k) for k in ("name", "port", "targetPort", "protocol")} for p in spec.get("ports") or []
    ]
    if ports != want["ports"]:
        return False
    meta = cached["metadata"]
    return (meta.get("labels") or {}).items() >= wanted["metadata"]["labels"].items() and [
        o.get("uid") for o in meta.get("ownerReferences") or []
    ] == [o["uid"] for o in wanted["metadata"]["ownerReferences"]]
