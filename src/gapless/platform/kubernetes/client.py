"""The Kubernetes API as the operator uses it, through lightkube: caches kept by watches, writes by
server-side apply (field manager ``gapless``) and status replaces that retry a 409 with a fresh read.

``Informer`` lists a kind once and then follows its watch from the list's resourceVersion (no polling);
when the watch expires (410 Gone) it lists again. Every change calls ``on_change(namespace, rollout)``
with the Rollout the object belongs to (its own name for a Rollout, its ``gapless.dev/rollout`` label
otherwise), which is all the operator needs to know to reconcile that Rollout from the caches.

Objects are kept as plain dicts (the JSON the apiserver sent): the operator's logic reads them like the
YAML a user writes, and tests compare them directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.codecs import from_dict
from lightkube.generic_resource import GenericNamespacedResource, create_namespaced_resource
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.operators import exists
from lightkube.resources.apps_v1 import ReplicaSet
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Event, Pod, Service
from lightkube.types import CascadeType, PatchType

from gapless.platform.kubernetes.manifests import LABEL_ROLLOUT

__all__ = [
    "FIELD_MANAGER",
    "AnalysisTemplateResource",
    "HTTPRoute",
    "Informer",
    "Job",
    "KubeApi",
    "Pod",
    "ReplicaSet",
    "RolloutResource",
    "Service",
    "conflict",
    "load_config",
    "not_found",
]

log = logging.getLogger(__name__)
FIELD_MANAGER = "gapless"
RolloutResource = create_namespaced_resource("gapless.dev", "v1alpha1", "Rollout", "rollouts")
AnalysisTemplateResource = create_namespaced_resource(
    "gapless.dev", "v1alpha1", "AnalysisTemplate", "analysistemplates"
)
HTTPRoute = create_namespaced_resource("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")

Key = tuple[str, str]


def load_config(kubeconfig: str | Path | None = None) -> KubeConfig:
    """A kubeconfig file (``$KUBECONFIG`` or ``~/.kube/config`` when none is named), else in-cluster."""
    if kubeconfig is not None:
        return KubeConfig.from_file(str(kubeconfig))
    return KubeConfig.from_env()


def conflict(e: BaseException) -> bool:
    return isinstance(e, ApiError) and e.status.code == 409


def not_found(e: BaseException) -> bool:
    return isinstance(e, ApiError) and e.status.code == 404


class KubeApi:
    """The writes the operator makes, and a request counter (for the benchmark and ``/metrics``)."""

    def __init__(
        self, config: KubeConfig, *, context: str | None = None, namespace: str | None = None
    ) -> None:
        self.requests = 0
        self._client = AsyncClient(
            config.get(context_name=context) if context else config,
            namespace=namespace,
            field_manager=FIELD_MANAGER,
            timeout=httpx2.Timeout(30.0, read=330.0),
        )
        self._client._client._client.event_hooks["request"].append(self._count)

    async def _count(self, request: Any) -> None:
        self.requests += 1

    @property
    def client(self) -> AsyncClient:
        return self._client

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply of a whole object as field manager ``gapless`` (forcing: the operator owns it)."""
        res: Any = from_dict(obj)
        got = await self._client.apply(res, field_manager=FIELD_MANAGER, force=True)
        return _to_dict(got)

    async def delete_replica_set(self, namespace: str, name: str) -> None:
        with contextlib.suppress(ApiError):
            await self._client.delete(ReplicaSet, name, namespace=namespace)

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete an analysis Job and, in the background, its pods (a Job already gone is fine)."""
        try:
            await self._client.delete(Job, name, namespace=namespace, cascade=CascadeType.BACKGROUND)
        except ApiError as e:
            if not not_found(e):
                raise

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        """Merge-patch a pod's annotations (a pod already gone is fine)."""
        try:
            await self._client.patch(
                Pod,
                name,
                {"metadata": {"annotations": annotations}},
                namespace=namespace,
                patch_type=_MERGE,
            )
        except ApiError as e:
            if not not_found(e):
                raise

    async def replace_status(self, rollout: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Write the status subresource with the resourceVersion read; raises ApiError 409 when it moved."""
        meta = rollout["metadata"]
        body = {
            "apiVersion": rollout["apiVersion"],
            "kind": rollout["kind"],
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "spec": rollout["spec"],
            "status": status,
        }
        got = await self._client.replace(
            RolloutResource.Status.from_dict(body), meta["name"], namespace=meta["namespace"]
        )
        return _to_dict(got)

    async def get_rollout(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _to_dict(await self._client.get(RolloutResource, name, namespace=namespace))
        except ApiError as e:
            if not_found(e):
                return None
            raise

    async def get_route(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _to_dict(await self._client.get(HTTPRoute, name, namespace=namespace))
        except ApiError as e:
            if not_found(e):
                return None
            raise

    async def replace_route(self, route: dict[str, Any], rules: list[dict[str, Any]]) -> None:
        """Update an HTTPRoute's rules with the resourceVersion read (ApiError 409 when it moved meanwhile)."""
        body = copy.deepcopy(route)
        body["spec"]["rules"] = rules
        await self._client.replace(HTTPRoute.from_dict(body))

    async def event(
        self,
        rollout: dict[str, Any],
        reason: str,
        message: str,
        *,
        warning: bool = False,
        annotations: dict[str, str] | None = None,
    ) -> bool:
        """A Kubernetes Event about the Rollout (``kubectl describe rollout`` shows it); ``annotations``
        carry the gapless event's fields (:mod:`gapless.platform.kubernetes.events`). False when the
        apiserver refused it (an Event is worth no retry: the transition itself is in the status)."""
        meta = rollout["metadata"]
        ev = Event(
            metadata=ObjectMeta(
                generateName=f"{meta['name']}.", namespace=meta["namespace"], annotations=annotations
            ),
            involvedObject=ObjectReference(
                apiVersion=rollout["apiVersion"],
                kind="Rollout",
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta.get("uid"),
            ),
            reason=reason,
            message=message[:1024],
            type="Warning" if warning else "Normal",
            source=EventSource(component="gapless-operator"),
        )
        try:
            await self._client.create(ev)
        except ApiError as e:
            log.warning("event %s about %s/%s refused: %s", reason, meta["namespace"], meta["name"], e)
            return False
        return True

    async def close(self) -> None:
        await self._client.close()


_MERGE = PatchType.MERGE


def _to_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    d: dict[str, Any] = obj.to_dict()
    return d


def _rv(obj: dict[str, Any]) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def _raw(kind: Any) -> Any:
    """``kind`` as a lightkube generic resource, whose lists and watch events msgspec decodes straight
    into dicts: the typed models cost a decode into structs and a ``to_dict`` back per object, a third
    of a fresh operator's CPU over a thousand Rollouts (profiled)."""
    if issubclass(kind, GenericNamespacedResource):
        return kind
    info = kind._api_info
    return create_namespaced_resource(
        info.resource.group, info.resource.version, info.resource.kind, info.plural
    )


class Informer:
    """A watch-fed cache of one kind: ``items[(namespace, name)]`` is the latest object seen.

    ``store(obj)`` puts an object the operator just wrote into the cache at once (write-through), so
    the next pass does not act again on the state before its own write; a watch event older than what
    is cached (a smaller resourceVersion) is then ignored.
    """

    def __init__(
        self,
        api: KubeApi,
        kind: Any,
        on_change: Callable[[str, str], None],
        *,
        namespace: str | None,
        labelled: bool,
        fields: dict[str, Any] | None = None,
    ) -> None:
        self.api = api
        self.kind = kind
        self.on_change = on_change
        self.namespace = namespace
        self.labelled = labelled
        self.fields = fields
        self.items: dict[Key, dict[str, Any]] = {}
        self._by_rollout: dict[Key, dict[str, dict[str, Any]]] = {}
        self.synced = asyncio.Event()
        self.relists = 0

    def rollout_of(self, obj: dict[str, Any]) -> str | None:
        meta = obj.get("metadata", {})
        if not self.labelled:
            return str(meta.get("name"))
        return (meta.get("labels") or {}).get(LABEL_ROLLOUT)

    def _put(self, key: Key, obj: dict[str, Any]) -> None:
        """Cache ``obj`` and index it under its Rollout (a label that changed moves it)."""
        old = self.items.get(key)
        if old is not None:
            self._unindex(key, old)
        # Server-side apply's field ownership records are a third to half of an object's JSON and the
        # operator never reads them: not kept (the operator's RSS at a thousand Rollouts).
        obj.get("metadata", {}).pop("managedFields", None)
        self.items[key] = obj
        rollout = self.rollout_of(obj)
        if rollout:
            self._by_rollout.setdefault((key[0], rollout), {})[key[1]] = obj

    def _unindex(self, key: Key, obj: dict[str, Any]) -> None:
        rollout = self.rollout_of(obj)
        group = self._by_rollout.get((key[0], rollout or ""))
        if group is not None:
            group.pop(key[1], None)
            if not group:
                del self._by_rollout[(key[0], rollout or "")]

    def store(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        old = self.items.get(key)
        if old is None or _rv(obj) >= _rv(old):
            self._put(key, obj)

    def remove(self, key: Key) -> None:
        old = self.items.pop(key, None)
        if old is not None:
            self._unindex(key, old)

    def of_rollout(self, namespace: str, rollout: str) -> list[dict[str, Any]]:
        """The cached objects of one Rollout, from an index kept with the cache: a pass costs the same
        whether the namespace holds ten Rollouts or a thousand."""
        return list((self._by_rollout.get((namespace, rollout)) or {}).values())

    async def run(self) -> None:
        labels: dict[str, Any] | None = {LABEL_ROLLOUT: exists()} if self.labelled else None
        kind = _raw(self.kind)
        while True:
            try:
                listing = self.api.client.list(
                    kind, namespace=self.namespace or "*", labels=labels, fields=self.fields
                )
                seen: dict[Key, dict[str, Any]] = {}
                async for o in listing:
                    d = _to_dict(o)
                    seen[(d["metadata"]["namespace"], d["metadata"]["name"])] = d
                gone = set(self.items) - set(seen)
                self.items = {}
                self._by_rollout = {}
                for key, d in seen.items():
                    self._put(key, d)
                version = listing.resourceVersion
                self.synced.set()
                for ns, name in {(k[0], self.rollout_of(o)) for k, o in seen.items()} | {
                    (k[0], k[1] if not self.labelled else "") for k in gone
                }:
                    if name:
                        self.on_change(ns, name)
                async for change, obj in self.api.client.watch(
                    kind,
                    namespace=self.namespace or "*",
                    labels=labels,
                    fields=self.fields,
                    resource_version=version,
                ):
                    d = _to_dict(obj)
                    meta = d["metadata"]
                    key = (meta["namespace"], meta["name"])
                    if change == "DELETED":
                        self.remove(key)
                    else:
                        self.store(d)
                    name = self.rollout_of(d)
                    if name:
                        self.on_change(meta["namespace"], name)
            except asyncio.CancelledError:
                raise
            except (ApiError, httpx2.HTTPError, OSError) as e:
                self.relists += 1
                log.info("watch of %s ended (%s): listing again", self.kind.__name__, e)
                await asyncio.sleep(0.5)
