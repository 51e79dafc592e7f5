"""Leader election through a ``coordination.k8s.io`` Lease, so a second operator replica waits.

The holder renews the Lease every ``duration / 3`` seconds; another candidate takes it over only when its
``renewTime`` is older than ``leaseDurationSeconds``. Every write carries the resourceVersion it read, so
two candidates racing for an expired Lease cannot both win: the loser gets a 409 and reads again. A
holder that cannot renew before its lease runs out stops (``LeaseLostError``): two operators must never
reconcile at once, and Kubernetes restarts the pod.

Waiting and renewing are timed requests (as client-go's leader election does): the only API requests
an idle operator with leader election makes.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from lightkube import ApiError
from lightkube.codecs import from_dict
from lightkube.resources.coordination_v1 import Lease

from gapless.platform.kubernetes.client import KubeApi, conflict, not_found

__all__ = ["LeaderElector", "LeaseLostError"]


class LeaseLostError(RuntimeError):
    """The Lease could not be renewed in time, or another holder took it."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _age(renew: str | None) -> float:
    if not renew:
        return float("inf")
    return time.time() - datetime.fromisoformat(renew.replace("Z", "+00:00")).timestamp()


class LeaderElector:
    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        identity: str,
        *,
        name: str = "gapless-operator",
        duration: int = 15,
    ) -> None:
        self.api, self.namespace, self.identity, self.name, self.duration = (
            api,
            namespace,
            identity,
            name,
            duration,
        )
        self.renew_every = max(1.0, duration / 3)
        self.transitions = 0

    async def _get(self) -> dict[str, Any] | None:
        try:
            got: Any = await self.api.client.get(Lease, self.name, namespace=self.namespace)
            return dict(got.to_dict())
        except ApiError as e:
            if not_found(e):
                return None
            raise

    def _spec(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        spec = dict((previous or {}).get("spec") or {})
        now = _now()
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if previous else 0)
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=self.duration, renewTime=now)
        return spec

    async def try_acquire(self) -> bool:
        """One attempt: True when this candidate holds the Lease afterwards."""
        current = await self._get()
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
        }
        try:
            if current is None:
                await self.api.client.create(from_dict(body | {"spec": self._spec(None)}))
                return True
            spec = current.get("spec") or {}
            mine = spec.get("holderIdentity") == self.identity
            expired = _age(spec.get("renewTime")) > float(spec.get("leaseDurationSeconds") or self.duration)
            if not (mine or expired):
                return False
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            await self.api.client.replace(from_dict(body | {"spec": self._spec(current)}))
            return True
        except ApiError as e:
            if conflict(e):  # another candidate wrote first (or created it): read again next time
                return False
            raise

    async def acquire(self) -> None:
        """Wait until this candidate holds the Lease."""
        while True:
            if await self.try_acquire():
                return
            await asyncio.sleep(self.renew_every)  # a timed retry, as client-go's leader election

    async def hold(self) -> None:
        """Renew until cancelled; raise ``LeaseLostError`` when a renewal does not succeed within the lease."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.renew_every)
            err: Exception | None = None
            try:
                ok = await self.try_acquire()
            except (ApiError, OSError) as e:
                ok, err = False, e
            if ok:
                last = time.monotonic()
            elif time.monotonic() - last > self.duration or err is None:
                raise LeaseLostError(f"lease {self.namespace}/{self.name} lost ({err or 'another holder'})")
